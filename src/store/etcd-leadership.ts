/**
 * Leadership of the controller replicas on etcd (the election recipe of etcd's concurrency
 * package, written out so that the leader's key and revision are known for fencing):
 *
 * - Each replica holds a lease (TTL `lease_ttl_s`) and, under it, the key
 *   `<prefix>election/<lease id>` with its name and API address. Keys disappear with their lease.
 * - The replica whose key has the lowest create revision leads. Its fence is that key and that
 *   revision: every commit of the store is a transaction conditioned on it, so a replica whose key
 *   is gone (lease expired, replaced) writes nothing (StateFencedError).
 * - The lease is renewed every TTL/6; each try has a deadline of at most TTL/12 and a failed one
 *   is followed by the next at once, so that a frozen member (tried first) does not cost the
 *   lease: renewed at most about TTL/4 after the previous renewal. A leader whose last
 *   successful renewal is older than TTL/2
 *   stops acting at once (isLeader() false) even if its key still exists: a replica cut off from
 *   etcd stops well before another can be elected (at TTL after its last renewal).
 * - A lost lease (expired while cut off) is replaced by a new one: the replica joins again, behind
 *   the others. stop() revokes the lease: the next replica leads within milliseconds.
 *
 * The keys are read from the store's copy (its watch covers the whole prefix).
 */
import type { Etcd3, Lease } from 'etcd3';
import type { Logger } from 'pino';
import type { Clock, Leadership, ReplicaInfo } from '../core/ports.js';
import type { EtcdStateStore } from './etcd-store.js';

const ELECTION = 'election/';
/** Pause after a failed renewal before the next try (the failed try took its deadline already). */
const RETRY_RENEW_MS = 20;
/** What etcd (or the keepalive answer, TTL 0) says of a lease that no longer exists. */
const LEASE_GONE = /expired|not found/i;
/** A fence no commit passes: the state of a replica that does not lead (a create revision is never -1). */
const NOT_LEADING = (prefix: string) => ({ key: `${prefix}${ELECTION}`, createRevision: '-1' });

export interface EtcdLeadershipOptions {
  client: Etcd3;
  store: EtcdStateStore;
  prefix: string;
  self: ReplicaInfo;
  ttlS: number;
  /** Deadline of each renewal, ms. */
  callTimeoutMs: number;
  clock: Clock;
  logger: Logger;
  /** Told of every change of leader seen by this replica (metrics). */
  onLeaderChange?: (leader: ReplicaInfo | null) => void;
  /** Told of every renewal of the lease that failed (metrics). */
  onRenewalFailed?: () => void;
}

/** Joins the election; resolves once this replica's key is in the store's copy. */
export async function joinEtcdElection(opts: EtcdLeadershipOptions): Promise<Leadership & { renewedAgoMs(): number }> {
  const l = new EtcdLeadership(opts);
  await l.join();
  return l;
}

class EtcdLeadership implements Leadership {
  readonly self: ReplicaInfo;
  private lease: Lease | null = null;
  private key: string | null = null;
  private createRevision = 0;
  /** Monotonic ms of the last successful renewal. */
  private renewedAt = -Infinity;
  private renewTimer: NodeJS.Timeout | null = null;
  /** Renewals failed in a row. */
  private failedRenewals = 0;
  private leading = false;
  private lastLeader: string | null = null;
  private stopped = false;
  private rejoining = false;
  private readonly listeners = new Set<(leading: boolean) => void>();
  private readonly unsubscribe: () => void;
  private readonly log: Logger;

  constructor(private readonly o: EtcdLeadershipOptions) {
    this.self = o.self;
    this.log = o.logger;
    o.store.setFence(NOT_LEADING(o.prefix));
    this.unsubscribe = o.store.onChange((keys) => {
      if (keys.some((k) => k.startsWith(ELECTION))) this.evaluate();
    });
  }

  /** Takes a lease and puts this replica's key under it; renews from then on. */
  async join(): Promise<void> {
    const lease = this.o.client.lease(this.o.ttlS, { autoKeepAlive: false });
    const id = await lease.grant();
    this.lease = lease;
    const key = `${this.o.prefix}${ELECTION}${BigInt(id).toString(16)}`;
    await lease.put(key).value(JSON.stringify({ name: this.self.name, api: this.self.api }));
    const res = await this.o.client.get(key).exec();
    const kv = res.kvs[0];
    if (!kv) throw new Error(`etcd election: the key ${key} vanished right after it was put (lease expired?)`);
    this.key = key;
    this.createRevision = Number(kv.create_revision);
    this.renewedAt = this.o.clock.monotonic();
    this.log.info({ key, revision: this.createRevision, ttlS: this.o.ttlS }, 'joined the leader election');
    this.scheduleRenew();
    // our key reaches the copy through the watch
    const until = this.o.clock.monotonic() + this.o.ttlS * 1000;
    while (!this.mine() && this.o.clock.monotonic() < until && !this.stopped) await new Promise((r) => setTimeout(r, 10));
    this.evaluate();
  }

  private mine() {
    return this.o.store.entries(ELECTION).find((e) => `${this.o.prefix}${e.key}` === this.key);
  }

  /** The next renewal: TTL/6 after a success, at once (after the short try that failed) otherwise. */
  private scheduleRenew(delayMs = (this.o.ttlS * 1000) / 6): void {
    if (this.stopped) return;
    this.renewTimer = setTimeout(() => void this.renew(), delayMs);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    const lease = this.lease;
    if (!lease || this.stopped) return;
    try {
      // a frozen member must not cost the lease: each try is short (TTL/12), and a failed one is
      // followed by the next at once (the client moves on to another member after a failure)
      const res = await lease.keepaliveOnce({ deadline: Date.now() + Math.min(this.o.callTimeoutMs, (this.o.ttlS * 1000) / 12) });
      if (Number(res.TTL) <= 0) throw new Error('the lease has expired');
      this.renewedAt = this.o.clock.monotonic();
      this.failedRenewals = 0;
    } catch (err) {
      const message = (err as Error).message;
      this.o.onRenewalFailed?.();
      // the first failure, then every tenth: a partition lasts
      if (this.failedRenewals++ % 10 === 0) this.log.warn({ err: message, renewedAgoMs: Math.round(this.renewedAgoMs()), failures: this.failedRenewals }, 'election lease not renewed');
      this.evaluate();
      if (LEASE_GONE.test(message) && this.renewedAgoMs() > this.o.ttlS * 1000) {
        void this.rejoin();
        return;
      }
      this.scheduleRenew(RETRY_RENEW_MS);
      return;
    }
    this.evaluate();
    this.scheduleRenew();
  }

  /** The lease is gone: a new lease and key (behind the other replicas). */
  private async rejoin(): Promise<void> {
    if (this.rejoining || this.stopped) return;
    this.rejoining = true;
    this.key = null;
    this.lease?.release();
    this.lease = null;
    let delay = 200;
    while (!this.stopped) {
      try {
        await this.join();
        break;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, retryInMs: delay }, 'joining the leader election failed');
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, 5000);
      }
    }
    this.rejoining = false;
  }

  renewedAgoMs(): number {
    return this.o.clock.monotonic() - this.renewedAt;
  }

  /** The election keys in the copy, oldest first. */
  private candidates(): { key: string; info: ReplicaInfo; createRevision: number }[] {
    return this.o.store.entries(ELECTION)
      .map((e) => ({ key: `${this.o.prefix}${e.key}`, info: asReplica(e.value), createRevision: e.createRevision }))
      .filter((c): c is { key: string; info: ReplicaInfo; createRevision: number } => c.info !== null)
      .sort((a, b) => a.createRevision - b.createRevision);
  }

  isLeader(): boolean {
    // re-checked on every call: the lease's age moves on between events
    if (this.leading && this.renewedAgoMs() > (this.o.ttlS * 1000) / 2) this.evaluate();
    return this.leading;
  }

  leader(): ReplicaInfo | null {
    return this.candidates()[0]?.info ?? null;
  }

  replicas(): ReplicaInfo[] {
    return this.candidates().map((c) => c.info);
  }

  onChange(listener: (leading: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** Decides whether this replica leads now; fences the store accordingly and tells the listeners of a change. */
  private evaluate(): void {
    const first = this.candidates()[0];
    const fresh = this.renewedAgoMs() <= (this.o.ttlS * 1000) / 2;
    const leading = !this.stopped && this.key !== null && first?.key === this.key && fresh;
    const leaderName = first?.info.name ?? null;
    if (leaderName !== this.lastLeader) {
      this.lastLeader = leaderName;
      this.o.onLeaderChange?.(first?.info ?? null);
    }
    if (leading === this.leading) return;
    this.leading = leading;
    this.o.store.setFence(leading ? { key: this.key!, createRevision: String(this.createRevision) } : NOT_LEADING(this.o.prefix));
    if (leading) this.log.info({ key: this.key, revision: this.createRevision }, 'leading: this replica acts now');
    else this.log.warn({ renewedAgoMs: Math.round(this.renewedAgoMs()), leader: leaderName }, 'not leading any more: this replica stops acting');
    for (const l of [...this.listeners]) {
      try {
        l(leading);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'a leadership listener threw');
      }
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.evaluate();
    this.unsubscribe();
    const lease = this.lease;
    this.lease = null;
    // revoked: the key goes now and the next replica leads at once
    await lease?.revoke({ deadline: Date.now() + this.o.callTimeoutMs }).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message }, 'election lease not revoked; it expires by itself');
    });
  }
}

function asReplica(v: unknown): ReplicaInfo | null {
  const r = v as { name?: unknown; api?: unknown } | null;
  return r && typeof r === 'object' && typeof r.name === 'string' && typeof r.api === 'string' ? { name: r.name, api: r.api } : null;
}

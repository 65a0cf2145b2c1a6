/**
 * Propagation, measured: after each change the controller asks each secondary for the zone's SOA
 * (UDP, TSIG-signed where the secondary has a key, the reply verified) until it serves the new
 * serial: every 20 ms for the first 2 s, then every 250 ms until 60 s, then every 10 s while it
 * stays behind. Reports when each secondary served each version (for the propagation histogram and
 * the operations' `dns_propagated`), each secondary's serial and whether it is behind. Never
 * throws.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { RRType } from '../wire/constants.js';
import { decodeMessage, encodeMessage } from '../wire/message.js';
import { serialLess } from './journal.js';
import { signRequest, verify, type TsigKey } from './tsig.js';
import type { Secondary } from './xfr-service.js';

export interface PropagationOptions {
  secondaries: Secondary[];
  logger: Logger;
  /** Unix seconds (TSIG). */
  now?: () => number;
  /** A version served: `seconds` from the change to the first answer with its serial. */
  onServed?: (secondary: string, zone: string, serial: number, seconds: number) => void;
  /** What a secondary answered for a zone, and whether that is behind what the controller serves. */
  onSerial?: (secondary: string, zone: string, serial: number | null, behind: boolean) => void;
  /** Poll intervals (tests shorten them). */
  fastMs?: number;
  fastForMs?: number;
  slowMs?: number;
  behindAfterMs?: number;
  behindPollMs?: number;
  /** Wait for one SOA answer. */
  queryTimeoutMs?: number;
}

import type { Propagated } from '../../core/ports.js';

export type { Propagated };

/** A version to see served: its serial and when it came. */
interface Version {
  target: number;
  /** performance.now() of the change, and its wall-clock time. */
  since: number;
  sinceWall: number;
}

interface Watch extends Version {
  zone: string;
  timer: NodeJS.Timeout | null;
  done: boolean;
  /**
   * Versions this watch replaced before they were seen served: recorded at the first answer with
   * their serial or a newer one (a secondary serving a newer serial has had the older change).
   */
  earlier: Version[];
}

/** Most replaced versions a watch carries (a secondary down while changes pile up). */
const MAX_EARLIER = 64;

export class PropagationTracker {
  private readonly sockets = new Map<4 | 6, Socket>();
  private readonly queries = new Map<number, (reply: Buffer | null) => void>();
  /** Current watch per `${secondary}|${zone}`. */
  private readonly watches = new Map<string, Watch>();
  /** When each secondary first served each (zone, serial) watched: `${secondary}|${zone}|${serial}` → ms. */
  private readonly served = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: PropagationOptions) {
    this.now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  }

  get secondaries(): readonly Secondary[] {
    return this.opts.secondaries;
  }

  /** The zone now serves `serial`: watch every secondary until it serves it too. */
  expect(zone: string, serial: number): void {
    if (this.closed) return;
    for (const s of this.opts.secondaries) {
      const key = `${s.name}|${zone}`;
      const prev = this.watches.get(key);
      if (prev?.timer) clearTimeout(prev.timer);
      const earlier = prev && !prev.done ? [...prev.earlier, { target: prev.target, since: prev.since, sinceWall: prev.sinceWall }].slice(-MAX_EARLIER) : [];
      const w: Watch = { zone, target: serial >>> 0, since: performance.now(), sinceWall: Date.now(), timer: null, done: false, earlier };
      this.watches.set(key, w);
      void this.poll(s, w);
    }
  }

  /**
   * When each secondary served every (zone, serial) of `targets`: resolves once all did, or
   * after `timeoutMs` with null for those that had not.
   */
  async waitFor(targets: ReadonlyMap<string, number>, timeoutMs = 60_000): Promise<Propagated> {
    const result = (): { out: Propagated; complete: boolean } => {
      const out: Propagated = {};
      let complete = true;
      for (const s of this.opts.secondaries) {
        let latest = 0;
        for (const [zone, serial] of targets) {
          const at = this.served.get(`${s.name}|${zone}|${serial >>> 0}`);
          if (at === undefined) {
            latest = -1;
            break;
          }
          latest = Math.max(latest, at);
        }
        out[s.name] = latest < 0 ? null : latest;
        if (latest < 0) complete = false;
      }
      return { out, complete };
    };
    const first = result();
    if (first.complete || this.closed) return first.out;
    return new Promise<Propagated>((resolve) => {
      const check = () => {
        const r = result();
        if (!r.complete) return;
        finish(r.out);
      };
      const finish = (out: Propagated) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(out);
      };
      const timer = setTimeout(() => finish(result().out), timeoutMs);
      timer.unref();
      this.waiters.add(check);
    });
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches.values()) if (w.timer) clearTimeout(w.timer);
    for (const done of this.queries.values()) done(null);
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    for (const check of [...this.waiters]) check();
  }

  private async poll(s: Secondary, w: Watch): Promise<void> {
    const key = `${s.name}|${w.zone}`;
    if (this.closed || this.watches.get(key) !== w) return;
    const serial = await this.soaSerial(s, w.zone);
    if (this.closed || this.watches.get(key) !== w) return;
    const elapsed = performance.now() - w.since;
    const reached = serial !== null && !serialLess(serial, w.target);
    const behindAfter = this.opts.behindAfterMs ?? 60_000;
    this.opts.onSerial?.(s.name, w.zone, serial, !reached && elapsed >= behindAfter);
    const at = w.since + elapsed;
    if (serial !== null && w.earlier.length > 0) {
      // versions replaced before they were seen served: served now (or earlier) if this serial has them
      const seen = w.earlier.filter((v) => !serialLess(serial, v.target));
      w.earlier = w.earlier.filter((v) => serialLess(serial, v.target));
      for (const v of seen) this.markServed(s.name, w.zone, v, at);
      if (seen.length > 0 && !reached) for (const check of [...this.waiters]) check();
    }
    if (reached) {
      w.done = true;
      this.markServed(s.name, w.zone, w, at);
      for (const check of [...this.waiters]) check();
      return;
    }
    const wait = elapsed < (this.opts.fastForMs ?? 2000) ? this.opts.fastMs ?? 20
      : elapsed < behindAfter ? this.opts.slowMs ?? 250
        : this.opts.behindPollMs ?? 10_000;
    if (elapsed >= behindAfter && elapsed - wait < behindAfter) {
      this.opts.logger.warn({ secondary: s.name, zone: w.zone, serial, expected: w.target }, 'secondary still behind after the change');
    }
    w.timer = setTimeout(() => void this.poll(s, w), wait);
    w.timer.unref();
  }

  /** Records that `secondary` served `v` of `zone` at `at` (performance.now()), once. */
  private markServed(secondary: string, zone: string, v: Version, at: number): void {
    const servedKey = `${secondary}|${zone}|${v.target}`;
    if (this.served.has(servedKey)) return;
    this.served.set(servedKey, v.sinceWall + (at - v.since));
    this.trimServed();
    this.opts.onServed?.(secondary, zone, v.target, (at - v.since) / 1000);
  }

  /** Keeps the served record bounded (the oldest entries go first). */
  private trimServed(): void {
    const max = 10_000 + 10 * this.opts.secondaries.length;
    while (this.served.size > max) this.served.delete(this.served.keys().next().value!);
  }

  /** The serial the secondary serves for `zone`, or null (no answer, an error, a bad signature). */
  private soaSerial(s: Secondary, zone: string): Promise<number | null> {
    return new Promise((resolve) => {
      let id = randomInt(0, 65536);
      for (let i = 0; this.queries.has(id) && i < 16; i++) id = randomInt(0, 65536);
      let msg = encodeMessage({ id, question: [{ name: zone, type: RRType.SOA }] });
      let mac: Buffer | null = null;
      if (s.key) {
        const signed = signRequest(msg, s.key, this.now());
        msg = signed.message;
        mac = signed.mac;
      }
      const timer = setTimeout(() => done(null), this.opts.queryTimeoutMs ?? 500);
      timer.unref();
      const done = (reply: Buffer | null) => {
        clearTimeout(timer);
        this.queries.delete(id);
        resolve(reply ? serialOf(reply, zone, s.key, mac, this.now()) : null);
      };
      this.queries.set(id, done);
      this.socket(s.address.family).send(msg, s.address.port, s.address.host, (err) => {
        if (err) done(null);
      });
    });
  }

  private socket(family: 4 | 6): Socket {
    let sock = this.sockets.get(family);
    if (!sock) {
      sock = createSocket(family === 6 ? 'udp6' : 'udp4');
      sock.on('message', (reply) => {
        if (reply.length < 12) return;
        this.queries.get(reply.readUInt16BE(0))?.(reply);
      });
      sock.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'propagation socket error'));
      sock.unref();
      this.sockets.set(family, sock);
    }
    return sock;
  }
}

/** The SOA serial of an authoritative answer for `zone`, verified when signed; null otherwise. */
function serialOf(reply: Buffer, zone: string, key: TsigKey | null, mac: Buffer | null, now: number): number | null {
  try {
    if (key && mac && !verify(reply, key, now, { requestMac: mac }).ok) return null;
    const m = decodeMessage(reply);
    if (!m.flags.qr || m.rcode !== 0 || !m.flags.aa) return null;
    const soa = m.answer.find((r) => r.type === RRType.SOA && r.name === zone);
    if (!soa || soa.rdata.length < 20) return null;
    return Buffer.from(soa.rdata).readUInt32BE(soa.rdata.length - 20);
  } catch {
    return null;
  }
}

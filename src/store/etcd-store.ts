/**
 * The StateStore on etcd (v3 API, 3.4 or later): every key under one prefix, read from an
 * in-memory copy that a watch of the prefix keeps current, written by one etcd transaction per
 * commit.
 *
 * Keys under the prefix (path segments encoded with encodeURIComponent), values JSON:
 *   op/<id>                  an operation
 *   overlay/<server>         a server's active overlay (absent: none)
 *   migration/<server>       a migration record
 *   inventory/<kind>/<name>  an inventory edit: { value, at } (value null: removed; at: ms since the epoch)
 *   routes                   ONE document: { <address>: { host, at } }
 *   meta                     ONE document: { <key>: <value> }
 *   commit                   { at }: written by every commit (the store's own; not read through the port)
 * Routes and meta are single documents so that a commit stays within etcd's --max-txn-ops (128)
 * whatever the number of addresses or meta keys it carries; they are read-modify-written from the
 * copy. Every commit transaction compares the mod_revision of `commit` (and of the documents it
 * writes) with the copy's: when another commit landed in between, nothing is written
 * (StateConflictError). Commits are thus linear: a commit that failed on a deadline and that etcd
 * applies later cannot overwrite a newer one; if it lands first, the next commit fails with
 * StateConflictError and the copy shows what landed. Ordering ties are broken by etcd revisions:
 * operations by create_revision, inventory edits by mod_revision.
 *
 * Reads are synchronous and never touch the network. A commit resolves once etcd has committed
 * the transaction, and its change is in the copy then. An optional fence (a leader's election key
 * and its create revision) guards every commit: a replica that is no longer the leader writes
 * nothing (StateFencedError). etcd unreachable, a deadline passed, no leader, the client closed:
 * StateUnavailableError. As with any remote store, a commit that failed on a deadline may still
 * be applied by etcd later (see above); the watch then brings it into the copy.
 */
import { Etcd3, GRPCInvalidArgumentError, isRecoverableError, type IKeyValue, type IOptions, type IRangeResponse, type IRequestOp, type ICompare, type ITxnResponse, type IWatchResponse, type Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { Operation } from '../core/operation.js';
import type { ServerOverlay } from '../core/overlay.js';
import { StateFencedError, StateUnavailableError, type StateChange, type StateStore } from '../core/ports.js';

export interface EtcdStoreOptions {
  /** Client URLs of the cluster's members (http:// or https://). */
  endpoints: string[];
  /** Every key of the store is under it; must end with "/" (e.g. "/failover/"). */
  prefix: string;
  /** TLS: the CA that signed the members' certificates, and a client certificate when they require one. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** Deadline of every unary call to etcd, ms (default 3000); the watch stream has none. */
  callTimeoutMs?: number;
  logger?: Logger;
}

/** The fence of a leader: its election key and the create revision it had when elected. */
export interface EtcdFence {
  key: string;
  createRevision: string;
}

/**
 * Another commit landed since this store's copy last saw the store (another writer, or an earlier
 * commit of this store that failed on a deadline and was applied late): this commit wrote nothing.
 * The copy is current again when this is thrown (what landed arrives through the watch); committing
 * again works, as after any StateUnavailableError.
 */
export class StateConflictError extends StateUnavailableError {
  override name = 'StateConflictError';
}

/** The StateStore on etcd, with what replication needs of it. */
export interface EtcdStateStore extends StateStore {
  /** The latest etcd revision the copy reflects. */
  revision(): number;
  /** Calls `listener` with the keys (relative to the prefix) after changes made elsewhere were applied to the copy; returns the unsubscribe function. */
  onChange(listener: (keys: string[]) => void): () => void;
  /** Guards every later commit with `fence` (null: no fence). */
  setFence(fence: EtcdFence | null): void;
  /** The keys of the copy under `prefix` (relative to the store's prefix, e.g. "election/"), with their values and revisions. */
  entries(prefix: string): { key: string; value: unknown; createRevision: number; modRevision: number }[];
  /**
   * Asks etcd for the store's last commit (a linearizable read): true when the copy has it (within
   * half a second), i.e. the watch delivers. False when etcd cannot be asked or the copy lags.
   */
  inSync(): Promise<boolean>;
  /** Reads the whole prefix again and watches from there (a watch found stalled). */
  resync(reason: string): void;
}

/** One key of the copy: its value (parsed; undefined when it is not valid JSON) and revisions. */
interface Entry {
  value: unknown;
  createRevision: number;
  modRevision: number;
}

const ROUTES = 'routes';
const META = 'meta';
const COMMIT = 'commit';
const DEFAULT_CALL_TIMEOUT_MS = 3000;
const RESYNC_MIN_DELAY_MS = 200;
const RESYNC_MAX_DELAY_MS = 5000;

const enc = encodeURIComponent;
const opKey = (id: string) => `op/${enc(id)}`;
const overlayKey = (server: string) => `overlay/${enc(server)}`;
const migrationKey = (server: string) => `migration/${enc(server)}`;
const inventoryKey = (kind: string, name: string) => `inventory/${enc(kind)}/${enc(name)}`;

/** JSON text of a value to store; throws (TypeError) when it has none (BigInt, a cycle, undefined, a function). */
function json(value: unknown, what: string): string {
  const text = JSON.stringify(value);
  if (typeof text !== 'string') throw new TypeError(`${what} cannot be stored: it is not JSON`);
  return text;
}

/** What a commit writes, made before anything is sent (values serialised, documents still to merge). */
interface Prepared {
  puts: [key: string, text: string][];
  deletes: string[];
  routes: [address: string, host: string][];
  meta: [key: string, value: string | null][];
}

function prepare(change: StateChange): Prepared {
  const p: Prepared = { puts: [], deletes: [], routes: [], meta: [] };
  if (change.operation) p.puts.push([opKey(change.operation.id), json(change.operation, `operation ${change.operation.id}`)]);
  if (change.overlay) {
    const { server, value } = change.overlay;
    if (value) p.puts.push([overlayKey(server), json(value, `the overlay of ${server}`)]);
    else p.deletes.push(overlayKey(server));
  }
  for (const m of change.migrations ?? []) p.puts.push([migrationKey(m.server), json(m.value, `the migration record of ${m.server}`)]);
  if (change.inventory) {
    const { kind, name, value } = change.inventory;
    p.puts.push([inventoryKey(kind, name), json({ value, at: Date.now() }, `the inventory edit of ${kind} ${name}`)]);
  }
  for (const r of change.routes ?? []) p.routes.push([String(r.address), String(r.host)]);
  for (const [k, v] of Object.entries(change.meta ?? {})) p.meta.push([k, v === null ? null : String(v)]);
  // a later migration for the same server wins: keep the last put per key
  const last = new Map(p.puts);
  p.puts = [...last];
  return p;
}

/** The routes document as address → { host, at }; entries of another shape are left out. */
function routesOf(entry: Entry | undefined): Map<string, { host: string; at: number }> {
  const out = new Map<string, { host: string; at: number }>();
  const v = entry?.value;
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [address, r] of Object.entries(v)) {
      if (r && typeof r === 'object' && typeof (r as { host?: unknown }).host === 'string') {
        out.set(address, { host: (r as { host: string }).host, at: Number((r as { at?: unknown }).at) || 0 });
      }
    }
  }
  return out;
}

/** The meta document as key → value; values that are not strings are left out. */
function metaOf(entry: Entry | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const v = entry?.value;
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, s] of Object.entries(v)) if (typeof s === 'string') out.set(k, s);
  }
  return out;
}

/** A stored operation, if the value has the shape the ordering needs. */
function asOperation(e: Entry): Operation | undefined {
  const v = e.value as Partial<Operation> | undefined;
  return v && typeof v === 'object' && typeof v.server === 'string' && typeof v.times?.accepted === 'number' ? (v as Operation) : undefined;
}

/** An etcd client failure as StateUnavailableError; a request etcd refuses as invalid (too large, too many operations) stays as it is. */
function unavailable(err: unknown, what: string): unknown {
  if (err instanceof GRPCInvalidArgumentError) return err;
  const message = err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err);
  return new StateUnavailableError(`the etcd state store cannot ${what}: ${message}`, { cause: err });
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
const neverAborted = new AbortController().signal;

/** A fault-handling policy that only runs the call. */
const passThrough = { execute: (fn: (ctx: { signal: AbortSignal }) => unknown) => Promise.resolve().then(() => fn({ signal: neverAborted })) } as unknown as Policy;

/**
 * The global policy: a call failing with a recoverable error (member unreachable, deadline) is
 * tried again on another member, each member at most once; each attempt has its own deadline.
 */
function tryEachMemberOnce(members: number): Policy {
  return {
    async execute(fn: (ctx: { signal: AbortSignal; attempt: number }) => unknown) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn({ signal: neverAborted, attempt });
        } catch (err) {
          if (attempt >= members || !isRecoverableError(err as Error)) throw err;
        }
      }
    },
  } as unknown as Policy;
}

/**
 * Ends the client's watch stream now. etcd3 1.1.2 keeps a watch stream open after close() (the
 * process would not exit), and cancelling a watcher only ends it once etcd answers, which a frozen
 * or stopped member never does. Its watch manager is not public: reached by name, tolerated absent.
 */
function endWatchStream(client: Etcd3): void {
  const manager = (client as unknown as { watchManager?: { state?: number; stream?: { cancel?: () => void } } }).watchManager;
  try {
    if (manager?.state === 2 /* connected */) manager.stream?.cancel?.();
  } catch {
    /* already ended */
  }
}

/**
 * An etcd client as the store uses it: every unary call with a deadline of `callTimeoutMs`
 * (default 3000), tried on each member at most once; the watch stream without a deadline.
 */
export function createEtcdClient(opts: Pick<EtcdStoreOptions, 'endpoints' | 'tls' | 'callTimeoutMs'>): Etcd3 {
  if (opts.endpoints.length === 0) throw new Error('etcd state store: no endpoints');
  const callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const hosts = opts.endpoints;
  return new Etcd3({
    hosts,
    ...(opts.tls ? { credentials: { rootCertificate: opts.tls.ca, certChain: opts.tls.cert, privateKey: opts.tls.key } } : {}),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    // a frozen member is noticed on the watch stream too (etcd refuses pings more often than every 5 s)
    grpcOptions: { 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 },
    faultHandling: {
      global: tryEachMemberOnce(hosts.length),
      // several members: etcd3's own breaker per member (skipped for 5 s after 3 failures in a row);
      // one member: none (it would only delay the first call after a recovery)
      ...(hosts.length > 1 ? {} : { host: () => passThrough }),
    },
  });
}

/**
 * Opens the store: reads the whole prefix, then watches it. Rejects with StateUnavailableError
 * when etcd cannot be read. With `client` (from createEtcdClient), the store uses it (and closes
 * it on close()); else it makes its own.
 */
export async function openEtcdStore(opts: EtcdStoreOptions & { client?: Etcd3 }): Promise<EtcdStateStore> {
  if (!opts.prefix.endsWith('/')) throw new Error(`etcd state prefix must end with "/": ${JSON.stringify(opts.prefix)}`);
  const hosts = opts.endpoints;
  const client = opts.client ?? createEtcdClient(opts);
  let first: IRangeResponse;
  try {
    first = await client.getAll().prefix(opts.prefix).exec();
  } catch (err) {
    client.close();
    throw unavailable(err, `be read at ${hosts.join(',')}`);
  }
  return new EtcdStore(client, opts.prefix, opts.logger, first);
}

class EtcdStore implements EtcdStateStore {
  /** The copy: key relative to the prefix → entry. */
  private readonly copy = new Map<string, Entry>();
  /** Keys this store deleted at a revision the watch has not reached yet: an older put arriving by the watch must not bring them back. */
  private readonly deletedAt = new Map<string, number>();
  private readonly listeners = new Set<(keys: string[]) => void>();
  private applied = 0;
  private watched = 0;
  private watcher: Watcher | null = null;
  private resyncing = false;
  private resyncTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private fence: EtcdFence | null = null;
  private lane: Promise<unknown> = Promise.resolve();
  /** A commit transaction is on its way: watch responses are held until its outcome is in the copy. */
  private inflight = false;
  private held: IWatchResponse[] = [];

  constructor(private readonly client: Etcd3, private readonly prefix: string, private readonly log: Logger | undefined, first: IRangeResponse) {
    this.replace(first);
    this.watch();
  }

  // --- the copy ---

  private rel(key: Buffer): string | null {
    const k = key.toString('utf8');
    return k.startsWith(this.prefix) ? k.slice(this.prefix.length) : null;
  }

  private entryOf(kv: IKeyValue, rel: string): Entry {
    let value: unknown;
    try {
      value = JSON.parse(kv.value.toString('utf8'));
    } catch {
      this.log?.warn({ key: this.prefix + rel }, 'etcd state store: a value under the prefix is not JSON; ignored');
    }
    return { value, createRevision: Number(kv.create_revision), modRevision: Number(kv.mod_revision) };
  }

  /** Takes a full read of the prefix as the copy, keeping what this store committed after that read. Returns the keys that changed. */
  private replace(res: IRangeResponse): string[] {
    const rev = Number(res.header.revision);
    const next = new Map<string, Entry>();
    for (const kv of res.kvs) {
      const rel = this.rel(kv.key);
      if (rel !== null) next.set(rel, this.entryOf(kv, rel));
    }
    for (const [k, e] of this.copy) if (e.modRevision > rev) next.set(k, e);
    for (const [k, at] of this.deletedAt) if (at > rev) next.delete(k);
    const changed: string[] = [];
    for (const [k, e] of next) if (this.copy.get(k)?.modRevision !== e.modRevision) changed.push(k);
    for (const k of this.copy.keys()) if (!next.has(k)) changed.push(k);
    this.copy.clear();
    for (const [k, e] of next) this.copy.set(k, e);
    this.watched = Math.max(this.watched, rev);
    this.applied = Math.max(this.applied, rev);
    this.pruneDeleted();
    return changed;
  }

  /** Applies one key as read from etcd (present or deleted at `rev`) unless the copy already has something newer. */
  private applyRemote(rel: string, kv: IKeyValue | null, rev: number): boolean {
    const cur = this.copy.get(rel);
    if (cur && cur.modRevision >= rev) return false;
    if (kv) {
      if ((this.deletedAt.get(rel) ?? 0) >= rev) return false;
      this.copy.set(rel, this.entryOf(kv, rel));
      return true;
    }
    if (!cur) return false;
    this.copy.delete(rel);
    return true;
  }

  private pruneDeleted(): void {
    for (const [k, at] of this.deletedAt) if (at <= this.watched) this.deletedAt.delete(k);
  }

  private notify(keys: string[]): void {
    if (keys.length === 0 || this.closed) return;
    for (const l of [...this.listeners]) {
      try {
        l(keys);
      } catch (err) {
        this.log?.error({ err }, 'etcd state store: a change listener threw');
      }
    }
  }

  // --- the watch ---

  private watch(): void {
    const w = this.client.watch().prefix(this.prefix).startRevision(String(this.watched + 1)).watcher();
    this.watcher = w;
    w.on('data', (res: IWatchResponse) => {
      if (this.watcher !== w || this.closed) return;
      if (this.inflight) this.held.push(res);
      else this.onWatch(res);
    });
    const lost = (why: string) => (err: unknown) => {
      if (this.watcher !== w || this.closed) return;
      this.resync(`${why}: ${err instanceof Error ? err.message : String(err)}`);
    };
    w.on('disconnected', lost('watch stream lost'));
    w.on('error', lost('watch cancelled'));
  }

  private onWatch(res: IWatchResponse): void {
    const changed: string[] = [];
    for (const ev of res.events ?? []) {
      const rel = this.rel(ev.kv.key);
      if (rel === null) continue;
      const isDelete = String(ev.type).toLowerCase() === 'delete';
      if (this.applyRemote(rel, isDelete ? null : ev.kv, Number(ev.kv.mod_revision))) changed.push(rel);
    }
    const rev = Number(res.header.revision);
    if (rev > this.watched) this.watched = rev;
    if (rev > this.applied) this.applied = rev;
    this.pruneDeleted();
    this.notify([...new Set(changed)].filter((k) => k !== COMMIT));
  }

  /** Reads the whole prefix again and watches from there (after the watch was lost or cancelled), retrying until it works or the store is closed. */
  resync(reason: string): void {
    if (this.resyncing || this.closed) return;
    this.resyncing = true;
    this.log?.warn({ reason }, 'etcd state store: watch lost; reading the prefix again');
    const old = this.watcher;
    this.watcher = null;
    old?.cancel().catch(() => undefined);
    let delay = RESYNC_MIN_DELAY_MS;
    const attempt = () => {
      this.resyncTimer = null;
      if (this.closed) return;
      this.client.getAll().prefix(this.prefix).exec().then((res) => {
        if (this.closed) return;
        const changed = this.replace(res);
        this.resyncing = false;
        this.watch();
        this.log?.info({ revision: this.watched }, 'etcd state store: prefix read again; watching');
        this.notify(changed.filter((k) => k !== COMMIT));
      }, (err: unknown) => {
        if (this.closed) return;
        this.log?.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: delay }, 'etcd state store: reading the prefix failed');
        this.resyncTimer = setTimeout(attempt, delay);
        delay = Math.min(delay * 2, RESYNC_MAX_DELAY_MS);
      });
    };
    attempt();
  }

  // --- the port ---

  private open(): void {
    if (this.closed) throw new Error('the etcd state store is closed');
  }

  private values(kind: string): [string, Entry][] {
    this.open();
    const out: [string, Entry][] = [];
    for (const [k, e] of this.copy) if (k.startsWith(kind) && e.value !== undefined) out.push([k, e]);
    return out;
  }

  revision(): number {
    this.open();
    return this.applied;
  }

  onChange(listener: (keys: string[]) => void): () => void {
    this.open();
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  entries(prefix: string): { key: string; value: unknown; createRevision: number; modRevision: number }[] {
    return this.values(prefix).map(([key, e]) => ({ key, value: structuredClone(e.value), createRevision: e.createRevision, modRevision: e.modRevision }));
  }

  async inSync(): Promise<boolean> {
    this.open();
    // every commit writes `commit`: its revision in etcd against the copy's (other prefixes of the
    // same cluster move etcd's revision without anything for this watch)
    let head: number;
    try {
      const res = await this.client.get(this.prefix + COMMIT).exec();
      head = Number(res.kvs[0]?.mod_revision ?? 0);
    } catch {
      return false;
    }
    const seen = () => (this.copy.get(COMMIT)?.modRevision ?? 0) >= head;
    // the watch may be a few ms behind the read: give it a moment
    for (let i = 0; i < 20 && !seen() && !this.closed; i++) await new Promise((r) => setTimeout(r, 25));
    return seen();
  }

  setFence(fence: EtcdFence | null): void {
    this.open();
    this.fence = fence ? { key: fence.key, createRevision: String(fence.createRevision) } : null;
  }

  load(): { overlays: ServerOverlay[]; operations: Operation[] } {
    const overlays = this.values('overlay/').map(([, e]) => structuredClone(e.value) as ServerOverlay);
    const operations = this.values('op/')
      .map(([, e]) => ({ e, op: asOperation(e) }))
      .filter((x): x is { e: Entry; op: Operation } => !!x.op && (x.op.state === 'pending' || x.op.state === 'running'))
      .sort((a, b) => a.op.times.accepted - b.op.times.accepted || a.e.createRevision - b.e.createRevision)
      .map((x) => structuredClone(x.op));
    return { overlays, operations };
  }

  getOperation(id: string): Operation | undefined {
    this.open();
    const e = this.copy.get(opKey(id));
    return e?.value === undefined ? undefined : (structuredClone(e.value) as Operation);
  }

  listOperations(server: string, limit: number): Operation[] {
    return this.values('op/')
      .map(([, e]) => ({ e, op: asOperation(e) }))
      .filter((x): x is { e: Entry; op: Operation } => x.op?.server === server)
      .sort((a, b) => b.op.times.accepted - a.op.times.accepted || b.e.createRevision - a.e.createRevision)
      .slice(0, Math.max(0, limit))
      .map((x) => structuredClone(x.op));
  }

  routes(): Map<string, string> {
    this.open();
    return new Map([...routesOf(this.copy.get(ROUTES))].map(([a, r]) => [a, r.host]));
  }

  getMeta(key: string): string | undefined {
    this.open();
    return metaOf(this.copy.get(META)).get(key);
  }

  metaEntries(prefix: string): Map<string, string> {
    this.open();
    return new Map([...metaOf(this.copy.get(META))].filter(([k]) => k.startsWith(prefix)));
  }

  migrations(): unknown[] {
    return this.values('migration/').map(([, e]) => structuredClone(e.value));
  }

  inventoryEdits(): { kind: string; name: string; value: Record<string, unknown> | null; at: number }[] {
    const out: { kind: string; name: string; value: Record<string, unknown> | null; at: number; rev: number }[] = [];
    for (const [k, e] of this.values('inventory/')) {
      const parts = k.split('/');
      const v = e.value as { value?: unknown; at?: unknown };
      if (parts.length !== 3 || typeof v !== 'object' || v === null || typeof v.at !== 'number') continue;
      let kind: string, name: string;
      try {
        kind = decodeURIComponent(parts[1]);
        name = decodeURIComponent(parts[2]);
      } catch {
        continue;
      }
      const value = v.value && typeof v.value === 'object' ? (structuredClone(v.value) as Record<string, unknown>) : null;
      out.push({ kind, name, value, at: v.at, rev: e.modRevision });
    }
    return out.sort((a, b) => a.at - b.at || a.rev - b.rev).map(({ rev: _rev, ...edit }) => edit);
  }

  commit(change: StateChange): Promise<void> {
    if (this.closed) return Promise.reject(new StateUnavailableError('the etcd state store is closed'));
    let prepared: Prepared;
    try {
      prepared = prepare(change);
    } catch (err) {
      return Promise.reject(err);
    }
    // one commit at a time, in the order called: each one merges its documents into what the one before wrote
    const run = this.lane.then(() => this.write(prepared));
    this.lane = run.catch(() => undefined);
    return run;
  }

  private async write(p: Prepared): Promise<void> {
    if (this.closed) throw new StateUnavailableError('the etcd state store is closed');
    const key = (rel: string) => Buffer.from(this.prefix + rel);
    const compare: ICompare[] = [];
    const success: IRequestOp[] = [];
    const failure: IRequestOp[] = [];
    const docs: [rel: string, text: string | null][] = [];

    if (p.routes.length > 0) {
      const cur = this.copy.get(ROUTES);
      const routes = routesOf(cur);
      const at = Date.now();
      for (const [address, host] of p.routes) routes.set(address, { host, at });
      docs.push([ROUTES, JSON.stringify(Object.fromEntries(routes))]);
    }
    if (p.meta.length > 0) {
      const cur = metaOf(this.copy.get(META));
      const next = new Map(cur);
      for (const [k, v] of p.meta) {
        if (v === null) next.delete(k);
        else next.set(k, v);
      }
      const same = next.size === cur.size && [...next].every(([k, v]) => cur.get(k) === v);
      if (!same) docs.push([META, next.size === 0 ? null : JSON.stringify(Object.fromEntries(next))]);
    }
    // a change that writes nothing sends nothing (nor checks the fence)
    if (p.puts.length + p.deletes.length + docs.length === 0) return;
    docs.push([COMMIT, JSON.stringify({ at: Date.now() })]);
    for (const [rel] of docs) {
      compare.push({ key: key(rel), target: 'Mod', result: 'Equal', mod_revision: String(this.copy.get(rel)?.modRevision ?? 0) });
      failure.push({ request_range: { key: key(rel) } });
    }
    const fence = this.fence;
    if (fence) {
      compare.push({ key: Buffer.from(fence.key), target: 'Create', result: 'Equal', create_revision: fence.createRevision });
      failure.push({ request_range: { key: Buffer.from(fence.key), keys_only: true } });
    }

    const writes: [rel: string, text: string | null][] = [...p.puts, ...p.deletes.map((d): [string, null] => [d, null]), ...docs];
    for (const [rel, text] of writes) {
      success.push(text === null ? { request_delete_range: { key: key(rel) } } : { request_put: { key: key(rel), value: Buffer.from(text), prev_kv: true } });
    }

    // watch responses arriving meanwhile wait for the outcome: the echo of this commit is then a no-op
    this.inflight = true;
    try {
      let res: ITxnResponse;
      try {
        res = await this.client.kv.txn({ compare, success, failure });
      } catch (err) {
        throw unavailable(err, 'be written');
      }
      if (!this.closed) this.settle(res, docs, writes, fence);
    } finally {
      this.inflight = false;
      for (const held of this.held.splice(0)) if (!this.closed) this.onWatch(held);
    }
  }

  /** Applies a transaction's outcome to the copy; throws StateFencedError or StateConflictError when it failed. */
  private settle(res: ITxnResponse, docs: [string, string | null][], writes: [string, string | null][], fence: EtcdFence | null): void {
    const rev = Number(res.header.revision);

    if (!res.succeeded) {
      // the failure branch read the documents and the fence key: refresh the documents, then say which compare failed
      const changed: string[] = [];
      docs.forEach(([rel], i) => {
        const kv = res.responses[i]?.response_range?.kvs?.[0] ?? null;
        const cur = this.copy.get(rel);
        if (kv ? cur?.modRevision !== Number(kv.mod_revision) : cur !== undefined) {
          if (kv) this.copy.set(rel, this.entryOf(kv, rel));
          else {
            this.copy.delete(rel);
            this.deletedAt.set(rel, rev);
          }
          changed.push(rel);
        }
      });
      this.notify(changed.filter((k) => k !== COMMIT));
      if (fence) {
        const kv = res.responses[docs.length]?.response_range?.kvs?.[0];
        if (!kv || String(kv.create_revision) !== fence.createRevision) {
          throw new StateFencedError(`this replica is no longer the leader: ${fence.key} ${kv ? `was created again at revision ${kv.create_revision}` : 'is gone'} (fenced on ${fence.createRevision}); nothing was written`);
        }
      }
      throw new StateConflictError(`another commit landed under ${this.prefix} meanwhile (${changed.join(', ') || 'commit'} changed: another writer, or an earlier commit that failed on a deadline and was applied late); nothing was written`);
    }

    writes.forEach(([rel, text], i) => {
      if (text === null) {
        this.copy.delete(rel);
        this.deletedAt.set(rel, rev);
        return;
      }
      const prev = res.responses[i]?.response_put?.prev_kv;
      this.copy.set(rel, { value: JSON.parse(text), createRevision: prev ? Number(prev.create_revision) : rev, modRevision: rev });
      this.deletedAt.delete(rel);
    });
    if (rev > this.applied) this.applied = rev;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    const w = this.watcher;
    this.watcher = null;
    w?.cancel().catch(() => undefined);
    endWatchStream(this.client);
    try {
      this.client.close();
    } catch {
      /* closed already */
    }
  }
}

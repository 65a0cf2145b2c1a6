/**
 * Ports owned by the core: every interface the controller drives (StateStore, RouteBackend,
 * DowntimeMeter, AccountProber, DnsOverlayPort, MailDomainAuditor, Clock). Adapters implement them
 * and import the core, never one another: src/store (StateStore), src/routing (RouteBackend),
 * src/health (DowntimeMeter, AccountProber), src/dns (DnsOverlayPort), src/audit (MailDomainAuditor).
 */
import type { Operation } from './operation.js';
import type { ServerOverlay } from './overlay.js';

/**
 * One atomic change of durable state: everything one user-visible change touches (operation,
 * overlay, SOA serial bump, migration records) goes into one StateChange and one commit.
 */
export interface StateChange {
  /** Stored under its id, replacing the one stored before. */
  operation?: Operation;
  /** A server's active overlay (null: none). */
  overlay?: { server: string; value: ServerOverlay | null };
  /** Confirmed deliveries; a later entry for the same address wins. */
  routes?: { address: string; host: string }[];
  /** Small named values (e.g. the SOA serial bump); null deletes. */
  meta?: Record<string, string | null>;
  /** Migration records, by server (JSON-safe); a later entry for the same server wins. */
  migrations?: { server: string; value: unknown }[];
  /** An inventory edit made through the API (value null: removed); it replaces the edit stored for that kind and name. */
  inventory?: { kind: string; name: string; value: Record<string, unknown> | null };
}

/**
 * The state store cannot be read or written now (storage full or failing). A commit that throws
 * it changed nothing; the same change can be committed again once the storage is back.
 */
export class StateUnavailableError extends Error {
  override name = 'StateUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * This replica is no longer the leader (a replicated store fences every commit on the leader's
 * election): the commit wrote nothing, and must not be tried again by this replica.
 */
export class StateFencedError extends Error {
  override name = 'StateFencedError';
}

/**
 * A change prepared but not made: commit `change` (one transaction), then call `apply()`, which
 * makes it visible in memory and in DNS. Nothing is changed before the commit, so when the commit
 * throws nothing is left behind; `apply()` must not be called then.
 */
export interface StagedChange {
  readonly change: StateChange;
  apply(): void;
}

/**
 * Merges staged changes into one (one commit; applied in the order given). Throws when two parts
 * carry different values for a single-valued field (operation, overlay, inventory, a meta key).
 */
export function mergeStaged(...parts: (StagedChange | null | undefined | void)[]): StagedChange {
  const present = parts.filter((p): p is StagedChange => !!p);
  const change: StateChange = {};
  const single = <K extends 'operation' | 'overlay' | 'inventory'>(key: K, value: StateChange[K]) => {
    if (value === undefined) return;
    if (change[key] !== undefined && JSON.stringify(change[key]) !== JSON.stringify(value)) throw new Error(`mergeStaged: two different values for ${key}`);
    change[key] = value;
  };
  for (const { change: c } of present) {
    single('operation', c.operation);
    single('overlay', c.overlay);
    single('inventory', c.inventory);
    if (c.routes) change.routes = [...(change.routes ?? []), ...c.routes];
    if (c.migrations) change.migrations = [...(change.migrations ?? []), ...c.migrations];
    for (const [k, v] of Object.entries(c.meta ?? {})) {
      if (change.meta && k in change.meta && change.meta[k] !== v) throw new Error(`mergeStaged: two different values for meta ${k}`);
      change.meta = { ...(change.meta ?? {}), [k]: v };
    }
  }
  return {
    change,
    apply() {
      for (const p of present) p.apply();
    },
  };
}

/**
 * Durable state. Reads are synchronous, from storage or from the store's own up-to-date copy; a
 * commit is durable when its promise resolves. Reads throw and commits reject with
 * StateUnavailableError when the storage fails (full disk, I/O error, lost cluster). What a read returns is the
 * caller's own copy, and a commit keeps no reference to the change. After close() every method throws.
 */
export interface StateStore {
  /** Everything needed at start: every active overlay, and the operations not finished (pending or running), oldest accepted first. */
  load(): { overlays: ServerOverlay[]; operations: Operation[] };
  getOperation(id: string): Operation | undefined;
  /** At most `limit` operations of a server, newest first: latest times.accepted first, equal times by when first stored (latest first). */
  listOperations(server: string, limit: number): Operation[];
  /** Where each address was last confirmed delivered: address → host. */
  routes(): Map<string, string>;
  /**
   * Commits a change atomically (all of it or nothing): resolves once it is durable. Rejects with
   * StateUnavailableError when the storage is full, failing or unreachable; nothing was changed
   * then. A change with a value that cannot be stored (not JSON-serialisable) rejects with another
   * error and changes nothing. Callers serialise their stage, commit, apply sequences (CommitLane):
   * a store takes one commit at a time in the order called.
   */
  commit(change: StateChange): Promise<void>;
  getMeta(key: string): string | undefined;
  /** Every meta value whose key starts with `prefix`, by key. */
  metaEntries(prefix: string): Map<string, string>;
  /** Every stored migration record (finished ones included). */
  migrations(): unknown[];
  /** Inventory edits made through the API, the latest per kind and name, oldest first, with when each was stored (ms since the epoch). */
  inventoryEdits(): { kind: string; name: string; value: Record<string, unknown> | null; at: number }[];
  /**
   * A store shared by several processes: calls `listener` after changes made by another process
   * reached what this store reads; returns the unsubscribe function. Absent: only this process writes.
   */
  onChange?(listener: () => void): () => void;
  close(): void;
}

/** A controller replica, as it announces itself to the others. */
export interface ReplicaInfo {
  name: string;
  /** Where its API is reached (cluster.advertise_api). */
  api: string;
}

/**
 * Which replica acts. Exactly one leads at a time; the others serve DNS and reads and hand
 * mutations to the leader. With one process (state in SQLite) that process always leads.
 */
export interface Leadership {
  /** This replica. */
  readonly self: ReplicaInfo;
  /** Whether this replica may act now: elected, with its lease renewed recently enough (within half its TTL). */
  isLeader(): boolean;
  /** The leading replica as last seen (null: none now). */
  leader(): ReplicaInfo | null;
  /** Every replica taking part, leader first, then in the order they joined. */
  replicas(): ReplicaInfo[];
  /** Calls `listener` with true when this replica starts leading, false when it stops; returns the unsubscribe function. */
  onChange(listener: (leading: boolean) => void): () => void;
  /** Leaves: another replica takes over at once. */
  stop(): Promise<void>;
}

/** When each secondary served a change (ms since the epoch; null: not within the wait). */
export type Propagated = Record<string, number | null>;

/** The DNS side of a cutover: makes a compiled overlay active in every answer sent afterwards. */
export interface DnsOverlayPort {
  apply(overlay: import('./overlay.js').CompiledOverlay | null): void;
  /**
   * The served zones whose answers a change of the overlay may alter (a superset is allowed, never
   * a subset): their serials are bumped. 'all' when it cannot tell (then every zone is bumped).
   */
  zonesChangedBy?(delta: import('./overlay.js').OverlayDelta): readonly string[] | 'all';
  /**
   * Called right after `apply`: resolves when each secondary serves what is answered now (null
   * when there are no secondaries). Never rejects.
   */
  propagation?(): Promise<Propagated | null>;
}

/** Where the cutover service publishes the active server overlays (composed with the rest in controller/). */
export interface ServerOverlaySink {
  /**
   * Stages publishing these server overlays: the change carries the SOA serial bump (when what DNS
   * answers changes) to commit with the rest; `apply()` publishes, after the commit.
   */
  stageServers(overlays: ServerOverlay[]): StagedChange;
  /** Publishes stored overlays at start, without a serial bump. */
  restoreServers(overlays: ServerOverlay[]): void;
  /** After a publish: when each secondary serves it (null: no secondaries). Never rejects. */
  propagation?(): Promise<Propagated | null>;
}

/** Wall clock and a monotonic clock, injected so that the core can be tested. */
export interface Clock {
  /** ms since the epoch. */
  now(): number;
  /** ms from an arbitrary origin, never going back. */
  monotonic(): number;
}

/** Measures downtime of addresses while they move (adapters in src/health). */
export interface DowntimeMeter {
  /** What is measured with, for the operation record (e.g. "http:80/"). */
  readonly description: string;
  readonly intervalMs: number;
  /**
   * Starts probing every address now, before anything changes. `origin` answers before the
   * switch, `target` after; anything else answering, or nothing, is a failed probe.
   */
  start(args: { addresses: { address: string; family: 4 | 6 }[]; origin: string; target: string; server: string }): MeterRun;
}

/** One running measurement. */
export interface MeterRun {
  /** Tells the run when the routing change was applied (probes without identity count from then). */
  routed(at: number): void;
  /** Resolves once every address answered from the target enough times in a row, or at the deadline. */
  done(): Promise<import('./operation.js').AddressDowntime[]>;
  /** Stops probing now; resolves with what was measured so far. */
  stop(): Promise<import('./operation.js').AddressDowntime[]>;
}

// Routing: the contract every routing backend implements (as MetalLB's speakers do): it is given
// the full desired state for the addresses it is asked about, makes it so, and can read back what
// is. Applying the same desired state twice is harmless; a resumed operation applies it again and
// only what is missing changes.

/** Where one service address must be delivered. Host names are inventory names (srv-42, transit-3). */
export interface DesiredRoute {
  /** The service address that moves, normalised (ip-address correctForm). */
  address: string;
  family: 4 | 6;
  /** The host that must receive traffic for `address` once applied. */
  to: string;
  /** The other host of the pair (where the address comes from); make-before-break removes it there last. */
  from: string;
  /**
   * A repair by the reconcile loop: the address is restored where it already belongs, not moved.
   * A `from` host that cannot be reached (it may be the server being reinstalled) is then left as
   * it is instead of failing the apply; everything else is done as for a move.
   */
  repair?: boolean;
}

/**
 * Where one address is delivered now, read from the real state (router, hosts, provider), never
 * from what the backend remembers doing.
 */
export interface CurrentRoute {
  address: string;
  /** The host receiving it, or null when it reaches no known host (no route, unknown next hop, on no host). */
  to: string | null;
  /**
   * What is missing for delivery to `to` to be complete (the receiving host lacks the address on
   * its device, the pinning map points elsewhere...): each a sentence naming host and address.
   * Empty or absent: complete. apply() of the desired route repairs every problem it lists.
   */
  problems?: string[];
  /**
   * Set when this address's state could not be read (its host or the provider did not answer):
   * why. `to` and `problems` mean nothing then; nothing must be changed on such an address.
   */
  unknown?: string;
  /**
   * Set (on every entry) when the daemon the backend drives lost its state (restarted) and waits
   * to be given it whole: why. The controller then calls resume() with the full desired state.
   */
  needsResume?: string;
}

/** What apply() did. */
export interface ApplyResult {
  /** Addresses whose delivery changed. */
  changed: string[];
  /** Addresses that were already delivered as desired. */
  unchanged: string[];
}

/** A failure of apply() or current(); `retryable` says whether trying again may help. */
export class RouteError extends Error {
  override name = 'RouteError';
  constructor(message: string, readonly retryable: boolean, readonly address?: string) {
    super(message);
  }
}

/** A routing backend. Implementations are named by technology: LinuxRouteBackend, HttpFailoverBackend. */
export interface RouteBackend {
  /** The backend's config name: linux-route, linux-address, http, bgp, dry-run. */
  readonly name: string;
  /** Makes every address in `desired` delivered to its `to` host. Throws RouteError. */
  apply(desired: DesiredRoute[]): Promise<ApplyResult>;
  /**
   * Reads where each address is delivered now, one entry per address asked, in order. A part
   * that cannot be read marks its addresses `unknown`; throws RouteError only when nothing could
   * be read (router unreachable) or the input is invalid.
   */
  current(addresses: string[]): Promise<CurrentRoute[]>;
  /**
   * For backends that drive a daemon keeping its own state (bgp: gobgpd): makes the daemon carry
   * the whole desired state, then lets it speak (enables what waits for the replay). Called with
   * the FULL desired state, when the controller starts acting and when current() reports
   * `needsResume`. Throws RouteError. Absent: nothing to resume.
   */
  resume?(desired: DesiredRoute[]): Promise<void>;
}

// MX audit of the mail domains of a migrating server's accounts (adapter in src/audit).

/** Audits the MX records of mail domains. */
export interface MailDomainAuditor {
  /** One result per domain, in the order given. May take long or reject: the caller bounds it. */
  audit(domains: readonly string[]): Promise<import('./mail-audit.js').MailDomainResult[]>;
}

// Account probes: an account's site probed during its move (adapter in src/health).

/** What the migration service records of a probed move. */
export interface AccountProbeResult {
  downtimeMs: number;
  recovered: boolean;
  probesSent: number;
  probesFailed: number;
}

/** One running account probe. */
export interface AccountProbeRun {
  /** Resolves once the target answered enough probes in a row (or at the deadline), then stops. */
  done(): Promise<AccountProbeResult>;
  stop(): Promise<AccountProbeResult>;
}

/** Starts a probe of an account's site for one move (null when the account has no probe). */
export interface AccountProber {
  start(args: { url: string; identityHeader?: string; origin: string; target: string }): AccountProbeRun | null;
}

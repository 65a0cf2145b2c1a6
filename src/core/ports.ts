/**
 * Ports owned by the core: what the controller needs from durable state. Adapters implement them
 * (src/store/sqlite-store.ts is the StateStore).
 */
import type { Operation } from './operation.js';
import type { ServerOverlay } from './overlay.js';

/**
 * One atomic change of durable state: everything one user-visible change touches (operation,
 * overlay, SOA serial bump, migration records) goes into one StateChange and one commit.
 */
export interface StateChange {
  operation?: Operation;
  overlay?: { server: string; value: ServerOverlay | null };
  routes?: { address: string; host: string }[];
  /** Small named values (e.g. the SOA serial bump); null deletes. */
  meta?: Record<string, string | null>;
  /** Migration records, by server (JSON-safe); a later entry for the same server wins. */
  migrations?: { server: string; value: unknown }[];
  /** An inventory edit made through the API (value null: removed). */
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
 * Durable state. Every method commits before it returns (or throws). Reads and commits throw
 * StateUnavailableError when the storage fails (full disk, I/O error).
 */
export interface StateStore {
  /** Everything needed at start: active overlays and operations not finished (and recent ones). */
  load(): { overlays: ServerOverlay[]; operations: Operation[] };
  getOperation(id: string): Operation | undefined;
  /** Operations of a server, newest first. */
  listOperations(server: string, limit: number): Operation[];
  /** Where each address was last confirmed delivered: address → host. */
  routes(): Map<string, string>;
  /**
   * Commits a change atomically (all of it or nothing). Throws StateUnavailableError when the
   * storage is full or failing; nothing was changed then.
   */
  commit(change: StateChange): void;
  getMeta(key: string): string | undefined;
  /** Every stored migration record (finished ones included). */
  migrations(): unknown[];
  /** Inventory edits made through the API, oldest first, with when each was stored (ms since the epoch). */
  inventoryEdits(): { kind: string; name: string; value: Record<string, unknown> | null; at: number }[];
  close(): void;
}

/** The DNS side of a cutover: makes a compiled overlay active in every answer sent afterwards. */
export interface DnsOverlayPort {
  apply(overlay: import('./overlay.js').CompiledOverlay | null): void;
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

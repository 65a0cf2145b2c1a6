/**
 * Ports owned by the core: what the controller needs from durable state. Adapters implement them
 * (src/store/sqlite-store.ts first; a distributed store can follow without touching the core).
 */
import type { Operation } from './operation.js';
import type { ServerOverlay } from './overlay.js';

/** One atomic change of durable state. */
export interface StateChange {
  operation?: Operation;
  overlay?: { server: string; value: ServerOverlay | null };
  routes?: { address: string; host: string }[];
  /** Small named values (e.g. the SOA serial bump); null deletes. */
  meta?: Record<string, string | null>;
  /** A migration record, by server (JSON-safe). */
  migration?: { server: string; value: unknown };
  /** An inventory edit made through the API (value null: removed). */
  inventory?: { kind: string; name: string; value: Record<string, unknown> | null };
}

/** Durable state. Every method commits before it returns (or throws). */
export interface StateStore {
  /** Everything needed at start: active overlays and operations not finished (and recent ones). */
  load(): { overlays: ServerOverlay[]; operations: Operation[] };
  getOperation(id: string): Operation | undefined;
  /** Operations of a server, newest first. */
  listOperations(server: string, limit: number): Operation[];
  /** Where each address was last confirmed delivered: address → host. */
  routes(): Map<string, string>;
  /** Commits a change atomically: an operation, a server's overlay (null removes it), confirmed routes. */
  commit(change: StateChange): void;
  getMeta(key: string): string | undefined;
  /** Every stored migration record (finished ones included). */
  migrations(): unknown[];
  /** Inventory edits made through the API, oldest first. */
  inventoryEdits(): { kind: string; name: string; value: Record<string, unknown> | null }[];
  close(): void;
}

/** The DNS side of a cutover: makes a compiled overlay active in every answer sent afterwards. */
export interface DnsOverlayPort {
  apply(overlay: import('./overlay.js').CompiledOverlay | null): void;
}

/** Where the cutover service publishes the active server overlays (composed with the rest in controller/). */
export interface ServerOverlaySink {
  setServers(overlays: ServerOverlay[], opts?: { restore?: boolean }): void;
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

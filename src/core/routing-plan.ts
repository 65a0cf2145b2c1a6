/**
 * Routing reconciliation, the decisions: where every server address must be delivered now
 * (derived from the durable state: overlays and the latest operation of each server), how what a
 * backend read compares with it, which drifted addresses are repaired in this pass, and when a
 * failed repair is tried again. Pure: the clock is passed in.
 *
 * Rules: a server with an active overlay wants its addresses on its transit, any other server on
 * itself. An address whose server has an operation running is left to the operation; one whose
 * last operation failed is held (a person retries or cuts back). Addresses that no server claims
 * are never looked at. An address whose state could not be read is `unknown`, never drifted.
 */
import type { Server } from './inventory.js';
import type { Operation } from './operation.js';
import { isFinished, sourceHost, targetHost } from './operation.js';
import type { CurrentRoute, DesiredRoute } from './ports.js';
import type { ServerOverlay } from './overlay.js';

/** Where one managed address must be delivered, and who decides about it now. */
export interface DesiredAddress {
  address: string;
  family: 4 | 6;
  server: string;
  /** The host that must receive it (for an address left to an operation: the operation's target). */
  desired: string;
  /** The other host of its pair, when there is one (the transit of the last cutover, or the server). */
  other: string | null;
  /** Set when the reconciler must not touch it: an operation runs, or the last one failed. */
  leftTo: { kind: 'operation' | 'failed_operation'; operation: string; reason: string } | null;
}

/** The desired delivery of every address of every server. */
export function desiredRouting(args: {
  servers: Iterable<Server>;
  overlays: ReadonlyMap<string, ServerOverlay>;
  /** The server's latest operation, if any. */
  latest: (server: string) => Operation | undefined;
}): DesiredAddress[] {
  const out: DesiredAddress[] = [];
  for (const s of args.servers) {
    const overlay = args.overlays.get(s.name);
    const op = args.latest(s.name);
    let desired = overlay ? overlay.transit : s.name;
    let other = overlay ? s.name : op ? op.transit : null;
    let leftTo: DesiredAddress['leftTo'] = null;
    if (op && !isFinished(op)) {
      desired = targetHost(op);
      other = sourceHost(op);
      leftTo = { kind: 'operation', operation: op.id, reason: `the ${op.direction} ${op.id} is running` };
    } else if (op && op.state === 'failed') {
      desired = targetHost(op);
      other = sourceHost(op);
      const next = op.direction === 'cutover' ? 'retry it or cut back' : 'retry it';
      leftTo = { kind: 'failed_operation', operation: op.id, reason: `the ${op.direction} ${op.id} failed: ${next}` };
    }
    for (const a of s.addresses) out.push({ address: a.address, family: a.family, server: s.name, desired, other, leftTo });
  }
  return out;
}

/** How an address compares with where it must be. */
export type RouteVerdict =
  | { state: 'in_sync' }
  | { state: 'drifted'; reason: string }
  | { state: 'unknown'; reason: string }
  | { state: 'left_to_operation'; reason: string }
  | { state: 'held'; reason: string };

/** Compares what was read of one address (undefined: not read) with where it must be. */
export function judge(want: DesiredAddress, seen: CurrentRoute | undefined): RouteVerdict {
  if (want.leftTo?.kind === 'operation') return { state: 'left_to_operation', reason: want.leftTo.reason };
  if (want.leftTo?.kind === 'failed_operation') return { state: 'held', reason: want.leftTo.reason };
  if (!seen) return { state: 'unknown', reason: 'not read' };
  if (seen.unknown !== undefined) return { state: 'unknown', reason: seen.unknown };
  if (seen.to === null) return { state: 'drifted', reason: `delivered to no host (${want.desired} wanted)` };
  if (seen.to !== want.desired) return { state: 'drifted', reason: `delivered to ${seen.to}, not ${want.desired}` };
  if (seen.problems && seen.problems.length > 0) return { state: 'drifted', reason: seen.problems.join('; ') };
  return { state: 'in_sync' };
}

/** Repair attempts of one address: how many failed in a row, and when the next may start. */
export interface RepairBackoff {
  failures: number;
  /** ms since the epoch. */
  nextAttemptAt: number;
}

/** The backoff after one more failed repair: one interval, doubling, capped at `maxMs`. */
export function afterFailedRepair(prev: RepairBackoff | undefined, now: number, intervalMs: number, maxMs: number): RepairBackoff {
  const failures = (prev?.failures ?? 0) + 1;
  const wait = Math.min(maxMs, intervalMs * 2 ** Math.min(failures - 1, 30));
  // a little before the due pass, so that a pass running on time is never just too early
  return { failures, nextAttemptAt: now + wait - Math.min(wait / 10, 1000) };
}

/**
 * The route to apply to repair a drifted address: to its desired host, from where it was seen
 * (when that is another known host), else from the other host of its pair, else from `fallback`
 * (any host other than the desired one; backends want a pair). Null when no other host exists.
 * Marked `repair`: an unreachable `from` does not fail it.
 */
export function repairRoute(want: DesiredAddress, seen: CurrentRoute | undefined, fallback: (not: string) => string | null): DesiredRoute | null {
  const from = seen?.to && seen.to !== want.desired ? seen.to : want.other && want.other !== want.desired ? want.other : fallback(want.desired);
  return from === null ? null : { address: want.address, family: want.family, to: want.desired, from, repair: true };
}

/**
 * The whole desired state for a backend's resume(): every address to its desired host, except one
 * left to an operation (running or failed), which goes where it was last confirmed delivered (its
 * other host when that is not known): the operation moves it itself, make-before-break. Addresses
 * without a second host to name as `from` are left out.
 */
export function resumeRoutes(wants: DesiredAddress[], confirmed: ReadonlyMap<string, string>, fallback: (not: string) => string | null): DesiredRoute[] {
  const out: DesiredRoute[] = [];
  for (const w of wants) {
    const seen = confirmed.get(w.address);
    const to = !w.leftTo ? w.desired : seen !== undefined && (seen === w.desired || seen === w.other) ? seen : (w.other ?? w.desired);
    const from = to !== w.desired ? w.desired : w.other && w.other !== to ? w.other : fallback(to);
    if (from !== null && from !== to) out.push({ address: w.address, family: w.family, to, from });
  }
  return out;
}

export type ReconcileMode = 'repair' | 'report';

/** The outcome of one pass. */
export interface ReconcilePass {
  id: number;
  trigger: 'start' | 'interval' | 'request';
  mode: ReconcileMode;
  startedAt: number;
  endedAt: number;
  durationMs: number;
  /** Addresses read. */
  checked: number;
  inSync: number;
  /** Still drifted at the end of the pass (repairs that succeeded are not counted). */
  drifted: number;
  unknown: number;
  leftToOperations: number;
  held: number;
  repaired: number;
  repairsFailed: number;
  /** Why the whole read failed, when it did. */
  readError: string | null;
}

/** What the loop reports to metrics. */
export interface ReconcileObserver {
  /** One current() read failed as a whole (count 1) or left `count` addresses unknown. */
  readFailed?(backend: string, count: number): void;
  repaired?(backend: string, result: 'ok' | 'failed', count: number): void;
  /** The backend's daemon was given the whole desired state (resume()): when the controller started acting, or after a read found it reset. */
  resumed?(backend: string, trigger: 'start' | 'reset', result: 'ok' | 'failed'): void;
  passEnded?(pass: ReconcilePass, oldestDriftMs: number): void;
}


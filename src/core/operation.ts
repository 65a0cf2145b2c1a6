/**
 * Cutover and cutback operations: their record and the transitions allowed. Pure: the clock is
 * passed in. An operation is `pending` when accepted, `running` once its DNS change is committed,
 * and ends `succeeded` or `failed`; a failed one can be retried (back to `running`).
 */
import type { AddressPair } from './inventory.js';

export type Direction = 'cutover' | 'cutback';
export type OperationState = 'pending' | 'running' | 'succeeded' | 'failed';

/** One address of an operation. */
export interface OperationAddress extends AddressPair {
  /** Inventory name of the host the address is delivered to, once routing confirmed it. */
  routedTo: string | null;
  result: 'pending' | 'ok' | 'failed';
  error: string | null;
  /** Measured downtime (sum of probe gaps); null when not measured (yet). */
  downtimeMs: number | null;
  /** Whether the target host answered by the end of the measurement; null when not measured. */
  recovered: boolean | null;
  probesSent: number;
  probesFailed: number;
}

/** Where an operation stands inside the `running` state. */
export type OperationPhase = 'dns_switched' | 'routing' | 'measuring' | 'done';

/** How downtime was measured. */
export interface MeasurementInfo {
  probe: string;
  intervalMs: number;
  /** The controller restarted during the operation: gaps before the restart are not known. */
  restarted: boolean;
  maxDowntimeMs: number | null;
}

export interface OperationError {
  code: string;
  message: string;
}

/** Milliseconds since epoch of each phase; null until reached. */
export interface OperationTimes {
  accepted: number;
  dnsSwitched: number | null;
  routesApplied: number | null;
  finished: number | null;
}

export interface Operation {
  id: string;
  server: string;
  transit: string;
  direction: Direction;
  state: OperationState;
  phase: OperationPhase;
  backend: string;
  times: OperationTimes;
  /** Request to DNS switch and request to routes applied, measured with a monotonic clock. */
  durationsMs: { dnsSwitch: number | null; routing: number | null; recovery: number | null };
  addresses: OperationAddress[];
  measurement: MeasurementInfo | null;
  /**
   * When each secondary (hidden primary) served the operation's DNS change, ms since the epoch;
   * null for one that did not within the wait. Absent: no secondaries, or not known yet.
   */
  dnsPropagated?: Record<string, number | null>;
  attempts: number;
  error: OperationError | null;
  /** The name of the API token that asked for it (never the token); absent: not known (stored before names were recorded, or not asked through the API). */
  requestedBy?: string | null;
}

/** A new operation, pending. */
export function newOperation(args: {
  id: string; server: string; transit: string; direction: Direction; backend: string; pairs: AddressPair[]; now: number; requestedBy?: string | null;
}): Operation {
  return {
    id: args.id,
    server: args.server,
    transit: args.transit,
    direction: args.direction,
    state: 'pending',
    phase: 'dns_switched',
    backend: args.backend,
    times: { accepted: args.now, dnsSwitched: null, routesApplied: null, finished: null },
    durationsMs: { dnsSwitch: null, routing: null, recovery: null },
    addresses: args.pairs.map((p) => ({ ...p, routedTo: null, result: 'pending', error: null, downtimeMs: null, recovered: null, probesSent: 0, probesFailed: 0 })),
    measurement: null,
    attempts: 0,
    error: null,
    requestedBy: args.requestedBy ?? null,
  };
}

/** The host each address must be delivered to for this operation. */
export function targetHost(op: Operation): string {
  return op.direction === 'cutover' ? op.transit : op.server;
}

/** The host each address comes from. */
export function sourceHost(op: Operation): string {
  return op.direction === 'cutover' ? op.server : op.transit;
}

export function isFinished(op: Operation): boolean {
  return op.state === 'succeeded' || op.state === 'failed';
}

/** The operation after its routing attempt starts. */
export function routingStarted(op: Operation): Operation {
  return { ...op, state: 'running', phase: 'routing', attempts: op.attempts + 1, error: null };
}

/** The operation after routing succeeded for every address; it is done unless it is measured. */
export function routingSucceeded(op: Operation, now: number, routingMs: number | null, measuring: boolean): Operation {
  const to = targetHost(op);
  return {
    ...op,
    state: measuring ? 'running' : 'succeeded',
    phase: measuring ? 'measuring' : 'done',
    times: { ...op.times, routesApplied: now, finished: measuring ? null : now },
    durationsMs: { ...op.durationsMs, routing: routingMs },
    addresses: op.addresses.map((a) => ({ ...a, routedTo: to, result: 'ok', error: null })),
    error: null,
  };
}

/** Measured downtime of one address. */
export interface AddressDowntime {
  address: string;
  downtimeMs: number;
  recovered: boolean;
  waitedMs: number;
  probesSent: number;
  probesFailed: number;
}

/**
 * The operation once measurement ended: succeeded when every address recovered (answered from its
 * new host), else failed with ADDRESS_NOT_RECOVERED. Not used when routing itself failed.
 */
export function measured(op: Operation, now: number, results: AddressDowntime[], recoveryMs: number | null): Operation {
  const byAddress = new Map(results.map((r) => [r.address, r]));
  const addresses = op.addresses.map((a) => {
    const r = byAddress.get(a.address);
    return r ? { ...a, downtimeMs: r.downtimeMs, recovered: r.recovered, probesSent: r.probesSent, probesFailed: r.probesFailed } : a;
  });
  const lost = results.filter((r) => !r.recovered);
  const max = results.length > 0 ? Math.max(...results.map((r) => r.downtimeMs)) : null;
  return {
    ...op,
    state: lost.length > 0 ? 'failed' : 'succeeded',
    phase: 'done',
    times: { ...op.times, finished: now },
    durationsMs: { ...op.durationsMs, recovery: recoveryMs },
    addresses: addresses.map((a) => (a.recovered === false ? { ...a, result: 'failed', error: `not recovered: ${targetHost(op)} did not answer before the deadline` } : a)),
    measurement: op.measurement ? { ...op.measurement, maxDowntimeMs: max } : null,
    error: lost.length > 0
      ? { code: 'ADDRESS_NOT_RECOVERED', message: `${lost.map((l) => l.address).join(', ')} did not answer from ${targetHost(op)} within ${Math.round(Math.max(...lost.map((l) => l.waitedMs)) / 1000)} s` }
      : null,
  };
}

/** The operation after routing failed for good. `failedAddress` marks one address when known. */
export function routingFailed(op: Operation, now: number, error: OperationError, failedAddress?: string): Operation {
  return {
    ...op,
    state: 'failed',
    phase: 'done',
    times: { ...op.times, finished: now },
    addresses: op.addresses.map((a) =>
      failedAddress === undefined || a.address === failedAddress
        ? { ...a, result: 'failed', error: error.message }
        : a),
    error,
  };
}

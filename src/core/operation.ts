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
  backend: string;
  times: OperationTimes;
  /** Request to DNS switch and request to routes applied, measured with a monotonic clock. */
  durationsMs: { dnsSwitch: number | null; routing: number | null };
  addresses: OperationAddress[];
  attempts: number;
  error: OperationError | null;
}

/** A new operation, pending. */
export function newOperation(args: {
  id: string; server: string; transit: string; direction: Direction; backend: string; pairs: AddressPair[]; now: number;
}): Operation {
  return {
    id: args.id,
    server: args.server,
    transit: args.transit,
    direction: args.direction,
    state: 'pending',
    backend: args.backend,
    times: { accepted: args.now, dnsSwitched: null, routesApplied: null, finished: null },
    durationsMs: { dnsSwitch: null, routing: null },
    addresses: args.pairs.map((p) => ({ ...p, routedTo: null, result: 'pending', error: null })),
    attempts: 0,
    error: null,
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
  return { ...op, state: 'running', attempts: op.attempts + 1, error: null };
}

/** The operation after routing succeeded for every address. */
export function routingSucceeded(op: Operation, now: number, routingMs: number | null): Operation {
  const to = targetHost(op);
  return {
    ...op,
    state: 'succeeded',
    times: { ...op.times, routesApplied: now, finished: now },
    durationsMs: { ...op.durationsMs, routing: routingMs },
    addresses: op.addresses.map((a) => ({ ...a, routedTo: to, result: 'ok', error: null })),
    error: null,
  };
}

/** The operation after routing failed for good. `failedAddress` marks one address when known. */
export function routingFailed(op: Operation, now: number, error: OperationError, failedAddress?: string): Operation {
  return {
    ...op,
    state: 'failed',
    times: { ...op.times, finished: now },
    addresses: op.addresses.map((a) =>
      failedAddress === undefined || a.address === failedAddress
        ? { ...a, result: 'failed', error: error.message }
        : a),
    error,
  };
}

/**
 * The health-probe contract (the `Prober` port): one probe of one address, answered
 * with a `ProbeResult`. A probe NEVER throws (every failure is a result with a short stable
 * `reason`) and never takes longer than its timeout plus a few ms. Probers report who answered
 * (`responder`) when the protocol can tell; comparing it with the expected host is the caller's job
 * (see downtime.ts).
 */
import { parseAddress } from '../core/addresses.js';

/** The outcome of one probe. */
export interface ProbeResult {
  /** Something answered, and the answer is a success for this protocol (HTTP: 2xx/3xx). */
  ok: boolean;
  /** Identity of who answered, when known (HTTP identity header or body pattern). */
  responder?: string;
  /** Time from send to answer (or to giving up), ms. */
  rttMs: number;
  /** Why not ok: a short stable code (see PROBE_REASONS). */
  reason?: string;
}

/** What is probed: a normalised IP address (as `parseAddress` in core/addresses gives it). */
export interface ProbeTarget {
  address: string;
  family: 4 | 6;
}

/** A protocol prober. `probe` never throws and settles within its timeout (+ a few ms). */
export interface Prober {
  readonly type: 'tcp' | 'http' | 'icmp';
  probe(target: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult>;
}

/**
 * Stable failure codes used by the probers (HTTP adds `http-status-NNN`; downtime.ts adds
 * `wrong-host` and `no-identity` when it classifies an answer).
 */
export const PROBE_REASONS = [
  'timeout', // nothing answered within timeout_ms
  'refused', // TCP RST on connect (ECONNREFUSED)
  'unreachable', // EHOSTUNREACH / ENETUNREACH / ICMP unreachable / no route
  'reset', // connection reset or closed before a complete answer
  'aborted', // the caller's AbortSignal fired
  'bad-address', // the target is not a valid IP literal of its family
  'bad-response', // HTTP answer that could not be parsed
  'fping-missing', // icmp: the fping binary is not installed
  'fping-error', // icmp: fping failed for another reason (permissions, usage)
  'error', // any other local error (see the code in the README)
] as const;

/** Validates a target with ip-address; returns the normalised form or undefined. */
export function checkTarget(target: ProbeTarget): ProbeTarget | undefined {
  if (!target || typeof target.address !== 'string') return undefined;
  const p = parseAddress(target.address);
  if (typeof p === 'string' || p.family !== target.family) return undefined;
  return p;
}

/** Maps a Node socket error to a stable reason code. */
export function errorReason(err: unknown): string {
  const code = (err as { code?: string } | undefined)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENETDOWN':
    case 'EHOSTDOWN':
      return 'unreachable';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ABORT_ERR':
      return 'aborted';
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_STATUS':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_HEADER_OVERFLOW':
      return 'bad-response';
    default:
      return 'error';
  }
}

/** Milliseconds with µs resolution, from the monotonic clock. */
export function elapsedMs(start: number): number {
  return Math.round((performance.now() - start) * 1000) / 1000;
}

/** Validates a positive timeout (ms). */
export function checkTimeout(timeoutMs: number, what = 'timeoutMs'): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) {
    throw new RangeError(`${what} must be a number of ms in (0, 600000], not ${String(timeoutMs)}`);
  }
}

/** Validates a TCP port. */
export function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`port must be an integer in 1..65535, not ${String(port)}`);
}

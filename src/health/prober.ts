/**
 * The health-probe contract (the `Prober` port): one probe of one address, answered
 * with a `ProbeResult`. A probe NEVER throws (every failure is a result with a short stable
 * `reason`) and never takes much longer than its timeout (see armProbeTimeout). Probers report who answered
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

/**
 * A protocol prober. `probe` never throws and settles within its timeout (+ a few ms, and + the
 * time the controller lost past it when its event loop stalled: see armProbeTimeout).
 */
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

/** A probe timeout check that runs later than this past its deadline means the controller stalled. */
export const STALL_TOLERANCE_MS = 1;

/**
 * Arms the timeout of one probe so that the controller's own stalls are not held against the
 * target; returns a function that disarms it. `onTimeout` runs once `timeoutMs` have passed, and:
 * - only after the I/O callbacks already pending have run: the decision is taken from
 *   setImmediate, after the event loop's poll phase (a timer alone fires before the loop reads the
 *   answers that arrived while it was blocked, and would turn them into false timeouts);
 * - when that decision runs late by L ms (more than STALL_TOLERANCE_MS: the event loop was blocked
 *   or starved), the probe first gets another min(L, timeoutMs), once, so that an exchange the
 *   stall interrupted half-way (HTTP writes its request only after the connect) can finish; the
 *   second decision is taken the same way, after pending I/O, and is final.
 */
export function armProbeTimeout(timeoutMs: number, onTimeout: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let due = performance.now() + timeoutMs;
  let extended = false;
  const decide = (): void => {
    immediate = undefined;
    const late = performance.now() - due;
    if (!extended && late > STALL_TOLERANCE_MS) {
      extended = true;
      const extra = Math.min(late, timeoutMs);
      due = performance.now() + extra;
      timer = setTimeout(fire, extra);
      return;
    }
    onTimeout();
  };
  const fire = (): void => {
    timer = undefined;
    immediate = setImmediate(decide);
  };
  timer = setTimeout(fire, timeoutMs);
  return () => {
    if (timer) clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
    timer = undefined;
    immediate = undefined;
  };
}

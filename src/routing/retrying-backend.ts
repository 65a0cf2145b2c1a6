/**
 * withRetry: wraps a RouteBackend so apply() and current() are retried with p-retry 7
 * (exponential backoff with jitter) until an overall deadline. Only RouteError with
 * retryable=true is retried; anything else ends at once. The final error is a RetryGaveUpError:
 * the last RouteError's message and `retryable`, plus why it gave up and how many attempts ran.
 *
 * The deadline stops new attempts and cuts waits short; an attempt already running is never
 * abandoned (its outcome could otherwise land after the caller gave up), so each backend bounds
 * its own calls (the http backend has a per-call timeout).
 */
import pRetry, { AbortError } from 'p-retry';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';

/** Options of withRetry. */
export interface RetryOptions {
  /** Overall time budget of one apply()/current() call, retries and waits included (p-retry maxRetryTime). */
  deadlineMs: number;
  /** Wait before the first retry; default 1000. Waits are randomized ×1..2 (p-retry `randomize`). */
  minTimeoutMs?: number;
  /** Upper bound of one wait; default 30000. */
  maxTimeoutMs?: number;
  /** Growth of the wait per retry; default 2. */
  factor?: number;
  /**
   * Called just before a retry starts: `attempt` is the number of the attempt that failed with
   * `error`, `delayMs` the time actually waited since. Exceptions from it are ignored.
   */
  onRetry?: (info: { attempt: number; error: RouteError; delayMs?: number }) => void;
  /** Aborting it stops retrying (waits end at once; a running attempt is let finish). */
  signal?: AbortSignal;
}

/** Why withRetry gave up. */
export type GiveUpReason = 'final' | 'deadline' | 'aborted';

/** The error withRetry throws: the last attempt's RouteError, with the attempt count and the reason. */
export class RetryGaveUpError extends RouteError {
  override name = 'RetryGaveUpError';
  constructor(
    message: string,
    retryable: boolean,
    address: string | undefined,
    /** Attempts started (1 = no retry happened). */
    readonly attempts: number,
    /** final: the last error was not retryable; deadline: time ran out; aborted: the signal fired. */
    readonly reason: GiveUpReason,
    /** The last attempt's error (undefined when aborted before any attempt failed). */
    readonly lastError: RouteError | undefined,
    readonly elapsedMs: number,
  ) {
    super(message, retryable, address);
  }
}

/** Wraps `backend` so its calls are retried per `opts`; the name stays the backend's. */
export function withRetry(backend: RouteBackend, opts: RetryOptions): RouteBackend {
  if (!Number.isFinite(opts.deadlineMs) || opts.deadlineMs < 0) throw new TypeError('withRetry: deadlineMs must be a finite number >= 0');
  return {
    name: backend.name,
    apply: (desired: DesiredRoute[]): Promise<ApplyResult> => retrying(backend, 'apply', () => backend.apply(desired), opts),
    current: (addresses: string[]): Promise<CurrentRoute[]> => retrying(backend, 'current', () => backend.current(addresses), opts),
    get resume() {
      const resume = backend.resume;
      return resume ? (desired: DesiredRoute[]): Promise<void> => retrying(backend, 'resume', () => resume.call(backend, desired), opts) : undefined;
    },
  };
}

async function retrying<T>(backend: RouteBackend, op: string, fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const start = performance.now();
  let attempts = 0;
  let last: RouteError | undefined;
  let failedAt = 0;
  let done: { value: T } | undefined;

  try {
    return await pRetry(
      async (attemptNumber) => {
        if (attemptNumber > 1 && last) {
          // p-retry caps the last wait at the deadline: do not start an attempt past it.
          if (performance.now() - start >= opts.deadlineMs) throw new AbortError(last);
          try {
            opts.onRetry?.({ attempt: attemptNumber - 1, error: last, delayMs: Math.round(performance.now() - failedAt) });
          } catch {
            // a logging callback must not change the outcome
          }
        }
        attempts = attemptNumber;
        let value: T;
        try {
          value = await fn();
        } catch (err) {
          last = toRouteError(backend, op, err);
          failedAt = performance.now();
          throw last.retryable ? last : new AbortError(last);
        }
        done = { value };
        return value;
      },
      {
        retries: Number.POSITIVE_INFINITY,
        factor: opts.factor ?? 2,
        minTimeout: opts.minTimeoutMs ?? 1000,
        maxTimeout: opts.maxTimeoutMs ?? 30_000,
        randomize: true,
        maxRetryTime: opts.deadlineMs,
        signal: opts.signal,
        shouldRetry: ({ error }) => error instanceof RouteError && error.retryable,
      },
    );
  } catch (err) {
    // p-retry rethrows an abort that came in while a successful attempt finished: it succeeded.
    if (done) return done.value;
    const elapsedMs = Math.round(performance.now() - start);
    const aborted = opts.signal?.aborted === true && (err === opts.signal.reason || !(err instanceof RouteError));
    const n = `${attempts} attempt${attempts === 1 ? '' : 's'}`;
    if (aborted || !last) {
      const base = last?.message ?? `${backend.name}: ${op} aborted before any attempt finished`;
      throw new RetryGaveUpError(`${base} (aborted after ${n} in ${elapsedMs} ms)`, false, last?.address, attempts, 'aborted', last, elapsedMs);
    }
    if (!last.retryable) {
      throw new RetryGaveUpError(`${last.message} (not retryable; ${n})`, false, last.address, attempts, 'final', last, elapsedMs);
    }
    throw new RetryGaveUpError(
      `${last.message} (still failing when the ${opts.deadlineMs} ms deadline ran out; ${n} in ${elapsedMs} ms)`,
      true,
      last.address,
      attempts,
      'deadline',
      last,
      elapsedMs,
    );
  }
}

function toRouteError(backend: RouteBackend, op: string, err: unknown): RouteError {
  if (err instanceof RouteError) return err;
  const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new RouteError(`${backend.name}: ${op} failed unexpectedly: ${msg}`, false);
}

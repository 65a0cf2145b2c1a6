/** withRetry over a scripted in-memory backend: what is retried, the deadline, the backoff. */
import { rejection as rejectionOf } from '../support/rejection.js';
import { describe, expect, test } from '@jest/globals';
import { RetryGaveUpError, withRetry } from '../../src/routing/retrying-backend.js';
import { SwappableBackend } from '../../src/routing/swappable-backend.js';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../../src/routing/route-backend.js';

/**
 * Fails with the scripted errors in turn, then succeeds; records when each call started. Call n
 * takes `delayMs` (a number, or a function of n) before it ends.
 */
class ScriptedBackend implements RouteBackend {
  readonly name = 'scripted';
  calls: number[] = [];
  constructor(
    private readonly script: (n: number) => unknown,
    private readonly delayMs: number | ((n: number) => number) = 0,
  ) {}
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    await this.step();
    return { changed: desired.map((d) => d.address), unchanged: [] };
  }
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    await this.step();
    return addresses.map((address) => ({ address, to: 'transit-3' }));
  }
  private async step(): Promise<void> {
    this.calls.push(performance.now());
    const n = this.calls.length;
    const delay = typeof this.delayMs === 'function' ? this.delayMs(n) : this.delayMs;
    if (delay) await new Promise((r) => setTimeout(r, delay));
    const err = this.script(n);
    if (err !== undefined) throw err;
  }
}

const D: DesiredRoute[] = [{ address: '203.0.113.10', family: 4, to: 'transit-3', from: 'srv-42' }];
const locked = (n: number) => new RouteError(`FAILOVER_LOCKED #${n}`, true, '203.0.113.10');

const rejection = (p: Promise<unknown>) => rejectionOf<RetryGaveUpError>(p);

describe('withRetry', () => {
  test('keeps the name; retries retryable errors until success', async () => {
    const inner = new ScriptedBackend((n) => (n <= 3 ? locked(n) : undefined));
    const seen: { attempt: number; error: RouteError; delayMs?: number }[] = [];
    const b = withRetry(inner, { deadlineMs: 2000, minTimeoutMs: 5, onRetry: (i) => seen.push(i) });
    expect(b.name).toBe('scripted');
    expect(await b.apply(D)).toEqual({ changed: ['203.0.113.10'], unchanged: [] });
    expect(inner.calls).toHaveLength(4);
    expect(seen.map((s) => [s.attempt, s.error.message])).toEqual([
      [1, 'FAILOVER_LOCKED #1'],
      [2, 'FAILOVER_LOCKED #2'],
      [3, 'FAILOVER_LOCKED #3'],
    ]);
    expect(seen.every((s) => typeof s.delayMs === 'number' && s.delayMs >= 4)).toBe(true);
  });

  test('resume() passes through when the backend has one (retried like the others), through a SwappableBackend too; absent otherwise', async () => {
    const opts = { deadlineMs: 10_000, minTimeoutMs: 1, maxTimeoutMs: 1 };
    expect(withRetry(new ScriptedBackend(() => undefined), opts).resume).toBeUndefined();
    const resumed: DesiredRoute[][] = [];
    const inner = Object.assign(new ScriptedBackend((n) => (n < 3 ? locked(n) : undefined)), {
      async resume(this: ScriptedBackend, desired: DesiredRoute[]) {
        await this.current([]);
        resumed.push(desired);
      },
    });
    const swappable = new SwappableBackend(new ScriptedBackend(() => undefined));
    const b = withRetry(swappable, opts);
    expect(b.resume).toBeUndefined();
    swappable.swap(inner);
    await b.resume!(D);
    expect(inner.calls.length).toBe(3);
    expect(resumed).toEqual([D]);
  });

  test('current() is retried too', async () => {
    const inner = new ScriptedBackend((n) => (n === 1 ? locked(n) : undefined));
    expect(await withRetry(inner, { deadlineMs: 1000, minTimeoutMs: 5 }).current(['203.0.113.10'])).toEqual([{ address: '203.0.113.10', to: 'transit-3' }]);
    expect(inner.calls).toHaveLength(2);
  });

  test.each([
    ['a final RouteError', () => new RouteError('404 NOT_FOUND', false, '203.0.113.10'), /^404 NOT_FOUND \(not retryable; 1 attempt\)$/],
    ['an error that is not a RouteError', () => new Error('boom'), /^scripted: apply failed unexpectedly: Error: boom \(not retryable; 1 attempt\)$/],
    ['a TypeError (a bug)', () => new TypeError('x is undefined'), /TypeError: x is undefined/],
  ])('%s is not retried', async (_name, make, message) => {
    const inner = new ScriptedBackend(() => make());
    const onRetry = (): void => {
      throw new Error('must not be called');
    };
    const err = await rejection(withRetry(inner, { deadlineMs: 1000, minTimeoutMs: 5, onRetry }).apply(D));
    expect(err).toBeInstanceOf(RetryGaveUpError);
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(false);
    expect(err.reason).toBe('final');
    expect(err.attempts).toBe(1);
    expect(err.message).toMatch(message);
    expect(inner.calls).toHaveLength(1);
  });

  test('a final error after retryable ones ends it, with its own reason', async () => {
    const inner = new ScriptedBackend((n) => (n < 3 ? locked(n) : new RouteError('401 unauthorized: check credentials', false)));
    const err = await rejection(withRetry(inner, { deadlineMs: 2000, minTimeoutMs: 5 }).apply(D));
    expect(err.reason).toBe('final');
    expect(err.attempts).toBe(3);
    expect(err.lastError?.message).toBe('401 unauthorized: check credentials');
    expect(err.message).toBe('401 unauthorized: check credentials (not retryable; 3 attempts)');
  });

  test('deadline: gives up with the last reason and the attempt count, not before the deadline, and stops', async () => {
    const inner = new ScriptedBackend((n) => locked(n));
    const t0 = performance.now();
    const err = await rejection(withRetry(inner, { deadlineMs: 1000, minTimeoutMs: 10, maxTimeoutMs: 30 }).apply(D));
    const took = performance.now() - t0;
    expect(err.reason).toBe('deadline');
    expect(err.retryable).toBe(true);
    expect(err.attempts).toBe(inner.calls.length);
    // Waits of at most 60 ms in a second: several retries, however loaded the machine.
    expect(err.attempts).toBeGreaterThanOrEqual(2);
    expect(err.message).toBe(`FAILOVER_LOCKED #${err.attempts} (still failing when the 1000 ms deadline ran out; ${err.attempts} attempts in ${err.elapsedMs} ms)`);
    expect(err.address).toBe('203.0.113.10');
    // It retried until the deadline (timers may fire a ms early), then stopped: no attempt started
    // after it (the slack covers scheduling only; withRetry checks the deadline before each attempt).
    expect(took).toBeGreaterThanOrEqual(1000 - 2);
    expect(took).toBeLessThan(1000 + 5000);
    expect(inner.calls.every((t) => t - t0 < 1000 + 50)).toBe(true);
  });

  test('deadline 0: exactly one attempt', async () => {
    const inner = new ScriptedBackend((n) => locked(n));
    const err = await rejection(withRetry(inner, { deadlineMs: 0, minTimeoutMs: 5 }).apply(D));
    expect(err.reason).toBe('deadline');
    expect(err.attempts).toBe(1);
  });

  test('an attempt in progress at the deadline is let finish (and its success counts)', async () => {
    // The first attempt fails at once; the second starts about 5 ms later, well before the 1 s
    // deadline, and runs until 1.5 s after it began: past the deadline.
    const inner = new ScriptedBackend((n) => (n === 1 ? locked(n) : undefined), (n) => (n === 2 ? 1500 : 0));
    const t0 = performance.now();
    expect(await withRetry(inner, { deadlineMs: 1000, minTimeoutMs: 5, maxTimeoutMs: 5 }).apply(D)).toEqual({ changed: ['203.0.113.10'], unchanged: [] });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(inner.calls).toHaveLength(2);
  });

  test('backoff grows by `factor`, with jitter ×1..2, capped by maxTimeoutMs', async () => {
    const inner = new ScriptedBackend((n) => (n <= 4 ? locked(n) : undefined));
    const delays: number[] = [];
    await withRetry(inner, { deadlineMs: 30_000, minTimeoutMs: 40, factor: 3, maxTimeoutMs: 480, onRetry: (i) => delays.push(i.delayMs!) }).apply(D);
    expect(delays).toHaveLength(4);
    // Nominal waits 40, 120, 360, 1080→capped 480; randomize multiplies by 1..2 before the cap.
    // delayMs is the time actually waited: never shorter than the nominal wait (a timer may fire a
    // ms early), and longer by however late the timer fired on a loaded machine.
    [40, 120, 360, 480].forEach((low, i) => expect(delays[i]).toBeGreaterThanOrEqual(low - 2));
    // Growth: the third wait is longer than the first can ever be (80).
    expect(delays[2]).toBeGreaterThan(80);
    // The cap: the fourth wait would be at least 1080 without it; 600 ms are left for lateness.
    expect(delays[3]).toBeLessThan(1080);
  });

  test('jitter: the waits are randomized', async () => {
    const firstDelays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const inner = new ScriptedBackend((n) => (n === 1 ? locked(n) : undefined));
      await withRetry(inner, { deadlineMs: 10_000, minTimeoutMs: 40, onRetry: (r) => firstDelays.push(r.delayMs!) }).apply(D);
    }
    // Waits are uniform in 40..80 ms: never below 40, and 10 of them all in the lowest 30% of the
    // range (below 52) has a probability of 6e-6 when they are randomized.
    expect(new Set(firstDelays).size).toBeGreaterThan(1);
    expect(Math.min(...firstDelays)).toBeGreaterThanOrEqual(40 - 2);
    expect(Math.max(...firstDelays)).toBeGreaterThanOrEqual(52);
  });

  test('an abort signal ends the wait at once', async () => {
    const inner = new ScriptedBackend((n) => locked(n));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const t0 = performance.now();
    // The wait after the first failure is 10-20 s; the abort comes after 50 ms.
    const err = await rejection(withRetry(inner, { deadlineMs: 60_000, minTimeoutMs: 10_000, signal: ac.signal }).apply(D));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(err.reason).toBe('aborted');
    expect(err.attempts).toBe(1);
    expect(err.message).toMatch(/^FAILOVER_LOCKED #1 \(aborted after 1 attempt/);
  });

  test('an already-aborted signal makes no attempt', async () => {
    const inner = new ScriptedBackend(() => undefined);
    const err = await rejection(withRetry(inner, { deadlineMs: 1000, signal: AbortSignal.abort() }).apply(D));
    expect(err.reason).toBe('aborted');
    expect(inner.calls).toHaveLength(0);
  });

  test('an abort while a successful attempt runs still returns its result', async () => {
    const inner = new ScriptedBackend(() => undefined, 50);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 10);
    expect(await withRetry(inner, { deadlineMs: 1000, signal: ac.signal }).apply(D)).toEqual({ changed: ['203.0.113.10'], unchanged: [] });
  });

  test('an onRetry that throws does not change the outcome', async () => {
    const inner = new ScriptedBackend((n) => (n === 1 ? locked(n) : undefined));
    const b = withRetry(inner, {
      deadlineMs: 1000,
      minTimeoutMs: 5,
      onRetry: () => {
        throw new Error('logger broke');
      },
    });
    expect(await b.apply(D)).toEqual({ changed: ['203.0.113.10'], unchanged: [] });
  });

  test('refuses a bad deadline', () => {
    expect(() => withRetry(new ScriptedBackend(() => undefined), { deadlineMs: Number.NaN })).toThrow(/deadlineMs/);
  });
});

/**
 * Waiting for events in tests, not for times. `waitFor` polls a condition until it holds and
 * fails with a message naming what was awaited when a generous overall deadline passes; the
 * deadline only bounds a test that would otherwise hang, it is not what the test asserts.
 */

/** Default overall deadline of waitFor: long enough for a loaded 2-core machine. */
export const WAIT_DEADLINE_MS = 30_000;

/** Options of waitFor. */
export interface WaitOptions {
  /** Overall deadline, ms (default WAIT_DEADLINE_MS). */
  timeoutMs?: number;
  /** Pause between two checks, ms (default 10). */
  pollMs?: number;
}

/**
 * Resolves with the first truthy value of `check` (sync or async); rejects with
 * "timed out after N ms waiting for WHAT" once the deadline has passed.
 */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? WAIT_DEADLINE_MS;
  const pollMs = opts.pollMs ?? 10;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

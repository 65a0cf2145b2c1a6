/**
 * Commits of background steps (routing progress, measurements, TTL lowering): a step that cannot
 * be stored is not applied nor reported, and is tried again, with backoff, until the store takes
 * it. The change is staged anew for every attempt, from the state as it is then.
 */
import type { Logger } from 'pino';
import { StateUnavailableError, type StagedChange, type StateStore } from '../core/ports.js';

/** Backoff between attempts while the store is unavailable. */
export interface CommitRetryOptions {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_COMMIT_RETRY: CommitRetryOptions = { minMs: 200, maxMs: 5000 };

/**
 * Stages with `build`, commits, applies. While the store throws StateUnavailableError, waits and
 * tries again (the first attempt is synchronous). `build` returning null: nothing to do any more.
 * Any other error rejects.
 */
export async function commitWhenPossible(
  store: StateStore,
  build: () => StagedChange | null,
  opts: { logger: Logger; what: string; context?: Record<string, unknown>; retry?: CommitRetryOptions },
): Promise<void> {
  const retry = opts.retry ?? DEFAULT_COMMIT_RETRY;
  let delay = retry.minMs;
  let failures = 0;
  for (;;) {
    const staged = build();
    if (!staged) return;
    try {
      store.commit(staged.change);
    } catch (err) {
      if (!(err instanceof StateUnavailableError)) throw err;
      failures++;
      // the first failure, then every tenth: a full disk can last
      if (failures === 1 || failures % 10 === 0) {
        opts.logger.warn({ ...opts.context, err: err.message, attempts: failures, retryInMs: delay }, `${opts.what}: not stored (state store unavailable); not applied, retrying`);
      }
      await new Promise<void>((resolve) => setTimeout(resolve, delay).unref());
      delay = Math.min(retry.maxMs, delay * 2);
      continue;
    }
    if (failures > 0) opts.logger.info({ ...opts.context, attempts: failures + 1 }, `${opts.what}: stored after the state store came back`);
    staged.apply();
    return;
  }
}

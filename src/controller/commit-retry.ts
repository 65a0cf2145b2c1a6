/**
 * Commits of background steps (routing progress, measurements, TTL lowering): a step that cannot
 * be stored is not applied nor reported, and is tried again, with backoff, until the store takes
 * it. The change is staged anew for every attempt, from the state as it is then.
 */
import type { Logger } from 'pino';
import { StateUnavailableError, type StagedChange, type StateStore } from '../core/ports.js';
import { commitStaged, type CommitLane } from './commit-lane.js';

/** Backoff between attempts while the store is unavailable. */
export interface CommitRetryOptions {
  minMs: number;
  maxMs: number;
}

export const DEFAULT_COMMIT_RETRY: CommitRetryOptions = { minMs: 200, maxMs: 5000 };

/**
 * Stages with `build`, commits, applies, in `lane`. While the store rejects with
 * StateUnavailableError, waits (outside the lane) and tries again. `build` returning null:
 * nothing to do any more. Any other error rejects.
 */
export async function commitWhenPossible(
  store: StateStore,
  lane: CommitLane,
  build: () => StagedChange | null,
  opts: { logger: Logger; what: string; context?: Record<string, unknown>; retry?: CommitRetryOptions },
): Promise<void> {
  const retry = opts.retry ?? DEFAULT_COMMIT_RETRY;
  let delay = retry.minMs;
  let failures = 0;
  for (;;) {
    let stored: boolean;
    try {
      stored = await lane.run(() => commitStaged(store, build));
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
    if (stored && failures > 0) opts.logger.info({ ...opts.context, attempts: failures + 1 }, `${opts.what}: stored after the state store came back`);
    return;
  }
}

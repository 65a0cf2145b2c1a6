/**
 * The thread that answers queries first: every other thread of this process (V8's
 * garbage-collector helpers, libuv's pool) runs at a higher nice value, so that when CPUs are
 * scarce it takes one only when the serving thread does not need it. On a machine with a CPU to
 * spare nothing changes; on a busy one a reload's background work (reading the parsed zone,
 * marking the heap it grew) no longer delays answers by tens of milliseconds.
 *
 * Linux only (a nice value there is per thread); elsewhere, or without the right to lower a
 * thread's priority, nothing changes and the outcome says so.
 */
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Nice value of the serving process's helper threads (the zone parser process uses the same). */
export const HELPER_THREAD_NICE = 10;

/** What {@link yieldToServingThread} did. */
export interface ThreadPriorityOutcome {
  /** Threads set to the nice value now (those already there are not counted). */
  changed: number;
  /** Threads whose priority could not be set (not permitted, or gone meanwhile). */
  failed: number;
  /** Why nothing could be done at all (no /proc/self/task), or null. */
  unsupported: string | null;
}

/**
 * Sets every thread of this process except the main one to `nice` (threads started later keep
 * the priority of the thread that started them: call again after work that may start some).
 */
export function yieldToServingThread(nice: number = HELPER_THREAD_NICE): ThreadPriorityOutcome {
  return setThreadsNice(nice, true);
}

/** Sets every thread of this process (but the main one when `keepMain`) to `nice`, best effort. */
export function setThreadsNice(nice: number, keepMain: boolean): ThreadPriorityOutcome {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch (err) {
    return { changed: 0, failed: 0, unsupported: `no /proc/self/task (${(err as Error).message})` };
  }
  let changed = 0;
  let failed = 0;
  for (const tid of tids) {
    const id = Number(tid);
    if (!Number.isInteger(id) || (keepMain && id === process.pid)) continue;
    try {
      if (getPriority(id) === nice) continue;
      setPriority(id, nice);
      changed++;
    } catch {
      failed++;
    }
  }
  return { changed, failed, unsupported: null };
}

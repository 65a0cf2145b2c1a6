/**
 * The answering thread first. Every other thread of the process (V8's garbage-collector helpers,
 * libuv's pool writing journals) is lowered to {@link HELPER_NICE}: on a busy machine, or a
 * controller pinned to one CPU, their work waits for the thread that answers queries instead of
 * taking turns with it (they still run whenever it is idle). Linux only: nice values are per
 * thread there; elsewhere nothing is changed.
 */
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Nice value, relative to the answering thread's, of the process's other threads. */
export const HELPER_NICE = 5;

/** Lowers every thread but the main one to the main thread's nice + HELPER_NICE; returns how many it lowered. */
export function lowerHelperThreads(): number {
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return 0;
  }
  const base = getPriority(0);
  let lowered = 0;
  for (const t of tids) {
    const tid = Number(t);
    if (tid === process.pid) continue;
    try {
      setPriority(tid, Math.min(19, base + HELPER_NICE));
      lowered++;
    } catch { /* not allowed, or the thread ended: it keeps its priority */ }
  }
  return lowered;
}

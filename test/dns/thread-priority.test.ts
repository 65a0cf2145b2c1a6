/** The answering thread first: every other thread of the process runs HELPER_NICE below it (Linux). */
import { describe, expect, test } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { HELPER_NICE, lowerHelperThreads } from '../../src/dns/server/thread-priority.js';

/** Nice value of thread `tid` (/proc/self/task/TID/stat, field 19). */
function niceOf(tid: string): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

describe('lowerHelperThreads', () => {
  test('every thread but the main one ends at the main thread\'s nice + HELPER_NICE; the main thread keeps its own', () => {
    const base = getPriority(0);
    const lowered = lowerHelperThreads();
    const tids = readdirSync('/proc/self/task').filter((t) => Number(t) !== process.pid);
    expect(tids.length).toBeGreaterThan(0);
    expect(lowered).toBeGreaterThanOrEqual(tids.length - 1); // a thread may start or end meanwhile
    expect(niceOf(String(process.pid))).toBe(base);
    for (const t of tids) expect(niceOf(t)).toBe(Math.min(19, base + HELPER_NICE));
  });
});

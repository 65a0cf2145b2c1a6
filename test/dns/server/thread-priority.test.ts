import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { HELPER_THREAD_NICE } from '../../../src/dns/server/thread-priority.js';

/** Runs `code` in a fresh node process (its own threads) and returns its stdout as JSON. */
function inProcess(code: string): unknown {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: process.cwd() });
  return JSON.parse(out);
}

describe.each([process.platform === 'linux' ? 'linux' : 'skip'])('yieldToServingThread (%s)', (platform) => {
  const run = platform === 'linux' ? test : test.skip;
  run('every thread but the main one at the helper nice value; the main thread keeps its own; a second call changes nothing', () => {
    const mod = JSON.stringify(new URL('../../../dist/src/dns/server/thread-priority.js', import.meta.url).pathname);
    const r = inProcess(`
      import { readdirSync, readFileSync } from 'node:fs';
      import { getPriority } from 'node:os';
      const { yieldToServingThread } = await import(${mod});
      await import('node:fs/promises').then((fs) => fs.stat('.')); // libuv's pool started
      const mainBefore = getPriority(process.pid);
      const first = yieldToServingThread();
      const second = yieldToServingThread();
      const nice = Object.fromEntries(readdirSync('/proc/self/task').map((t) => [t === String(process.pid) ? 'main' : t, getPriority(Number(t))]));
      console.log(JSON.stringify({ first, second, nice, mainBefore }));
    `) as { first: { changed: number; failed: number }; second: { changed: number }; nice: Record<string, number>; mainBefore: number };
    expect(r.first.failed).toBe(0);
    expect(r.first.changed).toBeGreaterThan(0);
    expect(r.second.changed).toBe(0);
    const { main, ...others } = r.nice;
    expect(main).toBe(r.mainBefore);
    expect(Object.values(others).length).toBe(r.first.changed);
    expect(new Set(Object.values(others))).toEqual(new Set([HELPER_THREAD_NICE]));
  });

  run('setThreadsNice without keeping the main thread (the zone parser process): every thread, the main one included', () => {
    const mod = JSON.stringify(new URL('../../../dist/src/dns/server/thread-priority.js', import.meta.url).pathname);
    const r = inProcess(`
      import { readdirSync } from 'node:fs';
      import { getPriority } from 'node:os';
      const { setThreadsNice } = await import(${mod});
      const out = setThreadsNice(${HELPER_THREAD_NICE}, false);
      console.log(JSON.stringify({ out, nice: readdirSync('/proc/self/task').map((t) => getPriority(Number(t))) }));
    `) as { out: { failed: number }; nice: number[] };
    expect(r.out.failed).toBe(0);
    expect(new Set(r.nice)).toEqual(new Set([HELPER_THREAD_NICE]));
  });
});

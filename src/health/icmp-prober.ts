/**
 * ICMP echo through fping (Debian package `fping`; Node has no raw sockets). Two shapes:
 * - `createIcmpProber`: the Prober contract, one `fping -c 1 -t TIMEOUT -4|-6 ADDR` per probe.
 *   Simple; costs one process per probe (fine at 100 ms, heavy at 10 ms for many addresses).
 * - `startIcmpLoop`: one long-running `fping -l -p INTERVAL -t TIMEOUT -i 1 ADDR...` for all
 *   addresses, parsed line by line; returns the same `ProbeRunner` handle as `startProbeRunner`.
 *   Use it for the cadence during a cutover.
 * Commands are spawned with argv arrays only (no shell); addresses are validated with ip-address
 * first. A missing fping is an error at construction (`FpingMissingError`, code FPING_MISSING);
 * if it disappears later, probes fail with reason `fping-missing`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { armProbeTimeout, checkTarget, checkTimeout, elapsedMs, type Prober, type ProbeResult, type ProbeTarget } from './prober.js';
import {
  checkRunnerOptions,
  DEFAULT_MAX_SAMPLES_PER_ADDRESS,
  monotonicEpochClock,
  SampleStore,
  type ProbeRunner,
  type Sample,
} from './probe-runner.js';

/** fping is not installed (or not executable). */
export class FpingMissingError extends Error {
  readonly code = 'FPING_MISSING';
  constructor(what: string) {
    super(`fping not found (${what}): install the Debian package fping`);
    this.name = 'FpingMissingError';
  }
}

/** Where fping is looked for, and how it is run. */
export interface FpingOptions {
  /** fping binary: a name looked up in PATH, or an absolute path. Default `fping`. */
  fping?: string;
  /**
   * argv run before fping, e.g. `['ip', 'netns', 'exec', 'probe-ns']` to probe from a network
   * namespace. The first element is looked up in PATH too.
   */
  argvPrefix?: string[];
}

/** Settings of the per-probe ICMP prober (config: `health.probe: {type: icmp}`, `health.timeout_ms`). */
export interface IcmpProberOptions extends FpingOptions {
  timeoutMs: number;
  /**
   * Extra time allowed for fping's start and exit before the probe is killed; default
   * DEFAULT_FPING_GRACE_MS. fping reports its own timeout `timeoutMs` after it sent, so this only
   * bounds a slow or hung process.
   */
  graceMs?: number;
}

/** Default graceMs of the per-probe ICMP prober: an fping start alone took up to 113 ms on a loaded 2-core machine. */
export const DEFAULT_FPING_GRACE_MS = 500;

/** Resolves a command name in PATH (or checks an absolute path); throws FpingMissingError. */
export function locateExecutable(cmd: string): string {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin']).map((d) => path.join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new FpingMissingError(cmd);
}

function commandLine(o: FpingOptions, args: string[]): { file: string; argv: string[] } {
  const fping = locateExecutable(o.fping ?? 'fping');
  const prefix = o.argvPrefix ?? [];
  if (prefix.length > 0) return { file: locateExecutable(prefix[0]), argv: [...prefix.slice(1), fping, ...args] };
  return { file: fping, argv: args };
}

const REPLY = /^(\S+)\s+: \[(\d+)\], \d+ bytes, ([\d.]+) ms/;
const TIMED_OUT = /^(\S+)\s+: \[(\d+)\], timed out/;
/** `-D` prefix: fping's own (wall-clock) time of the line, seconds. */
const STAMP = /^\[(\d+\.\d+)\] /;

/** Creates a Prober that runs one fping per probe. Throws FpingMissingError when fping is absent. */
export function createIcmpProber(opts: IcmpProberOptions): Prober {
  checkTimeout(opts.timeoutMs);
  commandLine(opts, []); // fail early when fping (or the prefix command) is missing
  const timeoutMs = opts.timeoutMs;
  const graceMs = opts.graceMs ?? DEFAULT_FPING_GRACE_MS;
  if (!Number.isFinite(graceMs) || graceMs < 0 || graceMs > 600_000) throw new RangeError(`graceMs must be a number of ms in [0, 600000], not ${String(graceMs)}`);
  return {
    type: 'icmp',
    probe(target: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
      const start = performance.now();
      const t = checkTarget(target);
      if (!t) return Promise.resolve({ ok: false, rttMs: 0, reason: 'bad-address' });
      if (signal?.aborted) return Promise.resolve({ ok: false, rttMs: 0, reason: 'aborted' });
      let cmd: { file: string; argv: string[] };
      try {
        cmd = commandLine(opts, [t.family === 6 ? '-6' : '-4', '-c', '1', '-t', String(Math.max(1, Math.round(timeoutMs))), t.address]);
      } catch {
        return Promise.resolve({ ok: false, rttMs: 0, reason: 'fping-missing' });
      }
      return new Promise<ProbeResult>((resolve) => {
        let done = false;
        let out = '';
        let child: ChildProcess | undefined;
        const finish = (r: ProbeResult): void => {
          if (done) return;
          done = true;
          disarm();
          signal?.removeEventListener('abort', onAbort);
          if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
          resolve(r);
        };
        const onAbort = (): void => finish({ ok: false, rttMs: elapsedMs(start), reason: 'aborted' });
        // fping's own output and exit are read first, even after a stall of the controller: see armProbeTimeout
        const disarm = armProbeTimeout(timeoutMs + graceMs, () => finish({ ok: false, rttMs: elapsedMs(start), reason: 'timeout' }));
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          child = spawn(cmd.file, cmd.argv, { stdio: ['ignore', 'pipe', 'ignore'] });
        } catch {
          finish({ ok: false, rttMs: elapsedMs(start), reason: 'fping-error' });
          return;
        }
        child.stdout?.setEncoding('utf8');
        child.stdout?.on('data', (d: string) => {
          if (out.length < 4096) out += d;
        });
        child.once('error', (err: NodeJS.ErrnoException) => finish({ ok: false, rttMs: elapsedMs(start), reason: err.code === 'ENOENT' ? 'fping-missing' : 'fping-error' }));
        child.once('close', (code) => {
          const line = out.split('\n').find((l) => l.startsWith(`${t.address} `)) ?? '';
          const m = REPLY.exec(line);
          if (code === 0 && m) finish({ ok: true, rttMs: Number(m[3]) });
          else if (TIMED_OUT.test(line)) finish({ ok: false, rttMs: elapsedMs(start), reason: 'timeout' });
          // fping prints nothing for a send error (no route, unreachable route).
          else if (code === 1) finish({ ok: false, rttMs: elapsedMs(start), reason: 'unreachable' });
          else if (code === 2) finish({ ok: false, rttMs: elapsedMs(start), reason: 'bad-address' });
          else finish({ ok: false, rttMs: elapsedMs(start), reason: 'fping-error' });
        });
      });
    },
  };
}

/** Options of startIcmpLoop (same meaning as in ProbeRunnerOptions). */
export interface IcmpLoopOptions extends FpingOptions {
  targets: ProbeTarget[];
  intervalMs: number;
  timeoutMs: number;
  clock?: () => number;
  onResult?(sample: Sample): void;
  maxSamplesPerAddress?: number;
}

interface LoopTarget {
  address: string;
  index: number;
  /** Send time of seq 0, estimated from replies (min over replies of fping's receive time - rtt - seq * interval). */
  base?: number;
  /** Lowest seq not settled yet, and the settled seqs above it. */
  next: number;
  settled: Set<number>;
}

/** Time fping has, after a probe's timeout, to print a line about it before it counts as `no-reply`. */
export const ICMP_LOOP_SLACK_MS = 1000;
/** A sweep of the ICMP loop that runs this much later than its period means the controller stalled. */
const LOOP_STALL_MS = 50;

/**
 * One fping in loop mode for all targets, at a fixed cadence (fping schedules probe n of each
 * address at n * interval after its first). Replies and fping's `timed out` lines become samples;
 * a seq for which fping printed nothing by send + timeout + slack (slack = max(ICMP_LOOP_SLACK_MS,
 * 2 x interval); fping is silent on send errors such as no route) becomes a failure with reason
 * `no-reply`, or `fping-error` after fping died. That sweep runs after fping's pending output has
 * been read (from setImmediate, after the poll phase), and after a stall of the controller (a sweep
 * more than LOOP_STALL_MS late) nothing is declared silent for another slack, so that lines fping
 * printed or held meanwhile are read first. Send times are reconstructed from fping's fixed
 * schedule: sentAt = base + seq * interval, base estimated per address from the replies: the
 * minimum over replies of fping's own receive time (`-D`, mapped onto our clock) - rtt - seq * interval.
 * Throws FpingMissingError when fping is absent.
 */
export function startIcmpLoop(opts: IcmpLoopOptions): ProbeRunner {
  checkRunnerOptions(opts);
  checkTimeout(opts.timeoutMs);
  const targets: LoopTarget[] = opts.targets.map((t, index) => {
    const c = checkTarget(t);
    if (!c) throw new RangeError(`not a valid IPv${t.family} address: ${JSON.stringify(t.address)}`);
    return { address: c.address, index, next: 0, settled: new Set<number>() };
  });
  const byAddress = new Map(targets.map((t) => [t.address, t]));
  const clock = opts.clock ?? monotonicEpochClock;
  const interval = Math.round(opts.intervalMs);
  const timeout = Math.max(1, Math.round(opts.timeoutMs));
  const slack = Math.max(ICMP_LOOP_SLACK_MS, 2 * interval);
  /** Before fping printed anything, silent addresses are not declared failed (fping may still be starting). */
  const startupGraceMs = 1000;
  const store = new SampleStore(opts.maxSamplesPerAddress ?? DEFAULT_MAX_SAMPLES_PER_ADDRESS);
  const cmd = commandLine(opts, ['-l', '-D', '-p', String(interval), '-t', String(timeout), '-i', '1', ...targets.map((t) => t.address)]);
  const mono0 = performance.now();
  const startedAt = clock();
  // The caller's clock is read once; afterwards time advances monotonically from it.
  const now = (): number => startedAt + (performance.now() - mono0);
  // Offset from the wall clock (fping's -D stamps) to our timeline, to the µs: read just after Date.now() ticks.
  let wallOffset = ((): number => {
    const w0 = Date.now();
    for (;;) {
      const m = now();
      const w = Date.now();
      if (w !== w0) return m - w;
    }
  })();
  let anyLine = false;
  /** Estimate of fping's first send (seq 0 of target index 0), from any address's lines. */
  let globalBase: number | undefined;
  const observe = (t: LoopTarget, estimate: number): void => {
    if (t.base === undefined || estimate < t.base) t.base = estimate;
    if (globalBase === undefined || estimate - t.index < globalBase) globalBase = estimate - t.index;
  };
  let stopAt = Infinity;
  let failReason = 'no-reply';

  const record = (s: Sample): void => {
    store.add(s);
    try {
      opts.onResult?.(s);
    } catch {
      /* ignored */
    }
  };
  // Without a line of its own, an address's schedule is derived from the others' (-i 1: 1 ms apart),
  // or, before any line, guessed as startedAt + 1 ms per target.
  const sendTime = (t: LoopTarget, seq: number): number => (t.base ?? (globalBase ?? startedAt) + t.index) + seq * interval;
  const settle = (t: LoopTarget, seq: number, s: Omit<Sample, 'address' | 'seq' | 'sentAt'>): void => {
    if (seq < t.next || t.settled.has(seq)) return; // already reported (a late line)
    const sentAt = sendTime(t, seq);
    if (sentAt > stopAt) return;
    t.settled.add(seq);
    while (t.settled.delete(t.next)) t.next++;
    record({ address: t.address, seq, sentAt: Math.round(sentAt * 1000) / 1000, ...s });
  };

  const child = spawn(cmd.file, cmd.argv, { stdio: ['ignore', 'pipe', 'ignore'] });
  let exited = false;
  child.once('error', () => {
    exited = true;
    failReason = 'fping-missing';
  });
  child.once('exit', () => {
    exited = true;
    if (stopAt === Infinity) failReason = 'fping-error';
  });
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    const at = now();
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      // fping's receive time, moved onto our timeline (offset taken now, so a wall-clock step cancels out).
      let receivedAt = at;
      const st = STAMP.exec(line);
      if (st) {
        const coarse = at - Date.now();
        if (Math.abs(coarse - wallOffset) > 5) wallOffset = coarse; // the wall clock stepped
        const stamped = Number(st[1]) * 1000 + wallOffset;
        if (stamped <= at + 1) receivedAt = Math.min(stamped, at);
        line = line.slice(st[0].length);
      }
      anyLine = true;
      const m = REPLY.exec(line);
      if (m) {
        const t = byAddress.get(m[1]);
        if (!t) continue;
        const seq = Number(m[2]);
        const rtt = Number(m[3]);
        observe(t, receivedAt - rtt - seq * interval);
        settle(t, seq, { ok: true, rttMs: rtt });
        continue;
      }
      const x = TIMED_OUT.exec(line);
      if (x) {
        const t = byAddress.get(x[1]);
        if (!t) continue;
        // fping prints it when the timeout expires: send time = then - timeout.
        observe(t, receivedAt - timeout - Number(x[2]) * interval);
        settle(t, Number(x[2]), { ok: false, rttMs: timeout, reason: 'timeout' });
      }
    }
  });

  // Seqs fping said nothing about by send + timeout + slack are failures.
  const sweep = (limit: number): void => {
    if (!anyLine && !exited && limit < startedAt + startupGraceMs) return;
    for (const t of targets) {
      while (sendTime(t, t.next) + timeout + slack <= limit && sendTime(t, t.next) <= stopAt) {
        settle(t, t.next, { ok: false, rttMs: timeout, reason: failReason });
      }
    }
  };
  const period = Math.max(interval, 10);
  let lastTick = performance.now();
  /** After a stall of ours, nothing is declared silent before this (our timeline). */
  let holdUntil = -Infinity;
  let pendingSweep: NodeJS.Immediate | undefined;
  const sweeper = setInterval(() => {
    const m = performance.now();
    if (m - lastTick > period + LOOP_STALL_MS) holdUntil = now() + slack;
    lastTick = m;
    // The timer fires before the poll phase reads fping's output: sweep after it.
    pendingSweep ??= setImmediate(() => {
      pendingSweep = undefined;
      const at = now();
      if (at >= holdUntil) sweep(at);
    });
  }, period);
  /** Every probe sent up to stopAt reported. */
  const drained = (): boolean => targets.every((t) => sendTime(t, t.next) > stopAt);

  return {
    startedAt,
    samples: () => store.all(),
    dropped: () => store.dropped(),
    async stop(): Promise<Sample[]> {
      if (stopAt === Infinity) stopAt = now();
      // Let the probes in flight settle (the sweeper declares the silent ones), then end fping.
      while (!exited && !drained() && now() < stopAt + timeout + slack) await new Promise((r) => setTimeout(r, period));
      await new Promise((r) => setImmediate(r)); // output already there is read first
      clearInterval(sweeper);
      if (pendingSweep) clearImmediate(pendingSweep);
      sweep(stopAt + timeout + slack);
      if (!exited) {
        child.kill('SIGTERM');
        await new Promise<void>((r) => {
          if (child.exitCode !== null || child.signalCode !== null) r();
          else child.once('exit', () => r());
        });
      }
      return store.all();
    },
  };
}

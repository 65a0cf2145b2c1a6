/**
 * Downtime of addresses during a cutover (or cutback), from probe samples. Pure: no I/O, no clock.
 *
 * Rules (README "Downtime rules" has a worked example):
 * - A sample is SERVICE when an answer is ok and comes from the origin or the target (or from an
 *   unnamed responder, see below); it FAILS when nothing answered (`!ok`: timeout, refused, ...),
 *   when a third host answered (`wrong-host`), or, with `requireIdentity`, when the answer carries
 *   no identity (`no-identity`). Names compare case-insensitively after trimming.
 * - The origin answering is service, before the target takes over and after it (flapping between
 *   origin and target is not downtime), but an origin answer resets the recovery streak.
 * - Downtime = the sum of the gaps; a gap runs from the send time of the first failed probe to the
 *   send time of the next service probe (exact to within one probe interval).
 * - Recovery: `recoveryCount` target answers in a row: consecutive probes sent, nothing between.
 *   Slots the runner skipped (never sent; the next sample's `skipped` says how many) neither break
 *   nor extend the streak; a sample missing from the list (sent, result unknown) breaks it. `recoveredAt` is the send time of the first of them, `endedAt` of the last; samples after
 *   `endedAt` are not considered. An answer without identity (TCP, ICMP) counts as the target's
 *   when sent at or after `switchedAt` (default `startedAt`).
 * - Not recovered: the gap still open runs to the end of the wait and is included (`open: true`;
 *   a lower bound); `waitedMs` = end of the wait - startedAt, the end being `now` (default: the last
 *   sample's send time) capped at `deadlineAt`.
 * - Samples are ordered by seq (not by arrival), duplicates of a seq are ignored (first kept),
 *   samples sent before `startedAt` or after `deadlineAt` are ignored.
 * - Clock steps: durations come from consecutive send times, each checked against the expected
 *   step (seq difference x interval). A negative step, or one that differs from the expected by
 *   more than `stepToleranceMs` (default max(250, 4 x interval)), is a clock step: the expected
 *   step is used instead and `clockSteps` counts it. All times reported are on this corrected
 *   timeline, anchored on the first sample's send time.
 */
import type { Sample } from './probe-runner.js';

/** Settings of the measurement (config: `health.interval_ms`, `recovery_probes`, `deadline_s`). */
export interface DowntimeOptions {
  /** Inventory name that answers before the switch, e.g. `srv-42`. */
  origin: string;
  /** Inventory name that answers after it, e.g. `transit-3`. */
  target: string;
  intervalMs: number;
  /** Consecutive target answers that end the measurement (config `health.recovery_probes`, default 3). */
  recoveryCount: number;
  /** ms epoch: give up waiting for recovery (startedAt + deadline_s * 1000). */
  deadlineAt?: number;
  /** ms epoch: start of the measurement (the runner's startedAt). */
  startedAt: number;
  /** ms epoch from which an answer without identity counts as the target's; default startedAt. */
  switchedAt?: number;
  /** An ok answer without responder is a failure (`no-identity`); set it for HTTP with an identity header. */
  requireIdentity?: boolean;
  /** ms epoch: now, for the wait of an address not recovered (default: its last sample's send time). */
  now?: number;
  /** Largest plausible deviation of a send-time step from seq x interval; default max(250, 4 x interval). */
  stepToleranceMs?: number;
}

/** A period without service. */
export interface Gap {
  /** Send time of the first failed probe. */
  from: number;
  /** Send time of the next service probe (or the end of the wait when open). */
  to: number;
  /** Failed probes in the gap. */
  probes: number;
  /** Still open: the address did not recover. */
  open?: boolean;
}

/** Downtime of one address. */
export interface DowntimeResult {
  address: string;
  /** Sum of the gaps, ms (µs resolution). */
  downtimeMs: number;
  gaps: Gap[];
  recovered: boolean;
  /** Send time of the first probe of the recovery streak. */
  recoveredAt?: number;
  /** Send time of the probe that completed the recovery streak (the measurement ends there). */
  endedAt?: number;
  /** From startedAt to endedAt (recovered) or to the end of the wait (not recovered). */
  waitedMs: number;
  probesSent: number;
  probesFailed: number;
  /** Send time of the first answer counted as the target's. */
  firstTargetAt?: number;
  /** Steps of the send-time clock that were corrected. */
  clockSteps: number;
  /** Third hosts that answered (distinct, in order of appearance). */
  wrongHosts: string[];
}

/** All addresses. */
export interface DowntimeSummary {
  addresses: DowntimeResult[];
  /** Largest downtime of any address (ms). */
  maxDowntimeMs: number;
  allRecovered: boolean;
}

/** How one sample counts. */
export type SampleKind = 'origin' | 'target' | 'anonymous' | 'fail';

const same = (a: string, b: string): boolean => a.trim().toLowerCase() === b.trim().toLowerCase();
const us = (x: number): number => Math.round(x * 1000) / 1000;

/** Classifies a sample; `reason` is set for failures (the prober's, or `wrong-host`/`no-identity`). */
export function classifySample(s: Sample, opts: Pick<DowntimeOptions, 'origin' | 'target' | 'requireIdentity'>): { kind: SampleKind; reason?: string } {
  if (!s.ok) return { kind: 'fail', reason: s.reason ?? 'error' };
  if (s.responder === undefined || s.responder.trim() === '') return opts.requireIdentity ? { kind: 'fail', reason: 'no-identity' } : { kind: 'anonymous' };
  if (same(s.responder, opts.target)) return { kind: 'target' };
  if (same(s.responder, opts.origin)) return { kind: 'origin' };
  return { kind: 'fail', reason: 'wrong-host' };
}

function checkOptions(opts: DowntimeOptions): void {
  if (!Number.isFinite(opts.intervalMs) || opts.intervalMs <= 0) throw new RangeError('intervalMs must be positive');
  if (!Number.isInteger(opts.recoveryCount) || opts.recoveryCount < 1) throw new RangeError('recoveryCount must be an integer >= 1');
  if (!Number.isFinite(opts.startedAt)) throw new RangeError('startedAt must be a number (ms epoch)');
}

/** Orders one address's samples by seq, drops duplicate seqs, and computes corrected send times. */
function timeline(samples: Sample[], opts: DowntimeOptions): { line: { s: Sample; t: number }[]; steps: number } {
  const sorted = samples.slice().sort((a, b) => a.seq - b.seq || a.sentAt - b.sentAt);
  const tolerance = opts.stepToleranceMs ?? Math.max(250, 4 * opts.intervalMs);
  const out: { s: Sample; t: number }[] = [];
  let steps = 0;
  let prev: Sample | undefined;
  let t = 0;
  for (const s of sorted) {
    if (prev && s.seq === prev.seq) continue;
    if (!prev) t = s.sentAt;
    else {
      const d = s.sentAt - prev.sentAt;
      const expected = (s.seq - prev.seq) * opts.intervalMs;
      if (d < 0 || Math.abs(d - expected) > tolerance) {
        t += expected;
        steps++;
        out.push({ s, t });
        prev = s;
        continue;
      }
      t += d;
    }
    out.push({ s, t });
    prev = s;
  }
  return { line: out, steps };
}

/** Downtime of one address from its samples (all samples must be of that address). */
export function computeDowntime(samples: Sample[], opts: DowntimeOptions): DowntimeResult {
  checkOptions(opts);
  const address = samples[0]?.address ?? '';
  if (samples.some((s) => s.address !== address)) throw new RangeError('computeDowntime: samples of several addresses (use computeAllDowntime)');
  return measure(address, samples, opts);
}

function measure(address: string, samples: Sample[], opts: DowntimeOptions): DowntimeResult {
  const { line, steps: clockSteps } = timeline(samples, opts);
  const switchedAt = opts.switchedAt ?? opts.startedAt;
  const deadline = opts.deadlineAt ?? Infinity;
  const gaps: Gap[] = [];
  const wrongHosts: string[] = [];
  let open: Gap | undefined;
  let probesSent = 0;
  let probesFailed = 0;
  let streak = 0;
  let streakStart = 0;
  let prevSeq: number | undefined;
  let lastT: number | undefined;
  let firstTargetAt: number | undefined;
  let recoveredAt: number | undefined;
  let endedAt: number | undefined;

  for (const { s, t } of line) {
    if (t < opts.startedAt || t > deadline) continue;
    probesSent++;
    lastT = t;
    const c = classifySample(s, opts);
    // the previous probe sent is seq - 1 - skipped: slots skipped in between do not break the streak
    const consecutive = prevSeq !== undefined && s.seq - 1 - (s.skipped ?? 0) === prevSeq;
    prevSeq = s.seq;
    if (c.kind === 'fail') {
      probesFailed++;
      if (c.reason === 'wrong-host' && s.responder && !wrongHosts.includes(s.responder)) wrongHosts.push(s.responder);
      if (!open) open = { from: t, to: t, probes: 0 };
      open.probes++;
      streak = 0;
      continue;
    }
    if (open) {
      open.to = t;
      gaps.push(open);
      open = undefined;
    }
    const counts = c.kind === 'target' || (c.kind === 'anonymous' && t >= switchedAt);
    if (!counts) {
      streak = 0;
      continue;
    }
    if (firstTargetAt === undefined) firstTargetAt = t;
    if (streak > 0 && !consecutive) streak = 0;
    if (streak === 0) streakStart = t;
    streak++;
    if (streak >= opts.recoveryCount) {
      recoveredAt = streakStart;
      endedAt = t;
      break;
    }
  }

  const recovered = endedAt !== undefined;
  let end: number;
  if (recovered) end = endedAt!;
  else {
    end = Math.max(lastT ?? opts.startedAt, opts.now ?? -Infinity);
    if (end > deadline) end = deadline;
    if (open) {
      open.to = Math.max(open.from, end);
      open.open = true;
      gaps.push(open);
    }
  }
  const r: DowntimeResult = {
    address,
    downtimeMs: us(gaps.reduce((sum, g) => sum + (g.to - g.from), 0)),
    gaps: gaps.map((g) => ({ ...g, from: us(g.from), to: us(g.to) })),
    recovered,
    waitedMs: us(Math.max(0, end - opts.startedAt)),
    probesSent,
    probesFailed,
    clockSteps,
    wrongHosts,
  };
  if (recoveredAt !== undefined) r.recoveredAt = us(recoveredAt);
  if (endedAt !== undefined) r.endedAt = us(endedAt);
  if (firstTargetAt !== undefined) r.firstTargetAt = us(firstTargetAt);
  return r;
}

/**
 * Downtime of every address. `addresses` lists those that must appear (an address with no sample
 * is reported not recovered); by default, the addresses present in `samples`.
 */
export function computeAllDowntime(samples: Sample[], opts: DowntimeOptions, addresses?: string[]): DowntimeSummary {
  checkOptions(opts);
  const by = new Map<string, Sample[]>();
  for (const a of addresses ?? []) by.set(a, []);
  for (const s of samples) {
    let l = by.get(s.address);
    if (!l) {
      if (addresses) continue;
      by.set(s.address, (l = []));
    }
    l.push(s);
  }
  const results = [...by].map(([a, l]) => measure(a, l, opts));
  return {
    addresses: results,
    maxDowntimeMs: results.reduce((m, r) => Math.max(m, r.downtimeMs), 0),
    allRecovered: results.every((r) => r.recovered),
  };
}

/**
 * Whether the measurement can end: every address recovered, or the deadline passed (`opts.now`,
 * else the latest send time seen, at or after `deadlineAt`).
 */
export function isDone(samples: Sample[], opts: DowntimeOptions, addresses?: string[]): boolean {
  const sum = computeAllDowntime(samples, opts, addresses);
  if (sum.allRecovered && sum.addresses.length > 0) return true;
  if (opts.deadlineAt === undefined) return false;
  const now = opts.now ?? samples.reduce((m, s) => Math.max(m, s.sentAt), -Infinity);
  return now >= opts.deadlineAt;
}

/** Streaming form of isDone: feed every sample (any order) as it arrives; O(recoveryCount) work per sample at most. */
export interface DowntimeTracker {
  add(sample: Sample): void;
  /** Whether this address has had recoveryCount consecutive target answers. */
  recovered(address: string): boolean;
  /** Every address recovered, or `now` (ms epoch, same clock as sentAt) at or after deadlineAt. */
  isDone(now?: number): boolean;
}

/**
 * Creates a tracker for `addresses` with the same recovery rule as computeDowntime (on raw send
 * times, without clock-step correction). Memory: the last ~recoveryCount + 1024 probes per address.
 */
export function createDowntimeTracker(opts: DowntimeOptions, addresses: string[]): DowntimeTracker {
  checkOptions(opts);
  const n = opts.recoveryCount;
  const window = n + 1024;
  // per address: seq -> whether it counts and the seq of the probe sent before it; prev seq -> seq
  const state = new Map(addresses.map((a) => [a, { seen: new Map<number, { counts: boolean; prev: number }>(), after: new Map<number, number>(), recovered: false }]));
  const switchedAt = opts.switchedAt ?? opts.startedAt;
  const deadline = opts.deadlineAt ?? Infinity;
  let latest = -Infinity;
  return {
    add(s: Sample): void {
      latest = Math.max(latest, s.sentAt);
      const st = state.get(s.address);
      if (!st || st.recovered || st.seen.has(s.seq)) return;
      if (s.sentAt < opts.startedAt || s.sentAt > deadline) return;
      const c = classifySample(s, opts);
      const counts = c.kind === 'target' || (c.kind === 'anonymous' && s.sentAt >= switchedAt);
      const prev = s.seq - 1 - (s.skipped ?? 0);
      st.seen.set(s.seq, { counts, prev });
      st.after.set(prev, s.seq);
      if (counts) {
        // the run of counting probes through this one, along the probes actually sent
        let len = 1;
        for (let q = prev; len < n && st.seen.get(q)?.counts === true; q = st.seen.get(q)!.prev) len++;
        for (let q = st.after.get(s.seq); len < n && q !== undefined && st.seen.get(q)?.counts === true; q = st.after.get(q)) len++;
        if (len >= n) st.recovered = true;
      }
      if (st.seen.size > 2 * window) {
        // forget the oldest probes (arrival order), keeping the last `window`
        let drop = st.seen.size - window;
        for (const [k, e] of st.seen) {
          if (drop-- <= 0) break;
          st.seen.delete(k);
          if (st.after.get(e.prev) === k) st.after.delete(e.prev);
        }
      }
    },
    recovered: (a: string): boolean => state.get(a)?.recovered ?? false,
    isDone(now?: number): boolean {
      if (state.size > 0 && [...state.values()].every((s) => s.recovered)) return true;
      return (now ?? latest) >= deadline;
    },
  };
}

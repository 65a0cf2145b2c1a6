import { describe, expect, test } from '@jest/globals';
import { computeAllDowntime, computeDowntime, createDowntimeTracker, isDone, type DowntimeOptions } from '../../src/health/downtime.js';
import type { Sample } from '../../src/health/probe-runner.js';

const T0 = 1_700_000_000_000;
const I = 20;
const A = '192.0.2.10';

/**
 * One letter per probe slot: O origin answers, T target answers, W a third host answers,
 * A an answer without identity, x a timeout, r refused, - no sample for that slot (a probe sent
 * whose result is unknown), . a slot the runner skipped (never sent: the next sample says so).
 */
function samples(pattern: string, opts: { address?: string; jitter?: Record<number, number>; shift?: Record<number, number> } = {}): Sample[] {
  const out: Sample[] = [];
  let shift = 0;
  let skipped = 0;
  [...pattern].forEach((c, seq) => {
    shift += opts.shift?.[seq] ?? 0; // a clock step from this seq on
    const sentAt = T0 + seq * I + (opts.jitter?.[seq] ?? 0) + shift;
    if (c === '.') {
      skipped++;
      return;
    }
    const base: Sample = { address: opts.address ?? A, seq, sentAt, ok: false, rttMs: 1, ...(skipped > 0 ? { skipped } : {}) };
    skipped = 0;
    switch (c) {
      case 'O':
        out.push({ ...base, ok: true, responder: 'srv-42' });
        break;
      case 'T':
        out.push({ ...base, ok: true, responder: 'transit-3' });
        break;
      case 'W':
        out.push({ ...base, ok: true, responder: 'web-9' });
        break;
      case 'A':
        out.push({ ...base, ok: true });
        break;
      case 'x':
        out.push({ ...base, ok: false, rttMs: 200, reason: 'timeout' });
        break;
      case 'r':
        out.push({ ...base, ok: false, rttMs: 0.1, reason: 'refused' });
        break;
      case '-':
        break;
      default:
        throw new Error(`bad pattern letter ${c}`);
    }
  });
  return out;
}

const opts = (o: Partial<DowntimeOptions> = {}): DowntimeOptions => ({ origin: 'srv-42', target: 'transit-3', intervalMs: I, recoveryCount: 3, startedAt: T0, ...o });
const at = (seq: number): number => T0 + seq * I;
/** Deterministic shuffle. */
function shuffle<X>(a: X[], seed = 7): X[] {
  const b = a.slice();
  let s = seed;
  for (let i = b.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [b[i], b[j]] = [b[j], b[i]];
  }
  return b;
}

interface Case {
  name: string;
  input: Sample[];
  o?: Partial<DowntimeOptions>;
  want: {
    downtimeMs: number;
    gaps: [number, number, number, boolean?][]; // from seq-time, to, probes, open
    recovered: boolean;
    recoveredAt?: number;
    endedAt?: number;
    waitedMs: number;
    probesSent: number;
    probesFailed: number;
    firstTargetAt?: number;
    clockSteps?: number;
    wrongHosts?: string[];
  };
}

const cases: Case[] = [
  {
    name: 'no gap: origin then target (make-before-break)',
    input: samples('OOOOTTT'),
    want: { downtimeMs: 0, gaps: [], recovered: true, recoveredAt: at(4), endedAt: at(6), waitedMs: 120, probesSent: 7, probesFailed: 0, firstTargetAt: at(4) },
  },
  {
    name: 'one gap',
    input: samples('OOxxxTTT'),
    want: { downtimeMs: 60, gaps: [[at(2), at(5), 3]], recovered: true, recoveredAt: at(5), endedAt: at(7), waitedMs: 140, probesSent: 8, probesFailed: 3, firstTargetAt: at(5) },
  },
  {
    name: 'several gaps (flapping)',
    input: samples('OxOxrTxTTT'),
    want: {
      downtimeMs: 80,
      gaps: [
        [at(1), at(2), 1],
        [at(3), at(5), 2],
        [at(6), at(7), 1],
      ],
      recovered: true,
      recoveredAt: at(7),
      endedAt: at(9),
      waitedMs: 180,
      probesSent: 10,
      probesFailed: 4,
      firstTargetAt: at(5),
    },
  },
  {
    name: 'the origin answers until the flip: service, not downtime',
    input: samples('OOOOOOOOTTT'),
    want: { downtimeMs: 0, gaps: [], recovered: true, recoveredAt: at(8), endedAt: at(10), waitedMs: 200, probesSent: 11, probesFailed: 0, firstTargetAt: at(8) },
  },
  {
    name: 'the origin answering after the target took over is service but resets the streak',
    input: samples('OOTOTTOTTT'),
    want: { downtimeMs: 0, gaps: [], recovered: true, recoveredAt: at(7), endedAt: at(9), waitedMs: 180, probesSent: 10, probesFailed: 0, firstTargetAt: at(2) },
  },
  {
    name: 'a third host answering is a failure',
    input: samples('OOWWTTT'),
    want: { downtimeMs: 40, gaps: [[at(2), at(4), 2]], recovered: true, recoveredAt: at(4), endedAt: at(6), waitedMs: 120, probesSent: 7, probesFailed: 2, firstTargetAt: at(4), wrongHosts: ['web-9'] },
  },
  {
    name: 'a probe that hangs (arrives last, as a timeout) counts at its send time',
    input: (() => {
      const s = samples('OOxOOTTT');
      const hung = s.splice(2, 1)[0];
      return [...s, hung]; // its result arrived after everything else
    })(),
    want: { downtimeMs: 20, gaps: [[at(2), at(3), 1]], recovered: true, recoveredAt: at(5), endedAt: at(7), waitedMs: 140, probesSent: 8, probesFailed: 1, firstTargetAt: at(5) },
  },
  {
    name: 'clock steps (back 5 s, then forward 1 h) create no downtime',
    input: samples('OOOxxTTT', { shift: { 2: -5000, 6: 3_600_000 } }),
    want: { downtimeMs: 40, gaps: [[at(3), at(5), 2]], recovered: true, recoveredAt: at(5), endedAt: at(7), waitedMs: 140, probesSent: 8, probesFailed: 2, firstTargetAt: at(5), clockSteps: 2 },
  },
  {
    name: 'a clock step inside a gap',
    input: samples('OOxxxxTTT', { shift: { 4: 86_400_000 } }),
    want: { downtimeMs: 80, gaps: [[at(2), at(6), 4]], recovered: true, recoveredAt: at(6), endedAt: at(8), waitedMs: 160, probesSent: 9, probesFailed: 4, firstTargetAt: at(6), clockSteps: 1 },
  },
  {
    name: 'out-of-order results give the same answer as in order',
    input: shuffle(samples('OxOxrTxTTT')),
    want: {
      downtimeMs: 80,
      gaps: [
        [at(1), at(2), 1],
        [at(3), at(5), 2],
        [at(6), at(7), 1],
      ],
      recovered: true,
      recoveredAt: at(7),
      endedAt: at(9),
      waitedMs: 180,
      probesSent: 10,
      probesFailed: 4,
      firstTargetAt: at(5),
    },
  },
  {
    name: 'never recovers: not recovered, gap open to the deadline, time waited',
    input: samples('OOxxxxxxxxxxxxx'),
    o: { deadlineAt: T0 + 200, now: T0 + 900 },
    want: { downtimeMs: 160, gaps: [[at(2), T0 + 200, 9, true]], recovered: false, waitedMs: 200, probesSent: 11, probesFailed: 9 },
  },
  {
    name: 'never recovers, no deadline: waited until the last probe sent',
    input: samples('OOxxxxx'),
    want: { downtimeMs: 80, gaps: [[at(2), at(6), 5, true]], recovered: false, waitedMs: 120, probesSent: 7, probesFailed: 5 },
  },
  {
    name: 'target answers but never 3 in a row: not recovered',
    input: samples('OxTTxTTxTTx'),
    o: { now: at(12) },
    want: {
      downtimeMs: 100,
      gaps: [
        [at(1), at(2), 1],
        [at(4), at(5), 1],
        [at(7), at(8), 1],
        [at(10), at(12), 1, true],
      ],
      recovered: false,
      waitedMs: 240,
      probesSent: 11,
      probesFailed: 4,
      firstTargetAt: at(2),
    },
  },
  {
    name: 'recovery requires N in a row: a missing slot breaks the streak',
    input: samples('xTT-TTT'),
    want: { downtimeMs: 20, gaps: [[at(0), at(1), 1]], recovered: true, recoveredAt: at(4), endedAt: at(6), waitedMs: 120, probesSent: 6, probesFailed: 1, firstTargetAt: at(1) },
  },
  {
    name: 'slots the runner skipped neither break the streak nor count in it',
    input: samples('OxT..TT'),
    want: { downtimeMs: 20, gaps: [[at(1), at(2), 1]], recovered: true, recoveredAt: at(2), endedAt: at(6), waitedMs: 120, probesSent: 5, probesFailed: 1, firstTargetAt: at(2) },
  },
  {
    name: 'skipped slots do not make a streak: 2 answers and 3 skipped slots are not 3 in a row',
    input: samples('xTT...xTT.T'),
    want: {
      downtimeMs: 40,
      gaps: [
        [at(0), at(1), 1],
        [at(6), at(7), 1],
      ],
      recovered: true,
      recoveredAt: at(7),
      endedAt: at(10),
      waitedMs: 200,
      probesSent: 7,
      probesFailed: 2,
      firstTargetAt: at(1),
    },
  },
  {
    name: 'skipped slots inside a gap: the gap still runs from the first failed send to the next answer',
    input: samples('Ox..x.T.TT'),
    want: { downtimeMs: 100, gaps: [[at(1), at(6), 2]], recovered: true, recoveredAt: at(6), endedAt: at(9), waitedMs: 180, probesSent: 6, probesFailed: 2, firstTargetAt: at(6) },
  },
  {
    name: 'a long streak under load: every other slot skipped, one probe missing (sent, result unknown) still breaks it',
    input: samples('OT.T.T.-.T.T.T.T'),
    o: { recoveryCount: 4 },
    want: { downtimeMs: 0, gaps: [], recovered: true, recoveredAt: at(9), endedAt: at(15), waitedMs: 300, probesSent: 8, probesFailed: 0, firstTargetAt: at(1) },
  },
  {
    name: 'recovery with N = 1',
    input: samples('OxxTxxx'),
    o: { recoveryCount: 1 },
    want: { downtimeMs: 40, gaps: [[at(1), at(3), 2]], recovered: true, recoveredAt: at(3), endedAt: at(3), waitedMs: 60, probesSent: 4, probesFailed: 2, firstTargetAt: at(3) },
  },
  {
    name: 'samples after the recovery are not considered',
    input: samples('OxTTTxxxx'),
    want: { downtimeMs: 20, gaps: [[at(1), at(2), 1]], recovered: true, recoveredAt: at(2), endedAt: at(4), waitedMs: 80, probesSent: 5, probesFailed: 1, firstTargetAt: at(2) },
  },
  {
    name: 'exact values to the ms with late sends (jitter)',
    input: samples('OOxxxTTT', { jitter: { 2: 1.5, 5: 3.25 } }),
    want: { downtimeMs: 61.75, gaps: [[at(2) + 1.5, at(5) + 3.25, 3]], recovered: true, recoveredAt: at(5) + 3.25, endedAt: at(7), waitedMs: 140, probesSent: 8, probesFailed: 3, firstTargetAt: at(5) + 3.25 },
  },
  {
    name: 'samples sent before startedAt are ignored',
    input: samples('xxOOxTTT'),
    o: { startedAt: at(2) },
    want: { downtimeMs: 20, gaps: [[at(4), at(5), 1]], recovered: true, recoveredAt: at(5), endedAt: at(7), waitedMs: 100, probesSent: 6, probesFailed: 1, firstTargetAt: at(5) },
  },
  {
    name: 'duplicate seq: the first result is kept',
    input: [...samples('OOxTTT'), ...samples('OOTTTT').slice(2, 3)],
    want: { downtimeMs: 20, gaps: [[at(2), at(3), 1]], recovered: true, recoveredAt: at(3), endedAt: at(5), waitedMs: 100, probesSent: 6, probesFailed: 1, firstTargetAt: at(3) },
  },
  {
    name: 'no identity (TCP/ICMP): answers count as the target from switchedAt',
    input: samples('AAAAxxAAA'),
    o: { switchedAt: at(4) },
    want: { downtimeMs: 40, gaps: [[at(4), at(6), 2]], recovered: true, recoveredAt: at(6), endedAt: at(8), waitedMs: 160, probesSent: 9, probesFailed: 2, firstTargetAt: at(6) },
  },
  {
    name: 'no identity and no switchedAt: any 3 answers end the measurement',
    input: samples('AAAAxxAAA'),
    want: { downtimeMs: 0, gaps: [], recovered: true, recoveredAt: at(0), endedAt: at(2), waitedMs: 40, probesSent: 3, probesFailed: 0, firstTargetAt: at(0) },
  },
  {
    name: 'requireIdentity: an answer without identity is a failure',
    input: samples('OOAATTT'),
    o: { requireIdentity: true },
    want: { downtimeMs: 40, gaps: [[at(2), at(4), 2]], recovered: true, recoveredAt: at(4), endedAt: at(6), waitedMs: 120, probesSent: 7, probesFailed: 2, firstTargetAt: at(4) },
  },
  {
    name: 'no samples at all',
    input: [],
    o: { now: T0 + 1000, deadlineAt: T0 + 600 },
    want: { downtimeMs: 0, gaps: [], recovered: false, waitedMs: 600, probesSent: 0, probesFailed: 0 },
  },
];

describe('computeDowntime', () => {
  test.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const r = computeDowntime(c.input, opts(c.o));
    const w = c.want;
    expect(r.downtimeMs).toBe(w.downtimeMs);
    expect(r.gaps).toEqual(w.gaps.map(([from, to, probes, open]) => (open ? { from, to, probes, open } : { from, to, probes })));
    expect(r.recovered).toBe(w.recovered);
    expect(r.recoveredAt).toBe(w.recoveredAt);
    expect(r.endedAt).toBe(w.endedAt);
    expect(r.waitedMs).toBe(w.waitedMs);
    expect(r.probesSent).toBe(w.probesSent);
    expect(r.probesFailed).toBe(w.probesFailed);
    expect(r.firstTargetAt).toBe(w.firstTargetAt);
    expect(r.clockSteps).toBe(w.clockSteps ?? 0);
    expect(r.wrongHosts).toEqual(w.wrongHosts ?? []);
  });

  test('responder names compare case-insensitively, trimmed', () => {
    const s = samples('OOTTT').map((x) => ({ ...x, responder: x.responder === 'transit-3' ? ' Transit-3 ' : 'SRV-42' }));
    expect(computeDowntime(s, opts())).toMatchObject({ downtimeMs: 0, recovered: true, recoveredAt: at(2) });
  });

  test('refuses samples of several addresses and bad options', () => {
    expect(() => computeDowntime([...samples('T'), ...samples('T', { address: '192.0.2.11' })], opts())).toThrow(RangeError);
    expect(() => computeDowntime([], opts({ recoveryCount: 0 }))).toThrow(RangeError);
    expect(() => computeDowntime([], opts({ intervalMs: 0 }))).toThrow(RangeError);
  });

  test('does not modify its input', () => {
    const input = shuffle(samples('OxxTTT'));
    const copy = JSON.parse(JSON.stringify(input));
    computeDowntime(input, opts());
    expect(input).toEqual(copy);
  });
});

describe('computeAllDowntime / isDone / tracker', () => {
  const a = samples('OOxxxTTT');
  const b = samples('OOOxTTTx', { address: '2001:db8::10' });
  const c = samples('OOxxxxxxx', { address: '192.0.2.12' });
  // under load: slots skipped, and a probe sent at seq 9 whose result is not in yet (in flight)
  const d = samples('OxT..TT.T', { address: '192.0.2.13' });
  const late = samples('OxT..T.x.T.TT.T', { address: '192.0.2.14' });

  test('every address, the max, and an address without samples', () => {
    const sum = computeAllDowntime(shuffle([...a, ...b]), opts(), [A, '2001:db8::10', '192.0.2.99']);
    expect(sum.addresses.map((r) => [r.address, r.downtimeMs, r.recovered])).toEqual([
      [A, 60, true],
      ['2001:db8::10', 20, true],
      ['192.0.2.99', 0, false],
    ]);
    expect(sum.maxDowntimeMs).toBe(60);
    expect(sum.allRecovered).toBe(false);
    expect(computeAllDowntime([...a, ...b], opts()).allRecovered).toBe(true);
  });

  test('isDone: all recovered, or the deadline passed', () => {
    expect(isDone([...a, ...b], opts())).toBe(true);
    expect(isDone([...a, ...c], opts())).toBe(false);
    expect(isDone([...a, ...c], opts({ deadlineAt: at(20) }))).toBe(false);
    expect(isDone([...a, ...c], opts({ deadlineAt: at(8) }))).toBe(true); // c's last probe was sent at at(8)
    expect(isDone([...a, ...c], opts({ deadlineAt: at(20), now: at(20) }))).toBe(true);
    expect(isDone([...a.slice(0, 7)], opts())).toBe(false); // only 2 target answers yet
  });

  test('the tracker agrees with isDone whatever the arrival order', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const tr = createDowntimeTracker(opts(), [A, '2001:db8::10']);
      const feed = shuffle([...a, ...b], seed);
      let doneAfter = -1;
      feed.forEach((s, i) => {
        tr.add(s);
        const want = isDone(feed.slice(0, i + 1), opts(), [A, '2001:db8::10']);
        expect(tr.isDone()).toBe(want);
        if (want && doneAfter < 0) doneAfter = i;
      });
      expect(tr.recovered(A)).toBe(true);
      expect(doneAfter).toBeGreaterThan(0);
    }
    // skipped slots: the same agreement, and no recovery while a probe sent inside the streak is in flight
    for (const seed of [1, 2, 3, 4, 5]) {
      const addresses = [A, '192.0.2.13', '192.0.2.14'];
      const tr = createDowntimeTracker(opts({ recoveryCount: 4 }), addresses);
      const feed = shuffle([...a, ...d, ...late], seed);
      feed.forEach((s, i) => {
        tr.add(s);
        expect(tr.isDone()).toBe(isDone(feed.slice(0, i + 1), opts({ recoveryCount: 4 }), addresses));
      });
      expect(tr.recovered('192.0.2.13')).toBe(true); // seqs 2, 5, 6, 8
      expect(tr.recovered('192.0.2.14')).toBe(true); // seqs 9, 11, 12, 14 (the timeout at 7 broke 2, 5)
    }
    const inFlight = samples('OxT..TTT', { address: '192.0.2.13' }).filter((s) => s.seq !== 6);
    const tr0 = createDowntimeTracker(opts({ recoveryCount: 4 }), ['192.0.2.13']);
    for (const s of inFlight) tr0.add(s);
    expect(tr0.recovered('192.0.2.13')).toBe(false);
    expect(computeDowntime(inFlight, opts({ recoveryCount: 4 })).recovered).toBe(false);
    tr0.add({ address: '192.0.2.13', seq: 6, sentAt: at(6), ok: false, rttMs: 200, reason: 'timeout' });
    expect(tr0.recovered('192.0.2.13')).toBe(false);

    const tr = createDowntimeTracker(opts({ deadlineAt: at(50) }), [A, '192.0.2.12']);
    for (const s of [...a, ...c]) tr.add(s);
    expect(tr.recovered(A)).toBe(true);
    expect(tr.recovered('192.0.2.12')).toBe(false);
    expect(tr.isDone()).toBe(false);
    expect(tr.isDone(at(50))).toBe(true);
  });
});

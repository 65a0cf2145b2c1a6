import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SampleStore, startProbeRunner, type Sample } from '../../src/health/probe-runner.js';
import { createHttpProber } from '../../src/health/http-prober.js';
import type { Prober, ProbeResult, ProbeTarget } from '../../src/health/prober.js';
import { computeDowntime } from '../../src/health/downtime.js';
import { waitFor } from '../support/wait-for.js';
import { blockEventLoop, startChildHttpServer, type ChildHttpServer } from './stall-support.js';

const A: ProbeTarget = { address: '192.0.2.10', family: 4 };
const B: ProbeTarget = { address: '2001:db8::10', family: 6 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fake prober: answers at once, except the probes listed in `hang` (per address, by call index) which never settle. */
function fakeProber(hang: Record<string, number[]> = {}, timeoutMs = 100): Prober & { calls: Map<string, number> } {
  const calls = new Map<string, number>();
  return {
    type: 'tcp',
    calls,
    probe(t: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
      const n = calls.get(t.address) ?? 0;
      calls.set(t.address, n + 1);
      if (hang[t.address]?.includes(n)) {
        // Honours its own timeout like a real prober would.
        return new Promise((r) => setTimeout(() => r({ ok: false, rttMs: timeoutMs, reason: 'timeout' }), timeoutMs));
      }
      if (hang['*ignore-signal*']?.includes(n)) return new Promise(() => undefined); // a broken prober: never settles
      void signal;
      return Promise.resolve({ ok: true, responder: 'srv-42', rttMs: 0.1 });
    },
  };
}

function jitter(samples: Sample[], startedAt: number, interval: number): { max: number; p50: number; p99: number } {
  const d = samples.map((s) => Math.abs(s.sentAt - (startedAt + s.seq * interval))).sort((a, b) => a - b);
  return { max: d[d.length - 1], p50: d[Math.floor(d.length / 2)], p99: d[Math.floor(d.length * 0.99)] };
}

describe('startProbeRunner', () => {
  test('fixed cadence while a probe hangs: the next probes are sent meanwhile, several are in flight', async () => {
    // The hanging probes take a second: far more than the interval, even on a loaded machine.
    const prober = fakeProber({ [A.address]: [3, 4, 5] }, 1000);
    const live: Sample[] = [];
    const r = startProbeRunner({ targets: [A, B], prober, intervalMs: 10, timeoutMs: 2000, onResult: (s) => live.push(s) });
    const ofA = () => live.filter((s) => s.address === A.address);
    await waitFor('the 3 hanging probes back and 30 results for A', () => ofA().filter((s) => !s.ok).length === 3 && ofA().length >= 30);
    const all = await r.stop();
    expect(all).toEqual(r.samples());
    expect(live.length).toBe(all.length);
    const a = all.filter((s) => s.address === A.address);
    const b = all.filter((s) => s.address === B.address);
    // Every slot is sent to every target; slots are numbered from 0 and only go up (late ones are skipped).
    expect(b.map((s) => s.seq)).toEqual(a.map((s) => s.seq));
    expect(a[0].seq).toBe(0);
    a.slice(1).forEach((s, i) => expect(s.seq).toBeGreaterThan(a[i].seq));
    // No probe is sent before its slot (a timer may fire a ms or two early against performance.now()).
    for (const s of all) expect(s.sentAt).toBeGreaterThanOrEqual(r.startedAt + s.seq * 10 - 5);
    // How close to its slot each probe went out is a precision figure (bench:probe measures it).
    const j = jitter(all, r.startedAt, 10);
    console.log(`cadence 10 ms: ${all.length} samples, |sentAt - n*interval| p50 ${j.p50.toFixed(3)} ms, p99 ${j.p99.toFixed(3)} ms, max ${j.max.toFixed(3)} ms`);
    // The hanging probes (calls 3..5) came back as timeouts, after probes sent later than them:
    // the runner did not wait for them, and results arrive in completion order.
    const hung = a.filter((s) => !s.ok);
    expect(hung.map((s) => s.reason)).toEqual(['timeout', 'timeout', 'timeout']);
    expect(hung.map((s) => s.seq)).toEqual(a.slice(3, 6).map((s) => s.seq));
    const liveA = ofA().map((s) => s.seq);
    const laterFirst = liveA.slice(0, liveA.indexOf(hung[0].seq)).filter((seq) => seq > hung[0].seq);
    expect(laterFirst.length).toBeGreaterThan(0);
    expect(liveA).not.toEqual([...liveA].sort((x, y) => x - y));
  });

  test('a prober that never settles is cut by the guard timeout, and stop() still returns', async () => {
    const prober = fakeProber({ '*ignore-signal*': [0, 1] });
    const r = startProbeRunner({ targets: [A], prober, intervalMs: 20, timeoutMs: 60 });
    await waitFor('3 probes sent', () => (prober.calls.get(A.address) ?? 0) >= 3);
    // stop() waits for the two probes that never settle: the guard (timeoutMs + 50 ms) ends them.
    const all = await Promise.race([r.stop(), sleep(10_000).then(() => 'stop() did not return within 10 s')]);
    expect(Array.isArray(all)).toBe(true);
    const samples = all as Sample[];
    // The first two probes sent (slot 0 and the next one not skipped) are the ones that never settled.
    expect(samples[0].seq).toBe(0);
    expect(samples.slice(0, 2).map((s) => [s.ok, s.reason])).toEqual([
      [false, 'timeout'],
      [false, 'timeout'],
    ]);
    expect(samples.length).toBeGreaterThanOrEqual(3);
    expect(samples.slice(2).every((s) => s.ok)).toBe(true);
  });

  test('bounded memory: the ring keeps the last N per address and counts the dropped', async () => {
    const r = startProbeRunner({ targets: [A, B], prober: fakeProber(), intervalMs: 10, timeoutMs: 100, maxSamplesPerAddress: 20 });
    // 40 dropped over both addresses: each has had at least 40 results (20 kept + 20 dropped).
    await waitFor('40 samples dropped', () => r.dropped() >= 40);
    const all = await r.stop();
    expect(all.filter((s) => s.address === A.address).length).toBe(20);
    expect(all.filter((s) => s.address === B.address).length).toBe(20);
    expect(r.dropped()).toBeGreaterThanOrEqual(40);
    const seqs = all.filter((s) => s.address === A.address).map((s) => s.seq);
    expect(seqs[seqs.length - 1]).toBeGreaterThan(30); // the newest are kept
    seqs.slice(1).forEach((q, i) => expect(q).toBeGreaterThan(seqs[i]));
  });

  test('stop() waits for the probes in flight and returns all of them', async () => {
    const prober = fakeProber({ [A.address]: Array.from({ length: 50 }, (_, i) => i) }, 80);
    const r = startProbeRunner({ targets: [A], prober, intervalMs: 10, timeoutMs: 200 });
    await waitFor('3 probes sent', () => (prober.calls.get(A.address) ?? 0) >= 3);
    const all = await r.stop();
    const sent = prober.calls.get(A.address)!;
    expect(all.length).toBe(sent);
    const seqs = all.map((s) => s.seq);
    expect(new Set(seqs).size).toBe(sent); // every probe sent came back (slots may be skipped under load)
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect(all.every((s) => s.reason === 'timeout')).toBe(true);
  });

  test('injected clock gives the send times; options are checked', async () => {
    let now = 1_000_000;
    const prober = fakeProber();
    const r = startProbeRunner({ targets: [A], prober, intervalMs: 20, clock: () => (now += 1) });
    await waitFor('3 probes sent', () => (prober.calls.get(A.address) ?? 0) >= 3);
    const all = await r.stop();
    expect(r.startedAt).toBe(1_000_001);
    expect(all.length).toBeGreaterThanOrEqual(3);
    all.forEach((s, i) => expect(s.sentAt).toBe(1_000_002 + i));
    expect(() => startProbeRunner({ targets: [A], prober: fakeProber(), intervalMs: 5 })).toThrow(RangeError);
    expect(() => startProbeRunner({ targets: [A, A], prober: fakeProber(), intervalMs: 20 })).toThrow(/duplicate/);
  });

  test('with the real HTTP prober on loopback, at 10 ms', async () => {
    const server = http.createServer((_q, s) => s.writeHead(200, { 'x-served-by': 'transit-3' }).end());
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    const port = (server.address() as AddressInfo).port;
    try {
      // A timeout of seconds: on a loaded machine a loopback answer may take a while, and a
      // timeout here would say nothing about the runner.
      const prober = createHttpProber({ port, path: '/', timeoutMs: 5000, identityHeader: 'x-served-by' });
      let results = 0;
      const r = startProbeRunner({ targets: [{ address: '127.0.0.1', family: 4 }], prober, intervalMs: 10, timeoutMs: 5000, onResult: () => results++ });
      await waitFor('40 results', () => results >= 40);
      const all = await r.stop();
      const rtts = all.map((s) => s.rttMs).sort((a, b) => a - b);
      const j = jitter(all, r.startedAt, 10);
      console.log(`http on loopback @10 ms: ${all.length} probes, rtt p50 ${rtts[rtts.length >> 1]} ms p99 ${rtts[Math.floor(rtts.length * 0.99)]} ms; send jitter p50 ${j.p50.toFixed(3)} p99 ${j.p99.toFixed(3)} ms`);
      expect(all.length).toBeGreaterThanOrEqual(40);
      expect(all.filter((s) => !s.ok || s.responder !== 'transit-3')).toEqual([]);
    } finally {
      server.closeAllConnections();
      await new Promise((res) => server.close(res));
    }
  });
});

describe('startProbeRunner when the controller stalls', () => {
  let child: ChildHttpServer;
  beforeAll(async () => {
    child = await startChildHttpServer('127.0.0.1', 'transit-3'); // answers while this process is blocked
  });
  afterAll(async () => {
    await child?.stop();
  });

  test('stalls longer than the timeout: no probe fails, skipped slots are marked and do not break the recovery streak', async () => {
    // a timeout the child meets even on a loaded machine; the stalls below are twice as long
    const http = createHttpProber({ port: child.port, path: '/', timeoutMs: 300, identityHeader: 'x-served-by' });
    let calls = 0;
    const stalls = [10, 30, 50];
    // The event loop blocks for 600 ms right after some probes were sent (their connect() issued):
    // the server answers meanwhile, and no slot can be sent on time during the stall.
    const prober: Prober = {
      type: 'http',
      probe(t, signal) {
        const p = http.probe(t, signal);
        if (stalls.includes(calls++)) process.nextTick(() => blockEventLoop(600));
        return p;
      },
    };
    const live: Sample[] = [];
    const r = startProbeRunner({ targets: [{ address: '127.0.0.1', family: 4 }], prober, intervalMs: 10, timeoutMs: 300, onResult: (s) => live.push(s) });
    await waitFor('70 results', () => live.length >= 70);
    const all = await r.stop();
    expect(all.filter((s) => !s.ok)).toEqual([]);
    const skipped = all.filter((s) => (s.skipped ?? 0) > 0);
    expect(skipped.length).toBeGreaterThanOrEqual(stalls.length);
    // every probe sent is seq - 1 - skipped after the previous one
    all.slice(1).forEach((s, i) => expect(s.seq - 1 - (s.skipped ?? 0)).toBe(all[i].seq));
    // all the probes sent answered from the target, in a row: the skipped slots do not break the streak
    const d = computeDowntime(all, { origin: 'srv-42', target: 'transit-3', intervalMs: 10, recoveryCount: all.length, startedAt: r.startedAt, requireIdentity: true });
    expect(d).toMatchObject({ recovered: true, downtimeMs: 0, probesFailed: 0, probesSent: all.length });
  });
});

describe('SampleStore', () => {
  test('round-trips samples compactly, keeps the newest, interns strings', () => {
    const st = new SampleStore(100);
    for (let i = 0; i < 1000; i++) {
      st.add({ address: A.address, seq: i, sentAt: 1.7e12 + i * 10 + 0.125, ok: i % 3 !== 0, rttMs: 1.5, ...(i % 3 === 0 ? { reason: 'timeout' } : { responder: i % 2 ? 'srv-42' : 'transit-3' }), ...(i === 902 ? { skipped: 70_000 } : {}) });
    }
    const all = st.all();
    expect(all.length).toBe(100);
    expect(st.dropped()).toBe(900);
    expect(all[0]).toEqual({ address: A.address, seq: 900, sentAt: 1.7e12 + 9000.125, ok: false, rttMs: 1.5, reason: 'timeout' });
    expect(all[1]).toEqual({ address: A.address, seq: 901, sentAt: 1.7e12 + 9010.125, ok: true, rttMs: 1.5, responder: 'srv-42' });
    expect(all[2]).toEqual({ address: A.address, seq: 902, skipped: 70_000, sentAt: 1.7e12 + 9020.125, ok: true, rttMs: 1.5, responder: 'transit-3' });
    expect(all[99].seq).toBe(999);
  });
});

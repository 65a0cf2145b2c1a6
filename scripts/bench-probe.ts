/**
 * npm run bench:probe: how fast and how precise the health probes are on this machine, on
 * loopback. Prints figures, asserts nothing (the tests check behaviour; speed and precision
 * depend on the machine and its load, so they are measured here):
 * - the probe runner's cadence at 10 ms (a prober that answers at once): how far each probe went
 *   out from its slot (p50/p99/max) and how many slots were skipped;
 * - round-trip times of the HTTP and TCP probers on 127.0.0.1 and ::1, and of the ICMP prober
 *   (one fping per probe: fping's RTT and the wall time per probe);
 * - how late a timeout ends a probe (HTTP against a server that accepts and never answers);
 * - fping loop mode at 20 ms: how many steps between consecutive send times are the interval to
 *   within 1 ms, and the largest deviation.
 * ICMP parts are skipped when fping is missing.
 *
 *   BENCH_SECONDS (default 5): duration of the cadence runs; BENCH_PROBES (default 500): probes per RTT figure.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHttpProber } from '../src/health/http-prober.js';
import { createIcmpProber, locateExecutable, startIcmpLoop } from '../src/health/icmp-prober.js';
import { startProbeRunner, type Sample } from '../src/health/probe-runner.js';
import type { Prober, ProbeTarget } from '../src/health/prober.js';
import { createTcpProber } from '../src/health/tcp-prober.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const PROBES = Number(process.env.BENCH_PROBES ?? 500);
const V4: ProbeTarget = { address: '127.0.0.1', family: 4 };
const V6: ProbeTarget = { address: '::1', family: 6 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
const fmt = (xs: number[]): string => {
  const s = [...xs].sort((a, b) => a - b);
  return `p50 ${pct(s, 0.5).toFixed(3)} ms, p99 ${pct(s, 0.99).toFixed(3)} ms, max ${s[s.length - 1].toFixed(3)} ms (n=${s.length})`;
};

async function cadence(): Promise<void> {
  const instant: Prober = { type: 'tcp', probe: async () => ({ ok: true, rttMs: 0 }) };
  const r = startProbeRunner({ targets: [V4, V6], prober: instant, intervalMs: 10, timeoutMs: 1000 });
  await sleep(SECONDS * 1000);
  const all = await r.stop();
  const mine = all.filter((s) => s.address === V4.address);
  const late = all.map((s) => s.sentAt - (r.startedAt + s.seq * 10));
  const lastSeq = mine[mine.length - 1].seq;
  console.log(`runner cadence @10 ms, ${SECONDS} s, 2 targets: sentAt - slot ${fmt(late)}; min ${Math.min(...late).toFixed(3)} ms; slots skipped ${lastSeq + 1 - mine.length} of ${lastSeq + 1}`);
}

async function rtts(name: string, prober: Prober, t: ProbeTarget, n = PROBES): Promise<void> {
  const rtt: number[] = [];
  const wall: number[] = [];
  let failed = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await prober.probe(t);
    wall.push(performance.now() - t0);
    if (r.ok) rtt.push(r.rttMs);
    else failed++;
  }
  console.log(`${name} on ${t.address}: rtt ${rtt.length ? fmt(rtt) : 'none'}; wall per probe ${fmt(wall)}; failed ${failed}`);
}

async function timeouts(port: number): Promise<void> {
  const over: number[] = [];
  const p = createHttpProber({ port, path: '/hang', timeoutMs: 150 });
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const r = await p.probe(V4);
    if (r.reason === 'timeout') over.push(performance.now() - t0 - 150);
  }
  console.log(`http timeout 150 ms against a server that never answers: end - timeout ${fmt(over)}`);
}

async function icmpLoop(): Promise<void> {
  const r = startIcmpLoop({ targets: [V4, V6], intervalMs: 20, timeoutMs: 1000 });
  await sleep(SECONDS * 1000);
  const all = await r.stop();
  for (const t of [V4, V6]) {
    const mine: Sample[] = all.filter((s) => s.address === t.address && s.ok);
    const err = mine.slice(1).map((s, i) => Math.abs(s.sentAt - mine[i].sentAt - 20));
    const exact = err.filter((e) => e < 1).length;
    console.log(`fping loop @20 ms on ${t.address}: ${mine.length} replies; steps within 1 ms of 20 ms: ${exact} of ${err.length} (${((100 * exact) / Math.max(1, err.length)).toFixed(1)}%), largest deviation ${Math.max(0, ...err).toFixed(3)} ms`);
  }
}

async function main(): Promise<void> {
  const held: http.ServerResponse[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url === '/hang') held.push(res);
    else res.writeHead(200, { 'x-served-by': 'bench' }).end('ok');
  };
  const servers: http.Server[] = [];
  const ports: Record<string, number> = {};
  for (const host of ['127.0.0.1', '::1']) {
    const s = http.createServer(handler);
    await new Promise<void>((r) => s.listen(0, host, r));
    servers.push(s);
    ports[host] = (s.address() as AddressInfo).port;
  }
  try {
    await cadence();
    for (const t of [V4, V6]) {
      await rtts('http prober', createHttpProber({ port: ports[t.address], path: '/', timeoutMs: 5000, identityHeader: 'x-served-by' }), t);
      await rtts('tcp prober', createTcpProber({ port: ports[t.address], timeoutMs: 5000 }), t);
    }
    await timeouts(ports['127.0.0.1']);
    let fping = true;
    try {
      locateExecutable('fping');
    } catch {
      fping = false;
      console.log('fping not installed: ICMP figures skipped');
    }
    if (fping) {
      for (const t of [V4, V6]) await rtts('icmp prober (one fping per probe)', createIcmpProber({ timeoutMs: 5000, graceMs: 5000 }), t, 50);
      await icmpLoop();
    }
  } finally {
    for (const r of held) r.destroy();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createHttpProber } from '../../src/health/http-prober.js';
import { createTcpProber } from '../../src/health/tcp-prober.js';
import { createIcmpProber, DEFAULT_FPING_GRACE_MS, FpingMissingError, locateExecutable, startIcmpLoop } from '../../src/health/icmp-prober.js';
import type { Sample } from '../../src/health/probe-runner.js';
import type { ProbeTarget } from '../../src/health/prober.js';
import { waitFor } from '../support/wait-for.js';
import { blockEventLoop, childPids, stallFromCheckPhase, startChildHttpServer, type ChildHttpServer } from './stall-support.js';

/*
 * Timing: these tests assert outcomes (ok, responder, reason) and that timeouts fire, never how
 * fast loopback answers (`npm run bench:probe` prints that). A probe expected to succeed gets a
 * timeout of seconds (OK_MS) so that a loaded machine cannot turn it into a timeout; a probe
 * expected to time out is checked against a bound with seconds of slack (LATE_MS), and not before
 * its timeout (timers may fire up to ~1 ms early against performance.now(), hence EARLY_MS).
 */
const OK_MS = 5000;
const LATE_MS = 3000;
const EARLY_MS = 2;

const V4: ProbeTarget = { address: '127.0.0.1', family: 4 };
const V6: ProbeTarget = { address: '::1', family: 6 };
const FAMILIES = [V4, V6];

/** A test HTTP server on both loopbacks; behaviour chosen by path. */
let server4: http.Server;
let server6: http.Server;
let port4 = 0;
let port6 = 0;
const connections = { count: 0 };
const hosts: string[] = [];
const held: http.ServerResponse[] = [];

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  hosts.push(req.headers.host ?? '');
  const url = req.url ?? '/';
  if (url === '/id') {
    res.writeHead(200, { 'x-served-by': 'srv-42' }).end('ok');
  } else if (url === '/body') {
    res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body><p>served by <b>transit-3</b></p></body></html>');
  } else if (url === '/503') {
    res.writeHead(503, { 'x-served-by': 'srv-42' }).end('maintenance');
  } else if (url === '/redirect') {
    res.writeHead(302, { location: '/id', 'x-served-by': 'srv-42' }).end();
  } else if (url === '/hang') {
    held.push(res); // accepts, reads the request, never answers
  } else if (url.startsWith('/slow/')) {
    const timer = setTimeout(() => res.writeHead(200, { 'x-served-by': 'slow-1' }).end('late'), Number(url.slice(6)));
    res.on('close', () => clearTimeout(timer)); // the client gave up: no answer to write
  } else {
    res.writeHead(404).end();
  }
}

async function listen(host: string): Promise<[http.Server, number]> {
  const s = http.createServer(handler);
  s.on('connection', () => connections.count++);
  await new Promise<void>((r) => s.listen(0, host, r));
  return [s, (s.address() as AddressInfo).port];
}

/** A port on which nothing listens (bound, then closed). */
async function closedPort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

beforeAll(async () => {
  [server4, port4] = await listen('127.0.0.1');
  [server6, port6] = await listen('::1');
});
afterAll(async () => {
  for (const r of held) r.destroy();
  for (const s of [server4, server6]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});
const portOf = (t: ProbeTarget): number => (t.family === 4 ? port4 : port6);

describe.each(FAMILIES.map((t) => [t.address, t] as const))('HTTP prober on %s', (_a, t) => {
  test('identity from a header; 2xx is ok; a fresh connection per probe', async () => {
    const p = createHttpProber({ port: portOf(t), path: '/id', timeoutMs: OK_MS, identityHeader: 'X-Served-By' });
    const before = connections.count;
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await p.probe(t));
    for (const r of results) {
      expect(r).toMatchObject({ ok: true, responder: 'srv-42' });
      expect(r.reason).toBeUndefined();
      expect(r.rttMs).toBeGreaterThan(0);
    }
    expect(connections.count - before).toBe(3); // agent: false, no keep-alive
    expect(hosts[hosts.length - 1]).toBe(t.family === 6 ? `[::1]:${portOf(t)}` : `127.0.0.1:${portOf(t)}`);
  });

  test('identity from the body pattern; Host header override', async () => {
    const p = createHttpProber({ port: portOf(t), path: '/body', host: 'www.example.org', timeoutMs: OK_MS, identityHeader: 'x-served-by', bodyPattern: '<b>([a-z0-9-]+)</b>' });
    expect(await p.probe(t)).toMatchObject({ ok: true, responder: 'transit-3' });
    expect(hosts[hosts.length - 1]).toBe('www.example.org');
  });

  test('3xx is ok (not followed); 503 is not, with its status as reason and the responder kept', async () => {
    expect(await createHttpProber({ port: portOf(t), path: '/redirect', timeoutMs: OK_MS, identityHeader: 'x-served-by' }).probe(t)).toMatchObject({ ok: true, responder: 'srv-42' });
    const r = await createHttpProber({ port: portOf(t), path: '/503', timeoutMs: OK_MS, identityHeader: 'x-served-by' }).probe(t);
    expect(r).toMatchObject({ ok: false, reason: 'http-status-503', responder: 'srv-42' });
    expect((await createHttpProber({ port: portOf(t), path: '/nope', timeoutMs: OK_MS }).probe(t)).reason).toBe('http-status-404');
  });

  test('a server that accepts but never answers: timeout, not before it, and the probe ends', async () => {
    const p = createHttpProber({ port: portOf(t), path: '/hang', timeoutMs: 150, identityHeader: 'x-served-by' });
    const t0 = performance.now();
    const r = await p.probe(t);
    const took = performance.now() - t0;
    expect(r).toMatchObject({ ok: false, reason: 'timeout' });
    expect(took).toBeGreaterThanOrEqual(150 - EARLY_MS);
    expect(took).toBeLessThan(150 + LATE_MS);
  });

  test('a slow server: ok within the timeout, timeout beyond it', async () => {
    const ok = await createHttpProber({ port: portOf(t), path: '/slow/80', timeoutMs: OK_MS, identityHeader: 'x-served-by' }).probe(t);
    expect(ok).toMatchObject({ ok: true, responder: 'slow-1' });
    expect(ok.rttMs).toBeGreaterThanOrEqual(80 - EARLY_MS);
    // The answer comes 2 s after the request: the 100 ms timeout always fires first.
    const late = await createHttpProber({ port: portOf(t), path: '/slow/2000', timeoutMs: 100, identityHeader: 'x-served-by' }).probe(t);
    expect(late).toMatchObject({ ok: false, reason: 'timeout' });
    expect(late.rttMs).toBeGreaterThanOrEqual(100 - EARLY_MS);
    expect(late.rttMs).toBeLessThan(2000);
  });

  test('a refused port', async () => {
    const r = await createHttpProber({ port: await closedPort(t.address), path: '/', timeoutMs: OK_MS }).probe(t);
    expect(r).toMatchObject({ ok: false, reason: 'refused' });
  });

  test('abort signal, bad address: results, never throws', async () => {
    const p = createHttpProber({ port: portOf(t), path: '/hang', timeoutMs: OK_MS });
    const ac = new AbortController();
    const probed = p.probe(t, ac.signal);
    // Abort once the server holds the request (the probe is certainly in flight then).
    const heldBefore = held.length;
    await waitFor('the server to hold the request', () => held.length > heldBefore);
    ac.abort();
    expect(await probed).toMatchObject({ ok: false, reason: 'aborted' });
    expect(await p.probe({ address: 'localhost', family: 4 })).toMatchObject({ ok: false, reason: 'bad-address' });
    expect(await p.probe({ address: '::1', family: 4 })).toMatchObject({ ok: false, reason: 'bad-address' });
  });
});

describe('HTTP prober options', () => {
  test('invalid settings throw at construction', () => {
    expect(() => createHttpProber({ port: 0, path: '/', timeoutMs: 100 })).toThrow(RangeError);
    expect(() => createHttpProber({ port: 80, path: 'x', timeoutMs: 100 })).toThrow(RangeError);
    expect(() => createHttpProber({ port: 80, path: '/a b', timeoutMs: 100 })).toThrow(RangeError);
    expect(() => createHttpProber({ port: 80, path: '/', timeoutMs: 0 })).toThrow(RangeError);
    expect(() => createHttpProber({ port: 80, path: '/', timeoutMs: 100, bodyPattern: '(' })).toThrow(SyntaxError);
  });
});

describe.each(FAMILIES.map((t) => [t.address, t] as const))('TCP prober on %s', (_a, t) => {
  test('connects to a listening port; refused on a closed one', async () => {
    const ok = await createTcpProber({ port: portOf(t), timeoutMs: OK_MS }).probe(t);
    expect(ok.ok).toBe(true);
    expect(ok.responder).toBeUndefined();
    expect(ok.rttMs).toBeGreaterThan(0);
    expect(await createTcpProber({ port: await closedPort(t.address), timeoutMs: OK_MS }).probe(t)).toMatchObject({ ok: false, reason: 'refused' });
  });
});

/*
 * A stall of the controller (its event loop blocked longer than the probe timeout) while the peer
 * answers at once: the answer is there when the controller resumes, so the probe is not a timeout.
 * The server runs in a child process (it answers during the stall). The stall starts right after
 * the probe's connect() was issued (process.nextTick runs after net's own connect tick): the kernel
 * completes the handshake during it, and HTTP still has to write its request afterwards.
 */
describe.each(FAMILIES.map((t) => [t.address, t] as const))('controller stalls on %s', (_a, t) => {
  let child: ChildHttpServer;
  beforeAll(async () => {
    child = await startChildHttpServer(t.address, 'transit-3');
  });
  afterAll(async () => {
    await child?.stop();
  });
  const STALL_MS = 400;

  test('TCP: a stall longer than the timeout right after connect() is not a timeout', async () => {
    const p = createTcpProber({ port: child.port, timeoutMs: 100 });
    const probed = p.probe(t);
    process.nextTick(() => blockEventLoop(STALL_MS));
    expect(await probed).toMatchObject({ ok: true });
  });

  test('HTTP: a stall longer than the timeout before the request was written is not a timeout', async () => {
    const p = createHttpProber({ port: child.port, path: '/', timeoutMs: 100, identityHeader: 'x-served-by' });
    const probed = p.probe(t);
    process.nextTick(() => blockEventLoop(STALL_MS));
    expect(await probed).toMatchObject({ ok: true, responder: 'transit-3' });
  });

  test('HTTP: an answer that arrived during a stall longer than the timeout is read, not a timeout', async () => {
    // the server answers 50 ms after the request; the controller stalls from ~20 ms for STALL_MS
    const p = createHttpProber({ port: child.port, path: '/slow/50', timeoutMs: 100, identityHeader: 'x-served-by' });
    const probed = p.probe(t);
    setTimeout(() => void stallFromCheckPhase(STALL_MS), 20);
    expect(await probed).toMatchObject({ ok: true, responder: 'transit-3' });
  });

  test('a genuine timeout still is one, stall or not', async () => {
    const p = createHttpProber({ port: child.port, path: '/slow/5000', timeoutMs: 100, identityHeader: 'x-served-by' });
    const probed = p.probe(t);
    process.nextTick(() => blockEventLoop(STALL_MS));
    expect(await probed).toMatchObject({ ok: false, reason: 'timeout' });
    expect(await p.probe(t)).toMatchObject({ ok: false, reason: 'timeout' });
  });
});

const hasPython = (() => {
  try {
    locateExecutable('python3');
    return true;
  } catch {
    return false;
  }
})();

(hasPython ? describe : describe.skip)('TCP prober timeout', () => {
  test('a listener whose accept queue is full drops SYNs: timeout, not before it, and the probe ends', async () => {
    // python3 listens with backlog 0 and never accepts: once one connection waits in its accept
    // queue, the queue is full and the kernel drops further SYNs.
    const { spawn } = await import('node:child_process');
    const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const fillers: net.Socket[] = [];
    try {
      const port = await new Promise<number>((r) => py.stdout.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
      let connected = 0;
      for (let i = 0; i < 3; i++) fillers.push(net.connect(port, '127.0.0.1').on('connect', () => connected++).on('error', () => undefined));
      await waitFor('a filler connection in the accept queue', () => connected > 0);
      const t0 = performance.now();
      const r = await createTcpProber({ port, timeoutMs: 300 }).probe(V4);
      const took = performance.now() - t0;
      expect(r).toMatchObject({ ok: false, reason: 'timeout' });
      expect(took).toBeGreaterThanOrEqual(300 - EARLY_MS);
      expect(took).toBeLessThan(300 + LATE_MS);
    } finally {
      for (const f of fillers) f.destroy();
      py.kill('SIGKILL');
    }
  });
});

const hasFping = (() => {
  try {
    locateExecutable('fping');
    return true;
  } catch {
    return false;
  }
})();

describe('ICMP prober', () => {
  test('a missing fping is an error at construction', () => {
    expect(() => createIcmpProber({ timeoutMs: 100, fping: '/nonexistent/fping' })).toThrow(FpingMissingError);
    expect(() => startIcmpLoop({ targets: [V4], intervalMs: 20, timeoutMs: 100, fping: 'fping-not-installed' })).toThrow(/fping not found/);
  });

  (hasFping ? test : test.skip).each(FAMILIES.map((t) => [t.address, t] as const))('fping answers from %s', async (_a, t) => {
    const p = createIcmpProber({ timeoutMs: OK_MS, graceMs: LATE_MS });
    const r = await p.probe(t);
    expect(r.ok).toBe(true);
    expect(r.rttMs).toBeGreaterThan(0);
    expect(await p.probe({ address: '-h', family: 4 })).toMatchObject({ ok: false, reason: 'bad-address' });
  });

  (hasFping ? test : test.skip)('a stall of the controller while fping answers and exits is not a timeout', async () => {
    const timeoutMs = 100;
    const p = createIcmpProber({ timeoutMs, graceMs: 50 });
    for (const t of FAMILIES) {
      const probed = p.probe(t);
      blockEventLoop(timeoutMs + 50 + 600); // fping starts, answers and exits meanwhile
      expect(await probed).toMatchObject({ ok: true });
    }
  });

  (hasFping ? test : test.skip)('the default grace covers a slow fping start', async () => {
    // An fping that takes 200 ms to start (a loaded machine: 27-113 ms were measured): a fixed
    // script that waits, then runs the real fping with the arguments it was given.
    const dir = mkdtempSync(join(tmpdir(), 'fch-fping-'));
    try {
      const fake = join(dir, 'slow-fping');
      writeFileSync(fake, `#!/bin/sh\nsleep 0.2\nexec '${locateExecutable('fping')}' "$@"\n`);
      chmodSync(fake, 0o755);
      expect(DEFAULT_FPING_GRACE_MS).toBeGreaterThanOrEqual(113);
      const r = await createIcmpProber({ timeoutMs: 100, fping: fake }).probe(V4);
      expect([r.ok, r.reason]).toEqual([true, undefined]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  (hasFping ? test : test.skip)('loop mode: a stall of the controller longer than timeout + slack loses no reply', async () => {
    const got: Sample[] = [];
    const loop = startIcmpLoop({ targets: FAMILIES, intervalMs: 20, timeoutMs: 100, onResult: (s) => got.push(s) });
    try {
      await waitFor('5 results per address', () => FAMILIES.every((t) => got.filter((s) => s.address === t.address).length >= 5));
      // fping keeps probing and printing replies into the pipe meanwhile (~100 lines, far under its 64 KiB)
      await stallFromCheckPhase(1000);
      const after = got.length;
      await waitFor('results sent after the stall', () => got.length > after + 2 * 60);
    } finally {
      await loop.stop();
    }
    const bad = got.filter((s) => !s.ok);
    expect(bad).toEqual([]);
    for (const t of FAMILIES) got.filter((s) => s.address === t.address).forEach((s, i) => expect(s.seq).toBe(i));
  });

  (hasFping ? test : test.skip)('loop mode: fping stopped for a while prints late, and its lines are not overtaken by no-reply', async () => {
    const got: Sample[] = [];
    const loop = startIcmpLoop({ targets: FAMILIES, intervalMs: 20, timeoutMs: 100, onResult: (s) => got.push(s) });
    try {
      await waitFor('5 results per address', () => FAMILIES.every((t) => got.filter((s) => s.address === t.address).length >= 5));
      const [pid] = childPids('fping');
      expect(pid).toBeGreaterThan(0);
      // fping descheduled for 500 ms (as on a loaded machine): what it sent before is reported late
      process.kill(pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, 500));
      process.kill(pid, 'SIGCONT');
      const after = got.length;
      await waitFor('results after fping resumed', () => got.length > after + 2 * 40);
    } finally {
      await loop.stop();
    }
    // every seq is reported by fping itself: replies, or `timed out` for a reply it read too late
    expect(got.filter((s) => s.reason !== undefined && s.reason !== 'timeout')).toEqual([]);
    for (const t of FAMILIES) got.filter((s) => s.address === t.address).forEach((s, i) => expect(s.seq).toBe(i));
  });

  (hasFping ? test : test.skip)('loop mode on both loopbacks: every seq reported, all ok, send times on a fixed schedule', async () => {
    const got: Sample[] = [];
    const loop = startIcmpLoop({ targets: FAMILIES, intervalMs: 20, timeoutMs: 1000, onResult: (s) => got.push(s) });
    await waitFor('15 results per address', () => FAMILIES.every((t) => got.filter((s) => s.address === t.address).length >= 15));
    const all = await loop.stop();
    for (const t of FAMILIES) {
      const mine = all.filter((s) => s.address === t.address);
      expect(mine.length).toBeGreaterThanOrEqual(15);
      expect(mine.filter((s) => !s.ok)).toEqual([]);
      mine.forEach((s, i) => expect(s.seq).toBe(i));
      // sentAt = origin + seq x interval, with the origin estimated from fping's replies; the estimate
      // only ever moves earlier, so no step between consecutive send times exceeds the interval
      // (send times taken from arrival times would jitter both ways). How often a step is exact is
      // a precision figure: bench:probe prints it.
      const steps = mine.slice(1).map((s, i) => s.sentAt - mine[i].sentAt);
      expect(steps.filter((d) => d > 20 + 0.002)).toEqual([]);
      expect(mine.at(-1)!.sentAt - mine[0].sentAt).toBeLessThanOrEqual((mine.length - 1) * 20 + 0.002);
    }
    expect(got.length).toBe(all.length);
  });
});

/** A network namespace of our own, with documentation prefixes routed nowhere. */
const NS = `fch-${process.pid}`;
function nsSetup(): boolean {
  if (!hasFping) return false;
  try {
    execFileSync('ip', ['netns', 'add', NS], { stdio: 'ignore' });
  } catch {
    return false;
  }
  try {
    const ip = (...a: string[]): void => void execFileSync('ip', ['-n', NS, ...a], { stdio: 'ignore' });
    ip('link', 'set', 'lo', 'up');
    ip('addr', 'add', '192.0.2.1/32', 'dev', 'lo');
    ip('route', 'add', '192.0.2.0/24', 'dev', 'lo'); // sent, never answered: timeout
    ip('route', 'add', 'unreachable', '198.51.100.0/24'); // send error: unreachable
    ip('-6', 'addr', 'add', '2001:db8::1/128', 'dev', 'lo');
    ip('-6', 'route', 'add', '2001:db8::/64', 'dev', 'lo');
    return true;
  } catch {
    nsCleanup();
    return false;
  }
}
function nsCleanup(): void {
  try {
    execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
}

describe('ICMP failures inside a network namespace', () => {
  let ok = false;
  beforeAll(() => {
    ok = nsSetup();
    process.once('exit', nsCleanup); // even if the suite dies
  });
  afterAll(nsCleanup);
  const prefix = ['ip', 'netns', 'exec', NS];

  test('timeout, unreachable, and loopback still answering', async () => {
    if (!ok) return console.warn('skipped: no netns (needs root and fping)');
    // A long grace lets fping itself report (its start through ip netns exec and its exit can be
    // slow on a loaded machine); a reply on loopback gets a whole second.
    const timeoutMs = 1000;
    const graceMs = LATE_MS;
    const p = createIcmpProber({ timeoutMs, graceMs, argvPrefix: prefix });
    const t0 = performance.now();
    const [a, b, c, d] = await Promise.all([
      p.probe({ address: '192.0.2.99', family: 4 }),
      p.probe({ address: '198.51.100.1', family: 4 }),
      p.probe({ address: '2001:db8::99', family: 6 }),
      p.probe(V4),
    ]);
    // Every probe ends by timeout + grace (the rest is slack for a loaded machine).
    expect(performance.now() - t0).toBeLessThan(timeoutMs + graceMs + LATE_MS);
    expect(a).toMatchObject({ ok: false, reason: 'timeout' });
    expect(b).toMatchObject({ ok: false, reason: 'unreachable' });
    expect(c).toMatchObject({ ok: false, reason: 'timeout' });
    expect(d.ok).toBe(true);
  });

  test('loop mode: timed-out and silent (no route) addresses become failures at their send times', async () => {
    if (!ok) return;
    const targets: ProbeTarget[] = [V4, { address: '192.0.2.99', family: 4 }, { address: '198.51.100.1', family: 4 }];
    const got: Sample[] = [];
    // A timeout of a second: fping and this process may both be descheduled for a while on a loaded machine.
    const loop = startIcmpLoop({ targets, intervalMs: 20, timeoutMs: 1000, argvPrefix: prefix, onResult: (s) => got.push(s) });
    await waitFor('20 results per address', () => targets.every((t) => got.filter((s) => s.address === t.address).length >= 20));
    const all = await loop.stop();
    const by = (a: string) => all.filter((s) => s.address === a);
    expect(by('127.0.0.1').filter((s) => !s.ok)).toEqual([]);
    for (const a of ['192.0.2.99', '198.51.100.1']) {
      const l = by(a);
      expect(l.length).toBeGreaterThanOrEqual(20);
      expect(l.filter((s) => s.ok)).toEqual([]);
      l.forEach((s, i) => expect(s.seq).toBe(i));
    }
    // fping says "timed out" for 192.0.2.99 (sent, never answered) and nothing for 198.51.100.1 (a
    // send error): the runner records fping's timeouts as such, and the seqs fping is silent about as
    // no-reply. A timed-out line that fping prints later than the runner's slack (100 ms) after the
    // timeout is also recorded as no-reply, which a loaded machine can cause: hence "some".
    expect(by('192.0.2.99').filter((s) => s.reason !== 'timeout' && s.reason !== 'no-reply')).toEqual([]);
    expect(by('192.0.2.99').some((s) => s.reason === 'timeout')).toBe(true);
    expect(by('198.51.100.1').filter((s) => s.reason !== 'no-reply')).toEqual([]);
  });
});

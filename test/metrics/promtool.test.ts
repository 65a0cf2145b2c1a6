/**
 * /metrics is valid Prometheus text that `promtool check metrics` accepts without a single lint
 * warning, carries the required metrics with the right types, and counts exactly the queries we
 * send, per transport and rcode.
 *
 * Needs promtool: Debian package `prometheus` (apt-get install prometheus).
 */
import { describe, test, expect, beforeAll, afterAll } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startController, REPO_ROOT, type ControllerHandle } from '../support/controller.js';
import { buildQuery, decode, delay, rcodeName, tcpQuery, udpExchange, RC, T } from '../dns/tiny-dns.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'robustness');

function findPromtool(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/bin', '/usr/local/bin'];
  for (const d of dirs) if (existsSync(join(d, 'promtool'))) return join(d, 'promtool');
  return null;
}

function promtoolCheck(bin: string, text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, ['check', 'metrics'], { timeout: 20_000 }, (err, stdout, stderr) => {
      // On a non-zero exit, err.code is the exit status; otherwise it is a spawn error (ENOENT...).
      const status: unknown = err ? (err as { code?: unknown }).code : 0;
      if (typeof status !== 'number') return reject(err);
      resolve({ code: status, out: `${stdout}${stderr}` });
    });
    child.stdin!.end(text);
  });
}

// ---------------------------------------------------------------------------------------------
// A small parser of the Prometheus text format (0.0.4).

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Exposition { types: Map<string, string>; help: Map<string, string>; samples: Sample[] }

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) out[m[1]] = m[2].replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
  return out;
}

function parseExposition(text: string): Exposition {
  const e: Exposition = { types: new Map(), help: new Map(), samples: [] };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let m = /^# (TYPE|HELP) (\S+) ?(.*)$/.exec(line);
    if (m) {
      (m[1] === 'TYPE' ? e.types : e.help).set(m[2], m[3]);
      continue;
    }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    e.samples.push({ name: m[1], labels: m[2] ? parseLabels(m[2]) : {}, value: Number(m[3]) });
  }
  return e;
}

/** rcode label value in canonical form ("NXDOMAIN"), whether exported as a name or a number. */
const normRcode = (v: string | undefined) => (v === undefined ? '?' : /^\d+$/.test(v) ? rcodeName(Number(v)) : v.toUpperCase());

/** failover_dns_queries_total summed per "transport/RCODE". */
function queryCounts(e: Exposition): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of e.samples) {
    if (s.name !== 'failover_dns_queries_total') continue;
    const k = `${(s.labels.transport ?? '?').toLowerCase()}/${normRcode(s.labels.rcode)}`;
    m.set(k, (m.get(k) ?? 0) + s.value);
  }
  return m;
}

const sum = (e: Exposition, name: string) => e.samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);

// ---------------------------------------------------------------------------------------------

describe('/metrics', () => {
  let ctl: ControllerHandle;
  let promtool: string | null;

  beforeAll(async () => {
    promtool = findPromtool();
    ctl = await startController({ zonesDir: ZONES });
  }, 70_000);
  afterAll(async () => {
    if (ctl) await ctl.stop();
  });

  const scrape = async () => {
    const r = await fetch(`http://127.0.0.1:${ctl.apiPort}/metrics`);
    return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
  };

  test('promtool is installed', () => {
    if (!promtool) {
      throw new Error('promtool not found on PATH: install the Debian package "prometheus" (apt-get install -y prometheus)');
    }
  });

  test('/healthz, /readyz and /metrics need no token', async () => {
    for (const p of ['/healthz', '/readyz', '/metrics']) expect({ p, status: (await ctl.get(p, false)).status }).toEqual({ p, status: 200 });
  });

  // Filled by the first test, checked by the next ones (each reports on its own).
  let before: Exposition;
  let after: Exposition;
  let afterRaw: { status: number; type: string; body: string };
  let expected: Record<string, number> = {};
  let total = 0;

  /** failover_dns_queries_total deltas (after - before) per "transport/RCODE", zeros left out. */
  const deltas = (b: Exposition, a: Exposition) => {
    const bc = queryCounts(b);
    const ac = queryCounts(a);
    const d: Record<string, number> = {};
    for (const k of [...new Set([...bc.keys(), ...ac.keys()])].sort()) {
      const v = (ac.get(k) ?? 0) - (bc.get(k) ?? 0);
      if (v !== 0) d[k] = v;
    }
    return d;
  };

  test('send UDP and TCP queries (NOERROR, NXDOMAIN, REFUSED) and scrape before and after', async () => {
    const b = await scrape();
    expect(b.status).toBe(200);
    before = parseExposition(b.body);

    // What we send, and the rcode each must get.
    const plan: { transport: 'udp' | 'tcp'; name: string; type: number; rcode: number; n: number }[] = [
      { transport: 'udp', name: 'www.robust.example.', type: T.A, rcode: RC.NOERROR, n: 5 },
      { transport: 'udp', name: 'www.robust.example.', type: T.AAAA, rcode: RC.NOERROR, n: 2 },
      { transport: 'udp', name: 'nope.robust.example.', type: T.A, rcode: RC.NXDOMAIN, n: 3 },
      { transport: 'udp', name: 'www.example.org.', type: T.A, rcode: RC.REFUSED, n: 2 },
      { transport: 'tcp', name: 'mail.robust.example.', type: T.A, rcode: RC.NOERROR, n: 4 },
      { transport: 'tcp', name: 'missing.robust.example.', type: T.TXT, rcode: RC.NXDOMAIN, n: 2 },
      { transport: 'tcp', name: 'example.net.', type: T.SOA, rcode: RC.REFUSED, n: 1 },
    ];
    const exp = new Map<string, number>();
    const got: string[] = [];
    const want: string[] = [];
    let id = 1;
    for (const p of plan) {
      for (let i = 0; i < p.n; i++) {
        const q = buildQuery(p.name, { id: id++, type: p.type });
        const r = p.transport === 'udp' ? await udpExchange(ctl.dnsPort, q, 2000) : await tcpQuery(ctl.dnsPort, q, 3000);
        got.push(`${p.transport} ${p.name} ${r ? rcodeName(decode(r).rcode) : 'no answer'}`);
        want.push(`${p.transport} ${p.name} ${rcodeName(p.rcode)}`);
        total++;
      }
      const k = `${p.transport}/${rcodeName(p.rcode)}`;
      exp.set(k, (exp.get(k) ?? 0) + p.n);
    }
    expected = Object.fromEntries([...exp].sort());

    // Counters may be bumped just after the reply is sent: poll until they show (30 s at most, for a loaded machine).
    afterRaw = await scrape();
    after = parseExposition(afterRaw.body);
    for (let i = 0; i < 300 && JSON.stringify(deltas(before, after)) !== JSON.stringify(expected); i++) {
      await delay(100);
      afterRaw = await scrape();
      after = parseExposition(afterRaw.body);
    }
    console.log(`/metrics after ${total} queries:\n` + afterRaw.body.split('\n').filter((l) => l.startsWith('failover_dns_')).join('\n'));
    expect(got).toEqual(want);
    expect(afterRaw.status).toBe(200);
    expect(afterRaw.type).toMatch(/^(text\/plain|application\/openmetrics-text)/);
  });

  test('promtool check metrics: exit 0, no lint warnings', async () => {
    if (!promtool) throw new Error('promtool not found: install the Debian package "prometheus"');
    // promtool prints lint problems and exits 3; it must print nothing at all.
    const pt = await promtoolCheck(promtool, afterRaw.body);
    expect({ exit: pt.code, output: pt.out.trim() }).toEqual({ exit: 0, output: '' });
  });

  test('required metrics are present with the right types and help', () => {
    const names = ['failover_dns_queries_total', 'failover_dns_zones_loaded', 'failover_dns_zone_load_errors_total'];
    expect(Object.fromEntries(names.map((n) => [n, after.types.get(n) ?? 'missing']))).toEqual({
      failover_dns_queries_total: 'counter',
      failover_dns_zones_loaded: 'gauge',
      failover_dns_zone_load_errors_total: 'counter',
    });
    expect(names.filter((n) => !(after.help.get(n) ?? '').trim())).toEqual([]);
    for (const s of after.samples.filter((x) => x.name === 'failover_dns_queries_total')) {
      expect(Object.keys(s.labels)).toEqual(expect.arrayContaining(['transport', 'rcode']));
    }
    expect(sum(after, 'failover_dns_zones_loaded')).toBe(1);
    expect(sum(after, 'failover_dns_zone_load_errors_total')).toBe(0);
  });

  test('failover_dns_queries_total rose by exactly the queries sent, per transport and rcode', () => {
    expect(deltas(before, after)).toEqual(expected);
  });

  // The server times 1 query in N (src/dns/server/responder.ts, sampleEvery, 64 by default), so the
  // histogram's count is not the number of queries: send enough that several must be sampled.
  test('a query latency histogram in seconds that gets observations', async () => {
    const hist = [...after.types].filter(([n, t]) => t === 'histogram' && n.startsWith('failover_dns_')).map(([n]) => n);
    expect(hist.length).toBeGreaterThan(0);
    const latency = hist.find((n) => /duration|latency/.test(n)) ?? hist[0];
    expect(latency).toMatch(/_seconds$/);
    const buckets = after.samples.filter((s) => s.name === `${latency}_bucket`);
    expect(buckets.length).toBeGreaterThan(1);
    expect(buckets.some((s) => s.labels.le === '+Inf')).toBe(true);
    expect(after.help.get(latency)?.trim()).toBeTruthy();

    const N = 512;
    const base = parseExposition((await scrape()).body);
    let answered = 0;
    for (let i = 0; i < N; i += 32) {
      const rs = await Promise.all(Array.from({ length: 32 }, (_, j) =>
        udpExchange(ctl.dnsPort, buildQuery('www.robust.example.', { id: 5000 + i + j }), 2000)));
      answered += rs.filter(Boolean).length;
    }
    expect(answered).toBe(N);
    await delay(200);
    const now = parseExposition((await scrape()).body);
    const observed = sum(now, `${latency}_count`) - sum(base, `${latency}_count`);
    console.log(`${latency}: ${observed} observations for ${N} queries`);
    expect(observed).toBeGreaterThanOrEqual(1);
    expect(observed).toBeLessThanOrEqual(N);
    expect(sum(now, `${latency}_sum`)).toBeGreaterThan(0);
    const inf = now.samples.filter((s) => s.name === `${latency}_bucket` && s.labels.le === '+Inf').reduce((a, s) => a + s.value, 0);
    expect(inf).toBe(sum(now, `${latency}_count`));
  });
});

/**
 * npm run bench:propagation: how fast a change made through the API is served by the public
 * nameservers, the controller being their hidden primary (target: p99 under 100 ms on each).
 *
 * Runs (BENCH_SIZES, default `1000,100000:100,1000+100000`): the records of the measured zone
 * bench.test (test/support/hidden-primary-lab.ts zoneText: srv-42's addresses in about 40% of
 * its names, or, after a `:`, on that many names only — a cutover then changes those names, as
 * when the server hosts a few sites of a large zone), then, after a `+`, those of other zones
 * served beside it with none of srv-42's addresses (a change does not touch them: their serials
 * stay, nothing of them is transferred). `100000` alone is the heavy case: every cutover
 * rewrites about 31,000 names, an IXFR of about 62,000 records. Per
 * run one controller (the built CLI, dry-run routing) and NSD 4.6, Knot 3.2 and BIND 9.18 as its
 * secondaries (configured from deploy/secondaries/, TSIG hmac-sha256, talking to the controller
 * directly). Then BENCH_CHANGES changes (default 100): cutover and cutback of srv-42 in turn
 * through the API (no ?wait: the 202 comes once DNS switched), each as soon as the previous one
 * is served by all three and its operation finished (BENCH_GAP_MS more, default 0). For each
 * change and secondary: the time from the API response to the first answer of that secondary with
 * the new serial of bench.test, from this process's own SOA queries to each secondary every
 * BENCH_POLL_MS (default 3) ms, independent of the controller's poller. Prints p50/p99/max per
 * secondary and run, where the time goes (the controller's log of its transfers of bench.test),
 * and the controller's own failover_dns_propagation_seconds over the same changes (bucket bounds:
 * p50/p99 as "<= bound"). Needs root and the nsd, knot and bind9 packages (scripts/test.sh
 * installs them). Prints figures, asserts nothing; every process and temp directory is removed at
 * the end, also on failure and SIGINT/SIGTERM.
 *
 *   BENCH_SIZES (default 1000,100000:100,1000+100000), BENCH_CHANGES (default 100),
 *   BENCH_POLL_MS (default 3), BENCH_GAP_MS (default 0), BENCH_LOGS (a directory: each run's
 *   secondary and controller logs are written there)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startController, type ControllerHandle } from '../test/support/controller.js';
import {
  DnsClient, hiddenPrimaryDns, inventorySections, percentile, SERVER, TRANSIT, TSIG_ALGORITHM, TSIG_NAME, TSIG_SECRET_ENV, zoneText,
} from '../test/support/hidden-primary-lab.js';
import { SECONDARY_KINDS, startSecondary, type Secondary, type SecondaryKind } from '../test/support/secondaries.js';

const num = (v: string | undefined, d: number) => (v !== undefined && Number.isFinite(Number(v)) && Number(v) >= 0 ? Number(v) : d);
/** One run: the measured zone's records (and on how many names srv-42's addresses are: all of its kind when undefined), then other zones' records. */
interface Run {
  sizes: number[];
  serverNames?: number;
}
/** "1000", "100000:100", "1000+100000". */
const RUNS: Run[] = (process.env.BENCH_SIZES ?? '1000,100000:100,1000+100000').split(',').map((spec) => {
  const [zones, names] = spec.trim().split(':');
  const sizes = zones.split('+').map((x) => Number(x.trim()));
  const serverNames = names === undefined ? undefined : Number(names);
  if (!sizes.every((n) => Number.isInteger(n) && n >= 8) || (serverNames !== undefined && !(Number.isInteger(serverNames) && serverNames >= 1))) {
    throw new Error(`BENCH_SIZES: "${spec}" is not RECORDS[:SERVER_NAMES][+OTHER_RECORDS...] (records at least 8)`);
  }
  return { sizes, serverNames };
});
const runLabel = (r: Run) => `${r.sizes[0]}${r.serverNames !== undefined ? `:${r.serverNames}` : ''}${r.sizes.slice(1).map((n) => `+${n}`).join('')}`;
const CHANGES = Math.max(1, Math.floor(num(process.env.BENCH_CHANGES, 100)));
const POLL_MS = Math.max(1, num(process.env.BENCH_POLL_MS, 3));
const GAP_MS = num(process.env.BENCH_GAP_MS, 0);
/** Where to keep each run's logs (secondaries and controller), when set. */
const LOGS_DIR = process.env.BENCH_LOGS;
const ZONE = 'bench.test.';
/** Bounds the wait for one change; a secondary that misses it is counted, not waited for. */
const CHANGE_TIMEOUT_MS = 30_000;

const cleanups: (() => Promise<void>)[] = [];
async function cleanup(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');

/** Histogram samples of the controller's failover_dns_propagation_seconds per secondary. */
interface Hist {
  count: number;
  sum: number;
  /** upper bound → cumulative count */
  buckets: Map<number, number>;
}

function propagationHistograms(metrics: string): Map<string, Hist> {
  const out = new Map<string, Hist>();
  const of = (s: string) => {
    let h = out.get(s);
    if (!h) out.set(s, (h = { count: 0, sum: 0, buckets: new Map() }));
    return h;
  };
  for (const line of metrics.split('\n')) {
    const m = /^failover_dns_propagation_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const secondary = /secondary="([^"]+)"/.exec(m[2])?.[1];
    if (!secondary) continue;
    const h = of(secondary);
    const v = Number(m[3]);
    if (m[1] === 'count') h.count = v;
    else if (m[1] === 'sum') h.sum = v;
    else {
      const le = /le="([^"]+)"/.exec(m[2])?.[1];
      if (le) h.buckets.set(le === '+Inf' ? Infinity : Number(le), v);
    }
  }
  return out;
}

/** `after` minus `before`: the observations in between. */
function delta(after: Hist | undefined, before: Hist | undefined): Hist {
  const a = after ?? { count: 0, sum: 0, buckets: new Map() };
  const b = before ?? { count: 0, sum: 0, buckets: new Map() };
  return { count: a.count - b.count, sum: a.sum - b.sum, buckets: new Map([...a.buckets].map(([le, v]) => [le, v - (b.buckets.get(le) ?? 0)])) };
}

/** The smallest bucket bound holding the p-th percentile, as text ("<= 0.025 s"). */
function bucketPercentile(h: Hist, p: number): string {
  if (h.count === 0) return '-';
  const rank = Math.ceil((p / 100) * h.count);
  for (const [le, c] of [...h.buckets].sort((x, y) => x[0] - y[0])) if (c >= rank) return le === Infinity ? '> 60 s' : `<= ${le * 1000} ms`;
  return '?';
}

/** A transfer of the measured zone the controller logged ("zone transferred"): its kind, wall-clock end, and ms sending. */
interface LoggedTransfer {
  kind: string;
  end: number;
  ms: number;
}

function loggedTransfers(output: string, from: number): LoggedTransfer[] {
  const out: LoggedTransfer[] = [];
  for (const line of output.slice(from).split('\n')) {
    if (!line.includes('"zone transferred"')) continue;
    try {
      const j = JSON.parse(line) as { kind?: string; ms?: number; time?: number; zone?: string };
      if (j.zone === ZONE && j.kind !== undefined && j.ms !== undefined && j.time !== undefined) out.push({ kind: j.kind, end: j.time, ms: j.ms });
    } catch {
      /* not JSON */
    }
  }
  return out;
}

/**
 * Where the time goes, per transfer of a change (IXFR and whole-zone answers; not the single SOA
 * of a secondary already current): from the API response to the controller starting to send it
 * (version made, NOTIFY, the secondary asking), the sending, and from its end to the secondary
 * serving the serial (the longest of the three secondaries: they cannot be told apart in the log).
 */
function phases(transfers: LoggedTransfer[], responses: number[], served: number[]): { start: number[]; send: number[]; apply: number[] } {
  const out = { start: [] as number[], send: [] as number[], apply: [] as number[] };
  for (const t of transfers) {
    if (t.kind === 'soa') continue;
    let i = responses.length - 1;
    while (i > 0 && responses[i] > t.end - t.ms) i--;
    out.start.push(t.end - t.ms - responses[i]);
    out.send.push(t.ms);
    if (served[i] !== undefined) out.apply.push(Math.max(0, served[i] - t.end));
  }
  return out;
}

interface SizeResult {
  run: Run;
  /** ms from the API response to the first answer with the new serial, per secondary (null: missed). */
  times: Map<SecondaryKind, (number | null)[]>;
  /** ms of the API calls (request to response). */
  api: number[];
  controller: Map<string, Hist>;
  transfers: LoggedTransfer[];
  /** Wall-clock time of each API response and of the last secondary serving that change. */
  responses: number[];
  served: number[];
  setupMs: number;
}

async function runSize(run: Run): Promise<SizeResult> {
  const { sizes } = run;
  const size = sizes[0];
  const others = sizes.slice(1).map((n, i) => ({ zone: `other${i + 1}.test.`, records: n }));
  const t0 = performance.now();
  const base = mkdtempSync(join(tmpdir(), 'fc-bench-prop-'));
  cleanups.push(async () => rmSync(base, { recursive: true, force: true }));
  const zonesDir = join(base, 'zones');
  mkdirSync(zonesDir);
  writeFileSync(join(zonesDir, `${ZONE.slice(0, -1)}.zone`), zoneText(ZONE, size, 1, { serverNames: run.serverNames }));
  for (const o of others) writeFileSync(join(zonesDir, `${o.zone.slice(0, -1)}.zone`), zoneText(o.zone, o.records, 1, { withServer: false }));
  const allZones = [ZONE, ...others.map((o) => o.zone)];
  const secret = randomBytes(32).toString('base64');
  const dnsPort = await freePort();
  const ports = new Map<SecondaryKind, number>();
  for (const k of SECONDARY_KINDS) ports.set(k, await freePort());
  const ctl: ControllerHandle = await startController({
    zonesDir,
    extra: { dns: hiddenPrimaryDns(dnsPort, SECONDARY_KINDS.map((k) => ({ name: k, host: '127.0.0.1', port: ports.get(k)! }))), log: { level: 'info' } },
    env: { [TSIG_SECRET_ENV]: secret },
    sections: inventorySections([{ name: 'bench', zones: [ZONE] }]),
  });
  cleanups.push(() => ctl.stop());
  const secs = new Map<SecondaryKind, Secondary>();
  for (const k of SECONDARY_KINDS) {
    const s = await startSecondary(k, { primary: { host: '127.0.0.1', port: dnsPort }, tsig: { name: TSIG_NAME, algorithm: TSIG_ALGORITHM, secret }, zones: allZones, dir: join(base, k), port: ports.get(k)! });
    cleanups.push(() => s.kill());
    secs.set(k, s);
  }
  const client = new DnsClient();
  cleanups.push(async () => client.close());
  for (const zone of allZones) {
    const first = await client.soaSerial(dnsPort, zone);
    for (const [k, s] of secs) {
      const deadline = performance.now() + 120_000;
      while ((await client.soaSerial(s.port, zone)) !== first) {
        if (performance.now() > deadline) throw new Error(`${k} does not serve ${zone} serial ${first} after 120 s:\n${s.log().slice(-2000)}`);
        await sleep(20);
      }
    }
  }
  const setupMs = performance.now() - t0;
  // the controller's own figures over the changes only (its first NOTIFY's transfers are before)
  const before = propagationHistograms((await ctl.get('/metrics', false)).body);
  const logFrom = ctl.output().length;

  const times = new Map<SecondaryKind, (number | null)[]>(SECONDARY_KINDS.map((k) => [k, []]));
  const api: number[] = [];
  const responses: number[] = [];
  const served: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const path = i % 2 === 0 ? `/v1/servers/${SERVER}/cutover` : `/v1/servers/${SERVER}/cutback`;
    const body = i % 2 === 0 ? { transit: TRANSIT } : {};
    const tReq = performance.now();
    const r = await ctl.post(path, body);
    const tResp = performance.now();
    responses.push(Date.now());
    api.push(tResp - tReq);
    if (r.status !== 202) throw new Error(`change ${i + 1}: ${path} answered ${r.status}: ${r.body}`);
    const op = JSON.parse(r.body) as { id: string };
    const target = await client.soaSerial(dnsPort, ZONE);
    if (target === null) throw new Error(`change ${i + 1}: the controller does not answer the SOA of ${ZONE}`);
    await Promise.all([...secs].map(async ([k, s]) => {
      for (;;) {
        const serial = await client.soaSerial(s.port, ZONE, 200);
        const now = performance.now();
        if (serial !== null && serial >= target) {
          times.get(k)!.push(now - tResp);
          return;
        }
        if (now - tResp > CHANGE_TIMEOUT_MS) {
          times.get(k)!.push(null);
          return;
        }
        await sleep(POLL_MS);
      }
    }));
    served.push(Date.now());
    await ctl.waitOperation(op.id, 30_000);
    if (GAP_MS > 0) await sleep(GAP_MS);
  }
  const after = propagationHistograms((await ctl.get('/metrics', false)).body);
  const controller = new Map(SECONDARY_KINDS.map((k) => [k as string, delta(after.get(k), before.get(k))]));
  const transfers = loggedTransfers(ctl.output(), logFrom);
  if (LOGS_DIR) {
    mkdirSync(LOGS_DIR, { recursive: true });
    for (const [k, s] of secs) writeFileSync(join(LOGS_DIR, `${runLabel(run)}-${k}.log`), s.log());
    writeFileSync(join(LOGS_DIR, `${runLabel(run)}-controller.log`), ctl.output());
  }
  await cleanup();
  return { run, times, api, controller, transfers, responses, served, setupMs };
}

async function main(): Promise<void> {
  console.log(`bench:propagation: ${CHANGES} changes (cutover/cutback of ${SERVER} in turn) per run (${RUNS.map(runLabel).join(', ')} records; after a colon: names carrying ${SERVER}'s addresses; after a +: other zones served beside, none of ${SERVER}'s addresses in them); secondaries polled every ${POLL_MS} ms; gap ${GAP_MS} ms`);
  console.log(`machine: ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const results: SizeResult[] = [];
  for (const run of RUNS) {
    const r = await runSize(run);
    results.push(r);
    const { sizes } = run;
    const names = run.serverNames !== undefined ? `, ${SERVER}'s addresses on ${run.serverNames} names` : `, ${SERVER}'s addresses on about 40% of the names`;
    const what = sizes.length > 1 ? `${sizes[0]} records (zone ${ZONE}${names}) beside ${sizes.slice(1).join(' + ')} records of other zones (untouched by the changes)` : `${sizes[0]} records${names}`;
    console.log(`\n${what}: setup (controller, 3 secondaries, first transfers) ${Math.round(r.setupMs)} ms; API call p50 ${f1(percentile([...r.api].sort((a, b) => a - b), 50))} ms`);
    console.log('  from the API response to the new serial served (this bench polling each secondary):');
    console.log('  secondary  changes  p50 ms  p99 ms  max ms  missed');
    for (const k of SECONDARY_KINDS) {
      const all = r.times.get(k)!;
      const got = all.filter((x): x is number => x !== null).sort((a, b) => a - b);
      console.log(`  ${k.padEnd(9)}  ${String(all.length).padStart(7)}  ${f1(percentile(got, 50)).padStart(6)}  ${f1(percentile(got, 99)).padStart(6)}  ${f1(got[got.length - 1] ?? NaN).padStart(6)}  ${String(all.length - got.length).padStart(6)}`);
    }
    const slow = SECONDARY_KINDS.flatMap((k) => r.times.get(k)!.map((t, i) => ({ k, i, t })).filter((x) => x.t === null || x.t > 100));
    const shownSlow = slow.slice(0, 24).map((x) => `${x.k} #${x.i + 1} ${x.t === null ? 'missed' : `${Math.round(x.t)} ms`}`).join(', ');
    if (slow.length) console.log(`  over 100 ms (${slow.length} of ${CHANGES * SECONDARY_KINDS.length}): ${shownSlow}${slow.length > 24 ? ', ...' : ''}`);
    console.log('  the controller\'s failover_dns_propagation_seconds over the same changes (from its change to the first answer its poller saw):');
    console.log('  secondary  count  mean ms  p50      p99');
    for (const [k, h] of r.controller) {
      console.log(`  ${k.padEnd(9)}  ${String(h.count).padStart(5)}  ${f1(h.count ? (h.sum / h.count) * 1000 : NaN).padStart(7)}  ${bucketPercentile(h, 50).padEnd(8)} ${bucketPercentile(h, 99)}`);
    }
    const kinds = new Map<string, number>();
    for (const t of r.transfers) kinds.set(t.kind, (kinds.get(t.kind) ?? 0) + 1);
    console.log(`  transfers answered by the controller: ${[...kinds].map(([k, n]) => `${k} x${n}`).join(', ') || 'none logged'}`);
    const ph = phases(r.transfers, r.responses, r.served);
    const line = (what: string, list: number[]) => {
      const s = [...list].sort((a, b) => a - b);
      console.log(`  ${what.padEnd(52)} p50 ${f1(percentile(s, 50)).padStart(7)}  p99 ${f1(percentile(s, 99)).padStart(7)}  max ${f1(s[s.length - 1] ?? NaN).padStart(7)} ms`);
    };
    line('API response -> controller starts sending a transfer', ph.start);
    line('sending it (controller)', ph.send);
    line('end of sending -> last secondary serving (wall clock)', ph.apply);
  }
}

main()
  .catch(async (err) => {
    console.error(`bench:propagation failed: ${(err as Error).stack ?? err}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());

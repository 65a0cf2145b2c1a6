/**
 * npm run bench:xfr: does answering zone transfers slow down answering queries? (target: query
 * latency p99 under 10 ms and nothing lost while a 100,000-record zone is transferred again and
 * again).
 *
 * One controller (the built CLI, pinned to CPU 0 when there are two) serves a zone of
 * BENCH_RECORDS records (test/support/hidden-primary-lab.ts zoneText) as hidden primary of one
 * configured secondary on 127.0.0.1 with a TSIG key. Its capacity is measured first (dnsperf,
 * unlimited rate, on CPU 1); then two phases of BENCH_SECONDS each at half that rate (dnsperf
 * -Q): without transfers, and with TSIG-signed AXFRs of the whole zone back to back (`dig`, on
 * CPU 1, each checked to end with the SOA). In both phases a stream of probe queries from this
 * process (about one per millisecond, test/dns/query-stream.ts) gives every answer's latency:
 * p50/p99/max and the longest gap between two answers. Prints both phases side by side, with
 * dnsperf's lost queries and average latency. Needs dnsperf and dig (scripts/test.sh installs
 * them); asserts nothing; removes what it created, also on failure and SIGINT/SIGTERM.
 *
 *   BENCH_RECORDS (default 100000), BENCH_SECONDS (default 15), BENCH_RATE (queries/s for the
 *   two phases; default half the measured capacity)
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueryStream, answersBetween } from '../test/dns/query-stream.js';
import { freePort, startController, type ControllerHandle } from '../test/support/controller.js';
import {
  DnsClient, hiddenPrimaryDns, inventorySections, percentile, TSIG_ALGORITHM, TSIG_NAME, TSIG_SECRET_ENV, zoneText,
} from '../test/support/hidden-primary-lab.js';

const num = (v: string | undefined, d: number) => (v !== undefined && Number.isFinite(Number(v)) && Number(v) > 0 ? Number(v) : d);
const RECORDS = Math.max(8, Math.floor(num(process.env.BENCH_RECORDS, 100_000)));
const SECONDS = Math.max(3, Math.floor(num(process.env.BENCH_SECONDS, 15)));
const FIXED_RATE = process.env.BENCH_RATE ? num(process.env.BENCH_RATE, 0) : 0;
const ZONE = 'xfr-bench.test.';
const PIN = cpus().length >= 2;

const cleanups: (() => Promise<void> | void)[] = [];
async function cleanup(): Promise<void> {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => undefined);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');

/** argv on CPU 1 when pinning. */
const onCpu1 = (cmd: string, args: string[]): [string, string[]] => (PIN ? ['taskset', ['-c', '1', cmd, ...args]] : [cmd, args]);

interface Perf {
  qps: number;
  completed: number;
  lost: number;
  avgMs: number;
  maxMs: number;
}

function dnsperf(port: number, file: string, seconds: number, rate: number | null): Promise<Perf> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-c', '4', '-q', '200', '-t', '2'];
  if (rate) args.push('-Q', String(Math.round(rate)));
  const [cmd, argv] = onCpu1('dnsperf', args);
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`dnsperf exited with ${code}:\n${out}`));
      const n = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
      const lat = /Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)/.exec(out);
      resolve({
        qps: n(/Queries per second:\s+([\d.]+)/), completed: n(/Queries completed:\s+(\d+)/), lost: n(/Queries lost:\s+(\d+)/),
        avgMs: lat ? Number(lat[1]) * 1000 : NaN, maxMs: lat ? Number(lat[3]) * 1000 : NaN,
      });
    });
  });
}

/**
 * One AXFR with dig: the records received and whether it ended with the SOA. dig's output goes
 * straight to awk (a pipe between the two): this process, whose probe stream measures latency,
 * never handles the transfer's megabytes of text.
 */
function axfr(port: number, secret: string): Promise<{ records: number; complete: boolean; ms: number }> {
  const t0 = performance.now();
  const [acmd, aargv] = onCpu1('awk', ['-F', '[ \t]+', '!/^;/ && NF && $4 != "TSIG" { n++ } $4 == "SOA" { s++ } END { print n + 0, s + 0 }']);
  const counter = spawn(acmd, aargv, { stdio: ['pipe', 'pipe', 'ignore'] });
  const [cmd, argv] = onCpu1('dig', ['-p', String(port), '@127.0.0.1', '-y', `${TSIG_ALGORITHM}:${TSIG_NAME}:${secret}`, ZONE, 'AXFR', '+nostats', '+nocomments', '+nocmd', '+time=30', '+tries=1']);
  const dig = spawn(cmd, argv, { stdio: ['ignore', counter.stdin, 'ignore'] });
  counter.stdin.destroy(); // dig holds the pipe's write end now
  let out = '';
  counter.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const digDone = new Promise<number | null>((res) => dig.on('close', (code) => res(code)));
  return new Promise((resolve) => {
    counter.on('close', () => {
      void digDone.then((code) => {
        const [records, soas] = out.trim().split(/\s+/).map(Number);
        resolve({ records: records || 0, complete: code === 0 && soas === 2, ms: performance.now() - t0 });
      });
    });
  });
}

interface Phase {
  perf: Perf;
  latencies: number[];
  probeLost: number;
  maxGapMs: number;
  transfers: { records: number; complete: boolean; ms: number }[];
}

async function phase(port: number, file: string, rate: number, secret: string, withTransfers: boolean): Promise<Phase> {
  const names = (i: number) => `h${(i * 7919) % Math.max(1, Math.floor((RECORDS - 7) / 1.3))}.${ZONE}`;
  const stream = new QueryStream({ port, zone: ZONE, names, window: 32, lostAfterMs: 2000 });
  await stream.start();
  const from = performance.now();
  const transfers: Phase['transfers'] = [];
  let running = true;
  const loop = (async () => {
    while (withTransfers && running) transfers.push(await axfr(port, secret));
  })();
  const perf = await dnsperf(port, file, SECONDS, rate);
  running = false;
  await loop;
  const to = performance.now();
  // answers still due within lostAfterMs are waited for
  await new Promise((r) => setTimeout(r, 2100));
  stream.stop();
  const seen = stream.answered.filter((a) => a.sentAt >= from && a.sentAt <= to);
  const latencies = seen.map((a) => a.answeredAt - a.sentAt).sort((a, b) => a - b);
  return { perf, latencies, probeLost: stream.lost, maxGapMs: answersBetween(stream.answered, from, to).maxGapMs, transfers };
}

async function main(): Promise<void> {
  console.log(`bench:xfr: a ${RECORDS}-record zone transferred (AXFR, TSIG) back to back while dnsperf asks at half capacity; ${SECONDS} s per phase; ${PIN ? 'controller on CPU 0, dnsperf/dig on CPU 1' : 'one CPU: nothing pinned'}`);
  console.log(`machine: ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const base = mkdtempSync(join(tmpdir(), 'fc-bench-xfr-'));
  cleanups.push(() => rmSync(base, { recursive: true, force: true }));
  const zonesDir = join(base, 'zones');
  mkdirSync(zonesDir);
  writeFileSync(join(zonesDir, `${ZONE.slice(0, -1)}.zone`), zoneText(ZONE, RECORDS, 1));
  const queryFile = join(base, 'queries.txt');
  const hosts = Math.max(1, Math.floor((RECORDS - 7) / 1.3));
  writeFileSync(queryFile, Array.from({ length: 20_000 }, (_, i) => `h${(i * 104729) % hosts}.${ZONE} A`).join('\n') + '\n');
  const secret = randomBytes(32).toString('base64');
  const dnsPort = await freePort();
  const ctl: ControllerHandle = await startController({
    zonesDir,
    cpus: PIN ? '0' : undefined,
    // the secondary need not run: transfers are asked from its address (127.0.0.1) with its key
    extra: { dns: hiddenPrimaryDns(dnsPort, [{ name: 'bench', host: '127.0.0.1', port: await freePort() }]) },
    env: { [TSIG_SECRET_ENV]: secret },
    sections: inventorySections([]),
  });
  cleanups.push(() => ctl.stop());
  const client = new DnsClient();
  cleanups.push(() => client.close());
  if ((await client.soaSerial(dnsPort, ZONE)) === null) throw new Error(`the controller does not serve ${ZONE}`);
  const first = await axfr(dnsPort, secret);
  // the SOA opens and closes the transfer
  if (!first.complete || first.records !== RECORDS + 1) throw new Error(`a first AXFR gave ${first.records} records (complete: ${first.complete}), expected ${RECORDS + 1}`);
  console.log(`one AXFR alone: ${first.records} records in ${Math.round(first.ms)} ms (dig, wall clock)`);

  const capacity = await dnsperf(dnsPort, queryFile, 8, null);
  const rate = FIXED_RATE || capacity.qps / 2;
  console.log(`capacity (dnsperf, no rate limit, 8 s): ${Math.round(capacity.qps)} queries/s; the phases ask ${Math.round(rate)}/s`);

  const quiet = await phase(dnsPort, queryFile, rate, secret, false);
  const busy = await phase(dnsPort, queryFile, rate, secret, true);

  const row = (what: string, a: string, b: string) => console.log(`  ${what.padEnd(40)} ${a.padStart(14)} ${b.padStart(20)}`);
  console.log('');
  row('', 'no transfers', 'AXFRs back to back');
  row('AXFRs completed (records each)', '-', `${busy.transfers.filter((t) => t.complete).length} (${busy.transfers[0]?.records ?? 0})`);
  row('AXFR time p50 ms', '-', f1(percentile(busy.transfers.map((t) => t.ms).sort((a, b) => a - b), 50)));
  row('dnsperf queries/s', f1(quiet.perf.qps), f1(busy.perf.qps));
  row('dnsperf lost', String(quiet.perf.lost), String(busy.perf.lost));
  row('dnsperf average / max latency ms', `${f2(quiet.perf.avgMs)} / ${f1(quiet.perf.maxMs)}`, `${f2(busy.perf.avgMs)} / ${f1(busy.perf.maxMs)}`);
  row('probe answers', String(quiet.latencies.length), String(busy.latencies.length));
  row('probe lost', String(quiet.probeLost), String(busy.probeLost));
  for (const p of [50, 99, 99.9]) row(`probe latency p${p} ms`, f2(percentile(quiet.latencies, p)), f2(percentile(busy.latencies, p)));
  row('probe latency max ms', f1(quiet.latencies.at(-1) ?? NaN), f1(busy.latencies.at(-1) ?? NaN));
  row('longest gap between answers ms', f1(quiet.maxGapMs), f1(busy.maxGapMs));
  const incomplete = busy.transfers.filter((t) => !t.complete).length;
  if (incomplete > 0) console.log(`  ${incomplete} AXFR(s) did not complete`);
  console.log(`\ntarget: p99 under 10 ms and nothing lost with transfers running: ${percentile(busy.latencies, 99) < 10 && busy.perf.lost === 0 && busy.probeLost === 0 ? 'met' : 'MISSED'}`);
}

main()
  .catch((err) => {
    console.error(`bench:xfr failed: ${(err as Error).stack ?? err}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());

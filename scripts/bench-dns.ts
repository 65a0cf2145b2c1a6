/**
 * DNS throughput benchmark: the controller's authoritative server against NSD, same zone, same
 * query mix, same load generator (dnsperf), loopback only.
 *
 *   npm run bench:dns          (scripts/bench-dns.sh builds, checks packages, runs this)
 *
 * Setup: a generated zone of BENCH_NAMES (default 1200) names with A, AAAA, MX and TXT; a dnsperf
 * query file of mostly existing names, ~10% NXDOMAIN, a few mixed-case names. The server under
 * test is pinned to CPU 0 and dnsperf to CPU 1 (taskset). NSD runs with server-count 1,
 * rrl-ratelimit 0 and minimal-responses yes (see test/support/nsd.ts). dnsperf settings (-c, -q)
 * are calibrated with short runs against NSD; the setting where NSD is fastest is then used for
 * the full runs of both servers.
 *
 * Environment: BENCH_SECONDS (default 15), BENCH_CALIBRATE_SECONDS (default 5), BENCH_NAMES,
 * BENCH_SETTINGS (e.g. "10x500,20x1000": clients x outstanding queries).
 * Prints a table and, as the last line, one JSON object with the figures. Exit code 0 when both
 * servers were measured, 1 otherwise (the figures that could be measured are still printed).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../test/support/controller.js';
import { startNsd, waitForSoa, nsdVersion, type NsdHandle } from '../test/support/nsd.js';

const REPO_ROOT = resolve(new URL('../..', import.meta.url).pathname); // dist/scripts -> repo
const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'failoverctl.js');
const ZONE = 'bench.example.';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CAL_SECONDS = Number(process.env.BENCH_CALIBRATE_SECONDS ?? 5);
const NAMES = Number(process.env.BENCH_NAMES ?? 1200);
const SETTINGS = (process.env.BENCH_SETTINGS ?? '10x500,20x1000,4x200')
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);

interface PerfResult {
  clients: number;
  outstanding: number;
  seconds: number;
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  avgLatencyMs: number;
  maxLatencyMs: number;
  rcodes: string;
}

// ------------------------------------------------------------------------------- data ---------

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x * 1664525 + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

function makeZone(n: number): string {
  const l = [
    `$ORIGIN ${ZONE}`,
    '$TTL 300',
    `@ IN SOA ns1 hostmaster 1 3600 600 86400 60`,
    '@ IN NS ns1',
    '@ IN NS ns2',
    'ns1 IN A 127.0.0.53',
    'ns2 IN A 127.0.0.54',
    '@ IN A 192.0.2.1',
    '@ IN MX 10 mx1',
  ];
  for (let i = 0; i < n; i++) {
    const h = `host${String(i).padStart(4, '0')}`;
    l.push(`${h} IN A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    if (i % 2 === 0) l.push(`${h} IN AAAA 2001:db8::${i.toString(16)}`);
    if (i % 5 === 0) l.push(`${h} IN MX 10 mx${i % 7}.${ZONE}`);
    if (i % 3 === 0) l.push(`${h} IN TXT "v=bench ${i}" "second string for ${h}"`);
  }
  for (let i = 0; i < 7; i++) l.push(`mx${i} IN A 192.0.2.${100 + i}`);
  return l.join('\n') + '\n';
}

function makeQueries(n: number, count = 50_000): string {
  const r = rng(42);
  const out: string[] = [];
  const zone = ZONE.replace(/\.$/, '');
  for (let k = 0; k < count; k++) {
    const p = r();
    const i = Math.floor(r() * n);
    const h = `host${String(i).padStart(4, '0')}`;
    if (p < 0.1) {
      out.push(`nx${Math.floor(r() * 1e6)}.${zone} A`); // NXDOMAIN
      continue;
    }
    const types = ['A'];
    if (i % 2 === 0) types.push('AAAA');
    if (i % 5 === 0) types.push('MX');
    if (i % 3 === 0) types.push('TXT');
    let name = `${h}.${zone}`;
    if (p > 0.98) name = [...name].map((c) => (r() < 0.5 ? c.toUpperCase() : c)).join(''); // 0x20
    out.push(`${name} ${types[Math.floor(r() * types.length)]}`);
  }
  return out.join('\n') + '\n';
}

// ----------------------------------------------------------------------------- dnsperf --------

function parsePerf(text: string, clients: number, outstanding: number, seconds: number): PerfResult {
  const num = (re: RegExp) => {
    const m = re.exec(text);
    if (!m) throw new Error(`cannot parse dnsperf output (${re}):\n${text}`);
    return Number(m[1]);
  };
  const lat = /Average Latency \(s\):\s+([\d.]+)\s+\(min ([\d.]+), max ([\d.]+)\)/.exec(text);
  return {
    clients,
    outstanding,
    seconds,
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: lat ? Number(lat[1]) * 1000 : NaN,
    maxLatencyMs: lat ? Number(lat[3]) * 1000 : NaN,
    rcodes: /Response codes:\s+(.*)/.exec(text)?.[1]?.trim() ?? '',
  };
}

async function dnsperf(port: number, file: string, seconds: number, clients: number, outstanding: number, cpu: string | null) {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-c', String(clients), '-q', String(outstanding)];
  const cmd = cpu ? 'taskset' : 'dnsperf';
  const argv = cpu ? ['-c', cpu, 'dnsperf', ...args] : args;
  const text = await new Promise<string>((res, rej) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`dnsperf exited with ${code}:\n${out}`))));
  });
  return parsePerf(text, clients, outstanding, seconds);
}

// -------------------------------------------------------------------------- controller --------

interface Ctl {
  port: number;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

async function startCtl(zonesDir: string, cpu: string | null): Promise<Ctl> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing (build failed?)`);
  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-ctl-'));
  const port = await freePort();
  const apiPort = await freePort();
  const cfg = {
    dns: { listen: [`127.0.0.1:${port}`], zones: zonesDir },
    api: { listen: `127.0.0.1:${apiPort}`, token_env: 'FC_BENCH_TOKEN' },
    log: { level: 'warn' }, // no per-query logging in a throughput benchmark
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(cfg));
  const argv = [CLI, 'serve', '--config', configPath];
  const proc = cpu
    ? spawn('taskset', ['-c', cpu, process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FC_BENCH_TOKEN: 'bench-token' } })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FC_BENCH_TOKEN: 'bench-token' } });
  let out = '';
  let exited = false;
  proc.stdout!.on('data', (d) => (out = (out + d).slice(-20000)));
  proc.stderr!.on('data', (d) => (out = (out + d).slice(-20000)));
  proc.on('exit', () => (exited = true));
  const stop = async () => {
    if (!exited) {
      const done = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForSoa(port, [ZONE], 60_000, () => !exited);
  } catch (e) {
    await stop();
    throw new Error(`controller did not serve ${ZONE}: ${(e as Error).message}\n${out.slice(-4000)}`);
  }
  return { port, proc, output: () => out, stop };
}

// ------------------------------------------------------------------------------- main ---------

/** `nproc` (CPUs usable by this process), as the shell command reports it. */
function nproc(): number {
  const r = spawnSync('nproc', { encoding: 'utf8' });
  return Number(r.stdout.trim()) || 1;
}

function fmt(r: PerfResult | null): string {
  if (!r) return 'n/a';
  return `${r.qps.toFixed(0).padStart(8)} q/s   lost ${String(r.lost).padStart(6)} / ${r.sent}   avg latency ${r.avgLatencyMs.toFixed(3)} ms (max ${r.maxLatencyMs.toFixed(1)} ms)`;
}

async function main(): Promise<number> {
  const loadavg = readFileSync('/proc/loadavg', 'utf8').trim();
  const cpus = nproc();
  const pin = cpus >= 2;
  const serverCpu = pin ? '0' : null;
  const clientCpu = pin ? '1' : null;
  console.log(`bench:dns  nproc=${cpus}  loadavg before run: ${loadavg}`);
  if (!pin) console.log('warning: fewer than 2 CPUs: no CPU pinning, server and dnsperf share the CPU');

  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-'));
  const zonesDir = join(dir, 'zones');
  mkdirSync(zonesDir);
  const zoneFile = join(zonesDir, `${ZONE.replace(/\.$/, '')}.zone`);
  writeFileSync(zoneFile, makeZone(NAMES));
  const qfile = join(dir, 'queries.txt');
  writeFileSync(qfile, makeQueries(NAMES));
  console.log(`zone ${ZONE}: ${NAMES} hosts (+ns, mx), ${readFileSync(zoneFile, 'utf8').split('\n').length - 1} lines; query file 50000 lines (~10% NXDOMAIN, ~2% mixed case)`);

  let nsd: NsdHandle | undefined;
  let ctl: Ctl | undefined;
  let nsdRes: PerfResult | null = null;
  let ctlRes: PerfResult | null = null;
  let ctlError: string | null = null;
  const calibration: PerfResult[] = [];
  let best: [number, number] = SETTINGS[0];
  try {
    nsd = await startNsd({ zones: [{ name: ZONE, file: zoneFile }], cpus: serverCpu ?? undefined, serverCount: 1 });
    console.log(`NSD ${nsdVersion()} on 127.0.0.1:${nsd.port} (server-count 1, rrl-ratelimit 0, minimal-responses yes)${pin ? ', CPU 0' : ''}`);
    if (SETTINGS.length > 1) {
      let bestQps = -1;
      for (const [c, q] of SETTINGS) {
        const r = await dnsperf(nsd.port, qfile, CAL_SECONDS, c, q, clientCpu);
        calibration.push(r);
        console.log(`  calibration -c ${c} -q ${q} (${CAL_SECONDS} s): ${fmt(r)}`);
        if (r.qps > bestQps) {
          bestQps = r.qps;
          best = [c, q];
        }
      }
    }
    console.log(`dnsperf setting used: -c ${best[0]} -q ${best[1]} -l ${SECONDS}${pin ? ' (dnsperf on CPU 1)' : ''}`);
    nsdRes = await dnsperf(nsd.port, qfile, SECONDS, best[0], best[1], clientCpu);
    console.log(`NSD       : ${fmt(nsdRes)}`);
    console.log(`            ${nsdRes.rcodes}`);
  } finally {
    await nsd?.stop();
  }

  try {
    ctl = await startCtl(zonesDir, serverCpu);
    console.log(`controller on 127.0.0.1:${ctl.port}${pin ? ', CPU 0' : ''}`);
    ctlRes = await dnsperf(ctl.port, qfile, SECONDS, best[0], best[1], clientCpu);
    console.log(`controller: ${fmt(ctlRes)}`);
    console.log(`            ${ctlRes.rcodes}`);
  } catch (e) {
    ctlError = (e as Error).message;
    console.log(`controller: FAILED: ${ctlError}`);
  } finally {
    await ctl?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const ratio = nsdRes && ctlRes ? ctlRes.qps / nsdRes.qps : null;
  if (ratio !== null) console.log(`ratio controller/NSD (queries/s): ${ratio.toFixed(3)}`);
  console.log(
    JSON.stringify({
      bench: 'dns',
      nproc: cpus,
      loadavg_before: loadavg,
      pinned: pin,
      zone_names: NAMES,
      seconds: SECONDS,
      dnsperf: { clients: best[0], outstanding: best[1] },
      calibration: calibration.map((r) => ({ c: r.clients, q: r.outstanding, qps: Math.round(r.qps) })),
      nsd: nsdRes && { qps: Math.round(nsdRes.qps), lost: nsdRes.lost, sent: nsdRes.sent, avg_latency_ms: +nsdRes.avgLatencyMs.toFixed(3) },
      controller: ctlRes && { qps: Math.round(ctlRes.qps), lost: ctlRes.lost, sent: ctlRes.sent, avg_latency_ms: +ctlRes.avgLatencyMs.toFixed(3) },
      controller_error: ctlError ? ctlError.split('\n')[0] : null,
      ratio_qps_controller_over_nsd: ratio === null ? null : +ratio.toFixed(4),
    }),
  );
  return nsdRes && ctlRes ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);

/**
 * npm run bench:cutover: builds the namespace lab, then runs N cutovers and cutbacks with each
 * Linux backend (linux-route with make-before-break, the same with connection pinning on the
 * router — nftables + conntrack, see src/routing/README.md —, linux-address with GARP/unsolicited NA),
 * then, on a fresh lab with BIRD 2 on the router and gobgpd on the server LAN (test/support/bgp-lab.ts,
 * deploy/bgp/), with bgp (make-before-break, verify through birdc), measuring every address with
 * the controller's own DowntimeMeter (HTTP probes every 10 ms from the client namespace). Prints
 * per-address downtime percentiles (p50, p99, max), the fraction of operations with zero lost
 * probes, lost probes of all sent, apply time. Needs root (network namespaces); the bgp case
 * needs bird2, gobgpd and golang-github-osrg-gobgp-dev (skipped without). Prints figures, asserts nothing.
 *
 *   BENCH_RUNS (default 20), BENCH_INTERVAL_MS (default 10), BENCH_BACKENDS (default all:
 *   linux-route,linux-address,bgp)
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createDowntimeMeter } from '../src/health/downtime-meter.js';
import { BgpRouteBackend } from '../src/routing/bgp-backend.js';
import { LinuxAddressBackend } from '../src/routing/linux-address-backend.js';
import { LinuxRouteBackend } from '../src/routing/linux-route-backend.js';
import type { DesiredRoute, RouteBackend } from '../src/core/ports.js';
import { addBgp, haveBgpTools } from '../test/support/bgp-lab.js';
import { createLab, ON_LINK_ADDRESSES, ORIGIN, SERVICE_ADDRESSES, TRANSIT, type Lab } from '../test/support/netns-lab.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const INTERVAL = Number(process.env.BENCH_INTERVAL_MS ?? 10);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'linux-route,linux-address,bgp').split(',');

interface Settings {
  linuxRoute: Lab['linuxRoute'];
  linuxAddress: Lab['linuxAddress'];
  /** Set for the bgp run (a lab with BIRD and gobgpd): gobgpd's API and the verify command. */
  bgp?: { api: string; verify: string[] };
}

interface OpResult {
  backend: string;
  direction: 'cutover' | 'cutback';
  applyMs: number;
  addresses: { address: string; downtimeMs: number; probesFailed: number; probesSent: number; recovered: boolean }[];
}

const family = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);

async function runInner(settings: Settings): Promise<void> {
  const meter = createDowntimeMeter({
    probe: { type: 'http', port: 80, path: '/', identityHeader: 'x-served-by' },
    intervalMs: INTERVAL, timeoutMs: 200, deadlineMs: 30_000, recoveryProbes: 20,
  });
  const cases: { name: string; backend: RouteBackend; addresses: string[] }[] = settings.bgp
    ? [{
        name: 'bgp (mbb, verify)',
        backend: new BgpRouteBackend({ api: settings.bgp.api, nextHops: settings.linuxRoute.nextHops, hosts: settings.linuxRoute.hosts, communities: ['65000:100'], verify: settings.bgp.verify }),
        addresses: [...SERVICE_ADDRESSES[ORIGIN]],
      }]
    : [
        ...(BACKENDS.includes('linux-route') ? [
          { name: 'linux-route (make-before-break)', backend: new LinuxRouteBackend(settings.linuxRoute), addresses: [...SERVICE_ADDRESSES[ORIGIN]] },
          // After the unpinned case: once pinning is installed, its map decides where new connections go.
          { name: 'linux-route (mbb, pinned conns)', backend: new LinuxRouteBackend({ ...settings.linuxRoute, pinConnections: true }), addresses: [...SERVICE_ADDRESSES[ORIGIN]] },
        ] : []),
        ...(BACKENDS.includes('linux-address') ? [{ name: 'linux-address (GARP/NA)', backend: new LinuxAddressBackend(settings.linuxAddress), addresses: [...ON_LINK_ADDRESSES] }] : []),
      ];
  for (const c of cases) {
    // bgp: the paths start on the origin (the lab's static routes are gone)
    if (settings.bgp) await c.backend.apply(c.addresses.map((a) => ({ address: a, family: family(a), to: ORIGIN, from: TRANSIT })));
    for (let i = 0; i < RUNS; i++) {
      for (const direction of ['cutover', 'cutback'] as const) {
        const [from, to] = direction === 'cutover' ? [ORIGIN, TRANSIT] : [TRANSIT, ORIGIN];
        const run = meter.start({ addresses: c.addresses.map((a) => ({ address: a, family: family(a) })), origin: from, target: to, server: ORIGIN });
        await new Promise((r) => setTimeout(r, 100)); // probes see the origin first
        const desired: DesiredRoute[] = c.addresses.map((a) => ({ address: a, family: family(a), to, from }));
        const t0 = performance.now();
        await c.backend.apply(desired);
        const applyMs = performance.now() - t0;
        run.routed(Date.now());
        const res = await run.done();
        const out: OpResult = { backend: c.name, direction, applyMs, addresses: res.map((r) => ({ address: r.address, downtimeMs: r.downtimeMs, probesFailed: r.probesFailed, probesSent: r.probesSent, recovered: r.recovered })) };
        process.stdout.write(JSON.stringify(out) + '\n');
      }
    }
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main(): Promise<void> {
  if (process.argv[2] === '--inner') {
    await runInner(JSON.parse(Buffer.from(process.argv[3], 'base64').toString()) as Settings);
    return;
  }
  if (process.getuid?.() !== 0) {
    console.error('bench:cutover needs root (network namespaces)');
    process.exit(1);
  }
  console.log(`machine: load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const results: OpResult[] = [];
  if (BACKENDS.some((b) => b !== 'bgp')) {
    const lab = await createLab();
    console.log(`lab built in ${lab.buildMs.toFixed(0)} ms; ${RUNS} cutovers + ${RUNS} cutbacks per backend; HTTP probes every ${INTERVAL} ms from the client namespace`);
    try {
      await runIn(lab, { linuxRoute: lab.linuxRoute, linuxAddress: lab.linuxAddress }, results);
    } finally {
      await lab.destroy();
    }
  }
  if (BACKENDS.includes('bgp')) {
    if (!haveBgpTools()) console.log('bgp skipped: bird2, gobgpd or golang-github-osrg-gobgp-dev not installed');
    else {
      const lab = await createLab();
      try {
        const bgp = await addBgp(lab);
        try {
          await bgp.startGobgpd({ gracefulRestart: true });
          await bgp.enablePeer();
          console.log(`bgp lab built; ${RUNS} cutovers + ${RUNS} cutbacks; HTTP probes every ${INTERVAL} ms from the client namespace`);
          await runIn(lab, { linuxRoute: lab.linuxRoute, linuxAddress: lab.linuxAddress, bgp: { api: bgp.api, verify: bgp.verify } }, results);
        } finally {
          await bgp.destroy();
        }
      } finally {
        await lab.destroy();
      }
    }
  }
  console.log(`machine: load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const summary: Record<string, unknown>[] = [];
  console.log('\nbackend                            direction  ops  p50 ms  p99 ms  max ms  zero-loss ops  lost/sent  apply p50 ms  apply p99 ms  not recovered');
  for (const backend of [...new Set(results.map((r) => r.backend))]) {
    for (const direction of ['cutover', 'cutback'] as const) {
      const ops = results.filter((r) => r.backend === backend && r.direction === direction);
      const d = ops.flatMap((o) => o.addresses.map((a) => a.downtimeMs)).sort((a, b) => a - b);
      const zero = ops.filter((o) => o.addresses.every((a) => a.probesFailed === 0)).length;
      const apply = ops.map((o) => o.applyMs).sort((a, b) => a - b);
      const lost = ops.flatMap((o) => o.addresses).filter((a) => !a.recovered).length;
      const all = ops.flatMap((o) => o.addresses);
      const failed = all.reduce((n, a) => n + a.probesFailed, 0);
      const sent = all.reduce((n, a) => n + a.probesSent, 0);
      const row = { backend, direction, ops: ops.length, p50: pct(d, 50), p99: pct(d, 99), max: d[d.length - 1], zeroLossFraction: zero / ops.length, probesFailed: failed, probesSent: sent, applyP50: pct(apply, 50), applyP99: pct(apply, 99), notRecovered: lost };
      summary.push(row);
      console.log(`${backend.padEnd(34)} ${direction.padEnd(9)} ${String(ops.length).padStart(4)} ${row.p50.toFixed(1).padStart(7)} ${row.p99.toFixed(1).padStart(7)} ${row.max.toFixed(1).padStart(7)} ${`${zero}/${ops.length}`.padStart(14)} ${`${failed}/${sent}`.padStart(10)} ${row.applyP50.toFixed(0).padStart(13)} ${row.applyP99.toFixed(0).padStart(13)} ${String(lost).padStart(14)}`);
    }
  }
  console.log(JSON.stringify({ bench: 'cutover', intervalMs: INTERVAL, runs: RUNS, results: summary }));
}

/** Runs the inner bench in the lab's client namespace; its results are added to `results`. */
async function runIn(lab: Lab, settings: Settings, results: OpResult[]): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn('ip', ['netns', 'exec', lab.ns.client, process.execPath, ...process.execArgv, self, '--inner', Buffer.from(JSON.stringify(settings)).toString('base64')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith('{')) {
        results.push(JSON.parse(line) as OpResult);
        process.stderr.write(`\r${results.length} operations measured`);
      }
    }
  });
  const code = await new Promise<number>((res) => child.on('exit', (c) => res(c ?? 1)));
  process.stderr.write('\n');
  if (code !== 0) throw new Error(`inner run exited ${code}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

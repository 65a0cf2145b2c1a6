/**
 * npm run bench:reconcile: how long one routing reconcile pass takes for 1,000 managed addresses
 * (target: under 1 s). Builds one router network namespace (`fcb<pid>-<n>-router`, deleted at the
 * end, also on failure and SIGINT/SIGTERM; stale ones of dead runs are deleted at start) with two
 * veth links (192.0.2.0/25 + 2001:db8:a::/64, 192.0.2.128/25 + 2001:db8:b::/64) carrying the next
 * hops of 250 servers (one per family each, alternating links), and 1,000 host routes: per server
 * 2 IPv4 (203.0.113.0/24, then 198.51.100.0/24) and 2 IPv6 (2001:db8:1::/64), each via its
 * server's next hop. A LinuxRouteBackend (router prefix `ip netns exec NS`, no hosts: no
 * make-before-break) and a RouteReconciler (in-memory inventory, a real SQLite store in a temp
 * directory, no overlays: every address wanted on its own server) run in this process.
 *
 * Measures over BENCH_RUNS runs (default 10), median and max, of: a pass with no drift; a pass
 * after 100 routes were deleted (one `ip -batch` before each run; checked afterwards: repaired=100
 * and every route of the table right again); and, as the floor, in the same run: a dump of the
 * whole main table (`ip -j -4 route show` and `ip -j -6 route show` in parallel, as a pass reads)
 * and one `route show ADDR/LEN` per address (`ip -j -4 -batch -` and `ip -j -6 -batch -`, 500
 * lines each, in parallel: iproute2 batches take one family), and one `ip -batch -` of 100
 * `route replace` (a repair's write). Also: processes spawned per pass (the CommandRunner is
 * wrapped to count), and where a pass spends its time (backend read, backend apply, the rest).
 * Needs root and iproute2. Prints figures, asserts nothing (a failed check is printed, not thrown).
 *
 *   BENCH_RUNS (default 10)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseAddress, type IpAddress } from '../src/core/addresses.js';
import type { Server } from '../src/core/inventory.js';
import type { RouteBackend } from '../src/core/ports.js';
import type { ReconcilePass } from '../src/core/routing-plan.js';
import { RouteReconciler } from '../src/controller/route-reconciler.js';
import { RoutingLane } from '../src/controller/routing-lane.js';
import { runCommand, type CommandResult, type CommandRunner } from '../src/routing/command-runner.js';
import { LinuxRouteBackend } from '../src/routing/linux-route-backend.js';
import { withRetry } from '../src/routing/retrying-backend.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';
import { staleNamespaces } from '../test/support/netns-lab.js';

const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 10) || 10);
const SERVERS = 250;
const DRIFT = 100;
const PREFIX = 'fcb';
const NS = `${PREFIX}${process.pid}-1-router`;
/** Temp directories to remove at the end (the SQLite state file). */
const tempDirs: string[] = [];

/** One managed address with its server and the router's next hop towards that server. */
interface Managed extends IpAddress {
  server: string;
  nextHop: string;
}

const hex = (n: number) => n.toString(16);
const ip = (text: string): IpAddress => {
  const a = parseAddress(text);
  if (typeof a === 'string') throw new Error(a);
  return a;
};

/** The 250 servers, their next hops, and the 1,000 addresses (documentation ranges only). */
function buildInventory(): { servers: Map<string, Server>; nextHops: Record<string, string[]>; managed: Managed[] } {
  const servers = new Map<string, Server>();
  const nextHops: Record<string, string[]> = {};
  const managed: Managed[] = [];
  for (let i = 0; i < SERVERS; i++) {
    const name = `srv-${String(i).padStart(3, '0')}`;
    const half = i >> 1;
    // even servers behind link a (192.0.2.2-126, 2001:db8:a::), odd ones behind link b (192.0.2.130-254, 2001:db8:b::)
    const hop4 = i % 2 === 0 ? `192.0.2.${2 + half}` : `192.0.2.${130 + half}`;
    const hop6 = ip(`2001:db8:${i % 2 === 0 ? 'a' : 'b'}::${hex(2 + half)}`).address;
    nextHops[name] = [hop4, hop6];
    const v4 = [2 * i, 2 * i + 1].map((k) => (k < 256 ? `203.0.113.${k}` : `198.51.100.${k - 256}`));
    const v6 = [2 * i, 2 * i + 1].map((k) => `2001:db8:1::${hex(k + 1)}`);
    const addresses = [...v4, ...v6].map(ip);
    servers.set(name, { name, addresses });
    for (const a of addresses) managed.push({ ...a, server: name, nextHop: a.family === 4 ? hop4 : hop6 });
  }
  return { servers, nextHops, managed };
}

const len = (a: IpAddress) => (a.family === 4 ? 32 : 128);

async function must(argv: string[], input?: string): Promise<CommandResult> {
  const r = await runCommand(argv, { input, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r;
}

async function deleteNamespaces(names: string[]): Promise<void> {
  if (names.length > 0) await runCommand(['ip', '-force', '-batch', '-'], { input: names.map((n) => `netns del ${n}`).join('\n') + '\n' });
}

async function buildRouter(managed: Managed[]): Promise<void> {
  await deleteNamespaces(await staleNamespaces(new RegExp(`^${PREFIX}(\\d+)-\\d+-router$`)));
  await must(['ip', 'netns', 'add', NS]);
  const links = [
    'link set lo up',
    'link add nha type veth peer name nha-p',
    'link add nhb type veth peer name nhb-p',
    ...['nha', 'nha-p', 'nhb', 'nhb-p'].map((d) => `link set ${d} up`),
    'addr add 192.0.2.1/25 dev nha',
    'addr add 192.0.2.129/25 dev nhb',
    'addr add 2001:db8:a::1/64 dev nha nodad',
    'addr add 2001:db8:b::1/64 dev nhb nodad',
  ];
  await must(['ip', '-n', NS, '-batch', '-'], links.join('\n') + '\n');
  await must(['ip', '-n', NS, '-batch', '-'], managed.map((m) => `route replace ${m.address}/${len(m)} via ${m.nextHop}`).join('\n') + '\n');
}

/** The router's host routes now: address → gateway (both families, from the JSON dump). */
async function routerRoutes(): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const f of ['-4', '-6']) {
    const r = await must(['ip', '-n', NS, '-j', f, 'route', 'show', 'table', 'main']);
    for (const e of JSON.parse(r.stdout) as { dst?: string; gateway?: string }[]) {
      const a = e.dst ? parseAddress(e.dst.split('/')[0]) : 'none';
      if (typeof a !== 'string') out.set(a.address, e.gateway === undefined ? undefined : ip(e.gateway).address);
    }
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
const max = (xs: number[]) => Math.max(...xs);

/** Runs `fn` and returns its wall time in ms. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface PassSample {
  ms: number;
  pass: ReconcilePass;
  commands: string[];
  readMs: number;
  applyMs: number;
}

async function bench(): Promise<void> {
  const { servers, nextHops, managed } = buildInventory();
  const tBuild = performance.now();
  await buildRouter(managed);
  console.log(`router namespace ${NS}: 2 veth links, ${SERVERS} servers × 4 addresses = ${managed.length} host routes (built in ${(performance.now() - tBuild).toFixed(0)} ms)`);
  console.log(`machine: ${(await import('node:os')).cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${RUNS} runs each; node ${process.version}`);

  const dir = mkdtempSync(join(tmpdir(), 'fcb-reconcile-'));
  tempDirs.push(dir);
  const store = openSqliteStore(join(dir, 'state.sqlite'));
  try {
    // Counting runner: every call is one process (`ip netns exec` execs ip in place).
    let commands: string[] = [];
    const runner: CommandRunner = (argv, opts) => {
      commands.push(argv.slice(4).join(' '));
      return runCommand(argv, opts);
    };
    const backend = new LinuxRouteBackend({ router: ['ip', 'netns', 'exec', NS], nextHops, runner });
    // Timing wrapper: how much of a pass is the backend's read and apply.
    let readMs = 0;
    let applyMs = 0;
    const timing: RouteBackend = {
      name: backend.name,
      async current(addresses) {
        const t0 = performance.now();
        try {
          return await backend.current(addresses);
        } finally {
          readMs += performance.now() - t0;
        }
      },
      async apply(desired) {
        const t0 = performance.now();
        try {
          return await backend.apply(desired);
        } finally {
          applyMs += performance.now() - t0;
        }
      },
    };
    const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
    const reconciler = new RouteReconciler({
      servers: () => servers.values(),
      transits: () => [],
      overlays: () => new Map(),
      store,
      reader: timing,
      repairer: withRetry(timing, { deadlineMs: 30_000, minTimeoutMs: 1000, maxTimeoutMs: 5000 }),
      lane: new RoutingLane(),
      clock: { now: () => Date.now(), monotonic: () => performance.now() },
      logger,
      intervalMs: 30_000,
      mode: 'repair',
      maxBackoffMs: 300_000,
    });

    const pass = async (): Promise<PassSample> => {
      commands = [];
      readMs = 0;
      applyMs = 0;
      const t0 = performance.now();
      const p = await reconciler.reconcile('request');
      return { ms: performance.now() - t0, pass: p, commands, readMs, applyMs };
    };
    const problems: string[] = [];
    const check = (what: string, ok: boolean) => {
      if (!ok) problems.push(what);
    };

    // The first pass stores 1,000 confirmed routes in SQLite (later passes write nothing).
    const first = await pass();
    check(`first pass: ${first.pass.inSync} in sync of ${managed.length} (readError ${first.pass.readError})`, first.pass.inSync === managed.length);

    const drifted = managed.filter((_, i) => i % (managed.length / DRIFT) === 0);
    const noDrift: PassSample[] = [];
    const drift: PassSample[] = [];
    const dumpMs: number[] = [];
    const showMs: number[] = [];
    const writeMs: number[] = [];
    const prefix = ['ip', 'netns', 'exec', NS];
    const byFamily = (f: 4 | 6) => managed.filter((m) => m.family === f);
    for (let i = 0; i < RUNS; i++) {
      process.stderr.write(`\rrun ${i + 1}/${RUNS}`);
      // (1) no drift
      const a = await pass();
      check(`run ${i + 1}, no drift: ${JSON.stringify({ inSync: a.pass.inSync, drifted: a.pass.drifted, repaired: a.pass.repaired, readError: a.pass.readError })}`, a.pass.inSync === managed.length && a.pass.repaired === 0);
      noDrift.push(a);
      // (2) 100 drifted: deleted in one batch, then one pass repairs them
      await must(['ip', '-n', NS, '-batch', '-'], drifted.map((m) => `route del ${m.address}/${len(m)}`).join('\n') + '\n');
      const b = await pass();
      drift.push(b);
      const now = await routerRoutes();
      const wrong = managed.filter((m) => now.get(m.address) !== m.nextHop);
      check(`run ${i + 1}, drift: repaired=${b.pass.repaired} (want ${DRIFT}), ${wrong.length} routes wrong after the pass${wrong.length ? ` (e.g. ${wrong[0].address})` : ''}`, b.pass.repaired === DRIFT && wrong.length === 0 && b.pass.inSync === managed.length);
      // (3) references, same prefix (one `ip netns exec` process each)
      dumpMs.push(await timed(() => Promise.all([4, 6].map((f) => must([...prefix, 'ip', '-j', `-${f}`, 'route', 'show'])))));
      showMs.push(
        await timed(() =>
          Promise.all(([4, 6] as const).map((f) => must([...prefix, 'ip', '-j', `-${f}`, '-batch', '-'], byFamily(f).map((m) => `route show ${m.address}/${len(m)}`).join('\n') + '\n'))),
        ),
      );
      writeMs.push(await timed(() => must([...prefix, 'ip', '-batch', '-'], drifted.map((m) => `route replace ${m.address}/${len(m)} via ${m.nextHop}`).join('\n') + '\n')));
    }
    process.stderr.write('\n');

    const row = (name: string, xs: number[], extra = '') => console.log(`${name.padEnd(58)} ${median(xs).toFixed(1).padStart(9)} ${max(xs).toFixed(1).padStart(9)}  ${extra}`);
    const pm = (s: PassSample[]) => `processes/pass ${[...new Set(s.map((x) => x.commands.length))].join(',')}; backend read ${median(s.map((x) => x.readMs)).toFixed(1)} ms, apply ${median(s.map((x) => x.applyMs)).toFixed(1)} ms, rest ${median(s.map((x) => x.ms - x.readMs - x.applyMs)).toFixed(1)} ms (medians)`;
    console.log(`\n${managed.length} managed addresses (${byFamily(4).length} IPv4, ${byFamily(6).length} IPv6); ${RUNS} runs`);
    console.log(`${'measure'.padEnd(58)} ${'median ms'.padStart(9)} ${'max ms'.padStart(9)}`);
    row('first pass (stores 1,000 confirmed routes)', [first.ms], `processes ${first.commands.length}; read ${first.readMs.toFixed(1)} ms`);
    row('(1) reconcile pass, no drift', noDrift.map((s) => s.ms), pm(noDrift));
    row(`(2) reconcile pass, ${DRIFT} drifted (repaired)`, drift.map((s) => s.ms), pm(drift));
    row('(3a) ref: whole table, ip -j -4 ‖ -6 route show', dumpMs);
    row('(3b) ref: 1,000 × route show, ip -j -4 ‖ -6 -batch', showMs);
    row(`(3c) ref: ${DRIFT} × route replace, one ip -batch`, writeMs);
    const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(1);
    console.log(`\nratio (medians): no-drift pass / whole-table dump ${ratio(noDrift.map((s) => s.ms), dumpMs)}×, / 1,000 route show ${ratio(noDrift.map((s) => s.ms), showMs)}×`);
    console.log(`                 drift pass / (2 dumps + 1 write) ${(median(drift.map((s) => s.ms)) / (2 * median(dumpMs) + median(writeMs))).toFixed(1)}×`);
    console.log(`target: a pass under 1,000 ms for 1,000 addresses: no drift ${median(noDrift.map((s) => s.ms)) < 1000 ? 'met' : 'NOT met'}, ${DRIFT} drifted ${median(drift.map((s) => s.ms)) < 1000 ? 'met' : 'NOT met'} (medians)`);
    console.log(`commands of a no-drift pass: ${noDrift[0].commands.map((c) => JSON.stringify(c)).join(', ')}`);
    console.log(`commands of a drift pass:    ${drift[0].commands.map((c) => JSON.stringify(c)).join(', ')}`);
    console.log(problems.length === 0 ? 'checks: every pass as expected (in sync; repaired=100 and all routes back)' : `CHECKS FAILED (${problems.length}):\n  ${problems.join('\n  ')}`);
    console.log(
      JSON.stringify({
        bench: 'reconcile', addresses: managed.length, runs: RUNS,
        noDrift: { medianMs: median(noDrift.map((s) => s.ms)), maxMs: max(noDrift.map((s) => s.ms)), processes: noDrift[0].commands.length },
        drift: { drifted: DRIFT, medianMs: median(drift.map((s) => s.ms)), maxMs: max(drift.map((s) => s.ms)), processes: drift[0].commands.length },
        refDump: { medianMs: median(dumpMs), maxMs: max(dumpMs) }, refShow1000: { medianMs: median(showMs), maxMs: max(showMs) }, refWrite100: { medianMs: median(writeMs), maxMs: max(writeMs) },
        checksFailed: problems.length,
      }),
    );
  } finally {
    store.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench:reconcile needs root (network namespaces)');
    process.exit(1);
  }
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await deleteNamespaces([NS]);
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    await bench();
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

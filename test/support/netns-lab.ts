/**
 * A lab of network namespaces for the routing backends' tests (root and iproute2 needed).
 *
 *   client 192.0.2.130/25, 2001:db8:c::2/64 ── eth0 ═ c0 ── router 192.0.2.129/25, 2001:db8:c::1/64
 *   router br0 (a bridge in the router namespace): 192.0.2.1/25, 2001:db8:ffff::1/64
 *     ├─ o0 ═ eth0 origin  (srv-42)    192.0.2.2/25, 2001:db8:ffff::2/64 (+ on-link 192.0.2.50/25, 2001:db8:ffff::50/64)
 *     └─ t0 ═ eth0 transit (transit-3) 192.0.2.3/25, 2001:db8:ffff::3/64
 *   origin lo: 203.0.113.10, 203.0.113.11, 2001:db8:42::10; transit lo: 198.51.100.20, .21, 2001:db8:3::20
 *   router: host routes for each service address via its owner; forwarding on. DAD off everywhere.
 *
 * Only documentation addresses, only inside the lab's namespaces. Names are unique per run
 * (`fc<pid>-<n>-<role>`); namespaces of earlier runs whose process is gone are deleted at start.
 * Origin and transit run a small HTTP server on [::]:80 (dual-stack) answering every GET with the
 * host's inventory name in the body and in `x-served-by`. The servers and the probe agents read
 * stdin and exit when it closes, so they do not outlive a crashed test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { runCommand, type CommandResult } from '../../src/routing/command-runner.js';
import type { LinuxAddressBackendOptions } from '../../src/routing/linux-address-backend.js';
import type { LinuxRouteBackendOptions } from '../../src/routing/linux-route-backend.js';

/** Inventory names of the lab's hosts. */
export const ORIGIN = 'srv-42';
export const TRANSIT = 'transit-3';

/** Service addresses each host owns (on lo) when the lab starts. */
export const SERVICE_ADDRESSES = {
  [ORIGIN]: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'],
  [TRANSIT]: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'],
} as const;

/** On-link addresses on origin's LAN interface at start (for linux-address). */
export const ON_LINK_ADDRESSES = ['192.0.2.50', '2001:db8:ffff::50'] as const;

/** LAN addresses of router, origin, transit (IPv4, IPv6). */
export const LAN = {
  router: ['192.0.2.1', '2001:db8:ffff::1'],
  origin: ['192.0.2.2', '2001:db8:ffff::2'],
  transit: ['192.0.2.3', '2001:db8:ffff::3'],
} as const;

/** Namespace roles. */
export type Role = 'client' | 'router' | 'origin' | 'transit';
const ROLES: Role[] = ['client', 'router', 'origin', 'transit'];

/** Options of createLab. */
export interface LabOptions {
  /** Start the HTTP servers on origin and transit (default true). */
  http?: boolean;
}

/** Result of one probe. */
export interface Probe {
  /** x-served-by of the answer, null when there was none. */
  servedBy: string | null;
  /** Why there was none (ETIMEDOUT, ECONNREFUSED, ECONNRESET...). */
  error?: string;
  /** When it was sent (performance.now()) and how long it took. */
  at: number;
  ms: number;
}

/** A running lab. */
export interface Lab {
  /** Namespace names. */
  ns: Record<Role, string>;
  /** How long createLab took, in ms. */
  buildMs: number;
  /** Runs argv inside a namespace (`ip netns exec NS ...`). */
  exec(ns: string, argv: string[], input?: string): Promise<CommandResult>;
  /** GET `url` from inside `ns` on a fresh connection: the served-by name, or null (timeout default 500 ms). */
  httpFrom(ns: string, url: string, timeoutMs?: number): Promise<string | null>;
  /** Like httpFrom, with the error and timing. */
  probeFrom(ns: string, url: string, timeoutMs?: number): Promise<Probe>;
  /** Settings for LinuxRouteBackend (router prefix, next hops, host prefixes, lo). */
  linuxRoute: Omit<LinuxRouteBackendOptions, 'runner'>;
  /** Settings for LinuxAddressBackend (host prefixes and LAN devices, /25 and /64 as in the lab). */
  linuxAddress: Omit<LinuxAddressBackendOptions, 'runner'>;
  /** Stops the processes and deletes the namespaces. Safe to call twice. */
  destroy(): Promise<void>;
}

let labSeq = 0;

/** Runs a command and throws (with its stderr) when it fails. */
async function must(argv: string[], input?: string): Promise<CommandResult> {
  const r = await runCommand(argv, { input, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`netns-lab: ${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}${input ? `\ninput:\n${input}` : ''}`);
  return r;
}

/** Deletes lab namespaces (ours or stale ones): stops the processes in them first. */
export async function removeNamespaces(names: string[]): Promise<void> {
  if (names.length === 0) return;
  for (const name of names) {
    const r = await runCommand(['ip', 'netns', 'pids', name]);
    for (const pid of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  await runCommand(['ip', '-force', '-batch', '-'], { input: names.map((n) => `netns del ${n}`).join('\n') + '\n' });
}

/** Namespaces named by `pattern` (default fc<pid>-<n>-<role>; group 1 the pid) whose <pid> is no longer running. */
export async function staleNamespaces(pattern: RegExp = /^fc(\d+)-\d+-(client|router|origin|transit)$/): Promise<string[]> {
  const r = await runCommand(['ip', '-j', 'netns', 'list']);
  const list = r.code === 0 && r.stdout.trim() ? (JSON.parse(r.stdout) as { name: string }[]) : [];
  return list
    .map((n) => n.name)
    .filter((name) => {
      const m = pattern.exec(name);
      if (!m) return false;
      try {
        process.kill(Number(m[1]), 0);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ESRCH';
      }
    });
}

const HTTP_SERVER = `
const name = process.env.SERVED_BY;
const server = require('node:http').createServer((req, res) => {
  res.writeHead(200, { 'x-served-by': name, 'content-type': 'text/plain', connection: 'close' });
  res.end(name + '\\n');
});
server.listen({ port: 80, host: '::', ipv6Only: false }, () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0)).resume();
`;

const PROBE_AGENT = `
const http = require('node:http');
const rl = require('node:readline').createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const { id, url, timeoutMs } = JSON.parse(line);
  const t0 = performance.now();
  let done = false;
  const finish = (servedBy, error) => {
    if (done) return;
    done = true;
    process.stdout.write(JSON.stringify({ id, servedBy, error, ms: performance.now() - t0 }) + '\\n');
  };
  const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
    const by = res.headers['x-served-by'] ?? null;
    res.on('data', () => {});
    res.on('end', () => finish(by));
    res.on('error', (e) => finish(null, e.code || e.message));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
  req.on('error', (e) => finish(null, e.code || e.message));
});
rl.on('close', () => process.exit(0));
process.stdout.write('ready\\n');
`;

/** Starts `node -e code` inside a namespace and waits for its "ready" line. */
async function startNode(ns: string, code: string, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`netns-lab: node in ${ns} not ready after 10 s: ${stderr}`)), 10_000);
    const onData = (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`netns-lab: node in ${ns} exited (${code}): ${stderr}`));
    });
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin?.end();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
  clearTimeout(timer);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Builds the lab (about 0.2-0.5 s). On failure everything built so far is removed. */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const t0 = performance.now();
  const stale = await staleNamespaces();
  await removeNamespaces(stale);

  const base = `fc${process.pid}-${++labSeq}-`;
  const ns = Object.fromEntries(ROLES.map((r) => [r, `${base}${r}`])) as Record<Role, string>;
  const children: ChildProcess[] = [];
  const agents = new Map<string, Promise<Agent>>();
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    const started = await Promise.allSettled([...agents.values()]);
    for (const a of started) if (a.status === 'fulfilled') children.push(a.value.child);
    await Promise.all(children.map(stop));
    await removeNamespaces(ROLES.map((r) => ns[r]));
  };

  try {
    await must(['ip', '-batch', '-'], ROLES.map((r) => `netns add ${ns[r]}`).join('\n') + '\n');
    // Before any device exists: no DAD (addresses usable at once), no reverse-path filter; router forwards.
    const common = ['net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'];
    const forward = ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1'];
    await Promise.all(ROLES.map((r) => must(['ip', 'netns', 'exec', ns[r], 'sysctl', '-q', '-w', ...common, ...(r === 'router' ? forward : [])])));

    await must(['ip', '-n', ns.router, '-batch', '-'], [
      'link set lo up',
      'link add br0 type bridge mcast_snooping 0',
      `link add o0 type veth peer name eth0 netns ${ns.origin}`,
      `link add t0 type veth peer name eth0 netns ${ns.transit}`,
      `link add c0 type veth peer name eth0 netns ${ns.client}`,
      'link set o0 master br0',
      'link set t0 master br0',
      'addr add 192.0.2.1/25 dev br0',
      'addr add 2001:db8:ffff::1/64 dev br0 nodad',
      'addr add 192.0.2.129/25 dev c0',
      'addr add 2001:db8:c::1/64 dev c0 nodad',
      'link set br0 up',
      'link set o0 up',
      'link set t0 up',
      'link set c0 up',
    ].join('\n') + '\n');

    const host = (lan: readonly string[], lo: readonly string[], extra: string[] = []) => [
      'link set lo up',
      ...lo.map((a) => (a.includes(':') ? `addr add ${a}/128 dev lo nodad` : `addr add ${a}/32 dev lo`)),
      `addr add ${lan[0]}/25 dev eth0`,
      `addr add ${lan[1]}/64 dev eth0 nodad`,
      ...extra,
      'link set eth0 up',
      `route add default via ${LAN.router[0]}`,
      `route add ::/0 via ${LAN.router[1]}`,
    ];
    await Promise.all([
      must(['ip', '-n', ns.origin, '-batch', '-'], host(LAN.origin, SERVICE_ADDRESSES[ORIGIN], ['addr add 192.0.2.50/25 dev eth0', 'addr add 2001:db8:ffff::50/64 dev eth0 nodad']).join('\n') + '\n'),
      must(['ip', '-n', ns.transit, '-batch', '-'], host(LAN.transit, SERVICE_ADDRESSES[TRANSIT]).join('\n') + '\n'),
      must(['ip', '-n', ns.client, '-batch', '-'], [
        'link set lo up',
        'addr add 192.0.2.130/25 dev eth0',
        'addr add 2001:db8:c::2/64 dev eth0 nodad',
        'link set eth0 up',
        'route add default via 192.0.2.129',
        'route add ::/0 via 2001:db8:c::1',
      ].join('\n') + '\n'),
    ]);
    // Host routes last: the next hops' links are up now.
    const routes = [
      ...SERVICE_ADDRESSES[ORIGIN].map((a) => (a.includes(':') ? `route add ${a}/128 via ${LAN.origin[1]}` : `route add ${a}/32 via ${LAN.origin[0]}`)),
      ...SERVICE_ADDRESSES[TRANSIT].map((a) => (a.includes(':') ? `route add ${a}/128 via ${LAN.transit[1]}` : `route add ${a}/32 via ${LAN.transit[0]}`)),
    ];
    await must(['ip', '-n', ns.router, '-batch', '-'], routes.join('\n') + '\n');

    if (opts.http !== false) {
      children.push(...(await Promise.all([startNode(ns.origin, HTTP_SERVER, { SERVED_BY: ORIGIN }), startNode(ns.transit, HTTP_SERVER, { SERVED_BY: TRANSIT })])));
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  const agentFor = (name: string): Promise<Agent> => {
    let a = agents.get(name);
    if (!a) {
      a = startNode(name, PROBE_AGENT).then((child) => new Agent(child));
      agents.set(name, a);
    }
    return a;
  };
  const probeFrom = async (name: string, url: string, timeoutMs = 500): Promise<Probe> => (await agentFor(name)).get(url, timeoutMs);

  const prefix = (r: Role) => ['ip', 'netns', 'exec', ns[r]];
  const lab: Lab = {
    ns,
    buildMs: 0,
    exec: (name, argv, input) => runCommand(['ip', 'netns', 'exec', name, ...argv], { input, timeoutMs: 20_000 }),
    httpFrom: async (name, url, timeoutMs) => (await probeFrom(name, url, timeoutMs)).servedBy,
    probeFrom,
    linuxRoute: {
      router: prefix('router'),
      nextHops: { [ORIGIN]: [...LAN.origin], [TRANSIT]: [...LAN.transit] },
      hosts: { [ORIGIN]: prefix('origin'), [TRANSIT]: prefix('transit') },
      hostDevice: 'lo',
    },
    linuxAddress: {
      hosts: { [ORIGIN]: { exec: prefix('origin'), device: 'eth0' }, [TRANSIT]: { exec: prefix('transit'), device: 'eth0' } },
      prefixLength: { 4: 25, 6: 64 },
    },
    destroy,
  };
  lab.buildMs = performance.now() - t0;
  return lab;
}

/** A node process inside a namespace that runs HTTP GETs for us (JSON lines on stdin/stdout). */
class Agent {
  private seq = 0;
  private readonly waiting = new Map<number, (p: { servedBy: string | null; error?: string; ms: number }) => void>();
  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const msg = JSON.parse(line) as { id: number; servedBy: string | null; error?: string; ms: number };
      this.waiting.get(msg.id)?.(msg);
      this.waiting.delete(msg.id);
    });
  }

  get(url: string, timeoutMs: number): Promise<Probe> {
    const id = ++this.seq;
    const at = performance.now();
    return new Promise((resolve) => {
      this.waiting.set(id, (m) => resolve({ servedBy: m.servedBy, error: m.error, at, ms: m.ms }));
      this.child.stdin!.write(JSON.stringify({ id, url, timeoutMs }) + '\n');
    });
  }
}

/** `http://ADDR/` with IPv6 literals bracketed. */
export function urlOf(address: string): string {
  return address.includes(':') ? `http://[${address}]/` : `http://${address}/`;
}

/** Totals of a probe loop. */
export interface ProbeStats {
  probes: number;
  failures: number;
  /** Failures by error code. */
  errors: Record<string, number>;
  /** Answers by served-by name. */
  servedBy: Record<string, number>;
  /** Every probe, in order. */
  log: (Probe & { url: string })[];
}

/**
 * Probes `urls` round-robin from `ns`, one at a time, a new one every `intervalMs` (or as soon
 * as the previous one ends, when it took longer), until stop() is called. `stats` fills as the
 * probes end (tests wait on it for events such as "every address answered by the new host").
 */
export function probeLoop(lab: Lab, ns: string, urls: string[], intervalMs = 10, timeoutMs = 500): { stats: ProbeStats; stop(): Promise<ProbeStats> } {
  const stats: ProbeStats = { probes: 0, failures: 0, errors: {}, servedBy: {}, log: [] };
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const url = urls[i % urls.length];
      const started = performance.now();
      const p = await lab.probeFrom(ns, url, timeoutMs);
      stats.probes++;
      stats.log.push({ ...p, url });
      if (p.servedBy === null) {
        stats.failures++;
        stats.errors[p.error ?? 'none'] = (stats.errors[p.error ?? 'none'] ?? 0) + 1;
      } else stats.servedBy[p.servedBy] = (stats.servedBy[p.servedBy] ?? 0) + 1;
      const wait = intervalMs - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    stats,
    async stop() {
      running = false;
      await loop;
      return stats;
    },
  };
}

/** True when every url in `urls` has been answered by `host` on a probe sent at or after `since` (performance.now()). */
export function answeredSince(stats: ProbeStats, urls: readonly string[], host: string, since: number): boolean {
  return urls.every((url) => stats.log.some((p) => p.url === url && p.at >= since && p.servedBy === host));
}

/**
 * Controller config sections for the lab's two hosts with the linux-route backend (make-before-break):
 * servers, transits, state (./state.db) and routing. `extra` adds to linux_route (e.g. pin_connections).
 */
export function labSections(lab: Lab, opts: { profile?: string; linuxRoute?: Record<string, unknown> } = {}): Record<string, unknown> {
  const profile = opts.profile ? { profile: opts.profile } : {};
  return {
    servers: [{ name: ORIGIN, ...profile, addresses: [...SERVICE_ADDRESSES[ORIGIN]] }],
    transits: [{ name: TRANSIT, ...profile, addresses: [...SERVICE_ADDRESSES[TRANSIT]] }],
    state: { path: './state.db' },
    routing: {
      backend: 'linux-route',
      linux_route: { router: lab.linuxRoute.router, next_hops: lab.linuxRoute.nextHops, hosts: lab.linuxRoute.hosts, ...(opts.linuxRoute ?? {}) },
    },
  };
}

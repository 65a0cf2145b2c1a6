/**
 * The `linux-route` backend: service addresses are host routes (/32, /128) on a Linux router,
 * pointed at the host that must receive them (`ip route replace ADDR/32 via NEXTHOP`). All route
 * changes of one apply() go to the router in a single `ip -batch -` (commands on stdin), so the
 * router runs one process and switches every address within a few milliseconds.
 *
 * Make-before-break, when command prefixes for both hosts are configured: the address is first
 * added on the receiving host (`ip addr replace ADDR/32 dev lo`), then the route moves, then the
 * address is removed from the other host. Traffic always reaches a host that owns the address.
 *
 * Every address is validated and normalised with ip-address before it is used; commands run with
 * execFile and argv arrays (CommandRunner), never through a local shell. This backend does not
 * retry: it throws RouteError and says whether a retry may help (wrap it with withRetry).
 */
import { parseAddress } from '../core/addresses.js';
import { runCommand, type CommandResult, type CommandRunner } from './command-runner.js';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from './route-backend.js';

/** Options of LinuxRouteBackend. */
export interface LinuxRouteBackendOptions {
  /** Command prefix that runs `ip` on the router, e.g. ["ip","netns","exec","lab-router"] or ["ssh","router"]. */
  router: string[];
  /** Host name → its next hops as seen from the router, one per family, e.g. { 'srv-42': ['192.0.2.2', '2001:db8:ffff::2'] }. */
  nextHops: Record<string, string[]>;
  /** Host name → command prefix that runs `ip` on that host; enables make-before-break for pairs where both hosts have one. */
  hosts?: Record<string, string[]>;
  /** Device the service addresses live on on the hosts (default "lo"). */
  hostDevice?: string;
  /** Runs the commands (default: runCommand, execFile without a shell). */
  runner?: CommandRunner;
  /** Timeout of each command in ms (default 10000). */
  timeoutMs?: number;
}

/** One validated desired route. */
interface Move {
  address: string;
  family: 4 | 6;
  to: string;
  from: string;
  nextHop: string;
}

/** Routes Linux-router host routes to the host that must receive each service address. */
export class LinuxRouteBackend implements RouteBackend {
  readonly name = 'linux-route';
  private readonly router: string[];
  /** host → family → normalised next hop */
  private readonly hops = new Map<string, Map<4 | 6, string>>();
  /** "family|next hop" → host */
  private readonly hostByHop = new Map<string, string>();
  private readonly hosts: Map<string, string[]>;
  private readonly device: string;
  private readonly runner: CommandRunner;
  private readonly timeoutMs: number;

  constructor(opts: LinuxRouteBackendOptions) {
    this.router = checkPrefix(opts.router, 'router');
    for (const [host, list] of Object.entries(opts.nextHops ?? {})) {
      if (!Array.isArray(list) || list.length === 0 || list.length > 2) throw new RouteError(`linux-route: nextHops.${host}: one next hop per family expected`, false);
      const byFamily = new Map<4 | 6, string>();
      for (const text of list) {
        const ip = parseAddress(text);
        if (typeof ip === 'string') throw new RouteError(`linux-route: nextHops.${host}: ${ip}`, false);
        if (byFamily.has(ip.family)) throw new RouteError(`linux-route: nextHops.${host}: two IPv${ip.family} next hops`, false);
        const key = `${ip.family}|${ip.address}`;
        const other = this.hostByHop.get(key);
        if (other !== undefined) throw new RouteError(`linux-route: next hop ${ip.address} is given for both ${other} and ${host}`, false);
        byFamily.set(ip.family, ip.address);
        this.hostByHop.set(key, host);
      }
      this.hops.set(host, byFamily);
    }
    if (this.hops.size === 0) throw new RouteError('linux-route: nextHops is empty', false);
    this.hosts = new Map(Object.entries(opts.hosts ?? {}).map(([h, p]) => [h, checkPrefix(p, `hosts.${h}`)]));
    this.device = checkDevice(opts.hostDevice ?? 'lo', 'hostDevice');
    this.runner = opts.runner ?? runCommand;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /**
   * Reads the router's routes for `desired`, then (make-before-break) adds the addresses on the
   * receiving hosts, replaces every route that is not already right in one `ip -batch -`, and
   * removes the addresses from the other hosts. Routes already right are `unchanged` and untouched.
   */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    const moves = this.validate(desired);
    const result: ApplyResult = { changed: [], unchanged: [] };
    if (moves.length === 0) return result;

    const mbb = moves.filter((m) => this.hosts.has(m.to) && this.hosts.has(m.from));
    const [routes, toState] = await Promise.all([
      this.readRoutes(moves),
      this.readHosts([...new Set(mbb.map((m) => m.to))]),
    ]);
    const toChange = moves.filter((m) => routes.get(m.address)?.gateway !== m.nextHop);

    // 1. Make: the receiving host owns the address before any packet is routed to it.
    await this.changeHosts(mbb.filter((m) => !toState.get(m.to)!.has(m.address)), (m) => m.to, 'replace', toState);

    // 2. The switch: every route that differs, one batch on the router.
    if (toChange.length > 0) {
      const lines = toChange.map((m) => `route replace ${m.address}/${m.family === 4 ? 32 : 128} via ${m.nextHop}`);
      const r = await this.run(this.router, ['ip', '-batch', '-'], lines.join('\n') + '\n');
      if (r.code !== 0) {
        const line = failedBatchLine(r.stderr);
        const m = line !== undefined ? toChange[line - 1] : undefined;
        throw commandFailure(`linux-route: router: route replace${m ? ` ${m.address} via ${m.nextHop} (${m.to})` : ''}`, r, m?.address);
      }
    }
    const changedSet = new Set(toChange.map((m) => m.address));
    for (const m of moves) (changedSet.has(m.address) ? result.changed : result.unchanged).push(m.address);

    // 3. Break: the other host gives the address up (already gone is fine).
    if (mbb.length > 0) {
      const fromState = await this.readHosts([...new Set(mbb.map((m) => m.from))], ' (the routes are already switched)');
      await this.changeHosts(mbb.filter((m) => fromState.get(m.from)!.has(m.address)), (m) => m.from, 'del', fromState);
    }
    return result;
  }

  /** Where the router sends each address now: the host owning the route's next hop, or null. */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    const parsed = addresses.map((a) => {
      const ip = parseAddress(a);
      if (typeof ip === 'string') throw new RouteError(`linux-route: ${ip}`, false, String(a));
      return ip;
    });
    const routes = await this.readRoutes(parsed);
    return parsed.map((ip) => {
      const gw = routes.get(ip.address)?.gateway ?? null;
      return { address: ip.address, to: gw === null ? null : this.hostByHop.get(`${ip.family}|${gw}`) ?? null };
    });
  }

  /** Validates everything before any command runs: a mistake changes nothing. */
  private validate(desired: DesiredRoute[]): Move[] {
    if (!Array.isArray(desired)) throw new RouteError('linux-route: desired must be an array', false);
    const seen = new Map<string, Move>();
    for (const d of desired) {
      const ip = parseAddress(d?.address);
      if (typeof ip === 'string') throw new RouteError(`linux-route: ${ip}`, false, String(d?.address));
      if (d.family !== undefined && d.family !== ip.family) throw new RouteError(`linux-route: ${ip.address} is not an IPv${d.family} address`, false, ip.address);
      const hops = this.hops.get(d.to);
      if (!hops) throw new RouteError(`linux-route: ${ip.address}: unknown host ${JSON.stringify(d.to)} (not in nextHops)`, false, ip.address);
      if (!this.hops.has(d.from)) throw new RouteError(`linux-route: ${ip.address}: unknown host ${JSON.stringify(d.from)} (not in nextHops)`, false, ip.address);
      if (d.from === d.to) throw new RouteError(`linux-route: ${ip.address}: from and to are both ${d.to}`, false, ip.address);
      const nextHop = hops.get(ip.family);
      if (!nextHop) throw new RouteError(`linux-route: ${ip.address}: ${d.to} has no IPv${ip.family} next hop`, false, ip.address);
      const prev = seen.get(ip.address);
      if (prev && (prev.to !== d.to || prev.from !== d.from)) throw new RouteError(`linux-route: ${ip.address} is asked twice with different hosts`, false, ip.address);
      seen.set(ip.address, { address: ip.address, family: ip.family, to: d.to, from: d.from, nextHop });
    }
    return [...seen.values()];
  }

  /**
   * `ip -j -4 -batch -` / `ip -j -6 -batch -` with one `route show ADDR/32` per address (an exact
   * prefix match): at most two commands, whatever the size of the routing table.
   */
  private async readRoutes(ips: { address: string; family: 4 | 6 }[]): Promise<Map<string, { gateway: string | null }>> {
    const out = new Map<string, { gateway: string | null }>();
    for (const family of [4, 6] as const) {
      const list = [...new Set(ips.filter((i) => i.family === family).map((i) => i.address))];
      if (list.length === 0) continue;
      const input = list.map((a) => `route show ${a}/${family === 4 ? 32 : 128}`).join('\n') + '\n';
      const r = await this.run(this.router, ['ip', '-j', `-${family}`, '-batch', '-'], input);
      if (r.code !== 0) throw commandFailure('linux-route: router: route show', r);
      let arrays: unknown[];
      try {
        arrays = parseJsonStream(r.stdout);
      } catch (err) {
        throw new RouteError(`linux-route: router: unreadable ip -j output: ${(err as Error).message}`, false);
      }
      if (arrays.length !== list.length || !arrays.every(Array.isArray)) {
        throw new RouteError(`linux-route: router: expected ${list.length} JSON arrays from ip -j -batch, got ${arrays.length}`, false);
      }
      list.forEach((address, i) => out.set(address, { gateway: pickGateway(arrays[i] as RouteJson[], family) }));
    }
    return out;
  }

  /** `ip -j addr show dev DEV` on each host: host → address → prefix length. */
  private async readHosts(hosts: string[], note = ''): Promise<Map<string, Map<string, number>>> {
    const entries = await Promise.all(
      hosts.map(async (host) => {
        const r = await this.run(this.hosts.get(host)!, ['ip', '-j', 'addr', 'show', 'dev', this.device]);
        if (r.code !== 0) throw commandFailure(`linux-route: ${host}: addr show dev ${this.device}${note}`, r);
        try {
          return [host, deviceAddresses(r.stdout)] as const;
        } catch (err) {
          throw new RouteError(`linux-route: ${host}: unreadable ip -j addr output: ${(err as Error).message}`, false);
        }
      }),
    );
    return new Map(entries);
  }

  /** Adds (`addr replace`) or removes (`addr del`) addresses on their hosts, one batch per host. */
  private async changeHosts(moves: Move[], hostOf: (m: Move) => string, op: 'replace' | 'del', state: Map<string, Map<string, number>>): Promise<void> {
    const byHost = new Map<string, Move[]>();
    for (const m of moves) byHost.set(hostOf(m), [...(byHost.get(hostOf(m)) ?? []), m]);
    await Promise.all(
      [...byHost].map(async ([host, list]) => {
        const lines = list.map((m) => {
          const full = m.family === 4 ? 32 : 128;
          if (op === 'replace') return `addr replace ${m.address}/${full} dev ${this.device}${m.family === 6 ? ' nodad' : ''}`;
          return `addr del ${m.address}/${state.get(host)!.get(m.address) ?? full} dev ${this.device}`;
        });
        // -force: every line is tried; for `del`, an address already gone is not an error.
        const r = await this.run(this.hosts.get(host)!, ['ip', ...(op === 'del' ? ['-force'] : []), '-batch', '-'], lines.join('\n') + '\n');
        if (r.code === 0 || (op === 'del' && onlyAlreadyGone(r.stderr))) return;
        const line = failedBatchLine(r.stderr);
        const m = line !== undefined ? list[line - 1] : undefined;
        const what = op === 'replace' ? `addr replace${m ? ` ${m.address}` : ''} dev ${this.device}` : `addr del${m ? ` ${m.address}` : ''} dev ${this.device} (the routes are already switched)`;
        throw commandFailure(`linux-route: ${host}: ${what}`, r, m?.address);
      }),
    );
  }

  private run(prefix: string[], args: string[], input?: string): Promise<CommandResult> {
    return this.runner([...prefix, ...args], { input, timeoutMs: this.timeoutMs });
  }
}

/** One element of `ip -j route show`. */
interface RouteJson {
  type?: string;
  gateway?: string;
  via?: { family?: string; host?: string };
  metric?: number;
  nexthops?: unknown[];
}

/** The single next hop of the best route (lowest metric), normalised; null for none, multipath, blackhole. */
function pickGateway(routes: RouteJson[], family: 4 | 6): string | null {
  const unicast = routes.filter((r) => (r.type === undefined || r.type === 'unicast') && !r.nexthops);
  if (unicast.length === 0) return null;
  const best = unicast.reduce((a, b) => ((b.metric ?? 0) < (a.metric ?? 0) ? b : a));
  const gw = best.gateway ?? best.via?.host;
  if (typeof gw !== 'string') return null;
  const ip = parseAddress(gw);
  return typeof ip === 'string' || ip.family !== family ? null : ip.address;
}

/** Addresses on the device of `ip -j addr show dev DEV`: normalised address → prefix length. */
export function deviceAddresses(stdout: string): Map<string, number> {
  const out = new Map<string, number>();
  const links = JSON.parse(stdout.trim() === '' ? '[]' : stdout) as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  if (!Array.isArray(links)) throw new Error('not a JSON array');
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      const ip = typeof a.local === 'string' ? parseAddress(a.local) : 'none';
      if (typeof ip !== 'string') out.set(ip.address, Number(a.prefixlen));
    }
  }
  return out;
}

/** Splits the concatenated JSON documents `ip -j -batch` prints (one per command). */
export function parseJsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === ']' || c === '}') {
      if (--depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
      if (depth < 0) throw new Error('unbalanced JSON');
    } else if (depth === 0 && !/\s/.test(c)) throw new Error(`unexpected ${JSON.stringify(c)} between JSON documents`);
  }
  if (depth !== 0 || inString) throw new Error('truncated JSON');
  return out;
}

/** The 1-based line of a failed `ip -batch` command ("Command failed -:3"). */
export function failedBatchLine(stderr: string): number | undefined {
  const m = /Command failed -:(\d+)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

/** True when every failure of an `ip -force -batch` of `addr del` was "address not there". */
function onlyAlreadyGone(stderr: string): boolean {
  const errors = stderr.split('\n').filter((l) => l.trim() !== '' && !/^Command failed -:\d+/.test(l));
  return errors.length > 0 && errors.every((l) => /Cannot assign requested address/.test(l));
}

/** Failures that a configuration change must fix: retrying will not help. */
const FINAL = [
  /Network is unreachable/i,
  /RTNETLINK answers: No route to host/i, // IPv6 next hop not on a connected network
  /Nexthop has invalid gateway/i,
  /invalid gateway/i,
  /Invalid argument/i,
  /prefix is expected/i,
  /address is expected/i,
  /is unknown, try "ip help"/i,
  /Cannot find device/i,
  /No such device/i,
  /Operation not permitted/i,
  /Permission denied/i,
  /Error: ["a-z]/i, // iproute2 argument errors ("Error: either "local" is duplicate, or ...")
];

/** Failures that may pass: timeouts, missing commands, an unreachable host, a busy kernel. */
const TRANSIENT = [/timed out/i, /Resource temporarily unavailable/i, /Device or resource busy/i, /No buffer space/i, /Connection (refused|reset|closed|timed out)/i, /Cannot open network namespace/i];

/**
 * Whether a failed command may succeed if tried again. Timeouts (124), missing commands (127, or
 * `ip netns exec`'s "exec of ... failed") and ssh's own failures (255) are retryable; kernel and
 * argument errors (unreachable network, invalid next hop, unknown device) are not. Anything else
 * is treated as retryable: a transient fault misread as final would abort a failover.
 */
export function isRetryable(r: CommandResult): boolean {
  if (r.code === 124 || r.code === 127 || r.code === 255) return true;
  if (/exec of ".*" failed|command not found/i.test(r.stderr)) return true;
  if (TRANSIENT.some((re) => re.test(r.stderr))) return true;
  if (FINAL.some((re) => re.test(r.stderr))) return false;
  return true;
}

/** A RouteError for a failed command, with its stderr (or why it failed) in the message. */
export function commandFailure(what: string, r: CommandResult, address?: string): RouteError {
  const why = r.code === 124 ? 'timed out' : r.code === 127 ? 'command not found or not startable' : `exit ${r.code}`;
  const text = r.stderr.trim().replace(/\s*\n\s*/g, ' / ');
  return new RouteError(`${what}: ${why}${text ? `: ${text}` : ''}`, isRetryable(r), address);
}

/** A command prefix from the configuration: a non-empty array of non-empty strings. */
export function checkPrefix(prefix: unknown, what: string): string[] {
  if (!Array.isArray(prefix) || prefix.length === 0 || !prefix.every((p) => typeof p === 'string' && p !== '' && !p.includes('\0'))) {
    throw new RouteError(`${what}: a command prefix (non-empty array of strings) is expected`, false);
  }
  return [...prefix];
}

/** A network device name as the kernel allows it (at most 15 characters, no spaces or slashes). */
export function checkDevice(name: unknown, what: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.@:][A-Za-z0-9_.@:-]{0,14}$/.test(name)) {
    throw new RouteError(`${what}: ${JSON.stringify(name)} is not a device name`, false);
  }
  return name;
}

/**
 * What the routing backends that point a host route or a BGP path at a host (linux-route, bgp)
 * share: their next hops per host, the validation of a desired state against them, and the
 * make-before-break of service addresses on the hosts (`ip addr replace ADDR/32 dev lo` on the
 * receiving host before the switch, `ip addr del` on the other host after it). Also the helpers
 * every command-driven backend uses to read `ip` output and to judge a failed command.
 */
import { parseAddress } from '../core/addresses.js';
import { RouteError, type DesiredRoute } from '../core/ports.js';
import type { CommandResult, CommandRunner } from './command-runner.js';

/**
 * parseAddress with a memory: ip-address takes tens of µs per IPv6 address, and a reconcile pass
 * reads the same thousands of addresses (asked, routes, device addresses) every time. Bounded:
 * emptied when it reaches PARSE_CACHE_MAX entries.
 */
const parseCache = new Map<string, ReturnType<typeof parseAddress>>();
const PARSE_CACHE_MAX = 100_000;
export function parseAddressCached(text: string): ReturnType<typeof parseAddress> {
  if (typeof text !== 'string') return parseAddress(text);
  let r = parseCache.get(text);
  if (r === undefined) {
    if (parseCache.size >= PARSE_CACHE_MAX) parseCache.clear();
    r = parseAddress(text);
    parseCache.set(text, r);
  }
  return r;
}

/** One validated desired route: the address normalised, the next hop of its receiving host. */
export interface HostMove {
  address: string;
  family: 4 | 6;
  to: string;
  from: string;
  nextHop: string;
  repair: boolean;
}

/** The next hops of the hosts, one per family, as a backend's configuration gives them. */
export class NextHops {
  /** host → family → normalised next hop */
  readonly byHost = new Map<string, Map<4 | 6, string>>();
  /** "family|next hop" → host */
  private readonly hostByHop = new Map<string, string>();

  /**
   * Checks `nextHops` (host → addresses): one per family, none shared by two hosts, at least one
   * host; with `concrete`, an unspecified address (0.0.0.0, ::) is refused. Throws a final RouteError.
   */
  constructor(nextHops: Record<string, string[]> | undefined, private readonly backend: string, opts: { concrete?: boolean } = {}) {
    for (const [host, list] of Object.entries(nextHops ?? {})) {
      if (!Array.isArray(list) || list.length === 0 || list.length > 2) throw new RouteError(`${backend}: nextHops.${host}: one next hop per family expected`, false);
      const byFamily = new Map<4 | 6, string>();
      for (const text of list) {
        const ip = parseAddress(text);
        if (typeof ip === 'string') throw new RouteError(`${backend}: nextHops.${host}: ${ip}`, false);
        if (opts.concrete && (ip.address === '0.0.0.0' || ip.address === '::')) throw new RouteError(`${backend}: nextHops.${host}: ${ip.address} is not a next hop`, false);
        if (byFamily.has(ip.family)) throw new RouteError(`${backend}: nextHops.${host}: two IPv${ip.family} next hops`, false);
        const key = `${ip.family}|${ip.address}`;
        const other = this.hostByHop.get(key);
        if (other !== undefined) throw new RouteError(`${backend}: next hop ${ip.address} is given for both ${other} and ${host}`, false);
        byFamily.set(ip.family, ip.address);
        this.hostByHop.set(key, host);
      }
      this.byHost.set(host, byFamily);
    }
    if (this.byHost.size === 0) throw new RouteError(`${backend}: nextHops is empty`, false);
  }

  /** The host whose next hop this is (normalised), or null. */
  hostOf(family: 4 | 6, hop: string | null | undefined): string | null {
    return hop ? (this.hostByHop.get(`${family}|${hop}`) ?? null) : null;
  }

  /** Validates a whole desired state before anything changes: a mistake changes nothing. Throws a final RouteError naming the address. */
  validate(desired: DesiredRoute[]): HostMove[] {
    const b = this.backend;
    if (!Array.isArray(desired)) throw new RouteError(`${b}: desired must be an array`, false);
    const seen = new Map<string, HostMove>();
    for (const d of desired) {
      const ip = parseAddressCached(d?.address);
      if (typeof ip === 'string') throw new RouteError(`${b}: ${ip}`, false, String(d?.address));
      if (d.family !== undefined && d.family !== ip.family) throw new RouteError(`${b}: ${ip.address} is not an IPv${d.family} address`, false, ip.address);
      const hops = this.byHost.get(d.to);
      if (!hops) throw new RouteError(`${b}: ${ip.address}: unknown host ${JSON.stringify(d.to)} (not in nextHops)`, false, ip.address);
      if (!this.byHost.has(d.from)) throw new RouteError(`${b}: ${ip.address}: unknown host ${JSON.stringify(d.from)} (not in nextHops)`, false, ip.address);
      if (d.from === d.to) throw new RouteError(`${b}: ${ip.address}: from and to are both ${d.to}`, false, ip.address);
      const nextHop = hops.get(ip.family);
      if (!nextHop) throw new RouteError(`${b}: ${ip.address}: ${d.to} has no IPv${ip.family} next hop`, false, ip.address);
      const prev = seen.get(ip.address);
      if (prev && (prev.to !== d.to || prev.from !== d.from)) throw new RouteError(`${b}: ${ip.address} is asked twice with different hosts`, false, ip.address);
      seen.set(ip.address, { address: ip.address, family: ip.family, to: d.to, from: d.from, nextHop, repair: d.repair === true });
    }
    return [...seen.values()];
  }
}

/** Addresses on one host's device: normalised address → prefix length. */
export type DeviceState = Map<string, number>;

/**
 * The service addresses on the hosts that have a command prefix (make-before-break): read them,
 * add them on the receiving host, remove them from the other one. Hosts without a prefix are not
 * touched.
 */
export class HostAddresses {
  private readonly hosts: Map<string, string[]>;
  readonly device: string;

  /**
   * `hosts`: host → command prefix running `ip` there; `what` names the config fields in errors
   * (e.g. "bgp: hosts"); `switched` says in the error of a failed removal that the traffic
   * already moved (e.g. "the routes are already switched").
   */
  constructor(private readonly opts: { backend: string; hosts?: Record<string, string[]>; device?: string; what: { hosts: string; device: string }; switched: string; runner: CommandRunner; timeoutMs: number }) {
    this.hosts = new Map(Object.entries(opts.hosts ?? {}).map(([h, p]) => [h, checkPrefix(p, `${opts.what.hosts}.${h}`)]));
    this.device = checkDevice(opts.device ?? 'lo', opts.what.device);
  }

  has(host: string): boolean {
    return this.hosts.has(host);
  }

  /** The moves whose receiving host has a prefix (`make`: the address is added there first), and of those the ones whose other host has one too (`mbb`: removed there last). */
  sides<M extends HostMove>(moves: M[]): { make: M[]; mbb: M[] } {
    const make = moves.filter((m) => this.hosts.has(m.to));
    return { make, mbb: make.filter((m) => this.hosts.has(m.from)) };
  }

  get size(): number {
    return this.hosts.size;
  }

  /** `ip -j addr show dev DEV` on each host: host → address → prefix length. Throws the first failure. */
  async read(hosts: string[], note = ''): Promise<Map<string, DeviceState>> {
    const entries = await Promise.all(
      hosts.map(async (host) => {
        const r = await this.opts.runner([...this.hosts.get(host)!, 'ip', '-j', 'addr', 'show', 'dev', this.device], { timeoutMs: this.opts.timeoutMs });
        if (r.code !== 0) throw commandFailure(`${this.opts.backend}: ${host}: addr show dev ${this.device}${note}`, r);
        try {
          return [host, deviceAddresses(r.stdout)] as const;
        } catch (err) {
          throw new RouteError(`${this.opts.backend}: ${host}: unreadable ip -j addr output: ${(err as Error).message}`, false);
        }
      }),
    );
    return new Map(entries);
  }

  /** Like read, each host on its own: a host that cannot be read maps to its RouteError. */
  async readSettled(hosts: string[]): Promise<Map<string, DeviceState | RouteError>> {
    const settled = await Promise.allSettled(hosts.map((h) => this.read([h])));
    return new Map(
      settled.map((s, i) => [hosts[i], s.status === 'fulfilled' ? s.value.get(hosts[i])! : s.reason instanceof RouteError ? s.reason : new RouteError(String(s.reason), true)]),
    );
  }

  /**
   * The moves whose other host (`from`) still holds the address after the switch, with what
   * those hosts hold. A `from` host that cannot be read fails it, unless every move from it is a
   * repair (the host may be the one being reinstalled): then it is left as it is.
   */
  async leaving<M extends HostMove>(mbb: M[]): Promise<{ leaving: M[]; state: Map<string, DeviceState> }> {
    const state = new Map<string, DeviceState>();
    for (const [host, read] of await this.readSettled([...new Set(mbb.map((m) => m.from))])) {
      if (!(read instanceof RouteError)) state.set(host, read);
      else if (!mbb.every((m) => m.from !== host || m.repair)) throw new RouteError(`${read.message} (${this.opts.switched})`, read.retryable, read.address);
    }
    return { leaving: mbb.filter((m) => state.get(m.from)?.has(m.address)), state };
  }

  /** Adds (`addr replace`) or removes (`addr del`, one already gone is fine) addresses on their hosts, one `ip -batch` per host. */
  async change(moves: HostMove[], hostOf: (m: HostMove) => string, op: 'replace' | 'del', state: Map<string, DeviceState>): Promise<void> {
    const byHost = new Map<string, HostMove[]>();
    for (const m of moves) byHost.set(hostOf(m), [...(byHost.get(hostOf(m)) ?? []), m]);
    await Promise.all(
      [...byHost].map(async ([host, list]) => {
        const lines = list.map((m) => {
          const full = m.family === 4 ? 32 : 128;
          if (op === 'replace') return `addr replace ${m.address}/${full} dev ${this.device}${m.family === 6 ? ' nodad' : ''}`;
          return `addr del ${m.address}/${state.get(host)!.get(m.address) ?? full} dev ${this.device}`;
        });
        // -force: every line is tried; for `del`, an address already gone is not an error.
        const r = await this.opts.runner([...this.hosts.get(host)!, 'ip', ...(op === 'del' ? ['-force'] : []), '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: this.opts.timeoutMs });
        if (r.code === 0 || (op === 'del' && onlyAlreadyGone(r.stderr))) return;
        const line = failedBatchLine(r.stderr);
        const m = line !== undefined ? list[line - 1] : undefined;
        const what = op === 'replace' ? `addr replace${m ? ` ${m.address}` : ''} dev ${this.device}` : `addr del${m ? ` ${m.address}` : ''} dev ${this.device} (${this.opts.switched})`;
        throw commandFailure(`${this.opts.backend}: ${host}: ${what}`, r, m?.address);
      }),
    );
  }
}

/** Addresses on the device of `ip -j addr show dev DEV`: normalised address → prefix length. */
export function deviceAddresses(stdout: string): Map<string, number> {
  const out = new Map<string, number>();
  const links = JSON.parse(stdout.trim() === '' ? '[]' : stdout) as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  if (!Array.isArray(links)) throw new Error('not a JSON array');
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      const ip = typeof a.local === 'string' ? parseAddressCached(a.local) : 'none';
      if (typeof ip !== 'string') out.set(ip.address, Number(a.prefixlen));
    }
  }
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

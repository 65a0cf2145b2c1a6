/**
 * The `linux-route` backend: service addresses are host routes (/32, /128) on a Linux router,
 * pointed at the host that must receive them (`ip route replace ADDR/32 via NEXTHOP`). All route
 * changes of one apply() go to the router in a single `ip -batch -` (commands on stdin), so the
 * router runs one process and switches every address within a few milliseconds.
 *
 * Make-before-break, when command prefixes for both hosts are configured: the address is first
 * added on the receiving host (`ip addr replace ADDR/32 dev lo`), then the route moves, then the
 * address is removed from the other host. Traffic always reaches a host that owns the address.
 * (A receiving host with a prefix gets the address even when the other host has none.)
 *
 * Reads: the router's main table is read whole, once per family (`ip -j -4 -batch -` with `route
 * show table main`; host routes /32 and /128 are picked out here): one dump costs milliseconds
 * whatever the number of addresses asked, where one `route show ADDR/32` per address made the
 * kernel dump the table once per address (1,000 addresses in the lab: 0.6-1.1 s against 20-50 ms).
 * current() and apply() share this reader; with pinning the same batch also reads `rule show` and
 * each host's table, and `nft -j list table inet failover` runs beside it.
 *
 * Connection pinning (`pinConnections: true`): the router keeps every connection on the host it
 * started on. An nftables table `inet failover` marks the first packet of each flow to a service
 * address with the mark of the host the address points at (map `pin4`/`pin6`: address → mark),
 * saves it in the conntrack entry and restores it on every later packet; `ip rule fwmark MARK
 * lookup MARK` sends each mark to its host's next hop (one routing table per host). The flip is
 * then one atomic nft transaction on the map (plus the main-table route, kept in sync as the
 * fallback and as what current() reads): only new connections go to the new host. With
 * make-before-break, the address is removed from the old host once the connections pinned to it
 * have ended, or after `drainMs`; what is left of them is then cut (conntrack entries deleted).
 *
 * Every address is validated and normalised with ip-address before it is used; commands run with
 * execFile and argv arrays (CommandRunner), never through a local shell. This backend does not
 * retry: it throws RouteError and says whether a retry may help (wrap it with withRetry).
 */
import { parseAddress } from '../core/addresses.js';
import { runCommand, type CommandResult, type CommandRunner } from './command-runner.js';
import { checkPrefix, commandFailure, failedBatchLine, HostAddresses, NextHops, parseAddressCached, type HostMove } from './host-addresses.js';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';

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
  /**
   * Connection pinning on the router (nftables + conntrack + fwmark policy routing; needs `nft`
   * and `conntrack` there): connections keep going to the host they started on, only new ones
   * follow a flip. The setup is installed idempotently by the first apply (default false).
   */
  pinConnections?: boolean;
  /**
   * With pinning and make-before-break: how long the old host keeps the address after the flip
   * while TCP connections pinned to it are still open (default 2000 ms; 0 = do not wait). Those
   * still open then are cut.
   */
  drainMs?: number;
  /** Preference of the `ip rule fwmark` rules installed for pinning (default 1000; below main's 32766). */
  pinRulePriority?: number;
}

/** nftables table (family inet) that pinning installs on the router. */
export const PIN_TABLE = 'failover';
/** Marks (and routing table ids) used for pinning: PIN_MARK_BASE | host id (16 bits). */
export const PIN_MARK_BASE = 0x0fa10000;
export const PIN_MARK_MASK = 0xffff0000;
/** Pause between a fresh pinning setup and a flip in the same apply: flows in flight get pinned first. */
export const PIN_SETTLE_MS = 200;
/** Interval of the conntrack reads while pinned connections drain. */
const DRAIN_POLL_MS = 50;
const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

type Move = HostMove;

/** Routes Linux-router host routes to the host that must receive each service address. */
export class LinuxRouteBackend implements RouteBackend {
  readonly name = 'linux-route';
  private readonly router: string[];
  private readonly nextHops: NextHops;
  /** host → family → normalised next hop */
  private readonly hops: Map<string, Map<4 | 6, string>>;
  /** Make-before-break on the hosts with a command prefix. */
  private readonly hosts: HostAddresses;
  private readonly runner: CommandRunner;
  private readonly timeoutMs: number;
  private readonly pin: boolean;
  private readonly drainMs: number;
  private readonly rulePriority: number;
  /** host → pinning mark (= its routing table id) */
  private readonly markOf = new Map<string, number>();
  /** True once this instance has installed (or checked) the router's pinning setup (conntrack checked). */
  private pinReady = false;

  constructor(opts: LinuxRouteBackendOptions) {
    this.router = checkPrefix(opts.router, 'router');
    this.nextHops = new NextHops(opts.nextHops, 'linux-route');
    this.hops = this.nextHops.byHost;
    this.runner = opts.runner ?? runCommand;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.hosts = new HostAddresses({
      backend: 'linux-route', hosts: opts.hosts, device: opts.hostDevice, what: { hosts: 'hosts', device: 'hostDevice' },
      switched: 'the routes are already switched', runner: this.runner, timeoutMs: this.timeoutMs,
    });
    this.pin = opts.pinConnections === true;
    this.drainMs = checkNumber(opts.drainMs ?? 2000, 'drainMs', 0, 3_600_000);
    this.rulePriority = checkNumber(opts.pinRulePriority ?? 1000, 'pinRulePriority', 1, 32765);
    for (const [host, id] of pinIds([...this.hops.keys()])) this.markOf.set(host, (PIN_MARK_BASE | id) >>> 0);
  }

  /**
   * Reads the router (main table, and with pinning its setup and map elements), then adds the
   * addresses missing on the receiving hosts that have a command prefix, replaces every route
   * that is not already right in one `ip -batch -`, and (make-before-break) removes the addresses
   * from the other hosts. Routes already right are `unchanged` and untouched. With pinning, what
   * the router lacks of the setup (table, maps, chain, rules, host tables) is installed again, the
   * map element of each address is flipped too (one nft transaction, before the routes), and the
   * removal from the other host waits for its pinned connections. Repairs every problem current()
   * reports for the same addresses and hosts.
   */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    const moves = this.nextHops.validate(desired);
    const result: ApplyResult = { changed: [], unchanged: [] };
    if (moves.length === 0) return result;

    const { make, mbb } = this.hosts.sides(moves);
    const [{ routes, pin: pinned }, toState] = await Promise.all([
      this.readRouter([...new Set(moves.map((m) => m.family))]),
      this.hosts.read([...new Set(make.map((m) => m.to))]),
    ]);
    const routeWrong = (m: Move) => routes.get(m.address) !== m.nextHop;
    const elemWrong = (m: Move) => pinned !== undefined && pinned.elements.get(m.address) !== this.markOf.get(m.to);
    // 0. Pinning setup (first apply of this instance, or the router lost part of it), and map
    //    elements for addresses that have none yet: where the route points now, so flows in
    //    flight stay there.
    let settle = false;
    if (pinned) settle = await this.preparePinning(moves, routes, pinned);
    const toChange = moves.filter((m) => routeWrong(m) || elemWrong(m));

    // 1. Make: the receiving host owns the address before any packet is routed to it.
    await this.hosts.change(make.filter((m) => !toState.get(m.to)!.has(m.address)), (m) => m.to, 'replace', toState);
    if (settle && toChange.length > 0) await sleep(PIN_SETTLE_MS);

    // 2. The switch. Pinning: the map elements (new connections), one atomic nft transaction.
    if (pinned) {
      const flip = toChange.filter(elemWrong);
      if (flip.length > 0) await this.nft(elementLines(flip, (m) => this.markOf.get(m.to)!, pinned.elements), 'flip');
    }
    // Every route that differs, one batch on the router.
    const routeChange = toChange.filter(routeWrong);
    if (routeChange.length > 0) {
      const lines = routeChange.map((m) => `route replace ${m.address}/${m.family === 4 ? 32 : 128} via ${m.nextHop}`);
      const r = await this.run(this.router, ['ip', '-batch', '-'], lines.join('\n') + '\n');
      if (r.code !== 0) {
        const line = failedBatchLine(r.stderr);
        const m = line !== undefined ? routeChange[line - 1] : undefined;
        throw commandFailure(`linux-route: router: route replace${m ? ` ${m.address} via ${m.nextHop} (${m.to})` : ''}`, r, m?.address);
      }
    }
    const changedSet = new Set(toChange.map((m) => m.address));
    for (const m of moves) (changedSet.has(m.address) ? result.changed : result.unchanged).push(m.address);

    // 3. Break: the other host gives the address up (already gone is fine); with pinning, once
    //    the connections pinned to it have ended (or drainMs), and what is left of them is cut.
    if (mbb.length > 0) {
      const { leaving, state } = await this.hosts.leaving(mbb);
      const left = this.pin && leaving.length > 0 ? await this.drain(leaving) : [];
      await this.hosts.change(leaving, (m) => m.from, 'del', state);
      if (left.length > 0) await this.cutPinned(left);
    }
    return result;
  }

  /**
   * Where the router sends each address now (`to`: the host owning the main-table route's next
   * hop; null for no route, an unknown next hop, multipath, blackhole or a device-only route),
   * and what is missing for delivery to it to be complete (`problems`):
   * - make-before-break (`to` has a command prefix in `hosts`): `to` lacks the address on its
   *   device. Only receiving hosts are read, one `ip -j addr show dev DEV` each, in parallel; a
   *   receiving host that does not answer makes its addresses `unknown` (the others are read);
   * - pinning: the router lacks part of the setup needed to pin to `to` (table, map, chain, rule,
   *   `to`'s routing table), or the address's map element is missing or holds another mark.
   * Throws RouteError for an invalid address (before any command) and when the router cannot be
   * read. Addresses come back normalised, in the order asked.
   */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    if (!Array.isArray(addresses)) throw new RouteError('linux-route: addresses must be an array', false);
    const parsed = addresses.map((a) => {
      const ip = parseAddressCached(a);
      if (typeof ip === 'string') throw new RouteError(`linux-route: ${ip}`, false, String(a));
      return ip;
    });
    if (parsed.length === 0) return [];
    const { routes, pin } = await this.readRouter([...new Set(parsed.map((ip) => ip.family))]);
    const tos = parsed.map((ip) => {
      const gw = routes.get(ip.address);
      return this.nextHops.hostOf(ip.family, gw);
    });
    const receiving = [...new Set(tos.filter((h): h is string => h !== null && this.hosts.has(h)))];
    const held = await this.hosts.readSettled(receiving);
    return parsed.map((ip, i) => {
      const to = tos[i];
      const out: CurrentRoute = { address: ip.address, to };
      if (to === null) return out;
      const state = held.get(to);
      if (state instanceof RouteError) return { ...out, unknown: `${to} (receiving ${ip.address}) could not be read: ${state.message}` };
      const problems: string[] = [];
      if (state !== undefined && !state.has(ip.address)) problems.push(`${to} does not hold ${ip.address} on ${this.hosts.device}`);
      if (pin) problems.push(...this.pinProblems(pin, ip, to));
      if (problems.length > 0) out.problems = problems;
      return out;
    });
  }

  /** What pinning lacks on the router for `ip` to be pinned to `to` (sentences; empty: complete). */
  private pinProblems(p: PinState, ip: { address: string; family: 4 | 6 }, to: string): string[] {
    const gaps = this.pinGaps(p, to, ip.family);
    const why = ` (pinning ${ip.address} to ${to})`;
    if (!p.exists || !p.maps.has(`pin${ip.family}`)) return gaps.map((g) => g + why);
    const mark = this.markOf.get(to)!;
    const has = p.elements.get(ip.address);
    if (has === undefined) gaps.push(`router: map pin${ip.family} has no element for ${ip.address}`);
    else if (has !== mark) {
      const other = [...this.markOf].find(([, m]) => m === has)?.[0];
      gaps.push(`router: map pin${ip.family} sends new connections to ${ip.address} to ${other ?? `mark ${hex(has)} (no configured host)`}, not ${to}`);
    }
    return gaps.map((g) => g + why);
  }

  /** What the router lacks for pinning `family` traffic to `host`: table, map, chain rule, ip rule, the host's table. */
  private pinGaps(p: PinState, host: string, family: 4 | 6): string[] {
    if (!p.exists) return [`router: no nftables table inet ${PIN_TABLE}`];
    const gaps: string[] = [];
    if (!p.maps.has(`pin${family}`)) gaps.push(`router: no map pin${family} in table inet ${PIN_TABLE}`);
    if (!p.chain[family]) gaps.push(`router: chain inet ${PIN_TABLE} prerouting does not pin with @pin${family}`);
    const mark = this.markOf.get(host)!;
    const hop = this.hops.get(host)?.get(family);
    if (!this.hasRule(p, family, mark)) gaps.push(`router: no ip -${family} rule fwmark ${hex(mark)} lookup ${mark} (pref ${this.rulePriority}) for ${host}`);
    if (hop !== undefined && p.tables[family].get(mark) !== hop) gaps.push(`router: table ${mark} has no default route via ${hop} for ${host}`);
    return gaps;
  }

  /** Everything pinning needs is on the router, for every host and family with a next hop. */
  private pinComplete(p: PinState): boolean {
    for (const [host, byFamily] of this.hops) for (const family of byFamily.keys()) if (this.pinGaps(p, host, family).length > 0) return false;
    return true;
  }

  private hasRule(p: PinState, family: 4 | 6, mark: number): boolean {
    return p.rules[family].some((r) => r?.priority === this.rulePriority && Number(r.fwmark) === mark && (r.fwmask === undefined || Number(r.fwmask) === 0xffffffff) && String(r.table) === String(mark));
  }

  /**
   * One read of the router: per family (`families`; both with pinning) one `ip -j -F -batch -`
   * with `route show table main` (and, with pinning, `rule show` and `route show table MARK` per
   * host); with pinning `nft -j list table inet failover` beside it. Throws RouteError when a
   * command fails or its output cannot be read (a missing nft table is not a failure).
   */
  private async readRouter(families: readonly (4 | 6)[]): Promise<{ routes: Map<string, string | null>; pin?: PinState }> {
    const fams = this.pin ? ([4, 6] as const) : families;
    const [reads, table] = await Promise.all([
      Promise.all(
        fams.map(async (family) => {
          const hosts = this.pin ? [...this.hops].filter(([, b]) => b.has(family)).map(([h]) => h) : [];
          const lines = ['route show table main', ...(this.pin ? ['rule show', ...hosts.map((h) => `route show table ${this.markOf.get(h)}`)] : [])];
          const r = await this.run(this.router, ['ip', '-j', `-${family}`, '-batch', '-'], lines.join('\n') + '\n');
          if (r.code !== 0) throw commandFailure(`linux-route: router: ip -${family} route show table main${this.pin ? ', rule show' : ''}${lineOf(lines, r.stderr)}`, r);
          let docs: unknown[];
          try {
            docs = parseJsonStream(r.stdout);
          } catch (err) {
            throw new RouteError(`linux-route: router: unreadable ip -j output: ${(err as Error).message}`, false);
          }
          if (docs.length !== lines.length || !docs.every(Array.isArray)) {
            throw new RouteError(`linux-route: router: expected ${lines.length} JSON arrays from ip -j -${family} -batch, got ${docs.length}`, false);
          }
          return { family, docs: docs as unknown[][], hosts };
        }),
      ),
      this.pin ? this.run(this.router, ['nft', '-j', 'list', 'table', 'inet', PIN_TABLE]) : undefined,
    ]);
    const routes = new Map<string, string | null>();
    for (const { family, docs } of reads) for (const [a, gw] of hostRoutes(docs[0], family)) routes.set(a, gw);
    if (!this.pin || !table) return { routes };

    const pin: PinState = { exists: false, maps: new Set(), chain: { 4: false, 6: false }, elements: new Map(), rules: { 4: [], 6: [] }, tables: { 4: new Map(), 6: new Map() } };
    if (table.code !== 0) {
      if (!tableMissing(table)) throw nftFailure('linux-route: router: nft list table', table);
    } else {
      try {
        Object.assign(pin, parsePinTable(table.stdout));
      } catch (err) {
        throw new RouteError(`linux-route: router: unreadable nft -j output: ${(err as Error).message}`, false);
      }
      pin.exists = true;
    }
    for (const { family, docs, hosts } of reads) {
      pin.rules[family] = (docs[1] ?? []).filter((r): r is RuleJson => typeof r === 'object' && r !== null);
      hosts.forEach((h, i) => pin.tables[family].set(this.markOf.get(h)!, pickGateway((docs[2 + i] ?? []).filter((r) => (r as RouteJson)?.dst === 'default') as RouteJson[], family)));
    }
    return { routes, pin };
  }

  /**
   * Installs what pinning needs on the router (first apply of an instance, and again whenever
   * the read finds any part missing: a router reboot loses the table, the rules and the host
   * tables): the nft table (maps, chain, rules: flushed and re-added in one transaction), one `ip
   * rule fwmark` per host and family (those missing), and each host's table with its default
   * route. Adds the missing map elements of `moves` (where their route points now). Returns true
   * when a flip in this apply must wait PIN_SETTLE_MS: pinning was not in force until now for a
   * moving address.
   */
  private async preparePinning(moves: Move[], routes: Map<string, string | null>, pinned: PinState): Promise<boolean> {
    const lines: string[] = [];
    let settle = false;
    const complete = this.pinComplete(pinned);
    if (!this.pinReady || !complete) {
      if (!this.pinReady && this.hosts.size > 0) {
        // conntrack is needed to drain: a missing tool is said now, before anything changes.
        const ct = await this.run(this.router, ['conntrack', '-L', '-f', 'ipv4', '-m', `${hex(PIN_MARK_BASE)}/${hex(PIN_MARK_MASK)}`]);
        if (ct.code !== 0) throw commandFailure('linux-route: router: conntrack -L (pinning needs conntrack-tools on the router)', ct);
      }
      lines.push(...pinTableLines());
      // `-4`/`-6` are not accepted inside a batch: one batch per family (`ip -4 -batch -`).
      for (const family of [4, 6] as const) {
        const ipLines: string[] = [];
        for (const [host, byFamily] of this.hops) {
          const hop = byFamily.get(family);
          if (hop === undefined) continue;
          const mark = this.markOf.get(host)!;
          ipLines.push(`route replace ${family === 4 ? 'default' : '::/0'} via ${hop} table ${mark}`);
          if (!this.hasRule(pinned, family, mark)) {
            ipLines.push(`rule add pref ${this.rulePriority} fwmark ${hex(mark)} lookup ${mark}`);
            settle = true;
          }
        }
        if (ipLines.length === 0) continue;
        const r = await this.run(this.router, ['ip', `-${family}`, '-batch', '-'], ipLines.join('\n') + '\n');
        if (r.code !== 0) throw commandFailure(`linux-route: router: pinning rules and tables${lineOf(ipLines, r.stderr)}`, r);
      }
      // Something was missing: flows in flight were not (all) pinned until now.
      if (!complete) settle = true;
    }
    const missing = moves.filter((m) => !pinned.elements.has(m.address));
    const init = missing.flatMap((m) => {
      const gw = routes.get(m.address);
      const host = this.nextHops.hostOf(m.family, gw);
      return host ? [{ ...m, to: host }] : [];
    });
    // An address pinned just now where it is, and about to move: its flows in flight need the pause.
    if (init.some((m) => m.to !== moves.find((x) => x.address === m.address)!.to)) settle = true;
    lines.push(...elementLines(init, (m) => this.markOf.get(m.to)!, new Map()));
    if (lines.length > 0) await this.nft(lines, 'setup');
    for (const m of init) pinned.elements.set(m.address, this.markOf.get(m.to)!);
    this.pinReady = true;
    return settle;
  }

  /** One `nft -f -` transaction (all or nothing). A failure makes the next apply check the setup again. */
  private async nft(lines: string[], what: string): Promise<void> {
    const r = await this.run(this.router, ['nft', '-f', '-'], lines.join('\n') + '\n');
    if (r.code !== 0) {
      this.pinReady = false;
      throw nftFailure(`linux-route: router: nft ${what}`, r);
    }
  }

  /**
   * Waits until no TCP connection to a leaving address is pinned to another host than the one it
   * moves to (conntrack on the router, states other than TIME_WAIT and CLOSE), at most drainMs.
   * Returns the (address, mark) pairs that still had conntrack entries (any state, any protocol).
   */
  private async drain(leaving: Move[]): Promise<{ address: string; family: 4 | 6; mark: number }[]> {
    const byAddress = new Map(leaving.map((m) => [m.address, m]));
    const families = [...new Set(leaving.map((m) => m.family))];
    const deadline = performance.now() + this.drainMs;
    for (;;) {
      const lists = await Promise.all(
        families.map((f) => this.run(this.router, ['conntrack', '-L', '-f', f === 4 ? 'ipv4' : 'ipv6', '-m', `${hex(PIN_MARK_BASE)}/${hex(PIN_MARK_MASK)}`])),
      );
      const entries = lists.every((r) => r.code === 0) ? lists.flatMap((r) => conntrackEntries(r.stdout)) : undefined;
      // An unreadable table: wait the whole drainMs, to be safe.
      const old = (entries ?? []).filter((e) => {
        const m = byAddress.get(e.dst);
        return m !== undefined && e.mark !== this.markOf.get(m.to);
      });
      const live = entries === undefined || old.some((e) => e.proto === 'tcp' && e.state !== 'TIME_WAIT' && e.state !== 'CLOSE');
      const left = performance.now() >= deadline;
      if (!live || left) {
        const pairs = new Map(old.map((e) => [`${e.dst}|${e.mark}`, { address: e.dst, family: byAddress.get(e.dst)!.family, mark: e.mark }]));
        return [...pairs.values()];
      }
      await sleep(Math.min(DRAIN_POLL_MS, deadline - performance.now()));
    }
  }

  /** Deletes the conntrack entries still pinned to the old hosts: their next packets follow the map. */
  private async cutPinned(left: { address: string; family: 4 | 6; mark: number }[]): Promise<void> {
    const results = await Promise.all(
      left.map(async (p) => ({ p, r: await this.run(this.router, ['conntrack', '-D', '-f', p.family === 4 ? 'ipv4' : 'ipv6', '-d', p.address, '-m', String(p.mark)]) })),
    );
    const failed = results.find(({ r }) => r.code !== 0 && !/0 flow entries have been deleted/.test(r.stderr));
    if (failed) throw commandFailure(`linux-route: router: conntrack -D -d ${failed.p.address} (the routes are already switched)`, failed.r, failed.p.address);
  }

  private run(prefix: string[], args: string[], input?: string): Promise<CommandResult> {
    return this.runner([...prefix, ...args], { input, timeoutMs: this.timeoutMs });
  }
}

/** One element of `ip -j route show`. */
interface RouteJson {
  dst?: string;
  type?: string;
  gateway?: string;
  via?: { family?: string; host?: string };
  metric?: number;
  nexthops?: unknown[];
}

/**
 * The single next hop of the best route (lowest metric), normalised; null for none, multipath
 * (`nexthops`, a nexthop group), blackhole/unreachable/prohibit, a device-only route, or a next
 * hop of another family. A route through a single nexthop object (`nhid`) is shown with its
 * gateway and counts like a plain one.
 */
function pickGateway(routes: RouteJson[], family: 4 | 6): string | null {
  const best = routes.reduce<RouteJson | undefined>((a, b) => (a === undefined || (num(b.metric) ?? 0) < (num(a.metric) ?? 0) ? b : a), undefined);
  if (best === undefined || (best.type !== undefined && best.type !== 'unicast') || best.nexthops !== undefined) return null;
  const gw = best.gateway ?? best.via?.host;
  if (typeof gw !== 'string') return null;
  const ip = parseAddressCached(gw);
  return typeof ip === 'string' || ip.family !== family ? null : ip.address;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/**
 * The host routes (/32, /128) of one family in `ip -j -F route show table main`: normalised
 * address → the best route's single next hop (null when it has none that maps: see pickGateway).
 * Other prefixes, other families and entries that are not route objects are skipped.
 */
export function hostRoutes(list: unknown, family: 4 | 6): Map<string, string | null> {
  const byDst = new Map<string, RouteJson[]>();
  for (const r of Array.isArray(list) ? list : []) {
    if (typeof r !== 'object' || r === null || typeof (r as RouteJson).dst !== 'string') continue;
    const [addr, len] = (r as RouteJson).dst!.split('/');
    if (len !== undefined && len !== (family === 4 ? '32' : '128')) continue;
    const ip = parseAddressCached(addr);
    if (typeof ip === 'string' || ip.family !== family) continue;
    const same = byDst.get(ip.address);
    if (same) same.push(r as RouteJson);
    else byDst.set(ip.address, [r as RouteJson]);
  }
  return new Map([...byDst].map(([a, rs]) => [a, pickGateway(rs, family)]));
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

/** What the router has for pinning. */
interface PinState {
  /** The nft table inet failover exists. */
  exists: boolean;
  /** Its maps present (pin4, pin6). */
  maps: Set<string>;
  /** The chain prerouting is hooked, restores pinned flows' marks and marks from @pin4 / @pin6. */
  chain: Record<4 | 6, boolean>;
  /** normalised address → mark */
  elements: Map<string, number>;
  rules: Record<4 | 6, RuleJson[]>;
  /** host mark (= table id) → the next hop of that table's default route (null: none) */
  tables: Record<4 | 6, Map<number, string | null>>;
}

/** One element of `ip -j rule show`. */
interface RuleJson {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string | number;
}

/** The nft lines that (re)install the pinning table; the maps and their elements are kept. */
export function pinTableLines(): string[] {
  const t = `inet ${PIN_TABLE}`;
  const ours = `ct mark and ${hex(PIN_MARK_MASK)} == ${hex(PIN_MARK_BASE)}`;
  return [
    `add table ${t}`,
    `add map ${t} pin4 { type ipv4_addr : mark; }`,
    `add map ${t} pin6 { type ipv6_addr : mark; }`,
    `add chain ${t} prerouting { type filter hook prerouting priority mangle; policy accept; }`,
    `flush chain ${t} prerouting`,
    // Later packets of a pinned flow: back to the host it started on (original direction only:
    // replies go to the client by the main table).
    `add rule ${t} prerouting ct direction original ${ours} meta mark set ct mark return`,
    // The first packet seen of a flow to a mapped address: the mark of the address's host, saved.
    `add rule ${t} prerouting ct direction original meta mark set ip daddr map @pin4 ct mark set meta mark`,
    `add rule ${t} prerouting ct direction original meta mark set ip6 daddr map @pin6 ct mark set meta mark`,
  ];
}

/** `delete element` (for those that have one) + `add element` lines setting each address's mark. */
function elementLines(moves: { address: string; family: 4 | 6; to: string }[], markOf: (m: { to: string }) => number, existing: Map<string, number>): string[] {
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const list = moves.filter((m) => m.family === family);
    if (list.length === 0) continue;
    const map = `inet ${PIN_TABLE} pin${family}`;
    const had = list.filter((m) => existing.has(m.address));
    if (had.length > 0) lines.push(`delete element ${map} { ${had.map((m) => m.address).join(', ')} }`);
    lines.push(`add element ${map} { ${list.map((m) => `${m.address} : ${hex(markOf(m))}`).join(', ')} }`);
  }
  return lines;
}

/** The elements of the pinning maps in `nft -j list table inet failover`: normalised address → mark. */
export function pinElements(stdout: string): Map<string, number> {
  return parsePinTable(stdout).elements;
}

/**
 * What `nft -j list table inet failover` shows of pinning: the maps present, their elements, and
 * per family whether the chain `prerouting` is hooked with the rule restoring pinned flows' marks
 * (`... return`) and the rule marking from `@pin4` / `@pin6`. Throws on text that is not nft JSON.
 */
export function parsePinTable(stdout: string): { maps: Set<string>; chain: Record<4 | 6, boolean>; elements: Map<string, number> } {
  const doc = JSON.parse(stdout) as { nftables?: unknown };
  if (!Array.isArray(doc?.nftables)) throw new Error('no nftables array');
  const maps = new Set<string>();
  const elements = new Map<string, number>();
  let hooked = false;
  const rules: string[] = [];
  for (const item of doc.nftables as Record<string, unknown>[]) {
    if (typeof item !== 'object' || item === null) continue;
    const map = item.map as { name?: unknown; table?: unknown; elem?: unknown } | undefined;
    if (map && (map.name === 'pin4' || map.name === 'pin6') && (map.table === undefined || map.table === PIN_TABLE)) {
      maps.add(map.name);
      for (const e of Array.isArray(map.elem) ? map.elem : []) {
        if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'number') continue;
        const ip = parseAddressCached(e[0]);
        if (typeof ip !== 'string') elements.set(ip.address, e[1] >>> 0);
      }
    }
    const chain = item.chain as { name?: unknown; hook?: unknown } | undefined;
    if (chain && chain.name === 'prerouting' && chain.hook === 'prerouting') hooked = true;
    const rule = item.rule as { chain?: unknown; expr?: unknown } | undefined;
    if (rule && rule.chain === 'prerouting') rules.push(JSON.stringify(rule.expr ?? null));
  }
  const restores = rules.some((r) => r.includes('"return"') && r.includes('{"ct":{"key":"mark"}}'));
  const marks = (f: 4 | 6) => rules.some((r) => r.includes(`"@pin${f}"`) && r.includes('{"ct":{"key":"mark"}}'));
  return { maps, chain: { 4: hooked && restores && marks(4), 6: hooked && restores && marks(6) }, elements };
}

/** One line of `conntrack -L`: protocol, TCP state, original destination, mark. */
export function conntrackEntries(stdout: string): { proto: string; state?: string; dst: string; mark: number }[] {
  const out: { proto: string; state?: string; dst: string; mark: number }[] = [];
  for (const line of stdout.split('\n')) {
    const words = line.trim().split(/\s+/);
    const dst = words.find((w) => w.startsWith('dst='));
    const mark = words.find((w) => w.startsWith('mark='));
    if (!dst || !mark) continue;
    const ip = parseAddress(dst.slice(4));
    if (typeof ip === 'string') continue;
    const proto = words[0];
    out.push({ proto, state: proto === 'tcp' && /^[A-Z_]+$/.test(words[3] ?? '') ? words[3] : undefined, dst: ip.address, mark: Number(mark.slice(5)) >>> 0 });
  }
  return out;
}

/**
 * A 16-bit id per host for its pinning mark and routing table: FNV-1a of the name folded to 16
 * bits, so that a host keeps its mark when others are added or removed (pinned connections of a
 * running router stay valid across a controller restart with a new inventory); collisions go to
 * the next free id, in sorted name order.
 */
export function pinIds(hosts: string[]): Map<string, number> {
  const used = new Set<number>();
  const out = new Map<string, number>();
  for (const host of [...hosts].sort()) {
    let h = 0x811c9dc5;
    for (const byte of Buffer.from(host, 'utf8')) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
    let id = ((h >>> 16) ^ (h & 0xffff)) || 1;
    while (used.has(id)) id = (id % 0xffff) + 1;
    used.add(id);
    out.set(host, id);
  }
  return out;
}

/** `nft list table` failed because the table does not exist (not because nft is missing). */
function tableMissing(r: CommandResult): boolean {
  return /Error: No such file or directory/.test(r.stderr) && !/exec of ".*" failed|command not found/i.test(r.stderr);
}

/** nft failures: a missing table/map (someone removed it) may pass after a new setup; syntax and permission errors are final. */
function nftFailure(what: string, r: CommandResult): RouteError {
  const e = commandFailure(what, r);
  const retryable = r.code === 124 || r.code === 127 || r.code === 255 || /exec of ".*" failed|command not found|No such file or directory|Device or resource busy|Resource temporarily unavailable|No buffer space/i.test(r.stderr);
  return new RouteError(e.message, retryable, e.address);
}

/** " (line N: ...)" for a failed `ip -batch` line. */
function lineOf(lines: string[], stderr: string): string {
  const n = failedBatchLine(stderr);
  return n !== undefined && lines[n - 1] ? ` (${lines[n - 1]})` : '';
}

/** A number option within bounds. */
function checkNumber(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new RouteError(`linux-route: ${what}: an integer from ${min} to ${max} is expected`, false);
  return value;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

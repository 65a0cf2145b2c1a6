/**
 * The `linux-address` backend: on-link service addresses that move between hosts on one L2
 * segment (the hosts and the router share a LAN; no route changes). Per move: the address is
 * added on the receiving host, announced at once (gratuitous ARP / unsolicited neighbour
 * advertisement) so the router and the other neighbours update their caches now instead of after
 * their ~30 s reachability timeout, and only then removed from the host that had it.
 *
 * Addresses are validated and normalised with ip-address before they reach any argv; commands
 * run through CommandRunner (execFile, argv arrays, no local shell). No retries here: RouteError
 * says whether a retry may help.
 */
import { parseAddress } from '../core/addresses.js';
import { runCommand, type CommandResult, type CommandRunner } from './command-runner.js';
import { checkDevice, checkPrefix, commandFailure, deviceAddresses, failedBatchLine, parseAddressCached } from './host-addresses.js';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';

/** One host of the segment. */
export interface LinuxAddressHost {
  /** Command prefix that runs commands on the host, e.g. ["ip","netns","exec","lab-origin"] or ["ssh","srv-42"]. */
  exec: string[];
  /** The LAN device the addresses live on, e.g. "eth0". */
  device: string;
}

/** Options of LinuxAddressBackend. */
export interface LinuxAddressBackendOptions {
  /** Inventory name → how to reach the host and which device carries the addresses. */
  hosts: Record<string, LinuxAddressHost>;
  /** Prefix length the addresses are added with (default { 4: 32, 6: 128 }). */
  prefixLength?: { 4: number; 6: number };
  /** Announcements per address, 0 to 100 (default 3; the config's announce_count allows 1 to 20). The first one is sent at once. */
  announceCount?: number;
  /** Time between two announcements of one address in ms (default 200). */
  announceIntervalMs?: number;
  /** Runs the commands (default: runCommand, execFile without a shell). */
  runner?: CommandRunner;
  /** Timeout of each command in ms (default 10000). */
  timeoutMs?: number;
  /**
   * Sends the unsolicited neighbour advertisements (IPv6): "ndptool" (Debian libndp-tools:
   * `ndptool -t na -U -i DEV -T ADDR send`, the default) or "ndsend" (ndisc6 upstream:
   * `ndsend ADDR DEV`; Debian's ndisc6 package does not ship it).
   */
  naTool?: 'ndptool' | 'ndsend';
}

/** The two arping implementations Debian ships (`iputils-arping` and Habets' `arping`); their flags differ. */
export type ArpingFlavour = 'iputils' | 'habets';

interface Move {
  address: string;
  family: 4 | 6;
  to: string;
  from: string;
  repair: boolean;
}

type HostState = Map<string, number>;

/** Moves on-link addresses between hosts of one segment, announcing each move at once. */
export class LinuxAddressBackend implements RouteBackend {
  readonly name = 'linux-address';
  private readonly hosts = new Map<string, LinuxAddressHost>();
  private readonly prefixLength: { 4: number; 6: number };
  private readonly announceCount: number;
  private readonly announceIntervalMs: number;
  private readonly runner: CommandRunner;
  private readonly timeoutMs: number;
  private readonly naTool: 'ndptool' | 'ndsend';
  /** host → arping flavour, detected once (`arping -V`). */
  private readonly arping = new Map<string, Promise<ArpingFlavour>>();

  constructor(opts: LinuxAddressBackendOptions) {
    for (const [name, h] of Object.entries(opts.hosts ?? {})) {
      this.hosts.set(name, { exec: checkPrefix(h?.exec, `linux-address: hosts.${name}.exec`), device: checkDevice(h?.device, `linux-address: hosts.${name}.device`) });
    }
    if (this.hosts.size < 2) throw new RouteError('linux-address: at least two hosts are needed', false);
    const pl = opts.prefixLength ?? { 4: 32, 6: 128 };
    if (!Number.isInteger(pl[4]) || pl[4] < 1 || pl[4] > 32 || !Number.isInteger(pl[6]) || pl[6] < 1 || pl[6] > 128) {
      throw new RouteError('linux-address: prefixLength must be { 4: 1..32, 6: 1..128 }', false);
    }
    this.prefixLength = { 4: pl[4], 6: pl[6] };
    this.announceCount = opts.announceCount ?? 3;
    this.announceIntervalMs = opts.announceIntervalMs ?? 200;
    if (!Number.isInteger(this.announceCount) || this.announceCount < 0 || this.announceCount > 100) throw new RouteError('linux-address: announceCount must be 0..100', false);
    if (!(this.announceIntervalMs >= 0)) throw new RouteError('linux-address: announceIntervalMs must be >= 0', false);
    this.runner = opts.runner ?? runCommand;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.naTool = opts.naTool ?? 'ndptool';
    if (this.naTool !== 'ndptool' && this.naTool !== 'ndsend') throw new RouteError('linux-address: naTool must be ndptool or ndsend', false);
  }

  /**
   * Per address not yet where desired: `ip addr replace` on `to`, announcements from `to`, then
   * `ip addr del` on `from`. An address on `to` and not on `from` is `unchanged` and untouched.
   */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    const moves = this.validate(desired);
    const result: ApplyResult = { changed: [], unchanged: [] };
    if (moves.length === 0) return result;

    const toHosts = [...new Set(moves.map((m) => m.to))];
    const fromHosts = [...new Set(moves.map((m) => m.from))].filter((h) => !toHosts.includes(h));
    // The receiving hosts must answer; a `from` host that does not (it may be the one that failed)
    // does not stop the move: its removal is retried at the end and reported if it fails again.
    const [toState, fromRead] = await Promise.all([this.readHosts(toHosts), this.readHostsSettled(fromHosts)]);
    const state = new Map([...toState, ...fromRead]);

    const changed = moves.filter((m) => !state.get(m.to)!.has(m.address) || state.get(m.from)?.has(m.address) !== false);
    const changedSet = new Set(changed.map((m) => m.address));
    for (const m of moves) (changedSet.has(m.address) ? result.changed : result.unchanged).push(m.address);
    if (changed.length === 0) return result;

    // 1. Make: the receiving host owns the address. IPv6 with nodad: the other host still has it,
    //    so duplicate address detection would fail it (and delay it by a second anyway).
    await this.batch(changed.filter((m) => !state.get(m.to)!.has(m.address)), (m) => m.to, (m) => `addr replace ${m.address}/${this.prefixLength[m.family]} dev ${this.hosts.get(m.to)!.device}${m.family === 6 ? ' nodad' : ''}`, false);

    // 2. Announce at once, then every announceIntervalMs: neighbours now send to the new host.
    await this.announce(changed);

    // 3. Break: the old host gives the address up (already gone is fine).
    //    A repair leaves an other host that does not answer as it is (it may be the one being reinstalled).
    const breakFrom = [...new Set(changed.map((m) => m.from))];
    const optional = new Set(breakFrom.filter((h) => changed.every((m) => m.from !== h || m.repair)));
    const fromState = new Map([
      ...await this.readHosts(breakFrom.filter((h) => !optional.has(h)), ' (the address is already moved and announced)'),
      ...await this.readHostsSettled([...optional]),
    ]);
    await this.batch(changed.filter((m) => fromState.get(m.from)?.has(m.address)), (m) => m.from, (m) => `addr del ${m.address}/${fromState.get(m.from)!.get(m.address)} dev ${this.hosts.get(m.from)!.device}`, true);
    return result;
  }

  /**
   * `ip -j addr show dev DEV` on every host, once each, in parallel. Per address: held by exactly
   * one host → `to` is that host; held by several → null (a conflict: apply() of the desired
   * route removes it from the other host); held by none → null when every host answered, and
   * `unknown` naming the hosts that did not (one of them may hold it). Throws RouteError only for
   * an invalid address (before any command) or when no host answered.
   */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    if (!Array.isArray(addresses)) throw new RouteError('linux-address: addresses must be an array', false);
    const parsed = addresses.map((a) => {
      const ip = parseAddressCached(a);
      if (typeof ip === 'string') throw new RouteError(`linux-address: ${ip}`, false, String(a));
      return ip;
    });
    if (parsed.length === 0) return [];
    const names = [...this.hosts.keys()];
    const settled = await Promise.allSettled(names.map((h) => this.readHost(h)));
    const read = new Map<string, HostState>();
    const failed: string[] = [];
    settled.forEach((s, i) => {
      if (s.status === 'fulfilled') read.set(names[i], s.value);
      else failed.push(s.reason instanceof Error ? s.reason.message.replace(/^linux-address: /, '') : `${names[i]}: ${String(s.reason)}`);
    });
    if (read.size === 0) {
      const all = settled.map((s) => (s.status === 'rejected' ? s.reason : undefined));
      throw new RouteError(`linux-address: no host could be read: ${failed.join('; ')}`, all.every((e) => !(e instanceof RouteError) || e.retryable));
    }
    return parsed.map((ip) => {
      const holders = [...read].filter(([, s]) => s.has(ip.address)).map(([n]) => n);
      if (holders.length === 0 && failed.length > 0) {
        return { address: ip.address, to: null, unknown: `${ip.address} is on no host that answered; not read: ${failed.join('; ')}` };
      }
      return { address: ip.address, to: holders.length === 1 ? holders[0] : null };
    });
  }

  private validate(desired: DesiredRoute[]): Move[] {
    if (!Array.isArray(desired)) throw new RouteError('linux-address: desired must be an array', false);
    const seen = new Map<string, Move>();
    for (const d of desired) {
      const ip = parseAddress(d?.address);
      if (typeof ip === 'string') throw new RouteError(`linux-address: ${ip}`, false, String(d?.address));
      if (d.family !== undefined && d.family !== ip.family) throw new RouteError(`linux-address: ${ip.address} is not an IPv${d.family} address`, false, ip.address);
      for (const h of [d.to, d.from]) {
        if (!this.hosts.has(h)) throw new RouteError(`linux-address: ${ip.address}: unknown host ${JSON.stringify(h)} (not in hosts)`, false, ip.address);
      }
      if (d.to === d.from) throw new RouteError(`linux-address: ${ip.address}: from and to are both ${d.to}`, false, ip.address);
      const prev = seen.get(ip.address);
      if (prev && (prev.to !== d.to || prev.from !== d.from)) throw new RouteError(`linux-address: ${ip.address} is asked twice with different hosts`, false, ip.address);
      seen.set(ip.address, { address: ip.address, family: ip.family, to: d.to, from: d.from, repair: d.repair === true });
    }
    return [...seen.values()];
  }

  private async readHost(host: string, note = ''): Promise<HostState> {
    const h = this.hosts.get(host)!;
    const r = await this.run(h.exec, ['ip', '-j', 'addr', 'show', 'dev', h.device]);
    if (r.code !== 0) throw commandFailure(`linux-address: ${host}: addr show dev ${h.device}${note}`, r);
    try {
      return deviceAddresses(r.stdout);
    } catch (err) {
      throw new RouteError(`linux-address: ${host}: unreadable ip -j addr output: ${(err as Error).message}`, false);
    }
  }

  private async readHosts(hosts: string[], note = ''): Promise<Map<string, HostState>> {
    return new Map(await Promise.all(hosts.map(async (h) => [h, await this.readHost(h, note)] as const)));
  }

  /** Like readHosts, leaving out the hosts that fail. */
  private async readHostsSettled(hosts: string[]): Promise<Map<string, HostState>> {
    const settled = await Promise.allSettled(hosts.map((h) => this.readHost(h)));
    const out = new Map<string, HostState>();
    settled.forEach((s, i) => s.status === 'fulfilled' && out.set(hosts[i], s.value));
    return out;
  }

  /** One `ip -batch -` per host; `del` runs with -force and ignores addresses already gone. */
  private async batch(moves: Move[], hostOf: (m: Move) => string, line: (m: Move) => string, del: boolean): Promise<void> {
    const byHost = new Map<string, Move[]>();
    for (const m of moves) byHost.set(hostOf(m), [...(byHost.get(hostOf(m)) ?? []), m]);
    await Promise.all(
      [...byHost].map(async ([host, list]) => {
        const r = await this.run(this.hosts.get(host)!.exec, ['ip', ...(del ? ['-force'] : []), '-batch', '-'], list.map(line).join('\n') + '\n');
        if (r.code === 0) return;
        const errors = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/^Command failed -:\d+/.test(l));
        if (del && errors.length > 0 && errors.every((l) => /Cannot assign requested address/.test(l))) return;
        const n = failedBatchLine(r.stderr);
        const m = n !== undefined ? list[n - 1] : undefined;
        throw commandFailure(`linux-address: ${host}: ${m ? line(m) : del ? 'addr del' : 'addr replace'}${del ? ' (the address is already moved and announced)' : ''}`, r, m?.address);
      }),
    );
  }

  /**
   * announceCount rounds, announceIntervalMs apart, the first at once; one short-lived process per
   * announcement (arping's own interval is whole seconds in iputils). Waits for all of them.
   *
   * IPv4 uses gratuitous ARP in REQUEST form (sender IP = target IP = the address, `arping -U`),
   * not reply form (`arping -A` / `-P`): Linux ignores an ARP update for an existing neighbour
   * entry within its locktime (net.ipv4.neigh.*.locktime, 1 s by default) after the last update,
   * unless the packet counts as gratuitous, and a reply only counts when its target hardware
   * address equals the sender's, which not every tool sends. A request with sender IP = target
   * IP always counts (arp_is_garp() in net/ipv4/arp.c), so the router switches on the first one.
   * IPv6 uses an unsolicited neighbour advertisement with the Override flag to ff02::1.
   */
  private async announce(moves: Move[]): Promise<void> {
    if (this.announceCount === 0) return;
    const flavours = new Map<string, ArpingFlavour>();
    for (const host of new Set(moves.filter((m) => m.family === 4).map((m) => m.to))) flavours.set(host, await this.arpingFlavour(host));
    // Each run is settled at once (error kept as a value): nothing is left rejected while we sleep.
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < this.announceCount; i++) {
      if (i > 0) await sleep(this.announceIntervalMs);
      for (const m of moves) runs.push(this.announceOnce(m, flavours.get(m.to)).then(() => undefined, (err: unknown) => err ?? new Error('announce failed')));
    }
    const failed = (await Promise.all(runs)).find((e) => e !== undefined);
    if (failed) throw failed;
  }

  private async announceOnce(m: Move, flavour: ArpingFlavour | undefined): Promise<void> {
    const h = this.hosts.get(m.to)!;
    const argv = announceArgv(m.family, m.address, h.device, flavour ?? 'iputils', this.naTool);
    const r = await this.run(h.exec, argv);
    // Habets' arping exits 1 when nothing answered, which is expected for an unsolicited ARP; its
    // real errors also exit 1 but print "arping: ..." (e.g. libnet_init(...): No such device).
    if (r.code === 0 || (flavour === 'habets' && m.family === 4 && r.code === 1 && !/arping:/.test(r.stderr))) return;
    throw commandFailure(`linux-address: ${m.to}: ${argv.join(' ')}`, r, m.address);
  }

  /** Detects which arping the host has, from `arping -V` (iputils prints its name; Habets' prints usage). */
  private arpingFlavour(host: string): Promise<ArpingFlavour> {
    let p = this.arping.get(host);
    if (!p) {
      p = this.run(this.hosts.get(host)!.exec, ['arping', '-V']).then((r) => {
        const text = `${r.stdout}\n${r.stderr}`;
        if (/iputils/i.test(text)) return 'iputils';
        if (/Habets|ARPing \d/i.test(text)) return 'habets';
        if (r.code === 127 || /exec of ".*" failed|command not found/i.test(text)) {
          throw new RouteError(`linux-address: ${host}: arping not found (Debian: iputils-arping or arping)`, true);
        }
        throw new RouteError(`linux-address: ${host}: unknown arping (arping -V: ${text.trim().slice(0, 200)})`, false);
      });
      p.catch(() => this.arping.delete(host));
      this.arping.set(host, p);
    }
    return p;
  }

  private run(prefix: string[], args: string[], input?: string): Promise<CommandResult> {
    return this.runner([...prefix, ...args], { input, timeoutMs: this.timeoutMs });
  }
}

/** The argv (after the host prefix) of one announcement of `address` on `device`. */
export function announceArgv(family: 4 | 6, address: string, device: string, arping: ArpingFlavour, naTool: 'ndptool' | 'ndsend'): string[] {
  if (family === 6) return naTool === 'ndsend' ? ['ndsend', address, device] : ['ndptool', '-t', 'na', '-U', '-i', device, '-T', address, 'send'];
  // iputils: -U sets the sender IP to the target IP (the address); -I is the device.
  if (arping === 'iputils') return ['arping', '-q', '-U', '-c', '1', '-I', device, address];
  // Habets: -i is the device, and the sender IP must be given (-S), or it is the device's first address.
  return ['arping', '-q', '-U', '-c', '1', '-i', device, '-S', address, address];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

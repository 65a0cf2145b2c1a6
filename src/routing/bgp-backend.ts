/**
 * The `bgp` backend: each service address is a host prefix (/32, /128) announced by an existing
 * gobgpd, driven over its gRPC API, with the next hop of the host that must receive it; the
 * provider's router (BIRD, typically) routes by it. The controller never speaks BGP itself.
 *
 * A move is one replacement path per address (implicit withdraw), all of an apply() in one
 * AddPathStream: never a withdrawal followed by an announcement. With make-before-break command
 * prefixes (`hosts`), the address is on the receiving host before its path moves and leaves the
 * other host after the router shows the new next hop. A daemon's "ok" is not proof: with `verify`
 * (a command reading the router's table, the address appended), every changed address is read
 * back until the router uses the expected next hop, up to `verifyDeadlineMs`.
 */
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';
import { runCommand, type CommandRunner } from './command-runner.js';
import { GobgpGrpcClient, type AnnouncedPath, type GobgpApi, type GobgpPath, type GobgpPeer } from './gobgp-client.js';
import { checkPrefix, commandFailure, HostAddresses, NextHops, parseAddressCached, type HostMove } from './host-addresses.js';

/** Options of BgpRouteBackend. */
export interface BgpRouteBackendOptions {
  /** gobgpd's gRPC API: `HOST:PORT` or `unix:///path`. */
  api: string;
  /** Host name → its next hops as the router must use them, one per family. */
  nextHops: Record<string, string[]>;
  /** Standard communities put on every path, `ASN:VALUE` (both 0-65535). */
  communities?: string[];
  /** Host name → command prefix that runs `ip` on that host; make-before-break for pairs where both have one. */
  hosts?: Record<string, string[]>;
  /** Device the service addresses live on on the hosts (default "lo"). */
  hostDevice?: string;
  /** Command that prints the router's route for an address (appended), birdc `show route for` style. */
  verify?: string[];
  /** How long apply() waits for the router to show a changed next hop (default 5000 ms). */
  verifyDeadlineMs?: number;
  /** Pause between two reads of the router while waiting (default 50 ms). */
  verifyIntervalMs?: number;
  /** Timeout of each command and gRPC call in ms (default 10000). */
  timeoutMs?: number;
  /** Directory of GoBGP's api/*.proto (default: where golang-github-osrg-gobgp-dev installs them). */
  protoDir?: string;
  /** Runs the commands (default: runCommand, execFile without a shell). */
  runner?: CommandRunner;
  /** gobgpd client (default: GobgpGrpcClient on `api`); tests inject a fake. */
  client?: GobgpApi;
}

type Move = HostMove;

/** What the router shows for one address: the exact host prefix's next hop, or why there is none. */
export interface RouterRoute {
  /** The host prefix (ADDR/32, ADDR/128) is in the router's table. */
  present: boolean;
  /** Its single next hop (null: none, several, or not an address). */
  nextHop: string | null;
}

/** Most addresses whose router route is read at once (one verify process each). */
const VERIFY_CONCURRENCY = 8;

/** Announces the service addresses through gobgpd with the next hop of the host that must receive them. */
export class BgpRouteBackend implements RouteBackend {
  readonly name = 'bgp';
  private readonly client: GobgpApi;
  private readonly nextHops: NextHops;
  private readonly communities: number[];
  /** Make-before-break on the hosts with a command prefix. */
  private readonly hosts: HostAddresses;
  private readonly verify: string[] | undefined;
  private readonly verifyDeadlineMs: number;
  private readonly verifyIntervalMs: number;
  private readonly runner: CommandRunner;
  private readonly timeoutMs: number;

  constructor(opts: BgpRouteBackendOptions) {
    if (typeof opts.api !== 'string' || !/^(unix:\/\/\/\S+|[^\s/]+:\d{1,5})$/.test(opts.api)) throw new RouteError(`bgp: api ${JSON.stringify(opts.api)}: HOST:PORT or unix:///PATH expected`, false);
    // an unspecified next hop makes gobgpd put its own session address there (see gobgp-client.ts)
    this.nextHops = new NextHops(opts.nextHops, 'bgp', { concrete: true });
    this.communities = (opts.communities ?? []).map(parseCommunity);
    this.verify = opts.verify === undefined ? undefined : checkPrefix(opts.verify, 'bgp: verify');
    this.verifyDeadlineMs = opts.verifyDeadlineMs ?? 5000;
    this.verifyIntervalMs = opts.verifyIntervalMs ?? 50;
    this.runner = opts.runner ?? runCommand;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.hosts = new HostAddresses({
      backend: 'bgp', hosts: opts.hosts, device: opts.hostDevice, what: { hosts: 'bgp: hosts', device: 'bgp: hostDevice' },
      switched: 'the paths are already switched', runner: this.runner, timeoutMs: this.timeoutMs,
    });
    this.client = opts.client ?? new GobgpGrpcClient({ api: opts.api, protoDir: opts.protoDir, timeoutMs: this.timeoutMs });
  }

  /**
   * Announces every address that gobgpd does not already announce with the target's next hop and
   * the configured communities, in one AddPathStream (a replacement path per address). Make-before-
   * break: the receiving host gets the address first; the other host gives it up once the router
   * shows the new next hop. Addresses already announced as desired are `unchanged` and not sent
   * (nor read on the router: a wrong router view of them is reported by current(), not repaired).
   * With `verify`, an address the router does not take within the deadline fails the apply for
   * good (RouteError, not retryable, naming the address, its next hop and what the router shows),
   * unless a BGP session is down then (retryable); the refused paths are announced as before (or
   * withdrawn when there were none) and the hosts keep the address. While a neighbour is
   * admin-down (gobgpd restarted, waiting for resume()) nothing is changed: a retryable RouteError.
   */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    const moves = this.nextHops.validate(desired);
    if (moves.length === 0) return { changed: [], unchanged: [] };
    const { make, mbb } = this.hosts.sides(moves);
    const [announced, toState, peers] = await Promise.all([
      this.announced([...new Set(moves.map((m) => m.family))]),
      this.hosts.read([...new Set(make.map((m) => m.to))]),
      this.client.listPeers(),
    ]);
    const down = peers.filter((p) => p.adminDown);
    if (down.length > 0) throw new RouteError(`bgp: ${waitingForResume(down)}: nothing announced until the controller replays its paths`, true, moves[0].address);
    const toChange = moves.filter((m) => !this.isAnnounced(announced.get(m.address), m.nextHop));

    // 1. Make: the receiving host owns the address before the path moves (meanwhile, with
    //    verify, what the router uses now: a route it drops after the switch was refused).
    const [, before] = await Promise.all([
      this.hosts.change(make.filter((m) => !toState.get(m.to)!.has(m.address)), (m) => m.to, 'replace', toState),
      this.verify && toChange.length > 0 ? this.readRouter(toChange) : undefined,
    ]);

    // 2. The switch: one batch of replacement paths.
    if (toChange.length > 0) await this.client.addPaths(toChange.map((m) => this.pathOf(m)));
    const changedSet = new Set(toChange.map((m) => m.address));
    const result: ApplyResult = { changed: [], unchanged: [] };
    for (const m of moves) (changedSet.has(m.address) ? result.changed : result.unchanged).push(m.address);

    // 3. Proof: the router uses the new next hops. What it refuses goes back to how it was announced.
    const refused = this.verify ? await this.awaitRouter(toChange, before ?? []) : [];
    if (refused.length > 0) throw await this.refusal(refused, announced);

    // 4. Break: the other host gives the address up (already gone is fine).
    if (mbb.length > 0) {
      const { leaving, state } = await this.hosts.leaving(mbb);
      await this.hosts.change(leaving, (m) => m.from, 'del', state);
    }
    return result;
  }

  /**
   * Makes a gobgpd that lost its paths (restarted) carry the whole desired state, then lets it
   * speak: one AddPathStream of every path of `desired` (the full desired state, replayed as is:
   * no host is changed, nothing is read back), then EnablePeer for every neighbour that is
   * admin-down. With graceful restart (`-r`) the router keeps the routes of the old session until
   * the new one has sent its End-of-RIB, so the replay comes first.
   */
  async resume(desired: DesiredRoute[]): Promise<void> {
    const moves = this.nextHops.validate(desired);
    if (moves.length > 0) await this.client.addPaths(moves.map((m) => this.pathOf(m)));
    const down = (await this.client.listPeers()).filter((p) => p.adminDown);
    for (const p of down) await this.client.enablePeer(p.address);
  }

  /**
   * Where each address is delivered: with `verify`, the host of the next hop the router uses
   * (what is used); without, the host of the next hop gobgpd announces. Problems: the router and
   * gobgpd disagree (a path withdrawn by hand, a router that refused it, a restart in progress),
   * the path lacks the configured communities, the receiving host (make-before-break) lacks the
   * address. An address whose router read fails is `unknown`. Every entry has `needsResume` when
   * gobgpd was reset: a neighbour is admin-down, or none of the addresses asked is announced.
   * Throws when gobgpd cannot be read.
   */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    if (!Array.isArray(addresses)) throw new RouteError('bgp: addresses must be an array', false);
    const parsed = addresses.map((a) => {
      const ip = parseAddressCached(a);
      if (typeof ip === 'string') throw new RouteError(`bgp: ${ip}`, false, String(a));
      return ip;
    });
    if (parsed.length === 0) return [];
    const [announced, used, peers] = await Promise.all([
      this.announced([...new Set(parsed.map((ip) => ip.family))]),
      this.verify ? this.readRouter(parsed) : Promise.resolve(undefined),
      this.client.listPeers(),
    ]);
    const down = peers.filter((p) => p.adminDown);
    const needsResume = down.length > 0 ? waitingForResume(down) : parsed.every((ip) => !announced.has(ip.address)) ? `gobgpd announces none of the ${parsed.length} addresses (restarted?)` : undefined;
    const entries = parsed.map((ip, i) => {
      const path = announced.get(ip.address);
      const route = used?.[i];
      const by = this.nextHops.hostOf(ip.family, path?.nextHop);
      if (route instanceof RouteError) return { ip, to: null, unknown: `router could not be read for ${ip.address}: ${route.message}`, problems: [] as string[] };
      const to = route ? this.nextHops.hostOf(ip.family, route.nextHop) : by;
      const problems: string[] = [];
      if (route) {
        if (!path) {
          if (route.present) problems.push(`gobgpd does not announce ${ip.address} (the router shows ${describe(route)})`);
        } else if (path.nextHop !== route.nextHop) problems.push(`gobgpd announces ${ip.address} via ${path.nextHop} (${by ?? 'no known host'}), the router shows ${describe(route)}`);
      }
      if (path && to !== null && !sameCommunities(path.communities, this.communities)) problems.push(`gobgpd announces ${ip.address} without the configured communities`);
      return { ip, to, unknown: undefined as string | undefined, problems };
    });
    const receiving = [...new Set(entries.filter((e) => e.to !== null && this.hosts.has(e.to)).map((e) => e.to!))];
    const held = await this.hosts.readSettled(receiving);
    return entries.map(({ ip, to, unknown, problems }) => {
      const out: CurrentRoute = { address: ip.address, to };
      if (needsResume !== undefined) out.needsResume = needsResume;
      if (unknown !== undefined) return { ...out, unknown };
      const state = to === null ? undefined : held.get(to);
      if (state instanceof RouteError) return { ...out, unknown: `${to} (receiving ${ip.address}) could not be read: ${state.message}` };
      if (state !== undefined && !state.has(ip.address)) problems.push(`${to} does not hold ${ip.address} on ${this.hosts.device}`);
      if (problems.length > 0) out.problems = problems;
      return out;
    });
  }

  /**
   * After the router refused paths: each announced as before again (withdrawn when it had none),
   * and the error to throw. Final, unless a BGP session is not established (then the router may
   * simply not have heard of it: retryable).
   */
  private async refusal(refused: { move: Move; seen: RouterRoute | RouteError }[], announced: Map<string, AnnouncedPath>): Promise<RouteError> {
    const back: GobgpPath[] = [];
    const withdraw: GobgpPath[] = [];
    for (const { move } of refused) {
      const before = announced.get(move.address);
      if (before?.nextHop) back.push({ ...this.pathOf(move), nextHop: before.nextHop, communities: before.communities });
      else withdraw.push(this.pathOf(move));
    }
    // best effort: the error below is what matters
    const [, , peers] = await Promise.all([
      this.client.addPaths(back).catch(() => {}),
      withdraw.length > 0 ? this.client.deletePaths(withdraw).catch(() => {}) : undefined,
      this.client.listPeers().catch(() => [] as GobgpPeer[]),
    ]);
    const sessionsDown = peers.filter((p) => p.session !== 'ESTABLISHED');
    const list = refused.map((r) => `${r.move.address} via ${r.move.nextHop} (${r.move.to}): the router shows ${describe(r.seen)}`).join('; ');
    const undone = [back.length > 0 ? 'announced as before again' : '', withdraw.length > 0 ? 'withdrawn (not announced before)' : ''].filter(Boolean).join(', ');
    const sessions = sessionsDown.length > 0 ? `; BGP session${sessionsDown.length > 1 ? 's' : ''} not established: ${sessionsDown.map((p) => `${p.address} ${p.session}`).join(', ')}` : '';
    return new RouteError(`bgp: not taken by the router within ${this.verifyDeadlineMs} ms: ${list} (${undone})${sessions}`, sessionsDown.length > 0, refused[0].move.address);
  }

  /** Ends the gRPC channel. */
  close(): void {
    this.client.close();
  }

  private pathOf(m: Move): GobgpPath {
    return { address: m.address, family: m.family, nextHop: m.nextHop, communities: this.communities };
  }

  private isAnnounced(p: AnnouncedPath | undefined, nextHop: string): boolean {
    return p !== undefined && p.nextHop === nextHop && sameCommunities(p.communities, this.communities);
  }

  /** gobgpd's local host-prefix paths of `families`, by normalised address. */
  private async announced(families: (4 | 6)[]): Promise<Map<string, AnnouncedPath>> {
    const maps = await Promise.all(families.map((f) => this.client.listPaths(f)));
    const out = new Map<string, AnnouncedPath>();
    for (const m of maps) {
      for (const [a, p] of m) {
        const ip = parseAddressCached(a);
        if (typeof ip === 'string') continue;
        const hop = p.nextHop === null ? null : parseAddressCached(p.nextHop);
        out.set(ip.address, { nextHop: hop === null || typeof hop === 'string' ? null : hop.address, communities: p.communities });
      }
    }
    return out;
  }

  /**
   * Reads the router until every move shows its next hop or the deadline passes: the moves it did
   * not take, with what it showed. A move whose route the router had before the switch (`before`,
   * in the order of `moves`) and has no more was refused (the refused replacement withdrew the
   * route it replaced): not waited for, so the address is announced as before again at once.
   */
  private async awaitRouter(moves: Move[], before: (RouterRoute | RouteError)[]): Promise<{ move: Move; seen: RouterRoute | RouteError }[]> {
    const had = new Set(
      moves
        .filter((_, i) => {
          const b = before[i];
          return b !== undefined && !(b instanceof RouteError) && b.present;
        })
        .map((m) => m.address),
    );
    let pending = moves;
    const refused: { move: Move; seen: RouterRoute | RouteError }[] = [];
    const deadline = performance.now() + this.verifyDeadlineMs;
    for (;;) {
      const last = await this.readRouter(pending);
      const still = pending.map((m, i) => ({ move: m, seen: last[i] })).filter(({ move, seen }) => seen instanceof RouteError || seen.nextHop !== move.nextHop);
      const gone = still.filter(({ move, seen }) => !(seen instanceof RouteError) && !seen.present && had.has(move.address));
      refused.push(...gone);
      pending = still.filter((s) => !gone.includes(s)).map((s) => s.move);
      if (pending.length === 0) return refused;
      if (performance.now() >= deadline) return [...refused, ...still.filter((s) => !gone.includes(s))];
      await new Promise((r) => setTimeout(r, this.verifyIntervalMs));
    }
  }

  /** The router's route of each address (verify command, VERIFY_CONCURRENCY at a time); a failed read is its RouteError. */
  private async readRouter(list: readonly { address: string; family: 4 | 6 }[]): Promise<(RouterRoute | RouteError)[]> {
    const out: (RouterRoute | RouteError)[] = new Array(list.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < list.length; i = next++) {
        const { address, family } = list[i];
        const r = await this.runner([...this.verify!, address], { timeoutMs: this.timeoutMs });
        // birdc exits 1 for an error reply ("Network not found"), with the reply on stdout
        if (r.code !== 0 && !(r.code === 1 && /Network not found/i.test(r.stdout))) out[i] = commandFailure(`bgp: router: ${[...this.verify!, address].join(' ')}`, r, address);
        else out[i] = routerRoute(r.stdout, address, family);
      }
    };
    await Promise.all(Array.from({ length: Math.min(VERIFY_CONCURRENCY, list.length) }, worker));
    return out;
  }

}

/** `ASN:VALUE` (each 0-65535) as the 32-bit number BGP carries. */
export function parseCommunity(text: string): number {
  const m = typeof text === 'string' ? /^(\d{1,5}):(\d{1,5})$/.exec(text) : null;
  if (!m || Number(m[1]) > 65535 || Number(m[2]) > 65535) throw new RouteError(`bgp: community ${JSON.stringify(text)}: ASN:VALUE (each 0-65535) expected`, false);
  return Number(m[1]) * 65536 + Number(m[2]);
}

function sameCommunities(a: number[], b: number[]): boolean {
  const s = new Set(a);
  return b.every((c) => s.has(c));
}

/** Why gobgpd waits for the replay: its admin-down neighbours. */
function waitingForResume(down: GobgpPeer[]): string {
  return `gobgpd's neighbour${down.length > 1 ? 's' : ''} ${down.map((p) => p.address).join(', ')} ${down.length > 1 ? 'are' : 'is'} admin-down (gobgpd restarted, waiting for the replay)`;
}

function describe(r: RouterRoute | RouteError): string {
  if (r instanceof RouteError) return `nothing readable (${r.message})`;
  if (!r.present) return 'no route for the host prefix';
  return r.nextHop ? `next hop ${r.nextHop}` : 'a route without a single next hop';
}

/**
 * The exact host prefix's primary route in `birdc show route for ADDR` output. `for` is a
 * longest-prefix lookup: a less specific network (the connected net, a default route) answers
 * when the host prefix is absent, and counts as absent here. The primary route is the one marked
 * `*`; its `via` lines give the next hop (several: multipath, no single next hop).
 */
export function routerRoute(stdout: string, address: string, family: 4 | 6): RouterRoute {
  const net = `${address}/${family === 4 ? 32 : 128}`;
  const lines = stdout.split('\n');
  let inNet = false;
  let present = false;
  let inPrimary = false;
  const vias: string[] = [];
  for (const line of lines) {
    if (/^\S/.test(line)) {
      // a line starting a network (or "Table master4:", "BIRD ... ready.")
      const first = line.split(/\s+/)[0];
      const ip = first.includes('/') ? parseAddressCached(first.split('/')[0]) : 'no';
      inNet = typeof ip !== 'string' && `${ip.address}/${first.split('/')[1]}` === net;
      present ||= inNet;
      inPrimary = inNet && /\s\*\s/.test(line);
      if (inNet && inPrimary) vias.length = 0;
      continue;
    }
    if (!inNet) continue;
    if (/^\s+\S+\s+\[/.test(line) && !/^\s+via\s/.test(line)) {
      // another route for the same network: its own primary mark
      inPrimary = /\s\*\s/.test(line);
      continue;
    }
    const via = /^\s+via\s+(\S+)/.exec(line);
    if (via && inPrimary) vias.push(via[1]);
  }
  if (!present) return { present: false, nextHop: null };
  if (vias.length !== 1) return { present: true, nextHop: null };
  const hop = parseAddressCached(vias[0]);
  return { present: true, nextHop: typeof hop === 'string' ? null : hop.address };
}

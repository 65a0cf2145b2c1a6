/**
 * Composes what DNS must answer from its sources (server cutovers, account moves, lowered TTLs)
 * and publishes it to the DNS engine in one step. A change is staged first: the SOA serial of each
 * zone whose answers change is bumped, and the bumps are committed with the rest of the change
 * (so serials never go back, also across restarts); the new answers are published only once that
 * commit succeeded. Zones a change does not touch keep their serial (their secondaries transfer
 * nothing); when DNS cannot tell which zones a change touches, every zone is bumped.
 *
 * Stored: `soa_serial_bump` (added to every zone's serial) and `soa_serial_bump:<zone>` (added
 * to that zone's on top); both only grow (mod 2^32).
 */
import { compileOverlay, overlayDelta, type AccountOverlay, type CompiledOverlay, type LoweredTtl, type ServerOverlay } from '../core/overlay.js';
import type { DnsOverlayPort, Propagated, ServerOverlaySink, StagedChange, StateStore } from '../core/ports.js';
import { addressBytes } from '../core/addresses.js';

/** Why DNS answers an address as it does: a cutover of its server, a move of the account owning the zone, or the zone file. */
export type DnsAnswerReason = 'server_overlay' | 'account_move' | 'base_zone';

/** What DNS answers for records carrying an address (in one zone), why, the transit involved and the TTL cap applied (null: the zone's TTLs). */
export interface DnsAnswer {
  answer: string;
  reason: DnsAnswerReason;
  transit: string | null;
  ttlCap: number | null;
}

/** Answers for an address in a zone (a zone key, e.g. "acme.test."; omitted: a zone no moved account owns). */
export type DnsAnswerLookup = (address: { address: string; family: 4 | 6 }, zone?: string) => DnsAnswer;

const BUMP_KEY = 'soa_serial_bump';
const ZONE_BUMP_PREFIX = 'soa_serial_bump:';
const next32 = (n: number) => (n + 1) % 0x100000000;

/** The sources DNS answers from; a staged change names only those it changes. */
export interface OverlaySources {
  servers?: ServerOverlay[];
  accounts?: AccountOverlay[];
  lowered?: LoweredTtl[];
}

export class OverlayComposer implements ServerOverlaySink {
  private servers: ServerOverlay[] = [];
  private accounts: AccountOverlay[] = [];
  private lowered: LoweredTtl[] = [];
  /** Added to every zone's serial. */
  private bump: number;
  /** Added to a zone's serial on top of `bump`. */
  private readonly zoneBumps = new Map<string, number>();
  private signature = signatureOf([], [], []);
  /** What is published now (null: nothing to change). */
  private published: CompiledOverlay | null = null;

  /** When each secondary serves what was just published (see DnsOverlayPort.propagation). */
  propagation(): Promise<Propagated | null> {
    return this.deps.dns.propagation?.().catch(() => null) ?? Promise.resolve(null);
  }

  constructor(private readonly deps: { dns: DnsOverlayPort; store: StateStore; ttlCap: number }) {
    this.bump = 0;
    this.readBumps();
  }

  /** Takes the serial bumps as stored; returns whether any changed. */
  private readBumps(): boolean {
    const bump = Number(this.deps.store.getMeta(BUMP_KEY) ?? 0) || 0;
    const zones = new Map([...this.deps.store.metaEntries(ZONE_BUMP_PREFIX)].map(([key, value]) => [key.slice(ZONE_BUMP_PREFIX.length), Number(value) || 0]));
    const changed = bump !== this.bump || zones.size !== this.zoneBumps.size || [...zones].some(([z, v]) => this.zoneBumps.get(z) !== v);
    this.bump = bump;
    this.zoneBumps.clear();
    for (const [z, v] of zones) this.zoneBumps.set(z, v);
    return changed;
  }

  /**
   * Follows the stored state (a replica that does not lead, after the leader's commits): the
   * sources and serial bumps as stored; publishes only when what DNS answers changed.
   */
  follow(sources: Required<OverlaySources>): void {
    const bumps = this.readBumps();
    this.servers = [...sources.servers];
    this.accounts = [...sources.accounts];
    this.lowered = [...sources.lowered];
    const signature = signatureOf(this.servers, this.accounts, this.lowered);
    if (signature === this.signature && !bumps) return;
    this.signature = signature;
    this.publish();
  }

  /**
   * Stages new sources. When what DNS answers changes, the change carries the next serial bump;
   * `apply()` (after the commit) takes the sources and publishes. Stages made before one commit
   * may be merged: each applies only the sources it names.
   */
  stage(next: OverlaySources): StagedChange {
    const servers = next.servers ? [...next.servers] : undefined;
    const accounts = next.accounts ? [...next.accounts] : undefined;
    const lowered = next.lowered ? [...next.lowered] : undefined;
    const changed = signatureOf(servers ?? this.servers, accounts ?? this.accounts, lowered ?? this.lowered) !== this.signature;
    const meta: Record<string, string> = {};
    if (changed) {
      const candidate = compileOverlay({ servers: servers ?? this.servers, accounts: accounts ?? this.accounts, lowered: lowered ?? this.lowered, ttlCap: this.deps.ttlCap });
      const zones = this.deps.dns.zonesChangedBy?.(overlayDelta(this.published, candidate)) ?? 'all';
      if (zones === 'all') meta[BUMP_KEY] = String(next32(this.bump));
      else for (const z of zones) meta[ZONE_BUMP_PREFIX + z] = String(next32(this.zoneBumps.get(z) ?? 0));
    }
    return {
      change: Object.keys(meta).length > 0 ? { meta } : {},
      apply: () => {
        if (servers) this.servers = servers;
        if (accounts) this.accounts = accounts;
        if (lowered) this.lowered = lowered;
        const signature = signatureOf(this.servers, this.accounts, this.lowered);
        if (signature === this.signature) return; // the same answers: nothing to publish
        this.signature = signature;
        for (const [key, value] of Object.entries(meta)) {
          if (key === BUMP_KEY) this.bump = Number(value);
          else this.zoneBumps.set(key.slice(ZONE_BUMP_PREFIX.length), Number(value));
        }
        this.publish();
      },
    };
  }

  /** Stages the active server overlays. */
  stageServers(overlays: ServerOverlay[]): StagedChange {
    return this.stage({ servers: overlays });
  }

  /** Publishes stored sources at start, without a serial bump. */
  restore(sources: OverlaySources): void {
    if (sources.servers) this.servers = [...sources.servers];
    if (sources.accounts) this.accounts = [...sources.accounts];
    if (sources.lowered) this.lowered = [...sources.lowered];
    this.signature = signatureOf(this.servers, this.accounts, this.lowered);
    this.publish();
  }

  restoreServers(overlays: ServerOverlay[]): void {
    this.restore({ servers: overlays });
  }

  /**
   * What DNS answers now for records carrying a given address, and why, read from the overlay
   * composed exactly as it is published to DNS (one compilation for every question asked of it).
   */
  answers(): DnsAnswerLookup {
    const compiled = this.compiled();
    const servers = [...this.servers];
    const accounts = [...this.accounts];
    return (address, zone) => {
      const bytes = addressBytes(address);
      // '' is no zone's key: only what applies in every zone (a server overlay) matches it
      const repl = compiled?.replacement(bytes, zone ?? '');
      if (!repl) return { answer: address.address, reason: 'base_zone', transit: null, ttlCap: compiled?.ttlCapFor(bytes) ?? null };
      const same = (p: { address: string; transitAddress: string; family: 4 | 6 }) =>
        p.address === address.address && addressBytes({ address: p.transitAddress, family: p.family }).equals(repl);
      const server = servers.find((o) => o.pairs.some(same));
      const account = server ? undefined : accounts.find((a) => zone !== undefined && a.zones.includes(zone) && a.pairs.some(same));
      const pair = (server ?? account)?.pairs.find(same);
      return {
        answer: pair?.transitAddress ?? address.address,
        reason: server ? 'server_overlay' : 'account_move',
        transit: (server ?? account)?.transit ?? null,
        ttlCap: compiled!.ttlCap,
      };
    };
  }

  /** The serial bump currently served for `zone` (a zone key). */
  serialBump(zone: string): number {
    return (this.bump + (this.zoneBumps.get(zone) ?? 0)) % 0x100000000;
  }

  private compiled(): CompiledOverlay | null {
    return compileOverlay({
      servers: this.servers, accounts: this.accounts, lowered: this.lowered, ttlCap: this.deps.ttlCap, serialBump: this.bump, zoneSerialBumps: this.zoneBumps,
    });
  }

  private publish(): void {
    this.published = this.compiled();
    this.deps.dns.apply(this.published);
  }
}

/** What of the sources changes DNS answers (not when or by which operation), as one comparable string. */
function signatureOf(servers: ServerOverlay[], accounts: AccountOverlay[], lowered: LoweredTtl[]): string {
  const pairs = (ps: { address: string; transitAddress: string }[]) => ps.map((p) => `${p.address}>${p.transitAddress}`).join(',');
  return JSON.stringify([
    servers.map((o) => `${o.server}:${pairs(o.pairs)}`).sort(),
    accounts.map((a) => `${a.account}:${[...a.zones].sort().join(',')}:${pairs(a.pairs)}`).sort(),
    lowered.map((l) => `${l.server}:${l.ttl}:${l.addresses.map((x) => x.address).join(',')}`).sort(),
  ]);
}

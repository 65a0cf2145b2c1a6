/**
 * Composes what DNS must answer from its sources (server cutovers, account moves, lowered TTLs)
 * and publishes it to the DNS engine in one step. Every change bumps the served SOA serials;
 * the bump is stored, so serials never go back, also across restarts.
 */
import { compileOverlay, type AccountOverlay, type LoweredTtl, type ServerOverlay } from '../core/overlay.js';
import type { DnsOverlayPort, ServerOverlaySink, StateStore } from '../core/ports.js';

const BUMP_KEY = 'soa_serial_bump';

export class OverlayComposer implements ServerOverlaySink {
  private servers: ServerOverlay[] = [];
  private accounts: AccountOverlay[] = [];
  private lowered: LoweredTtl[] = [];
  private bump: number;

  constructor(private readonly deps: { dns: DnsOverlayPort; store: StateStore; ttlCap: number }) {
    this.bump = Number(deps.store.getMeta(BUMP_KEY) ?? 0) || 0;
  }

  /** The active server overlays (restore: at start, without a serial bump). */
  setServers(overlays: ServerOverlay[], opts: { restore?: boolean } = {}): void {
    this.servers = [...overlays];
    this.publish(!opts.restore);
  }

  setAccounts(overlays: AccountOverlay[], opts: { restore?: boolean } = {}): void {
    this.accounts = [...overlays];
    this.publish(!opts.restore);
  }

  setLowered(lowered: LoweredTtl[], opts: { restore?: boolean } = {}): void {
    this.lowered = [...lowered];
    this.publish(!opts.restore);
  }

  /** The serial bump currently served. */
  get serialBump(): number {
    return this.bump;
  }

  private publish(bump: boolean): void {
    if (bump) {
      this.bump = (this.bump + 1) % 0x100000000;
      this.deps.store.commit({ meta: { [BUMP_KEY]: String(this.bump) } });
    }
    this.deps.dns.apply(compileOverlay({
      servers: this.servers, accounts: this.accounts, lowered: this.lowered, ttlCap: this.deps.ttlCap, serialBump: this.bump,
    }));
  }
}

/**
 * The DNS overlay: what the authoritative answers carry instead of what the zone files say.
 * - A server cut over: every A/AAAA record carrying one of its addresses carries the paired
 *   transit address, in every zone, TTL capped.
 * - An account moved to a transit: the same, but only in that account's zones.
 * - TTLs lowered ahead of a scheduled reinstall: records carrying a server's addresses keep their
 *   data and get a capped TTL.
 * - Every change bumps the SOA serials served (RFC 1982), so secondaries pick it up, and a lifted
 *   overlay never brings a serial back.
 * Pure: compiled into one lookup for the engine.
 */
import { addressBytes } from './addresses.js';
import type { AddressPair } from './inventory.js';

/** One server's active overlay, as stored. */
export interface ServerOverlay {
  server: string;
  transit: string;
  operationId: string;
  /** ms since epoch when it became active. */
  since: number;
  pairs: AddressPair[];
}

/** One account's overlay: its zones answer with the transit's addresses. */
export interface AccountOverlay {
  account: string;
  server: string;
  transit: string;
  /** Zone keys. */
  zones: string[];
  pairs: AddressPair[];
  since: number;
}

/** Addresses whose records are served with a lowered TTL (ahead of a reinstall). */
export interface LoweredTtl {
  server: string;
  addresses: { address: string; family: 4 | 6 }[];
  ttl: number;
}

/** What the engine reads. */
export interface CompiledOverlay {
  readonly ttlCap: number;
  /** Added to every served SOA serial. */
  readonly serialBump: number;
  /** The replacement of an address in a record of `zone`, or undefined. */
  replacement(address: Buffer, zone: string): Buffer | undefined;
  /** A TTL cap for a record carrying `address` that is not rewritten, or undefined. */
  ttlCapFor(address: Buffer): number | undefined;
  /**
   * Every base address this overlay can change a record of (replaced in some zone, or TTL
   * lowered), as its 4- or 16-byte form in latin1 (`Buffer.toString('latin1')`), each once. A
   * record carrying none of them is served as in the zone file.
   */
  touched(): Iterable<string>;
}

export interface OverlayInput {
  servers: Iterable<ServerOverlay>;
  accounts?: Iterable<AccountOverlay>;
  lowered?: Iterable<LoweredTtl>;
  ttlCap: number;
  serialBump?: number;
}

const key = (address: string, family: 4 | 6) => addressBytes({ address, family }).toString('latin1');

/** Compiles the overlays into one lookup; null when there is nothing to change at all. */
export function compileOverlay(input: OverlayInput): CompiledOverlay | null {
  const global = new Map<string, Buffer>();
  for (const o of input.servers) {
    for (const p of o.pairs) global.set(key(p.address, p.family), addressBytes({ address: p.transitAddress, family: p.family }));
  }
  const byZone = new Map<string, Map<string, Buffer>>();
  for (const a of input.accounts ?? []) {
    for (const z of a.zones) {
      let m = byZone.get(z);
      if (!m) byZone.set(z, (m = new Map()));
      for (const p of a.pairs) m.set(key(p.address, p.family), addressBytes({ address: p.transitAddress, family: p.family }));
    }
  }
  const lowered = new Map<string, number>();
  for (const l of input.lowered ?? []) {
    for (const a of l.addresses) lowered.set(key(a.address, a.family), Math.min(l.ttl, lowered.get(key(a.address, a.family)) ?? Infinity));
  }
  const serialBump = input.serialBump ?? 0;
  if (global.size === 0 && byZone.size === 0 && lowered.size === 0 && serialBump === 0) return null;
  return {
    ttlCap: input.ttlCap,
    serialBump,
    replacement(address, zone) {
      const k = address.toString('latin1');
      return global.get(k) ?? byZone.get(zone)?.get(k);
    },
    ttlCapFor(address) {
      return lowered.get(address.toString('latin1'));
    },
    touched() {
      const all = new Set<string>(global.keys());
      for (const m of byZone.values()) for (const k of m.keys()) all.add(k);
      for (const k of lowered.keys()) all.add(k);
      return all;
    },
  };
}

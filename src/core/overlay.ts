/**
 * The DNS overlay during cutovers: every served A/AAAA record that carries a server's address
 * carries the paired transit address instead. Built from the active cutovers. Pure.
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

/** Address bytes → replacement bytes, keyed by the latin1 string of the bytes. */
export interface CompiledOverlay {
  readonly map: ReadonlyMap<string, Buffer>;
  readonly ttlCap: number;
  replacement(address: Buffer): Buffer | undefined;
}

/** Compiles the active overlays into one lookup for the DNS engine (null when none is active). */
export function compileOverlay(overlays: Iterable<ServerOverlay>, ttlCap: number): CompiledOverlay | null {
  const map = new Map<string, Buffer>();
  for (const o of overlays) {
    for (const p of o.pairs) {
      map.set(addressBytes(p).toString('latin1'), addressBytes({ address: p.transitAddress, family: p.family }));
    }
  }
  if (map.size === 0) return null;
  return {
    map,
    ttlCap,
    replacement: (address) => map.get(address.toString('latin1')),
  };
}

/**
 * The DNS overlay: what the authoritative answers carry instead of what the zone files say.
 * - A server cut over: every A/AAAA record carrying one of its addresses carries the paired
 *   transit address, in every zone, TTL capped.
 * - An account moved to a transit: the same, but only in that account's zones.
 * - TTLs lowered ahead of a scheduled reinstall: records carrying a server's addresses keep their
 *   data and get a capped TTL.
 * - Every change bumps the SOA serial served by each zone whose answers it changes (RFC 1982), so
 *   secondaries pick it up, and a lifted overlay never brings a serial back. A zone's bump is a
 *   bump shared by every zone plus the zone's own ({@link OverlayInput}).
 * {@link overlayDelta} tells which addresses a change can affect, so that only the zones serving
 * them are bumped.
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
  /** Added to the served SOA serial of `zone` (a zone key). */
  serialBump(zone: string): number;
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
  /**
   * The base addresses (as in `touched`) whose served form may differ from what `prev` gives, in
   * any zone (a superset is allowed, never a subset); serial bumps are not included.
   */
  changedSince(prev: CompiledOverlay | null | undefined): Iterable<string>;
}

/**
 * What a change of the overlay can affect: the base addresses (latin1 keys, as in `touched`)
 * whose replacement or TTL may differ in every zone, and those that may differ only in some
 * zones (account moves). A record carrying none of them is served as before.
 */
export interface OverlayDelta {
  anyZone: ReadonlySet<string>;
  byZone: ReadonlyMap<string, ReadonlySet<string>>;
}

export interface OverlayInput {
  servers: Iterable<ServerOverlay>;
  accounts?: Iterable<AccountOverlay>;
  lowered?: Iterable<LoweredTtl>;
  ttlCap: number;
  /** Added to every zone's serial (default 0). */
  serialBump?: number;
  /** Added to a zone's serial on top of `serialBump`, by zone key. */
  zoneSerialBumps?: ReadonlyMap<string, number>;
}

/** The compiled parts of an overlay, for {@link overlayDelta}. */
interface Parts {
  global: ReadonlyMap<string, Buffer>;
  byZone: ReadonlyMap<string, ReadonlyMap<string, Buffer>>;
  lowered: ReadonlyMap<string, number>;
  ttlCap: number;
}

const partsOf = new WeakMap<CompiledOverlay, Parts>();
const NO_PARTS: Parts = { global: new Map(), byZone: new Map(), lowered: new Map(), ttlCap: NaN };

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
  const shared = input.serialBump ?? 0;
  const own = new Map([...(input.zoneSerialBumps ?? [])].filter(([, b]) => b % 0x100000000 !== 0));
  if (global.size === 0 && byZone.size === 0 && lowered.size === 0 && shared % 0x100000000 === 0 && own.size === 0) return null;
  const compiled: CompiledOverlay = {
    ttlCap: input.ttlCap,
    serialBump(zone) {
      return (shared + (own.get(zone) ?? 0)) % 0x100000000;
    },
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
    changedSince(prev) {
      const d = overlayDelta(prev ?? null, compiled);
      const all = new Set(d.anyZone);
      for (const keys of d.byZone.values()) for (const k of keys) all.add(k);
      return all;
    },
  };
  partsOf.set(compiled, { global, byZone, lowered, ttlCap: input.ttlCap });
  return compiled;
}

/**
 * The addresses whose served form may differ between two overlays ({@link OverlayDelta}). An
 * overlay not made by {@link compileOverlay} counts as changing everything it touches.
 */
export function overlayDelta(before: CompiledOverlay | null, after: CompiledOverlay | null): OverlayDelta {
  const a = before ? partsOf.get(before) : NO_PARTS;
  const b = after ? partsOf.get(after) : NO_PARTS;
  if (!a || !b) {
    const anyZone = new Set<string>();
    for (const o of [before, after]) if (o) for (const k of o.touched()) anyZone.add(k);
    return { anyZone, byZone: new Map() };
  }
  const anyZone = new Set<string>();
  if (a !== NO_PARTS && b !== NO_PARTS && a.ttlCap !== b.ttlCap) {
    // another cap: every rewritten record may take another TTL
    for (const p of [a, b]) {
      for (const k of p.global.keys()) anyZone.add(k);
      for (const m of p.byZone.values()) for (const k of m.keys()) anyZone.add(k);
    }
  }
  differing(a.global, b.global, (x, y) => x.equals(y), anyZone);
  differing(a.lowered, b.lowered, (x, y) => x === y, anyZone);
  const byZone = new Map<string, Set<string>>();
  for (const zone of new Set([...a.byZone.keys(), ...b.byZone.keys()])) {
    const keys = new Set<string>();
    differing(a.byZone.get(zone) ?? new Map(), b.byZone.get(zone) ?? new Map(), (x, y) => x.equals(y), keys);
    if (keys.size > 0) byZone.set(zone, keys);
  }
  return { anyZone, byZone };
}

/** Adds to `out` every key present in one map only or with different values. */
function differing<V>(x: ReadonlyMap<string, V>, y: ReadonlyMap<string, V>, same: (p: V, q: V) => boolean, out: Set<string>): void {
  for (const [k, v] of x) {
    const w = y.get(k);
    if (w === undefined || !same(v, w)) out.add(k);
  }
  for (const k of y.keys()) if (!x.has(k)) out.add(k);
}

/**
 * nextSnapshot (an overlay change on the same zone object, only the touched owners rendered
 * again) gives exactly what a full snapshot gives, and the journal's diff between them:
 * property-style, over chains of random overlays (server cutovers, account moves, lowered TTLs,
 * rewrites that collide, overlays lifted) on the fixture zones and on a 100,000-record zone.
 */
import { describe, expect, test } from '@jest/globals';
import { compileOverlay, type CompiledOverlay, type OverlayInput } from '../../../src/core/overlay.js';
import { addressBytes } from '../../../src/core/addresses.js';
import type { ZoneSet } from '../../../src/dns/engine/engine.js';
import {
  addressIndex, cachedAddressIndex, isTouchingOverlay, nextSnapshot, nextSnapshotAsync, snapshotZone, type ZoneSnapshot,
} from '../../../src/dns/engine/snapshot.js';
import { diffSnapshots } from '../../../src/dns/xfr/journal.js';
import type { Zone } from '../../../src/dns/zone/zone.js';
import { bigZoneText, fixtureZones, overlay, zoneOf } from '../xfr/fixture.js';
import { prng as rng } from '../tiny-dns.js';

interface Pool {
  v4: string[];
  v6: string[];
  zones: string[];
}

/**
 * A random overlay over the pool's addresses: 0-3 servers cut over, 0-2 accounts moved (some of
 * the zones), 0-2 lowered TTLs; transit addresses sometimes from the pool (collisions), ttlCap
 * random; null sometimes. `bump` is its serial bump.
 */
function randomOverlay(r: () => number, pool: Pool, bump: number): CompiledOverlay | null {
  if (r() < 0.12) return null;
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const pair = () => {
    const v6 = r() < 0.3;
    const address = pick(v6 ? pool.v6 : pool.v4);
    const transitAddress = r() < 0.3 ? pick(v6 ? pool.v6 : pool.v4) : v6 ? `2001:db8:ffff::${Math.floor(r() * 50)}` : `203.0.113.${200 + Math.floor(r() * 50)}`;
    return { address, transitAddress, family: (v6 ? 6 : 4) as 4 | 6 };
  };
  const pairs = () => Array.from({ length: 1 + Math.floor(r() * 3) }, pair);
  const input: OverlayInput = {
    servers: Array.from({ length: Math.floor(r() * 4) }, (_, i) => ({ server: `s${i}`, transit: 't', operationId: `op${i}`, since: 0, pairs: pairs() })),
    accounts: Array.from({ length: Math.floor(r() * 3) }, (_, i) => ({
      account: `a${i}`, server: `s${i}`, transit: 't', since: 0, pairs: pairs(), zones: pool.zones.filter(() => r() < 0.5),
    })),
    lowered: Array.from({ length: Math.floor(r() * 3) }, (_, i) => ({
      server: `l${i}`, ttl: pick([30, 120, 300, 5000]),
      addresses: Array.from({ length: 1 + Math.floor(r() * 3) }, () => (r() < 0.3 ? { address: pick(pool.v6), family: 6 as const } : { address: pick(pool.v4), family: 4 as const })),
    })),
    ttlCap: pick([30, 60, 300, 7200]),
    serialBump: bump,
    // some zones with a bump of their own (a change that touched only them)
    zoneSerialBumps: new Map(pool.zones.filter(() => r() < 0.3).map((z) => [z, Math.floor(r() * 3)])),
  };
  return compileOverlay(input);
}

/** The snapshot's content as comparable values (everything but object identity). */
function content(s: ZoneSnapshot) {
  return {
    origin: s.origin, serial: s.serial, soa: s.soa, count: s.count, owners: [...s.owners],
    ownerIndex: Array.from(s.ownerIndex), types: Array.from(s.types), ttls: Array.from(s.ttls),
    rdataEnds: Array.from(s.rdataEnds), rdata: s.rdata.toString('hex'), digest: s.digest,
  };
}

/** Walks `steps` random overlays from a random start, checking each step against a full snapshot. */
function walk(zone: Zone, zones: ZoneSet, pool: Pool, seed: number, steps: number, opts: { index: boolean; cheap?: boolean }): { changed: number } {
  const r = rng(seed);
  let bump = Math.floor(r() * 3);
  let ov = randomOverlay(r, pool, bump);
  let prev = snapshotZone(zone, ov, { zones, index: opts.index });
  let changed = 0;
  for (let i = 0; i < steps; i++) {
    // the serial bump mostly rises; sometimes stays (content-only or no change), sometimes overlays repeat
    bump += r() < 0.8 ? 1 : 0;
    const next = r() < 0.1 ? ov : randomOverlay(r, pool, bump);
    const step = nextSnapshot(prev, zone, ov, next, { zones });
    const full = snapshotZone(zone, next, { zones });
    if (opts.cheap) {
      expect(step.snapshot.digest).toBe(full.digest);
      const bytes = (a: Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      expect(step.snapshot.rdata.equals(full.rdata) && bytes(step.snapshot.ttls).equals(bytes(full.ttls))).toBe(true);
    } else {
      expect({ seed, i, ...content(step.snapshot) }).toEqual({ seed, i, ...content(full) });
    }
    expect({ seed, i, diff: step.diff }).toEqual({ seed, i, diff: diffSnapshots(prev, full) });
    if (step.diff.added.length + step.diff.deleted.length > 0) changed++;
    prev = step.snapshot;
    ov = next;
  }
  return { changed };
}

const FIXTURE_POOL: Pool = {
  v4: ['192.0.2.1', '192.0.2.25', '192.0.2.53', '192.0.2.60', '192.0.2.80', '192.0.2.81', '198.51.100.1', '203.0.113.10', '192.0.2.99'],
  v6: ['2001:db8::1', '2001:db8::80', '2001:db8::54', '2001:db8::99'],
  zones: ['example.test.', 'second.test.', 'child.example.test.'],
};

describe('nextSnapshot', () => {
  test.each([
    ['built zones, index along the first snapshot', false, true],
    ['packed zones, index along the first snapshot', true, true],
    ['packed zones, index built on the first step', true, false],
  ])('%s: every step equals a full snapshot and its diff the journal diff (fixture zones, random overlays)', (_label, packed, index) => {
    let changed = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const f = fixtureZones(packed);
      for (const z of [f.example, f.second, f.child]) changed += walk(z, f.zones, FIXTURE_POOL, seed * 7 + z.origin.length, 12, { index }).changed;
    }
    expect(changed).toBeGreaterThan(100); // the walks do change content, not only serials
  });

  test('a 100,000-record zone: random cutovers, account moves and lowered TTLs', () => {
    const origin = 'big.test.';
    const zone = zoneOf(bigZoneText(origin, 100_000), origin, true);
    const pool: Pool = {
      v4: Array.from({ length: 12 }, (_, i) => (i % 2 ? `198.51.100.${i * 17}` : `192.0.2.${i * 13}`)),
      v6: Array.from({ length: 6 }, (_, i) => `2001:db8::${(i * 4099).toString(16)}`),
      zones: [origin],
    };
    const { changed } = walk(zone, undefined as unknown as ZoneSet, pool, 20240601, 6, { index: true, cheap: true });
    expect(changed).toBeGreaterThan(2);
  }, 120_000);

  test('the address index along a snapshot equals the one built from its owners', () => {
    const a = fixtureZones(true);
    const b = fixtureZones(true);
    const snap = snapshotZone(a.example, overlay(), { zones: a.zones, index: true });
    const along = cachedAddressIndex(a.example)!;
    expect(cachedAddressIndex(b.example)).toBeUndefined();
    const built = addressIndex(b.example, snap);
    expect({ ...along, byAddress: new Map(along.byAddress) }).toEqual({ ...built, byAddress: new Map(built.byAddress) });
    expect(snap.owners.at(along.apex)).toBe('example.test.');
    const key = (a: string, family: 4 | 6) => addressBytes({ address: a, family }).toString('latin1');
    // 192.0.2.1, in canonical order
    expect(along.byAddress.get(key('192.0.2.1', 4))!.map((k) => snap.owners.at(k))).toEqual([
      'example.test.', 'dup.example.test.', 'dupr.example.test.', 'deep.sub.example.test.', 'ns.sub.example.test.', '*.wild.example.test.',
    ]);
  });

  test('in slices, the same as synchronously', async () => {
    const origin = 'big.test.';
    const zone = zoneOf(bigZoneText(origin, 20_000), origin, true);
    const a = compileOverlay({ servers: [{ server: 's', transit: 't', operationId: 'o', since: 0, pairs: [{ address: '192.0.2.10', transitAddress: '203.0.113.7', family: 4 }] }], ttlCap: 60, serialBump: 1 });
    const b = compileOverlay({ servers: [], lowered: [{ server: 's', ttl: 30, addresses: [{ address: '198.51.100.15', family: 4 }] }], ttlCap: 60, serialBump: 2 });
    const prev = snapshotZone(zone, a, { index: true });
    const sync = nextSnapshot(prev, zone, a, b);
    const sliced = await nextSnapshotAsync(prev, zone, a, b, { sliceMs: 0 });
    expect(content(sliced.snapshot)).toEqual(content(sync.snapshot));
    expect(sliced.diff).toEqual(sync.diff);
    expect(sync.diff.deleted.length).toBeGreaterThan(0);
  });

  test('refuses a zone that is not the snapshot\'s', () => {
    const f = fixtureZones(false);
    const snap = snapshotZone(f.example, null, { zones: f.zones, index: true });
    expect(() => nextSnapshot(snap, f.second, null, null)).toThrow(/step of example\.test\. with zone second\.test\./);
    // another zone object of the same origin: with an index (its own) or without
    const other = zoneOf('$ORIGIN example.test.\n@ 60 SOA ns1 h 1 1 1 1 1\n@ 60 NS ns1\nnew 60 A 192.0.2.1\n', 'example.test.');
    expect(() => nextSnapshot(snap, other, null, null)).toThrow(/not one of this example\.test\. zone object/);
    snapshotZone(other, null, { index: true });
    expect(() => nextSnapshot(snap, other, null, null)).toThrow(/not one of this example\.test\. zone object/);
  });
});

describe('CompiledOverlay.touched', () => {
  test('lists each replaced (global and per zone) and lowered base address once, as latin1 bytes', () => {
    const key = (a: string, family: 4 | 6) => addressBytes({ address: a, family }).toString('latin1');
    const ov = overlay();
    expect(new Set(ov.touched())).toEqual(new Set([
      key('192.0.2.1', 4), key('2001:db8::1', 6), key('203.0.113.10', 4), key('192.0.2.60', 4), key('192.0.2.80', 4),
    ]));
    expect([...ov.touched()].length).toBe(5);
    expect([...compileOverlay({ servers: [], ttlCap: 60, serialBump: 3 })!.touched()]).toEqual([]);
    expect(isTouchingOverlay(ov)).toBe(true);
    expect(isTouchingOverlay(null)).toBe(true);
    expect(isTouchingOverlay({ ttlCap: 60, replacement: () => undefined })).toBe(false);
  });
});

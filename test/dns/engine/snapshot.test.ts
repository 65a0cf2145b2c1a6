/**
 * The served snapshot of a zone equals what lookup() answers, owner by owner and type by type
 * (data and TTL), with the overlay applied; canonical order; built and packed zones alike.
 */
import { describe, expect, test } from '@jest/globals';
import { lookup, type AddressOverlay, type ZoneSet } from '../../../src/dns/engine/engine.js';
import {
  cachedAddressIndex, canonicalSortKey, compareOwners, snapshotRecords, snapshotZone, snapshotZoneAsync, type SnapshotRecord, type ZoneSnapshot,
} from '../../../src/dns/engine/snapshot.js';
import { ancestorKeys, isAtOrBelow, nameKey } from '../../../src/dns/name.js';
import { RRType, typeName } from '../../../src/dns/wire/constants.js';
import type { WireRecord } from '../../../src/dns/wire/encoder.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import type { Zone } from '../../../src/dns/zone/zone.js';
import { bigZoneText, EXAMPLE, fixtureZones, overlay, zoneOf } from '../xfr/fixture.js';

const show = (r: { owner: string; type: number; ttl: number; rdata: Buffer }) => `${r.owner} ${r.ttl} ${typeName(r.type)} ${rdataToText(r.type, r.rdata)}`;

/** The records of the snapshot grouped by owner and type. */
function sets(s: ZoneSnapshot): Map<string, SnapshotRecord[]> {
  const m = new Map<string, SnapshotRecord[]>();
  for (const r of snapshotRecords(s)) {
    const k = `${r.owner}|${r.type}`;
    const l = m.get(k) ?? [];
    l.push(r);
    m.set(k, l);
  }
  return m;
}

/** The delegation point at or above `owner` in `zone` (not the apex), as the engine finds it for `type`. */
function cutOf(zone: Zone, owner: string, type: number): string | undefined {
  if (owner === zone.origin) return undefined;
  const chain = [owner, ...ancestorKeys(owner).filter((a) => a !== zone.origin && isAtOrBelow(a, zone.origin))];
  for (let i = chain.length - 1; i >= 0; i--) if (zone.cuts.has(chain[i]) && !(i === 0 && type === RRType.DS)) return chain[i];
  return undefined;
}

type Verdict = 'answer' | 'referral-ns' | 'referral-glue' | 'occluded' | 'other-zone';

/**
 * Compares every RRset of the snapshot with lookup(). Where lookup semantics differ by design:
 * - at or below a delegation the answer is a referral: the cut's NS RRset is compared with the
 *   referral's authority section, glue (A/AAAA of an NS target) with its additional section;
 *   other data below a cut (occluded) is never answered, only transferred;
 * - a name inside another zone we serve (a child zone's apex and below) is answered from that
 *   zone: compared only when that zone holds the same RRset.
 */
function compareWithLookup(zones: ZoneSet, zone: Zone, snap: ZoneSnapshot, ov: AddressOverlay | undefined): Record<Verdict, number> {
  const counts: Record<Verdict, number> = { answer: 0, 'referral-ns': 0, 'referral-glue': 0, occluded: 0, 'other-zone': 0 };
  for (const [k, recs] of sets(snap)) {
    const [owner, t] = k.split('|');
    const type = Number(t);
    const ans = lookup(zones, owner, type, { tcp: true, overlay: ov });
    const pick = (rrs: WireRecord[]) => rrs.filter((r) => r.owner === owner && r.type === type).map(show).sort();
    const mine = recs.map(show).sort();
    if (zones.find(owner) !== zone && !(type === RRType.DS && zones.find(owner)?.origin === owner)) {
      counts['other-zone']++;
      continue;
    }
    const cut = cutOf(zone, owner, type);
    if (cut === undefined) {
      expect(ans.aa).toBe(true);
      expect({ k, answer: pick(ans.answer) }).toEqual({ k, answer: mine });
      counts.answer++;
    } else if (owner === cut && type === RRType.NS) {
      expect(ans.aa).toBe(false);
      expect({ k, authority: pick(ans.authority) }).toEqual({ k, authority: mine });
      counts['referral-ns']++;
    } else if ((type === RRType.A || type === RRType.AAAA) && pick(ans.additional).length > 0) {
      expect({ k, additional: pick(ans.additional) }).toEqual({ k, additional: mine });
      counts['referral-glue']++;
    } else {
      expect(ans.aa).toBe(false);
      expect(pick(ans.answer)).toEqual([]);
      counts.occluded++;
    }
  }
  // and the other way: every owner and type of the zone is in the snapshot
  const have = sets(snap);
  for (const [owner, zsets] of zone.nodes) for (const s of zsets) expect(have.has(`${owner}|${s.type}`)).toBe(true);
  return counts;
}

describe('snapshotZone', () => {
  test.each([
    ['built zones, full overlay', false, true],
    ['packed zones, full overlay', true, true],
    ['built zones, no overlay', false, false],
  ])('%s: every RRset is what lookup() answers', (_label, packed, withOverlay) => {
    const { zones, example, second, child } = fixtureZones(packed);
    const ov = withOverlay ? overlay() : undefined;
    const ex = compareWithLookup(zones, example, snapshotZone(example, ov, { zones }), ov);
    // sub NS; ns.sub A and AAAA; deep.sub TXT and A; child NS and ns.child A (served by child.example.test.)
    expect(ex).toEqual({ answer: 22, 'referral-ns': 1, 'referral-glue': 2, occluded: 2, 'other-zone': 2 });
    for (const z of [second, child]) {
      const c = compareWithLookup(zones, z, snapshotZone(z, ov, { zones }), ov);
      expect(c.answer).toBeGreaterThan(0);
    }
  });

  test('the overlay as served: rewrites, TTL caps, lowered TTLs, duplicates, per-zone accounts, SOA serial', () => {
    const { zones, example, second } = fixtureZones(true);
    const ov = overlay();
    const ex = [...snapshotRecords(snapshotZone(example, ov, { zones }))].map(show);
    const want = [
      'example.test. 60 A 198.51.100.1', // cut over: TTL capped
      'example.test. 60 AAAA 2001:db8:ffff::1',
      'example.test. 3600 SOA ns1.example.test. hostmaster.example.test. 46 7200 900 1209600 300', // 41 + 5
      'web.example.test. 120 A 192.0.2.80', // lowered; the whole RRset takes the lowest TTL
      'web.example.test. 120 A 192.0.2.81',
      'web.example.test. 3600 AAAA 2001:db8::80',
      '*.wild.example.test. 60 A 198.51.100.1',
      'ns.sub.example.test. 60 A 198.51.100.1', // glue rewritten as in referrals
      'ns.child.example.test. 60 A 198.51.100.60', // below a child zone we serve: that zone's account overlay
      'dup.example.test. 60 A 198.51.100.1', // rewrite collides: one record, the rewritten one first
      'dupr.example.test. 3600 A 198.51.100.1', // collides the other way round: the engine keeps the first (3600)
      'acct.example.test. 3600 A 203.0.113.10', // the account's overlay is not for this zone
    ];
    for (const w of want) expect(ex).toContain(w);
    expect(ex.filter((l) => l.startsWith('dup.') || l.startsWith('dupr.'))).toHaveLength(2);
    const sec = [...snapshotRecords(snapshotZone(second, ov, { zones }))].map(show);
    expect(sec).toEqual(expect.arrayContaining(['host.second.test. 60 A 192.0.2.80', 'host.second.test. 60 A 198.51.100.10', 'host2.second.test. 120 A 192.0.2.80']));
    // without the zone set, the record's own zone is used for account overlays
    expect([...snapshotRecords(snapshotZone(example, ov))].map(show)).toContain('ns.child.example.test. 3600 A 192.0.2.60');
  });

  test('the snapshot is the zone as served: serial and SOA, counts, and no overlay means the zone data', () => {
    const { example } = fixtureZones(true);
    const plain = snapshotZone(example, null);
    expect(plain.serial).toBe(41);
    expect(plain.count).toBe(example.recordCount);
    expect(snapshotZone(example, overlay()).serial).toBe(46);
    expect(snapshotZone(example, overlay({ serialBump: 0xffffffff })).serial).toBe(40); // RFC 1982 wrap
    expect(plain.soa.type).toBe(RRType.SOA);
  });

  test('canonical order (RFC 4034 6.1), deterministic whatever the order of the zone file', () => {
    // the RFC's own example, shuffled
    const rfc = ['example.', 'a.example.', 'yljkjljk.a.example.', 'Z.a.example.', 'zABC.a.EXAMPLE.', 'z.example.', '\\001.z.example.', '*.z.example.', '\\200.z.example.'].map((n) => nameKey(n));
    const shuffled = [...rfc].reverse();
    shuffled.sort((a, b) => compareOwners(a, b));
    expect(shuffled).toEqual(rfc);
    expect(canonicalSortKey('.')).toBe('');
    expect(compareOwners('a.example.', 'a.example.')).toBe(0);

    // owners in reverse order; an owner's lines keep their order (the engine's duplicate merging depends on it)
    const lines = EXAMPLE.split('\n');
    const groups = new Map<string, string[]>();
    for (const l of lines.slice(3).filter(Boolean)) {
      const owner = l.split(' ')[0];
      groups.set(owner, [...(groups.get(owner) ?? []), l]);
    }
    const reversed = [...lines.slice(0, 3), ...[...groups.values()].reverse().flat()].join('\n') + '\n';
    const a = snapshotZone(zoneOf(EXAMPLE, 'example.test.'), overlay());
    const b = snapshotZone(zoneOf(reversed, 'example.test.', true), overlay());
    expect(b.digest).toBe(a.digest);
    expect([...snapshotRecords(b)].map(show)).toEqual([...snapshotRecords(a)].map(show));
    const owners = [...a.owners];
    expect([...owners].sort(compareOwners)).toEqual(owners);
    // within an owner: types ascending, then RDATA bytes
    for (let i = 1; i < a.count; i++) {
      if (a.ownerIndex[i] !== a.ownerIndex[i - 1]) expect(a.ownerIndex[i]).toBe(a.ownerIndex[i - 1] + 1);
      else expect(a.types[i]).toBeGreaterThanOrEqual(a.types[i - 1]);
    }
  });

  test('the digest changes with any served change (data, TTL, overlay) and only then', () => {
    const z = zoneOf(EXAMPLE, 'example.test.', true);
    const d = (text: string, ov?: AddressOverlay) => snapshotZone(zoneOf(text, 'example.test.', true), ov).digest;
    const base = d(EXAMPLE);
    expect(d(EXAMPLE)).toBe(base);
    expect(snapshotZone(z, null).digest).toBe(base);
    expect(d(EXAMPLE.replace('mail A 192.0.2.25', 'mail A 192.0.2.26'))).not.toBe(base);
    expect(d(EXAMPLE.replace('mail A 192.0.2.25', 'mail 7200 A 192.0.2.25'))).not.toBe(base);
    expect(d(EXAMPLE.replace('web 600 A 192.0.2.81', 'web 601 A 192.0.2.81'))).toBe(base); // the RRset's TTL is the lower one
    expect(d(EXAMPLE, overlay({ serialBump: 0 }))).not.toBe(base);
  });

  test('the sliced build gives the same snapshot, yielding to the event loop', async () => {
    const z = zoneOf(bigZoneText('big.test.', 20_000), 'big.test.', true);
    const sync = snapshotZone(z, overlay());
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    try {
      const sliced = await snapshotZoneAsync(z, overlay(), { sliceMs: 0 });
      expect(sliced.digest).toBe(sync.digest);
      expect(sliced.count).toBe(sync.count);
      expect(Buffer.compare(sliced.rdata, sync.rdata)).toBe(0);
    } finally {
      clearInterval(timer);
    }
    expect(turns).toBeGreaterThan(0);
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await expect(snapshotZoneAsync(z, overlay(), { signal: ac.signal })).rejects.toThrow('stop');
  });
});

describe('snapshots of packed zones (from the parser process)', () => {
  /** Record order out of canonical order in the file, duplicates, RRsets of one owner spread out. */
  const MIXED = `${EXAMPLE}
mix TXT "b"
mix A 192.0.2.9
mix TXT "a"
mix A 192.0.2.1
mix A 192.0.2.1
mix MX 10 mail
one A 192.0.2.80
six AAAA 2001:db8::1
six AAAA 2001:db8::1:0
`;
  const cases: { name: string; text: string; overlay: () => AddressOverlay | null }[] = [
    { name: 'no overlay', text: MIXED, overlay: () => null },
    { name: 'the fixture overlay (rewrites, TTL caps, lowered TTLs, serial bump)', text: MIXED, overlay: () => overlay() },
    { name: 'an overlay with no serial bump', text: MIXED, overlay: () => overlay({ serialBump: 0 }) },
    { name: 'an empty overlay', text: MIXED, overlay: () => overlay({ servers: [], accounts: [], lowered: [], serialBump: 0 }) },
    {
      name: 'an overlay that touches no address of this zone',
      text: MIXED,
      overlay: () => overlay({
        servers: [{ server: 's9', transit: 't', operationId: 'op9', since: 0, pairs: [{ address: '192.0.2.222', transitAddress: '198.51.100.222', family: 4 }] }],
        accounts: [], lowered: [], serialBump: 0,
      }),
    },
    { name: '20,000 records with the fixture overlay', text: bigZoneText('example.test.', 20_000), overlay: () => overlay() },
  ];
  test.each(cases)('$name: the same records, digest and address index as the built zone', ({ text, overlay: ov }) => {
    const built = zoneOf(text, 'example.test.');
    const packed = zoneOf(text, 'example.test.', true);
    const a = snapshotZone(built, ov(), { index: true });
    const b = snapshotZone(packed, ov(), { index: true });
    expect(b.digest).toBe(a.digest);
    expect([...snapshotRecords(b)]).toEqual([...snapshotRecords(a)]);
    expect([...b.owners]).toEqual([...a.owners]);
    const ia = cachedAddressIndex(built)!;
    const ib = cachedAddressIndex(packed)!;
    expect({ owners: ib.owners, apex: ib.apex }).toEqual({ owners: ia.owners, apex: ia.apex });
    const addresses = new Set<string>();
    for (const sets of built.nodes.values()) for (const s of sets) if (s.type === RRType.A || s.type === RRType.AAAA) for (const r of s.rdata) addresses.add(r.toString('latin1'));
    expect(addresses.size).toBeGreaterThan(3);
    for (const k of addresses) expect(ib.byAddress.get(k)).toEqual(ia.byAddress.get(k));
  });
});

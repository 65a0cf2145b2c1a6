/** The engine's answers, table-driven over one small zone set (RFC 1034 4.3.2, 2308, 4592, 8482). */
import { describe, expect, test } from '@jest/globals';
import { lookup, ZoneSet, type AddressOverlay } from '../../../src/dns/engine/engine.js';
import { nameKey } from '../../../src/dns/name.js';
import { RRType, typeFromName, typeName } from '../../../src/dns/wire/constants.js';
import type { Answer, WireRecord } from '../../../src/dns/wire/encoder.js';
import { parseMasterFile } from '../../../src/dns/zone/master-file.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import { buildZone } from '../../../src/dns/zone/zone.js';

const EXAMPLE = `$ORIGIN example.test.
$TTL 3600
@ SOA ns1 host 1 7200 900 1209600 300
@ NS ns1
@ NS ns.elsewhere.test.
@ A 192.0.2.1
ns1 A 192.0.2.53
www CNAME web
web A 192.0.2.80
web AAAA 2001:db8::80
a.b.c A 192.0.2.3
*.wild A 192.0.2.99
*.wild MX 10 mail
x.wild TXT "blocks the wildcard for x and below"
*.cnw CNAME web
loop1 CNAME loop2
loop2 CNAME loop1
out CNAME www.other.test.
cross CNAME host.second.test.
crossnx CNAME nope.second.test.
sub NS ns.sub
sub NS ns.elsewhere.test.
ns.sub A 192.0.2.54
ns.sub AAAA 2001:db8::54
sub DS 12345 8 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
multi A 192.0.2.10
todeleg CNAME host.sub
child NS ns1
multi A 192.0.2.11
multi TXT "t"
`;
const SECOND = `$ORIGIN second.test.
$TTL 600
@ SOA ns1.example.test. host.example.test. 7 3600 600 86400 60
@ NS ns1.example.test.
host A 198.51.100.7
`;

const CHILD = `$ORIGIN child.example.test.
$TTL 60
@ SOA ns1.example.test. host.example.test. 3 3600 600 86400 30
@ NS ns1.example.test.
www A 192.0.2.44
`;

const zones = new ZoneSet([
  buildZone(parseMasterFile(CHILD, { origin: 'child.example.test.', file: 'child.example.test.zone' })),
  buildZone(parseMasterFile(EXAMPLE, { origin: 'example.test.', file: 'example.test.zone' })),
  buildZone(parseMasterFile(SECOND, { origin: 'second.test.', file: 'second.test.zone' })),
]);

const show = (rrs: WireRecord[]) => rrs.map((r) => `${r.owner} ${r.ttl} ${typeName(r.type)} ${rdataToText(r.type, r.rdata)}`).sort();

function ask(name: string, type: string, tcp = false, overlay?: AddressOverlay): Answer {
  return lookup(zones, nameKey(name), typeFromName(type)!, { tcp, overlay });
}

describe('engine lookup', () => {
  test.each([
    // [qname, qtype, rcode, aa, answer (sorted presentation)]
    ['example.test.', 'A', 0, true, ['example.test. 3600 A 192.0.2.1']],
    ['EXAMPLE.test.', 'a', 0, true, ['example.test. 3600 A 192.0.2.1']],
    ['web.example.test.', 'AAAA', 0, true, ['web.example.test. 3600 AAAA 2001:db8::80']],
    ['www.example.test.', 'A', 0, true, ['web.example.test. 3600 A 192.0.2.80', 'www.example.test. 3600 CNAME web.example.test.']],
    ['www.example.test.', 'CNAME', 0, true, ['www.example.test. 3600 CNAME web.example.test.']],
    ['multi.example.test.', 'A', 0, true, ['multi.example.test. 3600 A 192.0.2.10', 'multi.example.test. 3600 A 192.0.2.11']],
    // NODATA and NXDOMAIN: empty answer
    ['web.example.test.', 'MX', 0, true, []],
    ['nope.example.test.', 'A', 3, true, []],
    // empty non-terminals answer NODATA, not NXDOMAIN
    ['b.c.example.test.', 'A', 0, true, []],
    ['c.example.test.', 'TXT', 0, true, []],
    ['z.a.b.c.example.test.', 'A', 3, true, []],
    // wildcards (RFC 4592): synthesized with the query name as owner
    ['foo.wild.example.test.', 'A', 0, true, ['foo.wild.example.test. 3600 A 192.0.2.99']],
    ['a.b.wild.example.test.', 'MX', 0, true, ['a.b.wild.example.test. 3600 MX 10 mail.example.test.']],
    ['foo.wild.example.test.', 'AAAA', 0, true, []],
    ['x.wild.example.test.', 'A', 0, true, []],
    ['y.x.wild.example.test.', 'A', 3, true, []],
    ['q.cnw.example.test.', 'A', 0, true, ['q.cnw.example.test. 3600 CNAME web.example.test.', 'web.example.test. 3600 A 192.0.2.80']],
    // CNAME chains: loop stops, out-of-zone stops, across our zones continues
    ['loop1.example.test.', 'A', 0, true, ['loop1.example.test. 3600 CNAME loop2.example.test.', 'loop2.example.test. 3600 CNAME loop1.example.test.']],
    ['out.example.test.', 'A', 0, true, ['out.example.test. 3600 CNAME www.other.test.']],
    ['cross.example.test.', 'A', 0, true, ['cross.example.test. 3600 CNAME host.second.test.', 'host.second.test. 600 A 198.51.100.7']],
    ['crossnx.example.test.', 'A', 3, true, ['crossnx.example.test. 3600 CNAME nope.second.test.']],
    // referrals: AA=0, nothing in the answer
    ['sub.example.test.', 'A', 0, false, []],
    ['deep.sub.example.test.', 'MX', 0, false, []],
    ['sub.example.test.', 'NS', 0, false, []],
    ['ns.sub.example.test.', 'A', 0, false, []],
    // DS at the cut belongs to the parent
    ['sub.example.test.', 'DS', 0, true, ['sub.example.test. 3600 DS 12345 8 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF']],
    // outside every zone: REFUSED, never recursion
    ['www.example.org.', 'A', 5, false, []],
    ['test.', 'SOA', 5, false, []],
  ] as [string, string, number, boolean, string[]][])('%s %s', (name, type, rcode, aa, answer) => {
    const a = ask(name, type);
    expect(a.rcode).toBe(rcode);
    expect(a.aa).toBe(aa);
    expect(show(a.answer).map((s) => s.toLowerCase())).toEqual(answer.map((s) => s.toLowerCase()));
  });

  test.each([
    ['nope.example.test.', 'example.test.', 300],
    ['web.example.test.', 'example.test.', 300],
    ['crossnx.example.test.', 'second.test.', 60],
  ])('negative answer %s carries the SOA of %s with TTL min(SOA TTL, MINIMUM) = %d', (name, zone, ttl) => {
    const a = ask(name, name.startsWith('web') ? 'MX' : 'A');
    expect(a.authority).toHaveLength(1);
    expect(a.authority[0].owner).toBe(zone);
    expect(a.authority[0].type).toBe(RRType.SOA);
    expect(a.authority[0].ttl).toBe(ttl);
  });

  test('a referral carries the NS RRset and in-zone glue (A and AAAA), not out-of-zone names', () => {
    const a = ask('www.sub.example.test.', 'A');
    expect(show(a.authority)).toEqual(['sub.example.test. 3600 NS ns.elsewhere.test.', 'sub.example.test. 3600 NS ns.sub.example.test.']);
    expect(show(a.additional)).toEqual(['ns.sub.example.test. 3600 A 192.0.2.54', 'ns.sub.example.test. 3600 AAAA 2001:db8::54']);
  });

  test('account overlays are zone-scoped; lowered TTLs cap without rewriting; SOA serials are bumped', () => {
    const web = Buffer.from('c0000250', 'hex'); // 192.0.2.80
    const overlay: AddressOverlay = {
      ttlCap: 60,
      serialBump: () => 5,
      replacement: (a, zone) => (zone === 'second.test.' && a.toString('hex') === 'c6336407' ? Buffer.from('c6336414', 'hex') : undefined),
      ttlCapFor: (a) => (a.equals(web) ? 120 : undefined),
    };
    // host.second.test (198.51.100.7) is rewritten in its own zone, reached through a CNAME from another zone
    expect(show(ask('cross.example.test.', 'A', false, overlay).answer)).toContain('host.second.test. 60 A 198.51.100.20');
    expect(show(ask('web.example.test.', 'A', false, overlay).answer)).toEqual(['web.example.test. 120 A 192.0.2.80']);
    const soa = ask('example.test.', 'SOA', false, overlay).answer[0];
    expect(soa.rdata.readUInt32BE(soa.rdata.length - 20)).toBe(1 + 5);
    const neg = ask('nope.second.test.', 'A', false, overlay).authority[0];
    expect(neg.rdata.readUInt32BE(neg.rdata.length - 20)).toBe(7 + 5);
  });

  test('a CNAME into a delegation: authoritative CNAME, then the referral (RFC 1034 4.3.2)', () => {
    const a = ask('todeleg.example.test.', 'A');
    expect(a.aa).toBe(true);
    expect(show(a.answer)).toEqual(['todeleg.example.test. 3600 CNAME host.sub.example.test.']);
    expect(a.authority.map((r) => r.owner)).toEqual(['sub.example.test.', 'sub.example.test.']);
    expect(show(a.additional)).toContain('ns.sub.example.test. 3600 A 192.0.2.54');
  });

  test('DS at the apex of a child zone we also serve is answered from the parent (RFC 4035 3.1.4.1)', () => {
    const a = ask('child.example.test.', 'DS');
    expect(a.aa).toBe(true);
    expect(a.authority.map((r) => r.owner)).toEqual(['example.test.']);
    expect(ask('child.example.test.', 'SOA').answer[0].owner).toBe('child.example.test.');
    expect(ask('www.child.example.test.', 'A').aa).toBe(true);
  });

  test('positive answers have empty authority and additional sections (minimal responses)', () => {
    const a = ask('web.example.test.', 'A');
    expect(a.authority).toEqual([]);
    expect(a.additional).toEqual([]);
  });

  test('ANY: one RRset over UDP (RFC 8482), all over TCP', () => {
    expect(show(ask('multi.example.test.', 'ANY').answer)).toEqual(['multi.example.test. 3600 A 192.0.2.10', 'multi.example.test. 3600 A 192.0.2.11']);
    expect(ask('multi.example.test.', 'ANY', true).answer).toHaveLength(3);
    expect(ask('nope.example.test.', 'ANY').rcode).toBe(3);
  });

  test('an overlay rewrites addresses in answer and glue, caps their TTL, and merges duplicates', () => {
    const map = new Map([
      ['c0000250', Buffer.from('c6336414', 'hex')], // 192.0.2.80 -> 198.51.100.20
      ['c0000236', Buffer.from('c6336415', 'hex')], // 192.0.2.54 -> 198.51.100.21
      ['c000020a', Buffer.from('c000020b', 'hex')], // 192.0.2.10 -> 192.0.2.11 (collides)
    ]);
    const overlay: AddressOverlay = { replacement: (a) => map.get(a.toString('hex')), ttlCap: 60 };
    expect(show(ask('www.example.test.', 'A', false, overlay).answer)).toEqual([
      'web.example.test. 60 A 198.51.100.20', 'www.example.test. 3600 CNAME web.example.test.',
    ]);
    expect(show(ask('x.sub.example.test.', 'A', false, overlay).additional)).toContain('ns.sub.example.test. 60 A 198.51.100.21');
    expect(show(ask('multi.example.test.', 'A', false, overlay).answer)).toEqual(['multi.example.test. 60 A 192.0.2.11']);
    expect(show(ask('web.example.test.', 'AAAA', false, overlay).answer)).toEqual(['web.example.test. 3600 AAAA 2001:db8::80']);
  });
});

/**
 * Zone transfer messages: every message decodes, headers as RFC 5936 2.2.1 asks, AXFR carries
 * the snapshot (100,000 records round trip), IXFR sequences as RFC 1995 4 says, size limits with
 * a TSIG reserve, oversize records alone, and the encoding in short synchronous slices.
 */
import { describe, expect, test } from '@jest/globals';
import { snapshotRecords, snapshotZone, type ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import { decodeMessage, type DecodedRecord, type Message } from '../../../src/dns/wire/message.js';
import { RRType } from '../../../src/dns/wire/constants.js';
import { diffSnapshots, Journal, type ZoneDiff } from '../../../src/dns/xfr/journal.js';
import {
  axfrMessages, ixfrForm, ixfrMessages, paced, TransferError, type TransferOptions,
} from '../../../src/dns/xfr/transfer.js';
import { bigZoneText, EXAMPLE, fixtureZones, overlay, zoneOf } from './fixture.js';

const ORIGIN = 'example.test.';
const AXFR_Q = { name: ORIGIN, type: RRType.AXFR };
const IXFR_Q = { name: ORIGIN, type: RRType.IXFR };
const rec = (r: { name?: string; owner?: string; type: number; ttl: number; rdata: Buffer }) => `${r.owner ?? r.name} ${r.ttl} ${r.type} ${r.rdata.toString('hex')}`;

/** Decodes a transfer, checks every header, returns the records of the answer sections in order. */
function decodeAll(msgs: Buffer[], o: { id: number; qtype: number; maxSize: number; rd?: boolean }): { records: DecodedRecord[]; messages: Message[] } {
  const records: DecodedRecord[] = [];
  const messages: Message[] = [];
  msgs.forEach((b, i) => {
    expect(b.length).toBeLessThanOrEqual(o.maxSize);
    const m = decodeMessage(b);
    messages.push(m);
    expect(m.id).toBe(o.id);
    expect(m.opcode).toBe(0);
    expect(m.rcode).toBe(0);
    expect({ qr: m.flags.qr, aa: m.flags.aa, tc: m.flags.tc, rd: m.flags.rd, ra: m.flags.ra }).toEqual({ qr: true, aa: true, tc: false, rd: o.rd ?? false, ra: false });
    // the question in the first message only
    expect(m.question).toEqual(i === 0 ? [{ name: ORIGIN, type: o.qtype, class: 1 }] : []);
    expect(m.authority).toEqual([]);
    expect(m.additional).toEqual([]);
    expect(m.answer.length).toBeGreaterThan(0);
    expect(m.answer.filter((r) => r.class !== 1)).toEqual([]);
    for (const r of m.answer) records.push(r);
  });
  return { records, messages };
}

/** The AXFR sequence a snapshot must produce. */
function axfrOf(s: ZoneSnapshot): string[] {
  const body = [...snapshotRecords(s)].filter((r) => r.type !== RRType.SOA);
  return [rec(s.soa), ...body.map(rec), rec(s.soa)];
}

function opts(o: Partial<TransferOptions> = {}): TransferOptions {
  return { id: 0x4242, question: AXFR_Q, ...o };
}

describe('AXFR', () => {
  test('the fixture zone with its overlay: SOA, every record as served, SOA; headers per RFC 5936', () => {
    const { zones, example } = fixtureZones(true);
    const snap = snapshotZone(example, overlay(), { zones });
    const msgs = [...axfrMessages(snap, opts({ rd: true }))];
    expect(msgs).toHaveLength(1);
    const { records } = decodeAll(msgs, { id: 0x4242, qtype: RRType.AXFR, maxSize: 16384, rd: true });
    expect(records.map(rec)).toEqual(axfrOf(snap));
    expect(records[0].rdata.readUInt32BE(records[0].rdata.length - 20)).toBe(46);
  });

  test('small messages: many of them, each within the target less the reserve, the stream unchanged', () => {
    const { zones, example } = fixtureZones(true);
    const snap = snapshotZone(example, overlay(), { zones });
    for (const [size, reserve] of [[512, 0], [512, 200], [700, 100], [600, 0]]) {
      const msgs = [...axfrMessages(snap, opts({ maxMessageSize: size, reserve, edns: { udpPayload: 1232 } }))];
      expect(msgs.length).toBeGreaterThan(1);
      const { records, messages } = decodeAll(msgs, { id: 0x4242, qtype: RRType.AXFR, maxSize: size - reserve });
      expect(records.map(rec)).toEqual(axfrOf(snap));
      for (const m of messages) expect(m.edns?.udpPayload).toBe(1232); // an OPT in every message
      // the messages are filled: each but the last has no room for its successor's first record
      for (let i = 0; i + 1 < msgs.length; i++) {
        const next = messages[i + 1].answer[0];
        expect(msgs[i].length + (next.end - next.offset)).toBeGreaterThan(size - reserve - 255);
      }
    }
  });

  test('the reserve is room for a TSIG: appending one of that size keeps every message within the target', () => {
    const { example } = fixtureZones(true);
    const snap = snapshotZone(example, overlay());
    const reserve = 120;
    for (const b of axfrMessages(snap, opts({ maxMessageSize: 600, reserve }))) {
      // a TSIG-shaped record of exactly `reserve` bytes: root owner, type 250, class ANY, TTL 0
      const rdlen = reserve - 11;
      const tsig = Buffer.alloc(reserve);
      tsig.writeUInt16BE(250, 1);
      tsig.writeUInt16BE(255, 3);
      tsig.writeUInt16BE(rdlen, 9);
      const signed = Buffer.concat([b, tsig]);
      signed.writeUInt16BE(signed.readUInt16BE(10) + 1, 10);
      expect(signed.length).toBeLessThanOrEqual(600);
      expect(decodeMessage(signed).tsig?.rdataLength).toBe(rdlen);
    }
  });

  test('a record larger than the target goes alone in a message of up to 65,535 bytes; one that cannot fit is an error', () => {
    const big = (n: number) => `big TXT ${Array.from({ length: n }, (_, i) => `"${String(i % 10).repeat(250)}"`).join(' ')}\n`;
    const z = zoneOf(EXAMPLE + big(150), ORIGIN, true); // 37,650 bytes of RDATA
    const snap = snapshotZone(z, null);
    const msgs = [...axfrMessages(snap, opts({ reserve: 100 }))];
    const { records, messages } = decodeAll(msgs, { id: 0x4242, qtype: RRType.AXFR, maxSize: 65535 - 100 });
    expect(records.map(rec)).toEqual(axfrOf(snap));
    const alone = messages.find((m) => m.answer.some((r) => r.type === RRType.TXT && r.rdata.length > 30000))!;
    expect(alone.answer).toHaveLength(1);
    expect(msgs.filter((b) => b.length > 16384)).toHaveLength(1);
    // 65,009 bytes of RDATA: in a message of its own with no reserve, not with 600 bytes reserved
    const huge = snapshotZone(zoneOf(EXAMPLE + big(259), ORIGIN, true), null);
    const alone2 = [...axfrMessages(huge, opts())].filter((b) => b.length > 65000);
    expect(alone2.map((b) => decodeMessage(b).answer.length)).toEqual([1]);
    expect(() => [...axfrMessages(huge, opts({ reserve: 600 }))]).toThrow(TransferError);
  });

  test.each([
    { size: 512, reserve: 0 }, { size: 1024, reserve: 100 }, { size: 16384, reserve: 0 }, { size: 16384, reserve: 300 }, { size: 65535, reserve: 0 },
  ])('written from the columns ($size bytes, reserve $reserve): the records the codec encodes, names compressed, escaped owners whole', ({ size, reserve }) => {
    const extra = 'a\\.dot 300 A 192.0.2.7\n\\000nul 300 TXT "x"\nUPPER.deep.er 300 MX 10 mail\nupper.deep.er 300 AAAA 2001:db8::9\n';
    const snap = snapshotZone(zoneOf(EXAMPLE + extra + bigZoneText(ORIGIN, 3000).split('\n').filter((l) => !/SOA|^\$/.test(l)).join('\n'), ORIGIN, true), overlay());
    const fast = [...axfrMessages(snap, opts({ maxMessageSize: size, reserve }))];
    // with EDNS the codec encodes every message (one OPT record each)
    const codec = [...axfrMessages(snap, opts({ maxMessageSize: size, reserve: reserve + 11, edns: {} }))];
    const { records } = decodeAll(fast, { id: 0x4242, qtype: RRType.AXFR, maxSize: size - reserve });
    expect(records.map(rec)).toEqual(codec.flatMap((b) => decodeMessage(b).answer).map(rec));
    expect(records.map(rec)).toEqual(axfrOf(snap));
    // owners compressed (names inside RDATA are not: a sixth more bytes than the codec on this zone)
    const bytes = fast.reduce((a, b) => a + b.length, 0);
    const plain = records.reduce((a, r) => a + (r.name.length + 1) + 10 + r.rdata.length, 12 * fast.length);
    expect(bytes).toBeLessThan(codec.reduce((a, b) => a + b.length, 0) * 1.25);
    expect(bytes).toBeLessThan(plain * 0.8);
  });

  test('invalid sizes are refused', () => {
    const snap = snapshotZone(fixtureZones().example, null);
    expect(() => [...axfrMessages(snap, opts({ maxMessageSize: 70000 }))]).toThrow(RangeError);
    expect(() => [...axfrMessages(snap, opts({ maxMessageSize: 300 }))]).toThrow(RangeError);
    expect(() => [...axfrMessages(snap, opts({ maxMessageSize: 1024, reserve: 900 }))]).toThrow(RangeError);
  });

  test('100,000 records: the AXFR round-trips to the snapshot, each message encoded in a short slice', async () => {
    const z = zoneOf(bigZoneText(ORIGIN, 100_000), ORIGIN, true);
    const snap = snapshotZone(z, overlay());
    const figures: string[] = [];
    for (const size of [16384, 65535]) {
      const msgs: Buffer[] = [];
      let longest = 0;
      const t0 = performance.now();
      let busy = 0;
      const gen = axfrMessages(snap, opts({ maxMessageSize: size, reserve: 100 }));
      for (;;) {
        const s = performance.now();
        const r = gen.next();
        const d = performance.now() - s;
        busy += d;
        longest = Math.max(longest, d);
        if (r.done) break;
        msgs.push(r.value);
        await new Promise((res) => setImmediate(res));
      }
      const wall = performance.now() - t0;
      figures.push(`${size}: ${msgs.length} messages, ${(msgs.reduce((a, b) => a + b.length, 0) / 1e6).toFixed(1)} MB, encoding ${busy.toFixed(0)} ms (wall ${wall.toFixed(0)} ms), longest slice ${longest.toFixed(2)} ms`);
      const { records } = decodeAll(msgs, { id: 0x4242, qtype: RRType.AXFR, maxSize: size - 100 });
      expect(records.length).toBe(snap.count + 1);
      expect(records.map(rec)).toEqual(axfrOf(snap));
      // the work is split: no slice holds more than a fifth of it (a slice is one message: 1-8 ms in plain node)
      expect(longest).toBeLessThan(busy / 5);
    }
    console.log(`AXFR of ${snap.count} records\n${figures.join('\n')}`);
  });

  test('paced() gives the event loop a turn between messages', async () => {
    const snap = snapshotZone(zoneOf(bigZoneText(ORIGIN, 5000), ORIGIN, true), null);
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    const seen: number[] = [];
    try {
      for await (const m of paced(axfrMessages(snap, opts({ maxMessageSize: 1024 })))) {
        expect(m.length).toBeLessThanOrEqual(1024);
        seen.push(turns);
      }
    } finally {
      clearInterval(timer);
    }
    expect(seen.length).toBeGreaterThan(50);
    expect(seen[seen.length - 1]).toBeGreaterThan(seen[0]);
  });
});

describe('IXFR', () => {
  const V = [41, 42, 43].map((serial, i) =>
    snapshotZone(
      zoneOf(
        EXAMPLE.replace('hostmaster 41 ', `hostmaster ${serial} `)
          .replace('mail A 192.0.2.25', i === 0 ? 'mail A 192.0.2.25' : `mail A 192.0.2.${25 + i}`)
          .replace('ns1 A 192.0.2.53', i === 2 ? 'ns1 300 A 192.0.2.53\nextra TXT "v3"' : 'ns1 A 192.0.2.53'),
        ORIGIN,
        true,
      ),
      null,
    ),
  );
  const journal = new Journal(ORIGIN);
  journal.record(V[0], V[1]);
  journal.record(V[1], V[2]);
  const cur = V[2];

  const ixfr = (serial: number, diffs: readonly ZoneDiff[] | null, o: Partial<TransferOptions> = {}) =>
    decodeAll([...ixfrMessages(cur, serial, diffs, opts({ question: IXFR_Q, ...o }))], { id: 0x4242, qtype: RRType.IXFR, maxSize: o.maxMessageSize ?? 16384 }).records.map(rec);

  test('incremental: current SOA, per version old SOA, deletions, new SOA, additions, current SOA (RFC 1995 4)', () => {
    expect(ixfrForm(cur, 41, journal.diffsSince(41))).toBe('incremental');
    const [d1, d2] = [diffSnapshots(V[0], V[1]), diffSnapshots(V[1], V[2])];
    const want = [
      rec(cur.soa),
      rec(V[0].soa), ...d1.deleted.map(rec), rec(V[1].soa), ...d1.added.map(rec),
      rec(V[1].soa), ...d2.deleted.map(rec), rec(V[2].soa), ...d2.added.map(rec),
      rec(cur.soa),
    ];
    expect(d1.deleted.map(rec)).toEqual([`mail.example.test. 3600 1 c0000219`]);
    expect(d1.added.map(rec)).toEqual([`mail.example.test. 3600 1 c000021a`]);
    expect(d2.deleted.map((r) => r.owner)).toEqual(['mail.example.test.', 'ns1.example.test.']);
    expect(d2.added.map((r) => r.owner)).toEqual(['extra.example.test.', 'mail.example.test.', 'ns1.example.test.']);
    expect(ixfr(41, journal.diffsSince(41))).toEqual(want);
    // the same sequence across many small messages
    expect(ixfr(41, journal.diffsSince(41), { maxMessageSize: 512 })).toEqual(want);
    // from the middle of the journal: one version
    expect(ixfr(42, journal.diffsSince(42))).toEqual([rec(cur.soa), rec(V[1].soa), ...d2.deleted.map(rec), rec(V[2].soa), ...d2.added.map(rec), rec(cur.soa)]);
  });

  test('a client at our serial gets the single SOA', () => {
    expect(ixfrForm(cur, 43, journal.diffsSince(43))).toBe('current');
    expect(ixfr(43, journal.diffsSince(43))).toEqual([rec(cur.soa)]);
  });

  test.each([
    ['older than the journal', 40],
    ['ahead of us', 44],
    ['never served', 0x7000],
  ])('a client the journal does not reach (%s) gets the whole zone in AXFR form', (_label, serial) => {
    expect(ixfrForm(cur, serial, journal.diffsSince(serial))).toBe('full');
    expect(ixfr(serial, journal.diffsSince(serial))).toEqual(axfrOf(cur));
  });

  test('diffs that do not end at the snapshot being served fall back to the whole zone', () => {
    const stale = new Journal(ORIGIN);
    stale.record(V[0], V[1]);
    expect(ixfrForm(cur, 41, stale.diffsSince(41))).toBe('full');
    expect(ixfrForm(cur, 41, [])).toBe('full');
    expect(ixfrForm(cur, 41, null)).toBe('full');
    const d = journal.diffsSince(41)!;
    expect(ixfrForm(cur, 41, [d[1]])).toBe('full'); // does not start at the client's serial
    expect(ixfrForm(cur, 41, [d[0], d[0]])).toBe('full'); // does not chain
  });

  test('versions holding more records than the zone: the whole zone instead (maxIxfrRatio, default 1)', () => {
    const d = journal.diffsSince(41)!;
    const records = d.reduce((n, x) => n + 2 + x.deleted.length + x.added.length, 0);
    expect(ixfrForm(cur, 41, d, records / cur.count)).toBe('incremental');
    expect(ixfrForm(cur, 41, d, (records - 1) / cur.count)).toBe('full');
    expect(ixfr(41, d, { maxIxfrRatio: (records - 1) / cur.count })).toEqual(axfrOf(cur));
  });

  test('a version with no record change (serial only) is old SOA, new SOA', () => {
    const a = V[2];
    const b = snapshotZone(zoneOf(EXAMPLE.replace('hostmaster 41 ', 'hostmaster 41 ').replace('mail A 192.0.2.25', 'mail A 192.0.2.27').replace('ns1 A 192.0.2.53', 'ns1 300 A 192.0.2.53\nextra TXT "v3"'), ORIGIN, true), overlay({ servers: [], accounts: [], lowered: [], serialBump: 3 }));
    expect(b.serial).toBe(44);
    const j = new Journal(ORIGIN);
    expect(j.record(a, b)).toBe('recorded');
    const recs = decodeAll([...ixfrMessages(b, 43, j.diffsSince(43), opts({ question: IXFR_Q }))], { id: 0x4242, qtype: RRType.IXFR, maxSize: 16384 }).records;
    expect(recs.map((r) => r.type)).toEqual([6, 6, 6, 6]);
    expect(recs.map((r) => r.rdata.readUInt32BE(r.rdata.length - 20))).toEqual([44, 43, 44, 44]);
  });
});

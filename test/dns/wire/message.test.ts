/**
 * The shared DNS message codec (src/dns/wire/message.ts): table-driven round trips, name
 * compression both ways, EDNS with EDE, TSIG offsets, truncation, malformed inputs, and a fuzz
 * loop (bounded in count) over random and mutated packets. Encodings are also read back with
 * the independent decoder of test/dns/tiny-dns.ts and the server's hot-path query parser.
 */
import { describe, expect, test } from '@jest/globals';
import { keyToLabels, labelsToWire } from '../../../src/dns/name.js';
import { EdnsOptionCode, RRType } from '../../../src/dns/wire/constants.js';
import {
  decodeMessage, DnsEncodeError, DnsFormatError, edeOption, encodeMessage, TSIG_TYPE,
  type DecodedRecord, type Message, type MessageInput, type RecordInput,
} from '../../../src/dns/wire/message.js';
import { isProblem, parseQuery } from '../../../src/dns/wire/query.js';
import { readMx, readSoa, readTxt } from '../../../src/dns/wire/rdata.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import { decode as tinyDecode } from '../tiny-dns.js';

const wire = (name: string): Buffer => labelsToWire(keyToLabels(name));
const u16 = (...v: number[]): Buffer => {
  const b = Buffer.alloc(v.length * 2);
  v.forEach((x, i) => b.writeUInt16BE(x, i * 2));
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
};
const rr = (name: string, type: number, rdata: Buffer, ttl = 300): RecordInput => ({ name, type, ttl, rdata });
const mx = (pref: number, host: string): Buffer => Buffer.concat([u16(pref), wire(host)]);
const soa = (m: string, r: string, serial: number): Buffer =>
  Buffer.concat([wire(m), wire(r), u32(serial), u32(3600), u32(600), u32(86400), u32(60)]);
const txt = (...s: string[]): Buffer => Buffer.concat(s.map((x) => Buffer.concat([Buffer.from([x.length]), Buffer.from(x, 'latin1')])));

/** RDATA types whose names the encoder compresses, case-insensitively. */
const COMPRESSED = new Set<number>([RRType.NS, RRType.CNAME, RRType.PTR, RRType.MX, RRType.SOA]);

/**
 * The parts of a decoded message that an encoding determines (no offsets; the letter case of
 * names in compressed RDATA may follow an earlier name's).
 */
function shape(m: Message) {
  const rdata = (r: DecodedRecord) => (COMPRESSED.has(r.type) ? rdataToText(r.type, r.rdata).toLowerCase() : r.rdata.toString('hex'));
  const rec = (r: DecodedRecord) => ({ name: r.name, type: r.type, class: r.class, ttl: r.ttl, rdata: rdata(r) });
  return {
    id: m.id, opcode: m.opcode, rcode: m.rcode, flags: m.flags, question: m.question,
    answer: m.answer.map(rec), authority: m.authority.map(rec), additional: m.additional.map(rec),
    edns: m.edns && {
      ...m.edns,
      options: m.edns.options.map((o) => ({ code: o.code, data: Buffer.from(o.data).toString('hex') })),
    },
    tsig: m.tsig && rec(m.tsig),
  };
}

/** A decoded message as encoder input (what a proxy or a re-signer would do). */
function asInput(m: Message): MessageInput {
  return {
    id: m.id, opcode: m.opcode, rcode: m.rcode, flags: m.flags, question: m.question,
    answer: m.answer, authority: m.authority, additional: m.additional, edns: m.edns, tsig: m.tsig,
  };
}

const ZONE_ANSWER: MessageInput = {
  id: 0xbeef,
  flags: { qr: true, aa: true, rd: true },
  question: [{ name: 'example.com.', type: RRType.MX }],
  answer: [rr('example.com.', RRType.MX, mx(10, 'mx1.example.com.')), rr('example.com.', RRType.MX, mx(20, 'mx2.example.com.'))],
  authority: [rr('example.com.', RRType.NS, wire('ns1.example.com.')), rr('example.com.', RRType.NS, wire('ns2.other.test.'))],
  additional: [
    rr('mx1.example.com.', RRType.A, Buffer.from([192, 0, 2, 1])),
    rr('mx1.example.com.', RRType.AAAA, Buffer.from('20010db8000000000000000000000001', 'hex')),
  ],
  edns: { udpPayload: 1232, dnssecOk: true },
};

const CASES: [string, MessageInput][] = [
  ['a bare query', { id: 1, flags: { rd: true }, question: [{ name: 'www.example.com.', type: RRType.A }] }],
  ['a query with EDNS and CD', { id: 2, flags: { rd: true, cd: true }, question: [{ name: 'example.com.', type: RRType.MX }], edns: {} }],
  ['a NOTIFY with the SOA in the answer', {
    id: 3, opcode: 4, flags: { aa: true }, question: [{ name: 'example.com.', type: RRType.SOA }],
    answer: [rr('example.com.', RRType.SOA, soa('ns1.example.com.', 'hostmaster.example.com.', 2024010101))],
  }],
  ['an authoritative answer with compression everywhere', ZONE_ANSWER],
  ['NXDOMAIN with the SOA in authority', {
    id: 4, flags: { qr: true, aa: true }, rcode: 3, question: [{ name: 'nope.example.com.', type: RRType.A }],
    authority: [rr('example.com.', RRType.SOA, soa('ns1.example.com.', 'hostmaster.example.com.', 7))],
  }],
  ['BADVERS (extended rcode 16)', { id: 5, flags: { qr: true }, rcode: 16, question: [{ name: 'x.test.', type: RRType.A }], edns: { version: 0 } }],
  ['SERVFAIL with two EDE options and a cookie', {
    id: 6, flags: { qr: true, rd: true, ra: true }, rcode: 2, question: [{ name: 'bogus.test.', type: RRType.A }],
    edns: {
      udpPayload: 4096,
      options: [edeOption({ code: 7, text: 'RRSIG expired' }), { code: EdnsOptionCode.COOKIE, data: Buffer.alloc(8, 0xab) }, edeOption({ code: 22 })],
    },
  }],
  ['every header flag and the Z bit', {
    id: 0xffff, opcode: 2, rcode: 5,
    flags: { qr: true, aa: true, tc: true, rd: true, ra: true, z: true, ad: true, cd: true },
  }],
  ['TXT, SRV, CNAME and an unknown type, class CH', {
    id: 7, flags: { qr: true },
    answer: [
      rr('alias.example.com.', RRType.CNAME, wire('www.example.com.')),
      rr('www.example.com.', RRType.TXT, txt('v=spf1 -all', '', 'x'.repeat(255))),
      rr('_sip._tcp.example.com.', RRType.SRV, Buffer.concat([u16(1, 2, 5060), wire('sip.example.com.')])),
      { name: 'version.bind.', type: 4321, class: 3, ttl: 0, rdata: Buffer.from([1, 2, 3]) },
    ],
  }],
  ['the root as owner and question', { id: 8, flags: { qr: true }, question: [{ name: '.', type: RRType.NS }], answer: [rr('.', RRType.NS, wire('a.root-servers.net.'))] }],
  ['a signed message (TSIG last, after OPT)', {
    id: 9, flags: { qr: true }, question: [{ name: 'example.com.', type: RRType.SOA }], edns: {},
    tsig: { name: 'key.example.', type: TSIG_TYPE, class: 255, ttl: 0, rdata: Buffer.concat([wire('hmac-sha256.'), Buffer.alloc(16, 1)]) },
  }],
];

describe('round trips', () => {
  test.each(CASES)('%s', (_title, input) => {
    const bytes = encodeMessage(input);
    const m = decodeMessage(bytes);
    expect(m.id).toBe(input.id ?? 0);
    expect(m.opcode).toBe(input.opcode ?? 0);
    expect(m.rcode).toBe(input.rcode ?? 0);
    for (const [k, v] of Object.entries(input.flags ?? {})) expect(m.flags[k as keyof Message['flags']]).toBe(v);
    expect(m.question).toEqual((input.question ?? []).map((q) => ({ name: q.name, type: q.type, class: q.class ?? 1 })));
    for (const s of ['answer', 'authority', 'additional'] as const) {
      expect(m[s].map((r) => [r.name, r.type, r.class, r.ttl, r.rdata.toString('hex')]))
        .toEqual((input[s] ?? []).map((r) => [r.name, r.type, r.class ?? 1, r.ttl, Buffer.from(r.rdata).toString('hex')]));
    }
    expect(m.edns !== undefined).toBe(input.edns !== undefined);
    if (input.edns) {
      expect(m.edns!.udpPayload).toBe(input.edns.udpPayload ?? 1232);
      expect(m.edns!.dnssecOk).toBe(input.edns.dnssecOk ?? false);
      expect(m.edns!.options.map((o) => o.code)).toEqual((input.edns.options ?? []).map((o) => o.code));
    }
    // encode(decode(x)) is x, byte for byte
    expect(encodeMessage(asInput(m)).equals(bytes)).toBe(true);
    // and the independent test decoder reads the same message (it knows no TSIG)
    if (!input.tsig) {
      const t = tinyDecode(bytes);
      expect([t.id, t.rcode, t.trailing]).toEqual([m.id, m.rcode, 0]);
      expect([t.answers.length, t.authority.length]).toEqual([m.answer.length, m.authority.length]);
      expect(t.additional.filter((r) => r.type !== RRType.OPT).length).toBe(m.additional.length);
    }
  });

  test('queries encoded by the codec are parsed by the server hot path', () => {
    for (const [name, type, dnssecOk] of [['www.example.com.', RRType.A, false], ['Mixed.Case.TEST.', RRType.MX, true]] as const) {
      const q = parseQuery(encodeMessage({ id: 42, flags: { rd: true }, question: [{ name, type }], edns: { dnssecOk } }));
      if (isProblem(q)) throw new Error(`not a query: ${JSON.stringify(q)}`);
      expect([q.id, q.qtype, q.qclass, q.ednsPayload, q.dnssecOk]).toEqual([42, type, 1, 1232, dnssecOk]);
    }
  });

  test('EDE options are read out, trailing NULs dropped, unknown codes kept', () => {
    const bytes = encodeMessage(CASES[6][1]);
    const m = decodeMessage(bytes);
    expect(m.edns!.ede).toEqual([{ code: 7, text: 'RRSIG expired' }, { code: 22 }]);
    const nul = decodeMessage(encodeMessage({ edns: { options: [{ code: 15, data: Buffer.from([0, 0, 0x41, 0, 0]) }] } }));
    expect(nul.edns!.ede).toEqual([{ code: 0, text: 'A' }]);
  });

  test('the extended rcode is split between the header and OPT', () => {
    const bytes = encodeMessage(CASES[5][1]);
    expect(bytes[3] & 0x0f).toBe(0);
    expect(decodeMessage(bytes).edns!.extendedRcode).toBe(1);
    expect(() => encodeMessage({ rcode: 16 })).toThrow(DnsEncodeError);
  });

  test('TSIG: the record offset is where the unsigned message ends', () => {
    const input = CASES[10][1];
    const signed = encodeMessage(input);
    const unsigned = encodeMessage({ ...input, tsig: undefined });
    const m = decodeMessage(signed);
    expect(m.additional).toEqual([]);
    expect(m.tsig!.name).toBe('key.example.');
    expect(m.tsig!.end).toBe(signed.length);
    // what a verifier hashes: the message up to the TSIG record, with ARCOUNT one less
    const prefix = Buffer.from(signed.subarray(0, m.tsig!.offset));
    prefix.writeUInt16BE(prefix.readUInt16BE(10) - 1, 10);
    expect(prefix.equals(unsigned)).toBe(true);
  });
});

describe('name compression', () => {
  test('owner and RDATA names point to earlier names; RDATA comes back uncompressed', () => {
    const bytes = encodeMessage(ZONE_ANSWER);
    const records = [...ZONE_ANSWER.answer!, ...ZONE_ANSWER.authority!, ...ZONE_ANSWER.additional!];
    const uncompressed = 12 + 17 + records.reduce((n, r) => n + wire(r.name as string).length + 10 + r.rdata.length, 0) + 11;
    expect(uncompressed - bytes.length).toBe(4 * 11 + 2 * 15 + 3 * 11); // owners -> pointers, RDATA names -> label + pointer
    // the first answer's owner is a pointer to the question name at offset 12
    expect(bytes.readUInt16BE(12 + 13 + 4)).toBe(0xc00c);
    const m = decodeMessage(bytes);
    expect(readMx(m.answer[1].rdata)).toEqual({ preference: 20, exchange: 'mx2.example.com.' });
    expect(m.answer[1].rdataLength).toBeLessThan(m.answer[1].rdata.length);
    expect(m.authority[0].rdata.equals(wire('ns1.example.com.'))).toBe(true);
  });

  test('question names are never compressed; new types (SRV) are not compressed but are decompressed', () => {
    const two = encodeMessage({ question: [{ name: 'a.test.', type: 1 }, { name: 'a.test.', type: 28 }] });
    expect(two.length).toBe(12 + 2 * (8 + 4));
    const srv = encodeMessage({ answer: [rr('sip.test.', RRType.SRV, Buffer.concat([u16(0, 0, 1), wire('sip.test.')]))] });
    expect(srv.includes(Buffer.from([0xc0, 12]))).toBe(false);
    // another server's SRV with a compressed target
    const pkt = Buffer.concat([u16(1, 0x8400, 0, 1, 0, 0), wire('sip.test.'), u16(RRType.SRV, 1), u32(60), u16(8, 0, 0, 1), u16(0xc00c)]);
    expect(decodeMessage(pkt).answer[0].rdata.equals(Buffer.concat([u16(0, 0, 1), wire('sip.test.')]))).toBe(true);
  });

  test('SOA and TXT RDATA readers', () => {
    const m = decodeMessage(encodeMessage(CASES[2][1]));
    expect(readSoa(m.answer[0].rdata)).toMatchObject({ mname: 'ns1.example.com.', rname: 'hostmaster.example.com.', serial: 2024010101, minimum: 60 });
    expect(readTxt(txt('a', 'bc')).map((s) => Buffer.from(s).toString())).toEqual(['a', 'bc']);
  });
});

describe('truncation', () => {
  const big: MessageInput = {
    flags: { qr: true, aa: true }, question: [{ name: 'big.test.', type: RRType.TXT }],
    answer: Array.from({ length: 20 }, (_, i) => rr('big.test.', RRType.TXT, txt(`${i} ${'x'.repeat(60)}`))),
    additional: [rr('ns.test.', RRType.A, Buffer.from([192, 0, 2, 1]))],
    edns: {},
  };

  test('an RRset that does not fit is left out whole, with TC; OPT stays', () => {
    const out = encodeMessage(big, { maxSize: 512, truncate: true });
    expect(out.length).toBeLessThanOrEqual(512);
    const m = decodeMessage(out);
    expect(m.flags.tc).toBe(true);
    expect(m.answer).toEqual([]);
    expect(m.edns).toBeDefined();
  });

  test('additional data that does not fit is left out silently', () => {
    const input = { ...big, answer: big.answer!.slice(0, 6) };
    const full = encodeMessage(input);
    const out = encodeMessage(input, { maxSize: full.length - 1, truncate: true });
    const m = decodeMessage(out);
    expect([m.flags.tc, m.answer.length, m.additional.length]).toEqual([false, 6, 0]);
  });

  test('without truncate an oversize message throws DnsEncodeError', () => {
    expect(() => encodeMessage(big, { maxSize: 512 })).toThrow(DnsEncodeError);
    expect(() => encodeMessage({ question: [{ name: 'x.test.', type: 1 }] }, { maxSize: 20 })).toThrow(/question section/);
  });

  test('RDATA that does not fit its type is refused by the encoder', () => {
    expect(() => encodeMessage({ answer: [rr('x.test.', RRType.MX, Buffer.from([0, 1]))] })).toThrow(DnsEncodeError);
    expect(() => encodeMessage({ answer: [rr('x.test.', RRType.NS, Buffer.concat([wire('a.test.'), Buffer.from([1])]))] })).toThrow(/trailing/);
  });
});

// ------------------------------------------------------------------------- malformed -----------

const header = (qd: number, an: number, ns: number, ar: number, flags = 0x8180): Buffer => u16(0x1234, flags, qd, an, ns, ar);
const question = (name = 'q.test.', type = RRType.A): Buffer => Buffer.concat([wire(name), u16(type, 1)]);
const record = (owner: Buffer, type: number, rdata: Buffer, rdlength = rdata.length): Buffer =>
  Buffer.concat([owner, u16(type, 1), u32(60), u16(rdlength), rdata]);
const opt = (rdata: Buffer = Buffer.alloc(0), owner: Buffer = Buffer.from([0])): Buffer =>
  Buffer.concat([owner, u16(RRType.OPT, 1232), u32(0), u16(rdata.length), rdata]);
const PTR_Q = u16(0xc00c); // pointer to the question name

const MALFORMED: [string, Buffer, RegExp][] = [
  ['empty', Buffer.alloc(0), /truncated header/],
  ['truncated header', header(0, 0, 0, 0).subarray(0, 11), /truncated header/],
  ['question name runs past the end', Buffer.concat([header(1, 0, 0, 0), Buffer.from([5, 0x61, 0x62])]), /past the end/],
  ['truncated question', Buffer.concat([header(1, 0, 0, 0), wire('q.test.'), u16(1)]), /truncated question/],
  ['more questions than present', Buffer.concat([header(2, 0, 0, 0), question()]), /name runs past the end/],
  ['pointer to itself', Buffer.concat([header(1, 1, 0, 0), question(), record(u16(0xc000 | 24), RRType.A, Buffer.alloc(4))]), /does not point backwards/],
  ['pointer loop of two', (() => {
    // owner = label "a" then a pointer to the second name, which points back to the first
    const h = Buffer.concat([header(1, 2, 0, 0), question()]);
    const first = Buffer.concat([Buffer.from([1, 0x61]), u16(0xc000 | (h.length + 18))]);
    const r1 = record(first, RRType.A, Buffer.alloc(4));
    const r2 = record(Buffer.concat([Buffer.from([1, 0x62]), u16(0xc000 | h.length)]), RRType.A, Buffer.alloc(4));
    return Buffer.concat([h, r1, r2]);
  })(), /does not point backwards/],
  ['pointer forward', Buffer.concat([header(1, 1, 0, 0), question(), record(u16(0xc0ff), RRType.A, Buffer.alloc(4))]), /does not point backwards/],
  ['pointer into the header', Buffer.concat([header(1, 1, 0, 0), question(), record(u16(0xc002), RRType.A, Buffer.alloc(4))]), /into the header/],
  ['truncated pointer', Buffer.concat([header(1, 1, 0, 0), question(), Buffer.from([0xc0])]), /truncated compression pointer/],
  ['label > 63 (type 0x40)', Buffer.concat([header(1, 0, 0, 0), Buffer.from([64, ...Buffer.alloc(64, 0x61), 0]), u16(1, 1)]), /unknown label type 0x40/],
  ['label type 0x80', Buffer.concat([header(1, 0, 0, 0), Buffer.from([0x80, 0]), u16(1, 1)]), /unknown label type 0x80/],
  ['name > 255 bytes', Buffer.concat([header(1, 0, 0, 0), ...Array.from({ length: 5 }, () => Buffer.from([63, ...Buffer.alloc(63, 0x61)])), Buffer.from([0]), u16(1, 1)]), /longer than 255/],
  ['name > 255 bytes through pointers', (() => {
    const h = Buffer.concat([header(1, 1, 0, 0), Buffer.from([63, ...Buffer.alloc(63, 0x61), 63, ...Buffer.alloc(63, 0x62), 0]), u16(1, 1)]);
    const owner = Buffer.concat([Buffer.from([63, ...Buffer.alloc(63, 0x63), 63, ...Buffer.alloc(63, 0x64)]), PTR_Q]);
    return Buffer.concat([h, record(owner, RRType.A, Buffer.alloc(4))]);
  })(), /longer than 255/],
  ['rdlength past the end', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.A, Buffer.alloc(4), 200)]), /RDATA runs past the end/],
  ['truncated record header', Buffer.concat([header(1, 1, 0, 0), question(), PTR_Q, u16(1, 1)]), /truncated record header/],
  ['OPT in the answer section', Buffer.concat([header(1, 1, 0, 0), question(), opt()]), /OPT record outside the additional section/],
  ['OPT in the authority section', Buffer.concat([header(1, 0, 1, 0), question(), opt()]), /OPT record outside/],
  ['two OPTs', Buffer.concat([header(1, 0, 0, 2), question(), opt(), opt()]), /more than one OPT/],
  ['OPT owner not the root', Buffer.concat([header(1, 0, 0, 1), question(), opt(Buffer.alloc(0), PTR_Q)]), /OPT owner is not the root/],
  ['EDNS option past the OPT record', Buffer.concat([header(1, 0, 0, 1), question(), opt(u16(15, 10, 7))]), /EDNS option runs past/],
  ['truncated EDNS option', Buffer.concat([header(1, 0, 0, 1), question(), opt(Buffer.from([0, 15, 0]))]), /truncated EDNS option/],
  ['short EDE option', Buffer.concat([header(1, 0, 0, 1), question(), opt(u16(15, 1, 0).subarray(0, 5))]), /short EDE/],
  ['TSIG not last', Buffer.concat([header(1, 0, 0, 2), question(), record(wire('k.'), TSIG_TYPE, Buffer.alloc(4)), opt()]), /TSIG record is not the last/],
  ['TSIG in the answer section', Buffer.concat([header(1, 1, 0, 0), question(), record(wire('k.'), TSIG_TYPE, Buffer.alloc(4))]), /TSIG record outside/],
  ['bytes after the last record', Buffer.concat([header(1, 0, 0, 0), question(), Buffer.from([1, 2, 3])]), /3 bytes after the last record/],
  ['A record of 3 bytes', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.A, Buffer.alloc(3))]), /A record of 3 bytes/],
  ['AAAA record of 4 bytes', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.AAAA, Buffer.alloc(4))]), /AAAA record of 4 bytes/],
  ['empty TXT', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.TXT, Buffer.alloc(0))]), /empty TXT/],
  ['TXT string past its RDATA', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.TXT, Buffer.from([5, 0x61]))]), /TXT string runs past/],
  ['MX name past its RDATA', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.MX, Buffer.from([0, 1, 3, 0x61]))]), /past the end/],
  ['MX with trailing bytes', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.MX, Buffer.concat([u16(1), PTR_Q, Buffer.from([9])]))]), /1 trailing bytes in MX RDATA/],
  ['SOA too short', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.SOA, Buffer.concat([PTR_Q, PTR_Q, Buffer.alloc(19)]))]), /SOA RDATA shorter/],
  ['NAPTR string past its RDATA', Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.NAPTR, Buffer.concat([u16(1, 1), Buffer.from([9, 0x61])]))]), /NAPTR RDATA shorter/],
];

describe('malformed input: DnsFormatError, never anything else', () => {
  test.each(MALFORMED)('%s', (_title, pkt, why) => {
    let err: unknown;
    try {
      decodeMessage(pkt);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DnsFormatError);
    expect((err as Error).message).toMatch(why);
  });

  test('a well-formed message with a pointer to the question decodes', () => {
    const pkt = Buffer.concat([header(1, 1, 0, 0), question(), record(PTR_Q, RRType.MX, Buffer.concat([u16(5), PTR_Q]))]);
    const m = decodeMessage(pkt);
    expect(m.answer[0].name).toBe('q.test.');
    expect(readMx(m.answer[0].rdata)).toEqual({ preference: 5, exchange: 'q.test.' });
  });
});

// ------------------------------------------------------------------------------ fuzz -----------

describe('fuzz (bounded)', () => {
  test('random and mutated packets decode or throw DnsFormatError; what decodes re-encodes to the same message', () => {
    let seed = 0x5eed;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return seed % n;
    };
    const bases = CASES.map(([, input]) => encodeMessage(input));
    const ITERATIONS = 40_000;
    let decoded = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      let pkt: Buffer;
      const kind = i % 5;
      if (kind === 0) {
        // pure noise after a plausible header
        pkt = Buffer.from(Array.from({ length: 12 + rnd(80) }, () => rnd(256)));
        pkt.writeUInt16BE(rnd(3), 4);
        pkt.writeUInt16BE(rnd(3), 6);
        pkt.writeUInt16BE(rnd(2), 8);
        pkt.writeUInt16BE(rnd(3), 10);
      } else {
        pkt = Buffer.from(bases[rnd(bases.length)]);
        const flips = 1 + rnd(4);
        for (let k = 0; k < flips; k++) {
          const at = rnd(pkt.length);
          // bias towards bytes that matter: pointers, label lengths, counts
          pkt[at] = kind === 1 ? 0xc0 | rnd(4) : kind === 2 ? rnd(70) : rnd(256);
        }
        if (kind === 3) pkt = pkt.subarray(0, rnd(pkt.length + 1));
        if (kind === 4 && rnd(2) === 0) pkt = Buffer.concat([pkt, pkt.subarray(rnd(pkt.length))]);
      }
      let m: Message;
      try {
        m = decodeMessage(pkt);
      } catch (e) {
        if (!(e instanceof DnsFormatError)) throw new Error(`decodeMessage threw ${String(e)} for ${pkt.toString('hex')}`);
        continue;
      }
      decoded++;
      const again = decodeMessage(encodeMessage(asInput(m)));
      expect(shape(again)).toEqual(shape(m));
    }
    expect(decoded).toBeGreaterThan(ITERATIONS / 20);
  });
});

/**
 * TSIG (src/dns/xfr/tsig.ts), RFC 8945, for every supported algorithm:
 * - keys and secrets from configuration text (hmac-md5 refused with its reason);
 * - sign/verify round trips for requests, responses and streams, and every failure of 5.2 (table):
 *   BADSIG, BADKEY, BADTIME (the fudge boundary), FORMERR (malformed RDATA, class/TTL, MAC sizes
 *   of 5.2.2.1), BADTRUNC (policy), PEER_ERROR for the error responses a server sends back;
 * - a stream with unsigned messages between signed ones, built here from the RFC's text;
 * - fuzzed messages: verify() and the error responses never throw, only an untouched message
 *   (but for its ID) verifies;
 * - against real implementations: dig (BIND 9) requests captured by a tiny UDP/TCP server and
 *   verified, our responses, error responses and AXFR streams checked by dig; NSD as a primary
 *   (a request we sign gets a multi-message AXFR that the stream verifier accepts; unsigned,
 *   unknown-key, wrong-secret and off-clock requests get what RFC 8945 says) and NSD as a
 *   secondary transferring a zone from a tiny primary that signs with TsigStreamSigner.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { keyToLabels, labelsToWire } from '../../../src/dns/name.js';
import { RRType } from '../../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage, TSIG_TYPE, type Message, type RecordInput } from '../../../src/dns/wire/message.js';
import {
  decodeTsigSecret, isTsigAlgorithm, parseTsigRecord, RCODE_NOTAUTH, signRequest, signResponse, tsigAlgorithmProblem,
  TSIG_ALGORITHMS, TSIG_FUDGE, tsigErrorResponse, tsigKey, TsigKeyError, tsigRecordSize, TsigRcode, TsigSignError,
  TsigStreamSigner, TsigStreamVerifier, verify, type TsigAlgorithm, type TsigKey, type TsigKeyLookup,
  type TsigRejected, type TsigVerifyResult,
} from '../../../src/dns/xfr/tsig.js';
import { freePort } from '../../support/controller.js';
import { assertDigInstalled, DIG_BIN } from '../../support/dig.js';
import { startNsd, waitForSoa, type NsdHandle } from '../../support/nsd.js';
import { waitFor } from '../../support/wait-for.js';

const run = promisify(execFile);

/** Hash output sizes, written out here (not taken from the module under test). */
const SIZES: Record<TsigAlgorithm, number> = { 'hmac-sha256': 32, 'hmac-sha384': 48, 'hmac-sha512': 64, 'hmac-sha224': 28, 'hmac-sha1': 20 };
const ALGOS: readonly TsigAlgorithm[] = TSIG_ALGORITHMS;
const NOW = 1_700_000_000;
const nowS = (): number => Math.floor(Date.now() / 1000);

const wire = (name: string): Buffer => labelsToWire(keyToLabels(name));
const u16 = (v: number): Buffer => Buffer.from([v >> 8, v & 0xff]);
const u48 = (v: number): Buffer => {
  const b = Buffer.alloc(6);
  b.writeUIntBE(v, 0, 6);
  return b;
};

function keyFor(algorithm: TsigAlgorithm, name = `k-${algorithm.slice(5)}.`, secret = randomBytes(SIZES[algorithm])): TsigKey {
  return tsigKey(name, algorithm, secret.toString('base64'));
}

function query(name: string, type: number, id = 0x1234, edns = false): Buffer {
  return encodeMessage({ id, question: [{ name, type }], ...(edns ? { edns: {} } : {}) });
}

function answerTo(req: Message, records: RecordInput[]): Buffer {
  return encodeMessage({
    id: req.id, opcode: req.opcode, flags: { qr: true, aa: true, rd: req.flags.rd }, question: req.question, answer: records,
    ...(req.edns ? { edns: {} } : {}),
  });
}

const a = (name: string, last: number): RecordInput => ({ name, type: RRType.A, ttl: 60, rdata: Buffer.from([192, 0, 2, last]) });

function expectOk(r: TsigVerifyResult): asserts r is Extract<TsigVerifyResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected a verified message, got ${r.error}: ${r.reason}`);
}

function expectError(r: TsigVerifyResult | { ok: boolean }, error: string): TsigRejected {
  if (r.ok) throw new Error(`expected ${error}, the message verified`);
  const f = r as TsigRejected;
  if (f.error !== error) throw new Error(`expected ${error}, got ${f.error}: ${f.reason}`);
  return f;
}

/** The signed message with its TSIG RDATA replaced by `f(rdata)` (RDLENGTH adjusted). */
function withRdata(signed: Buffer, f: (rdata: Buffer) => Buffer): Buffer {
  const t = decodeMessage(signed).tsig!;
  const rdata = f(Buffer.from(t.rdata));
  return Buffer.concat([signed.subarray(0, t.rdataOffset - 2), u16(rdata.length), rdata]);
}

/** Offsets of the TSIG RDATA fields of a signed message. */
function fields(signed: Buffer) {
  const t = decodeMessage(signed).tsig!;
  const alg = parseTsigRecord(t);
  if (typeof alg === 'string') throw new Error(alg);
  const macSizeAt = alg.algorithmWire.length + 8; // within RDATA
  return { rdataOffset: t.rdataOffset, macSizeAt, macAt: macSizeAt + 2, macSize: alg.mac.length, rec: t };
}

/** RDATA with the MAC cut to `n` bytes (the first n: RFC 8945 5.2.2.1 truncation). */
function truncateMac(rdata: Buffer, macSizeAt: number, n: number): Buffer {
  const size = rdata.readUInt16BE(macSizeAt);
  return Buffer.concat([rdata.subarray(0, macSizeAt), u16(n), rdata.subarray(macSizeAt + 2, macSizeAt + 2 + n), rdata.subarray(macSizeAt + 2 + size)]);
}

// ------------------------------------------------------------------------------ keys -----------

describe('keys and secrets', () => {
  test('the supported algorithms are the five SHA ones; hmac-md5 and unknown names say why not', () => {
    expect([...ALGOS].sort()).toEqual(['hmac-sha1', 'hmac-sha224', 'hmac-sha256', 'hmac-sha384', 'hmac-sha512']);
    for (const x of ALGOS) expect(tsigAlgorithmProblem(x)).toBeUndefined();
    const cases: [string, RegExp][] = [
      ['hmac-md5', /RFC 8945 section 6 says it MUST NOT be used/],
      ['HMAC-MD5.SIG-ALG.REG.INT.', /hmac-md5 is not supported/],
      ['HMAC-SHA256', /lower case without a dot: "hmac-sha256"/],
      ['hmac-sha256.', /lower case without a dot/],
      ['hmac-sha256-128', /unknown TSIG algorithm "hmac-sha256-128" \(supported: hmac-sha256, /],
      ['gss-tsig', /unknown TSIG algorithm/],
      ['', /unknown TSIG algorithm ""/],
    ];
    for (const [name, re] of cases) {
      expect(isTsigAlgorithm(name)).toBe(false);
      expect(tsigAlgorithmProblem(name)).toMatch(re);
    }
  });

  test.each([
    ['', /empty/],
    ['   \n', /empty/],
    ['abc', /3 characters, not a multiple of 4/],
    ['ab=c', /"=" only as padding/],
    ['a===', /"=" only as padding/],
    ['YWJj ZGVm!', /character "!" at position 9/],
    ['YWJj\u00e9ZGVm', /character U\+00e9 at position 5/],
    ['YWJj-ZGVm', /character "-"/],
  ])('secret %j is refused: %s', (text, re) => {
    expect(() => decodeTsigSecret(text)).toThrow(TsigKeyError);
    expect(() => decodeTsigSecret(text)).toThrow(re);
  });

  test('a secret error never quotes the secret', () => {
    const secret = 'c2VjcmV0c2VjcmV0c2VjcmV0!';
    expect(() => decodeTsigSecret(secret)).toThrow(/at position 25/);
    try {
      tsigKey('k.', 'hmac-sha256', secret);
    } catch (e) {
      expect((e as Error).message).not.toContain('c2VjcmV0');
      expect((e as Error).message).toMatch(/^TSIG key k\.: the TSIG secret is not base64/);
    }
  });

  test('secrets as tsig-keygen and nsd-control print them decode; white space is ignored', () => {
    const b = randomBytes(32);
    expect(decodeTsigSecret(b.toString('base64'))).toEqual(b);
    const s = b.toString('base64');
    expect(decodeTsigSecret(` ${s.slice(0, 10)}\n\t${s.slice(10)} `)).toEqual(b);
    expect(decodeTsigSecret('YQ==')).toEqual(Buffer.from('a'));
  });

  test('tsigKey canonicalises the name and checks everything', () => {
    const k = tsigKey('XFR-Key.Example', 'hmac-sha256', 'YWJjZA==');
    expect(k).toEqual({ name: 'xfr-key.example.', algorithm: 'hmac-sha256', secret: Buffer.from('abcd') });
    expect(() => tsigKey('.', 'hmac-sha256', 'YWJjZA==')).toThrow(/root/);
    expect(() => tsigKey('a..b', 'hmac-sha256', 'YWJjZA==')).toThrow(/TSIG key name "a..b": empty label/);
    expect(() => tsigKey('k', 'hmac-md5', 'YWJjZA==')).toThrow(/^TSIG key k\.: hmac-md5 is not supported/);
    expect(() => tsigKey('k', 'hmac-sha256', '')).toThrow(/^TSIG key k\.: the TSIG secret is empty/);
  });

  test.each(ALGOS)('%s: tsigRecordSize is the size the TSIG RR adds', (alg) => {
    const key = keyFor(alg);
    const q = query('example.com.', RRType.A);
    expect(signRequest(q, key, NOW).message.length - q.length).toBe(tsigRecordSize(key));
  });
});

// ------------------------------------------------------------------------------ sign/verify ----

describe.each(ALGOS)('%s', (alg) => {
  const key = keyFor(alg);
  const other = keyFor(alg, 'other-key.');
  const keys = new Map([key, other].map((k) => [k.name, k]));
  const size = SIZES[alg];
  const floor = Math.max(10, size / 2);
  const req = query('www.example.com.', RRType.A, 0x4242, true);
  const signed = signRequest(req, key, NOW);

  test('a signed request verifies; the TSIG RR is last, class ANY, TTL 0, with every field', () => {
    const r = verify(signed.message, keys, NOW);
    expectOk(r);
    expect(r.key).toBe(key);
    expect(r.mac).toEqual(signed.mac);
    expect(signed.mac.length).toBe(size);
    const m = decodeMessage(signed.message);
    expect(m.additional).toEqual([]);
    expect(m.edns).toBeDefined();
    expect(signed.message.readUInt16BE(10)).toBe(2); // OPT + TSIG
    expect(m.tsig).toMatchObject({ name: key.name, type: TSIG_TYPE, class: 255, ttl: 0 });
    expect(r.tsig).toMatchObject({
      keyName: key.name, algorithm: `${alg}.`, timeSigned: NOW, fudge: TSIG_FUDGE, originalId: 0x4242, error: 0, otherData: Buffer.alloc(0),
    });
    // the message before the TSIG RR is the request, ARCOUNT apart
    expect(signed.message.subarray(12, m.tsig!.offset)).toEqual(req.subarray(12));
  });

  test('the same MAC as an HMAC computed here from RFC 8945 4.3.2/4.3.3', () => {
    const h = createHmac(alg.slice(5), key.secret);
    h.update(req);
    h.update(Buffer.concat([wire(key.name), u16(255), Buffer.alloc(4), wire(`${alg}.`), u48(NOW), u16(300), u16(0), u16(0)]));
    expect(signed.mac).toEqual(h.digest());
  });

  test('a response signed over the request MAC verifies only with that request MAC', () => {
    const r = verify(signed.message, keys, NOW);
    expectOk(r);
    const resp = signResponse(answerTo(r.message, [a('www.example.com.', 1)]), key, NOW + 1, r.mac);
    expectOk(verify(resp.message, key, NOW + 2, { requestMac: signed.mac }));
    expectError(verify(resp.message, key, NOW + 2, { requestMac: randomBytes(size) }), 'BADSIG');
    expectError(verify(resp.message, key, NOW + 2), 'BADSIG'); // verified as a request: no request MAC
    // RFC 8945 4.3.1: MAC Size and MAC of the request come first
    const h = createHmac(alg.slice(5), key.secret);
    h.update(Buffer.concat([u16(size), signed.mac]));
    const body = answerTo(r.message, [a('www.example.com.', 1)]);
    h.update(body);
    h.update(Buffer.concat([wire(key.name), u16(255), Buffer.alloc(4), wire(`${alg}.`), u48(NOW + 1), u16(300), u16(0), u16(0)]));
    expect(resp.mac).toEqual(h.digest());
  });

  test('a forwarded request (new message ID, Original ID kept) still verifies; Original ID is what counts', () => {
    const fwd = Buffer.from(signed.message);
    fwd.writeUInt16BE(0x9999, 0);
    expectOk(verify(fwd, keys, NOW));
    const f = fields(signed.message);
    const badOrig = withRdata(signed.message, (rd) => {
      rd.writeUInt16BE(0x4243, f.macAt + f.macSize);
      return rd;
    });
    expectError(verify(badOrig, keys, NOW), 'BADSIG');
  });

  test('BADTIME outside Time Signed ± Fudge, accepted on its edges; fudge from the message', () => {
    for (const d of [-TSIG_FUDGE, 0, TSIG_FUDGE]) expectOk(verify(signed.message, keys, NOW + d));
    for (const d of [-TSIG_FUDGE - 1, TSIG_FUDGE + 1, 86400]) {
      const f = expectError(verify(signed.message, keys, NOW + d), 'BADTIME');
      expect(f.key).toBe(key);
      expect(f.reason).toMatch(/signed at 1700000000 with fudge 300/);
    }
    expectError(verify(signed.message, keys, Number.NaN), 'BADTIME');
    const wide = signRequest(req, key, NOW, { fudge: 3600 });
    expectOk(verify(wide.message, keys, NOW + 3600));
    expectError(verify(wide.message, keys, NOW + 3601), 'BADTIME');
  });

  test('BADKEY: unknown key name, known name with another algorithm, an algorithm we do not implement', () => {
    const stranger = keyFor(alg, 'stranger.');
    expect(expectError(verify(signRequest(req, stranger, NOW).message, keys, NOW), 'BADKEY').reason).toMatch(/unknown TSIG key stranger\./);
    const otherAlg = ALGOS.find((x) => x !== alg)!;
    const same = keyFor(otherAlg, key.name);
    expect(expectError(verify(signRequest(req, same, NOW).message, keys, NOW), 'BADKEY').reason).toMatch(new RegExp(`is ${alg}, the message uses ${otherAlg}`));
    const md5 = withRdata(signed.message, (rd) => Buffer.concat([wire('hmac-md5.sig-alg.reg.int.'), rd.subarray(wire(`${alg}.`).length)]));
    expect(expectError(verify(md5, keys, NOW), 'BADKEY').reason).toMatch(/unsupported TSIG algorithm hmac-md5\.sig-alg\.reg\.int\./);
    // the algorithm name is matched case-insensitively
    const upper = withRdata(signed.message, (rd) => Buffer.concat([wire(`${alg.toUpperCase()}.`), rd.subarray(wire(`${alg}.`).length)]));
    expectOk(verify(upper, keys, NOW));
    // lookups: a function, a single key
    expectOk(verify(signed.message, (n) => (n === key.name ? key : undefined), NOW));
    expectError(verify(signed.message, other, NOW), 'BADKEY');
  });

  test('BADSIG: a changed MAC, a changed message, another secret', () => {
    const f = fields(signed.message);
    for (const i of [0, size - 1]) {
      const m = Buffer.from(signed.message);
      m[f.rdataOffset + f.macAt + i] ^= 0x01;
      expectError(verify(m, keys, NOW), 'BADSIG');
    }
    const body = Buffer.from(signed.message);
    body[13] ^= 0x20; // the question's first letter: its case is digested as sent
    expectError(verify(body, keys, NOW), 'BADSIG');
    const rd = Buffer.from(signed.message);
    rd[3] ^= 0x10; // CD flag
    expectError(verify(rd, keys, NOW), 'BADSIG');
    const impostor = keyFor(alg, key.name);
    expectError(verify(signRequest(req, impostor, NOW).message, keys, NOW), 'BADSIG');
  });

  test('MAC truncation (5.2.2.1): too long or too short is FORMERR; allowed truncation is BADTRUNC unless the policy allows it', () => {
    const f = fields(signed.message);
    const cut = (n: number) => withRdata(signed.message, (r) => truncateMac(r, f.macSizeAt, n));
    const long = withRdata(signed.message, (r) => {
      const rr = Buffer.concat([r.subarray(0, f.macAt + size), Buffer.alloc(1), r.subarray(f.macAt + size)]);
      rr.writeUInt16BE(size + 1, f.macSizeAt);
      return rr;
    });
    expect(expectError(verify(long, keys, NOW), 'FORMERR').reason).toMatch(new RegExp(`MAC of ${size + 1} bytes, longer than`));
    expect(expectError(verify(cut(floor - 1), keys, NOW), 'FORMERR').reason).toMatch(new RegExp(`shorter than the ${floor} allowed`));
    expectError(verify(cut(0), keys, NOW), 'FORMERR');
    for (const n of [floor, size - 1]) {
      const t = cut(n);
      expect(expectError(verify(t, keys, NOW), 'BADTRUNC').key).toBe(key);
      expectOk(verify(t, keys, NOW, { minMacSize: n }));
      expectOk(verify(t, keys, NOW, { minMacSize: 1 })); // never below the RFC's floor
      expectError(verify(t, keys, NOW, { minMacSize: n + 1 }), 'BADTRUNC');
      const bad = Buffer.from(t);
      bad[f.rdataOffset + f.macAt] ^= 1;
      expectError(verify(bad, keys, NOW, { minMacSize: n }), 'BADSIG');
    }
    // a response to a truncated request covers the truncated MAC
    const t = cut(floor);
    const r = verify(t, keys, NOW, { minMacSize: floor });
    expectOk(r);
    expect(r.mac.length).toBe(floor);
    const resp = signResponse(answerTo(r.message, []), key, NOW, r.mac);
    expectOk(verify(resp.message, key, NOW, { requestMac: signed.mac.subarray(0, floor) }));
  });

  const garbage: [string, (rd: Buffer) => Buffer, RegExp][] = [
    ['empty RDATA', () => Buffer.alloc(0), /algorithm name runs past/],
    ['a cut algorithm name', (rd) => rd.subarray(0, 4), /algorithm name runs past/],
    ['a compressed algorithm name', (rd) => Buffer.concat([Buffer.from([0xc0, 12]), rd.subarray(wire(`${alg}.`).length)]), /compressed algorithm name/],
    ['a label type 0x40', (rd) => Buffer.concat([Buffer.from([0x41]), rd]), /bad label length 65/],
    ['nothing after the algorithm', (rd) => rd.subarray(0, wire(`${alg}.`).length), /too short for Time Signed/],
    ['MAC Size past the end', (rd) => {
      const r = Buffer.from(rd);
      r.writeUInt16BE(0xffff, wire(`${alg}.`).length + 8);
      return r;
    }, /MAC Size 65535 runs past/],
    ['Other Len past the end', (rd) => {
      const r = Buffer.from(rd);
      r.writeUInt16BE(7, r.length - 2);
      return r;
    }, /Other Len 7 runs past/],
    ['bytes after Other Data', (rd) => Buffer.concat([rd, Buffer.from([0])]), /1 bytes after Other Data/],
    ['a cut Error field', (rd) => rd.subarray(0, rd.length - 3), /runs past the RDATA/],
    ['an algorithm name over 255 bytes', () => Buffer.concat([...Array(5).fill(Buffer.concat([Buffer.from([60]), Buffer.alloc(60, 0x61)])), Buffer.alloc(20)]), /longer than 255 bytes/],
  ];
  test.each(garbage)('FORMERR: TSIG RDATA with %s', (_name, f, re) => {
    const r = expectError(verify(withRdata(signed.message, f), keys, NOW), 'FORMERR');
    expect(r.reason).toMatch(re);
    expect(r.message).toBeDefined();
    const resp = decodeMessage(tsigErrorResponse(withRdata(signed.message, f), r, NOW)!);
    expect(resp).toMatchObject({ id: 0x4242, rcode: 1, flags: { qr: true } });
    expect(resp.tsig).toBeUndefined();
  });

  test('FORMERR: class not ANY, TTL not 0, TSIG not last, two TSIGs, an undecodable message', () => {
    const f = fields(signed.message);
    const classAt = f.rec.rdataOffset - 8;
    const cls = Buffer.from(signed.message);
    cls.writeUInt16BE(1, classAt);
    expect(expectError(verify(cls, keys, NOW), 'FORMERR').reason).toMatch(/class 1, not ANY/);
    const ttl = Buffer.from(signed.message);
    ttl.writeUInt32BE(5, classAt + 2);
    expect(expectError(verify(ttl, keys, NOW), 'FORMERR').reason).toMatch(/TTL 5, not 0/);
    const rr = Buffer.concat([wire('x.'), u16(1), u16(1), Buffer.alloc(4), u16(4), Buffer.from([192, 0, 2, 1])]);
    const notLast = Buffer.concat([signed.message, rr]);
    notLast.writeUInt16BE(3, 10);
    expect(expectError(verify(notLast, keys, NOW), 'FORMERR').reason).toMatch(/TSIG record is not the last/);
    const twice = Buffer.concat([signed.message, signed.message.subarray(f.rec.offset)]);
    twice.writeUInt16BE(3, 10);
    expectError(verify(twice, keys, NOW), 'FORMERR');
    expectError(verify(signed.message.subarray(0, signed.message.length - 1), keys, NOW), 'FORMERR');
    const r = expectError(verify(Buffer.from([1, 2, 3]), keys, NOW), 'FORMERR');
    expect(tsigErrorResponse(Buffer.from([1, 2, 3]), r, NOW)).toBeUndefined();
    const hdr = Buffer.from(signed.message.subarray(0, 14));
    const hr = expectError(verify(hdr, keys, NOW), 'FORMERR');
    expect(decodeMessage(tsigErrorResponse(hdr, hr, NOW)!)).toMatchObject({ id: 0x4242, rcode: 1, question: [] });
  });

  test('UNSIGNED: a message without TSIG; no TSIG error response for it', () => {
    const r = expectError(verify(req, keys, NOW), 'UNSIGNED');
    expect(r.message!.question[0].name).toBe('www.example.com.');
    expect(tsigErrorResponse(req, r, NOW)).toBeUndefined();
  });

  test('error responses (5.2, 5.3.2): BADKEY and BADSIG unsigned, BADTIME and BADTRUNC signed, all NOTAUTH', () => {
    // `client`: the key the client signed its request with (its own view of the exchange)
    const check = (request: Buffer, now: number, expected: 'BADKEY' | 'BADSIG' | 'BADTIME' | 'BADTRUNC', requestMac: Buffer, client: TsigKey) => {
      const rej = expectError(verify(request, keys, now), expected);
      const out = tsigErrorResponse(request, rej, now)!;
      const m = decodeMessage(out);
      expect(m).toMatchObject({ id: 0x4242, rcode: RCODE_NOTAUTH, flags: { qr: true, aa: false }, question: [{ name: 'www.example.com.', type: 1, class: 1 }], answer: [] });
      expect(m.edns).toBeDefined(); // the request had EDNS
      const t = parseTsigRecord(m.tsig!);
      if (typeof t === 'string') throw new Error(t);
      expect(t.error).toBe(TsigRcode[expected]);
      expect(t.originalId).toBe(0x4242);
      // what the client sees when it verifies the answer to its request
      const seen = expectError(verify(out, client, now, { requestMac }), 'PEER_ERROR');
      expect(seen.peerError).toBe(TsigRcode[expected]);
      return { t, seen, m };
    };
    const strangerKey = keyFor(alg, 'stranger.');
    const stranger = signRequest(req, strangerKey, NOW);
    const k = check(stranger.message, NOW, 'BADKEY', stranger.mac, strangerKey);
    expect(k.m.tsig!.name).toBe('stranger.');
    expect(k.t).toMatchObject({ algorithm: `${alg}.`, mac: Buffer.alloc(0), timeSigned: NOW, otherData: Buffer.alloc(0) });
    expect(k.seen.authenticated).toBe(false);

    const impostorKey = keyFor(alg, key.name);
    const impostor = signRequest(req, impostorKey, NOW);
    const s = check(impostor.message, NOW, 'BADSIG', impostor.mac, impostorKey);
    expect(s.t.mac.length).toBe(0);
    expect(s.seen.authenticated).toBe(false);

    const late = NOW + 1000;
    const tm = check(signed.message, late, 'BADTIME', signed.mac, key);
    expect(tm.t.mac.length).toBe(size);
    expect(tm.t.timeSigned).toBe(NOW); // the request's: the client's own clock
    expect(tm.t.otherData).toEqual(u48(late)); // ours
    expect(tm.seen).toMatchObject({ authenticated: true, peerTime: late, key });
    expect(tm.seen.reason).toMatch(/BADTIME \(its clock: 1700001000, ours: 1700001000\)/);
    // with another request MAC the client does not authenticate it
    expectError(verify(tsigErrorResponse(signed.message, expectError(verify(signed.message, keys, late), 'BADTIME'), late)!, key, late, { requestMac: randomBytes(size) }), 'BADSIG');

    const f = fields(signed.message);
    const trunc = withRdata(signed.message, (r) => truncateMac(r, f.macSizeAt, floor));
    const tr = check(trunc, NOW, 'BADTRUNC', signed.mac.subarray(0, floor), key);
    expect(tr.t.mac.length).toBe(size);
    expect(tr.seen.authenticated).toBe(true);
  });

  test('a stream signed by TsigStreamSigner verifies message by message; reordered, dropped or foreign messages do not', () => {
    const r = verify(signRequest(query('example.com.', RRType.AXFR, 7), key, NOW).message, keys, NOW);
    expectOk(r);
    const msgs = Array.from({ length: 5 }, (_, i) =>
      encodeMessage({ id: 7, flags: { qr: true, aa: true }, question: i === 0 ? r.message.question : [], answer: [a(`h${i}.example.com.`, i)] }));
    const signer = new TsigStreamSigner(key, r.mac);
    const stream = msgs.map((m, i) => signer.sign(m, NOW + i));
    expect(signer.signed).toBe(5);
    const v = new TsigStreamVerifier(key, r.mac);
    for (const m of stream) {
      const x = v.verify(m, NOW + 10);
      expect(x).toMatchObject({ ok: true, signed: true });
    }
    expect(v.finish()).toEqual({ ok: true });
    expect(v.messages).toBe(5);
    // the second message digests the first's MAC and the timers only (RFC 8945 5.3.1)
    const first = decodeMessage(stream[0]);
    const firstMac = (parseTsigRecord(first.tsig!) as { mac: Buffer }).mac;
    const h = createHmac(alg.slice(5), key.secret);
    h.update(Buffer.concat([u16(size), firstMac, msgs[1], u48(NOW + 1), u16(300)]));
    expect((parseTsigRecord(decodeMessage(stream[1]).tsig!) as { mac: Buffer }).mac).toEqual(h.digest());

    const swapped = new TsigStreamVerifier(key, r.mac);
    expect(swapped.verify(stream[0], NOW).ok).toBe(true);
    expectError(swapped.verify(stream[2], NOW), 'BADSIG');
    expectError(swapped.verify(stream[1], NOW), 'BADSIG'); // a failed stream stays failed
    expectError(swapped.finish(), 'BADSIG');
    const late = new TsigStreamVerifier(key, r.mac);
    expectError(late.verify(stream[0], NOW + TSIG_FUDGE + 1), 'BADTIME');
    expectError(new TsigStreamVerifier(key, randomBytes(size)).verify(stream[0], NOW), 'BADSIG');
    expectError(new TsigStreamVerifier(other, r.mac).verify(stream[0], NOW), 'BADKEY');
    expectError(new TsigStreamVerifier(key, r.mac).verify(msgs[0], NOW), 'UNSIGNED');
    expectError(new TsigStreamVerifier(key, r.mac).finish(), 'UNSIGNED');
  });

  test('a stream with unsigned messages between signed ones (built here from RFC 8945 5.3.1)', () => {
    const requestMac = randomBytes(size);
    const msgs = Array.from({ length: 104 }, (_, i) => encodeMessage({ id: 9, flags: { qr: true, aa: true }, answer: [a(`n${i}.example.`, i % 250)] }));
    // signed: 0, 1, 100 (98 unsigned in between), 103; 101, 102 unsigned
    const signedAt = new Set([0, 1, 100, 103]);
    let prior = requestMac;
    let pending: Buffer[] = [];
    let n = 0;
    const stream = msgs.map((m, i) => {
      if (!signedAt.has(i)) {
        pending.push(m);
        return m;
      }
      const h = createHmac(alg.slice(5), key.secret);
      h.update(Buffer.concat([u16(prior.length), prior, ...pending, m]));
      const vars = n === 0
        ? [wire(key.name), u16(255), Buffer.alloc(4), wire(`${alg}.`), u48(NOW), u16(300), u16(0), u16(0)]
        : [u48(NOW), u16(300)];
      h.update(Buffer.concat(vars));
      const mac = h.digest();
      const rdata = Buffer.concat([wire(`${alg}.`), u48(NOW), u16(300), u16(mac.length), mac, u16(9), u16(0), u16(0)]);
      const out = Buffer.concat([m, wire(key.name), u16(TSIG_TYPE), u16(255), Buffer.alloc(4), u16(rdata.length), rdata]);
      out.writeUInt16BE(m.readUInt16BE(10) + 1, 10);
      prior = mac;
      pending = [];
      n++;
      return out;
    });
    const v = new TsigStreamVerifier(key, requestMac);
    const seen = stream.map((m) => v.verify(m, NOW));
    for (const [i, r] of seen.entries()) expect(r).toMatchObject({ ok: true, signed: signedAt.has(i) });
    expect(v.finish()).toEqual({ ok: true });
    // the same stream, ending after two unsigned messages
    const v2 = new TsigStreamVerifier(key, requestMac);
    for (const m of stream.slice(0, 103)) expect(v2.verify(m, NOW).ok).toBe(true);
    expect(expectError(v2.finish(), 'UNSIGNED').reason).toMatch(/last 2 messages/);
    // at most 99 in a row (and fewer when asked)
    const v3 = new TsigStreamVerifier(key, requestMac, { maxUnsigned: 50 });
    for (const m of stream.slice(0, 52)) expect(v3.verify(m, NOW).ok).toBe(true);
    expect(expectError(v3.verify(stream[52], NOW), 'UNSIGNED').reason).toMatch(/more than 50 messages in a row/);
    // an unsigned message changed in between: the next signed one fails
    const v4 = new TsigStreamVerifier(key, requestMac);
    for (const [i, m] of stream.entries()) {
      const x = i === 50 ? Buffer.from(m) : m;
      if (i === 50) x[x.length - 1] ^= 1;
      const r = v4.verify(x, NOW);
      if (i < 100) expect(r.ok).toBe(true);
      else {
        expectError(r, 'BADSIG');
        break;
      }
    }
  });

  test('signing refuses what cannot be signed', () => {
    expect(() => signRequest(Buffer.alloc(11), key, NOW)).toThrow(TsigSignError);
    const full = Buffer.from(req);
    full.writeUInt16BE(0xffff, 10);
    expect(() => signRequest(full, key, NOW)).toThrow(/ARCOUNT is 65535/);
    expect(() => signRequest(req, key, -1)).toThrow(/bad clock value/);
    expect(() => signRequest(req, key, Number.NaN)).toThrow(/bad clock value/);
    const room = encodeMessage({ id: 1, answer: [{ name: 'x.', type: 16, ttl: 0, rdata: Buffer.alloc(65535 - 12 - 13 - tsigRecordSize(key), 1) }] });
    expect(room.length + tsigRecordSize(key)).toBe(65535);
    expect(signRequest(room, key, NOW).message.length).toBe(65535);
    const over = encodeMessage({ id: 1, answer: [{ name: 'x.', type: 16, ttl: 0, rdata: Buffer.alloc(65535 - 12 - 13 - tsigRecordSize(key) + 1, 1) }] });
    expect(() => signRequest(over, key, NOW)).toThrow(/over 65535/);
    expect(() => signRequest(req, { ...key, algorithm: 'hmac-md5' as TsigAlgorithm }, NOW)).toThrow(TsigKeyError);
  });
});

// ------------------------------------------------------------------------------ fuzz -----------

/** `m` with the TSIG owner and algorithm names of `base` (same offsets) lower-cased. */
function foldTsigNames(m: Buffer, base: Buffer): Buffer {
  const t = decodeMessage(base).tsig!;
  const alg = parseTsigRecord(t) as { algorithmWire: Buffer };
  const out = Buffer.from(m);
  const fold = (from: number, to: number) => {
    for (let i = from; i < to && i < out.length; i++) if (out[i] >= 0x41 && out[i] <= 0x5a) out[i] |= 0x20;
  };
  fold(t.offset, t.rdataOffset - 10);
  fold(t.rdataOffset, t.rdataOffset + alg.algorithmWire.length);
  return out;
}

describe('fuzz: verify() and the error responses never throw', () => {
  test('20,000 mutated signed requests and responses, random bytes and cut messages', () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const keys = ALGOS.map((x) => keyFor(x));
    const lookup: TsigKeyLookup = new Map(keys.map((k) => [k.name, k]));
    const bases: { msg: Buffer; requestMac?: Buffer }[] = [];
    for (const k of keys) {
      const rq = signRequest(query('fuzz.example.', RRType.SOA, 77, true), k, NOW);
      bases.push({ msg: rq.message });
      const m = decodeMessage(rq.message);
      bases.push({ msg: signResponse(answerTo(m, [a('fuzz.example.', 9)]), k, NOW, rq.mac).message, requestMac: rq.mac });
    }
    const counts: Record<string, number> = {};
    let verified = 0;
    for (let i = 0; i < 20_000; i++) {
      const base = bases[rnd(bases.length)];
      let m = Buffer.from(base.msg);
      const kind = rnd(4);
      if (kind === 0) for (let j = 1 + rnd(4); j > 0; j--) m[rnd(m.length)] = rnd(256);
      else if (kind === 1) m = m.subarray(0, rnd(m.length));
      else if (kind === 2) m = Buffer.concat([m, randomBytes(1 + rnd(8))]);
      else m = randomBytes(rnd(120));
      const r = verify(m, lookup, NOW + rnd(3) - 1, base.requestMac ? { requestMac: base.requestMac } : {});
      if (r.ok) {
        verified++;
        // only the ID (Original ID is digested instead) and the letter case of the TSIG's key and
        // algorithm names (digested in canonical form) may differ
        expect(foldTsigNames(m, base.msg).subarray(2)).toEqual(foldTsigNames(base.msg, base.msg).subarray(2));
      } else {
        counts[r.error] = (counts[r.error] ?? 0) + 1;
        const out = tsigErrorResponse(m, r, NOW);
        if (out) decodeMessage(out);
      }
      const sv = new TsigStreamVerifier(keys[0], base.requestMac ?? randomBytes(32));
      sv.verify(m, NOW);
      sv.finish();
    }
    expect(verified).toBeGreaterThan(0);
    for (const e of ['FORMERR', 'BADSIG', 'BADKEY']) expect(counts[e]).toBeGreaterThan(0);
  });
});

// ------------------------------------------------------------------------------ a tiny server ---

interface Handled {
  transport: 'udp' | 'tcp';
  result: TsigVerifyResult;
  raw: Buffer;
}

interface TinyServer {
  port: number;
  handled: Handled[];
  close(): Promise<void>;
}

interface TinyOptions {
  keys: TsigKeyLookup;
  /** The zone served: SOA first; AXFR sends it in messages of `perMessage` records. */
  zone?: { origin: string; soa: RecordInput; records: RecordInput[]; perMessage: number };
  /** Added to our clock (to provoke BADTIME). */
  skew?: number;
  /** Changes signed AXFR message i (or a single answer, i = 0) before it is sent (negative controls). */
  tamper?: (i: number, msg: Buffer) => void;
}

function frame(m: Buffer): Buffer {
  return Buffer.concat([u16(m.length), m]);
}

/** Reads length-prefixed DNS messages from a TCP socket. */
function onFrames(s: Socket, f: (m: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  s.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const n = buf.readUInt16BE(0);
      const m = Buffer.from(buf.subarray(2, 2 + n));
      buf = buf.subarray(2 + n);
      f(m);
    }
  });
}

/**
 * A TSIG-checking authoritative server on 127.0.0.1 (UDP and TCP, one port): verifies every
 * request with verify(); unsigned ones get REFUSED, failing ones tsigErrorResponse(); SOA and
 * A queries are answered signed with signResponse(), AXFR/IXFR with a TsigStreamSigner.
 */
async function startTiny(o: TinyOptions): Promise<TinyServer> {
  const port = await freePort();
  const handled: Handled[] = [];
  const clock = () => nowS() + (o.skew ?? 0);
  const answer = (raw: Buffer, transport: 'udp' | 'tcp'): Buffer[] => {
    const now = clock();
    const r = verify(raw, o.keys, now);
    handled.push({ transport, result: r, raw });
    if (!r.ok) {
      if (r.error === 'UNSIGNED' && r.message) {
        return [encodeMessage({ id: r.message.id, opcode: r.message.opcode, rcode: 5, flags: { qr: true }, question: r.message.question })];
      }
      const e = tsigErrorResponse(raw, r, now);
      return e ? [e] : [];
    }
    const m = r.message;
    const q = m.question[0];
    const z = o.zone;
    if (q && z && (q.type === RRType.AXFR || q.type === RRType.IXFR) && q.name === z.origin && transport === 'tcp') {
      const signer = new TsigStreamSigner(r.key, r.mac);
      const all = [z.soa, ...z.records, z.soa];
      const out: Buffer[] = [];
      for (let i = 0; i * z.perMessage < all.length; i++) {
        const chunk = all.slice(i * z.perMessage, (i + 1) * z.perMessage);
        const msg = encodeMessage(
          { id: m.id, opcode: 0, flags: { qr: true, aa: true }, question: i === 0 ? m.question : [], answer: chunk },
          { maxSize: 65535 - tsigRecordSize(r.key) },
        );
        const s = signer.sign(msg, clock());
        o.tamper?.(i, s);
        out.push(s);
      }
      return out;
    }
    let records: RecordInput[] = [];
    if (q && z && q.name === z.origin && q.type === RRType.SOA) records = [z.soa];
    else if (q && q.type === RRType.A) records = [a(q.name, 1)];
    const body = encodeMessage({
      id: m.id, opcode: m.opcode, flags: { qr: true, aa: true, rd: m.flags.rd }, question: m.question, answer: records,
      ...(m.edns ? { edns: {} } : {}),
    }, { maxSize: (transport === 'udp' ? 1232 : 65535) - tsigRecordSize(r.key), truncate: true });
    const out = signResponse(body, r.key, now, r.mac).message;
    o.tamper?.(0, out);
    return [out];
  };
  const udp: UdpSocket = createSocket('udp4');
  udp.on('message', (raw, rinfo) => {
    for (const out of answer(raw, 'udp')) udp.send(out, rinfo.port, rinfo.address);
  });
  const sockets = new Set<Socket>();
  const tcp: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    onFrames(s, (raw) => {
      for (const out of answer(raw, 'tcp')) s.write(frame(out));
    });
  });
  await new Promise<void>((res, rej) => {
    udp.once('error', rej);
    udp.bind(port, '127.0.0.1', () => res());
  });
  await new Promise<void>((res, rej) => {
    tcp.once('error', rej);
    tcp.listen(port, '127.0.0.1', () => res());
  });
  return {
    port,
    handled,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => tcp.close(() => res()));
      await new Promise<void>((res) => udp.close(() => res()));
    },
  };
}

/** Sends one request over TCP and collects the answer: one message, or an AXFR up to its last SOA. */
async function tcpExchange(port: number, request: Buffer, axfr: boolean): Promise<Buffer[]> {
  const s = connect(port, '127.0.0.1');
  const got: Buffer[] = [];
  try {
    return await new Promise<Buffer[]>((res, rej) => {
      let soas = 0;
      s.on('error', rej);
      s.on('close', () => res(got));
      onFrames(s, (m) => {
        got.push(m);
        let d: Message | undefined;
        try {
          d = decodeMessage(m);
        } catch {
          /* counted as the end */
        }
        soas += d ? d.answer.filter((x) => x.type === RRType.SOA).length : 2;
        if (!axfr || !d || d.rcode !== 0 || soas >= 2 || d.answer.length === 0) res(got);
      });
      s.write(frame(request));
    });
  } finally {
    s.destroy();
  }
}

function zoneRecords(origin: string, n: number): { soa: RecordInput; records: RecordInput[]; text: string } {
  const soaRdata = Buffer.concat([wire(`ns1.${origin}`), wire(`hostmaster.${origin}`), Buffer.from([0, 0, 0, 7, 0, 0, 14, 16, 0, 0, 2, 88, 0, 1, 81, 128, 0, 0, 0, 60])]);
  const soa: RecordInput = { name: origin, type: RRType.SOA, ttl: 300, rdata: soaRdata };
  const records: RecordInput[] = [
    { name: origin, type: RRType.NS, ttl: 300, rdata: wire(`ns1.${origin}`) },
    a(`ns1.${origin}`, 1),
  ];
  const lines = [`$ORIGIN ${origin}`, '$TTL 300', '@ SOA ns1 hostmaster 7 3600 600 86400 60', '@ NS ns1', 'ns1 A 192.0.2.1'];
  for (let i = 0; i < n; i++) {
    const text = `record ${i} ${'x'.repeat(60)}`;
    records.push({ name: `r${i}.${origin}`, type: RRType.TXT, ttl: 300, rdata: Buffer.concat([Buffer.from([text.length]), Buffer.from(text)]) });
    lines.push(`r${i} TXT "${text}"`);
  }
  return { soa, records, text: lines.join('\n') + '\n' };
}

// ------------------------------------------------------------------------------ dig ------------

async function dig(port: number, args: string[]): Promise<string> {
  const r = await run(DIG_BIN, ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=5', ...args], { maxBuffer: 64 << 20 }).catch(
    (e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
  return `${r.stdout}${r.stderr}`;
}

describe('against dig (BIND 9)', () => {
  const keys = ALGOS.map((x) => keyFor(x, `dig-${x}.`));
  const lookup = new Map(keys.map((k) => [k.name, k]));
  const origin = 'stream.test.';
  const z = zoneRecords(origin, 3000);
  let tiny: TinyServer;
  beforeAll(async () => {
    assertDigInstalled();
    tiny = await startTiny({ keys: lookup, zone: { origin, soa: z.soa, records: z.records, perMessage: 100 } });
  });
  afterAll(async () => {
    await tiny?.close();
  });
  const y = (k: TsigKey, secret = k.secret) => ['-y', `${k.algorithm}:${k.name}:${secret.toString('base64')}`];
  const clean = (out: string) => {
    expect(out).not.toMatch(/Couldn't verify|could not be validated|Transfer failed|connection refused|timed out/);
  };

  test.each(keys.map((k) => [k.algorithm, k] as const))('%s: dig requests (UDP, TCP) verify, and dig accepts our signed answers', async (_alg, k) => {
    for (const transport of ['udp', 'tcp'] as const) {
      const before = tiny.handled.length;
      const out = await dig(tiny.port, [...y(k), ...(transport === 'tcp' ? ['+tcp'] : []), 'www.example.org', 'A']);
      clean(out);
      expect(out).toMatch(/status: NOERROR/);
      expect(out).toMatch(/www\.example\.org\.\s+60\s+IN\s+A\s+192\.0\.2\.1/);
      expect(out).toMatch(new RegExp(`${k.name.replace(/\./g, '\\.')}\\s+0\\s+ANY\\s+TSIG\\s+${k.algorithm}\\. \\d+ 300 ${SIZES[k.algorithm]} [A-Za-z0-9+/= ]+ \\d+ NOERROR 0`));
      const h = tiny.handled.slice(before);
      expect(h.map((x) => [x.transport, x.result.ok])).toEqual([[transport, true]]);
      // dig's request, checked again away from the server: exact bytes, another secret, a later clock
      const raw = h[0].raw;
      expectOk(verify(raw, k, nowS()));
      expectError(verify(raw, { ...k, secret: randomBytes(8) }, nowS()), 'BADSIG');
      expectError(verify(raw, k, nowS() + 301 + 5), 'BADTIME');
      const mutated = Buffer.from(raw);
      mutated[mutated.length - 8] ^= 1; // inside the MAC... or Original ID: either way not valid
      expect(verify(mutated, k, nowS()).ok).toBe(false);
    }
  });

  test.each(keys.map((k) => [k.algorithm, k] as const))('%s: dig sees our BADKEY, BADSIG and BADTIME answers as such', async (_alg, k) => {
    const unknown = await dig(tiny.port, ['-y', `${k.algorithm}:nobody.:${k.secret.toString('base64')}`, 'www.example.org', 'A']);
    expect(unknown).toMatch(/status: NOTAUTH/);
    expect(unknown).toMatch(/nobody\.\s+0\s+ANY\s+TSIG\s+\S+ \d+ 300 0 \d+ BADKEY 0/);
    expect(unknown).toMatch(/Couldn't verify signature: tsig indicates error/);
    const wrong = await dig(tiny.port, [...y(k, randomBytes(SIZES[k.algorithm])), 'www.example.org', 'A']);
    expect(wrong).toMatch(/status: NOTAUTH/);
    expect(wrong).toMatch(/ 300 0 \d+ BADSIG 0/);
    expect(tiny.handled.at(-1)!.result).toMatchObject({ ok: false, error: 'BADSIG' });
    const skewed = await startTiny({ keys: lookup, skew: 1000 });
    try {
      const late = await dig(skewed.port, [...y(k), 'www.example.org', 'A']);
      expect(late).toMatch(/status: NOTAUTH/);
      expect(late).toMatch(new RegExp(` 300 ${SIZES[k.algorithm]} [A-Za-z0-9+/= ]+ \\d+ BADTIME 6 `));
      // BIND checks the MAC first, then reports the error: a signed, valid BADTIME
      expect(late).toMatch(/Couldn't verify signature: clocks are unsynchronized/);
    } finally {
      await skewed.close();
    }
  });

  test('negative controls: dig does notice a bad MAC in a stream and in an answer', async () => {
    const k = keys[0];
    const bad = await startTiny({ keys: lookup, zone: { origin, soa: z.soa, records: z.records, perMessage: 100 }, tamper: (i, m) => { if (i === 5) m[m.length - 10] ^= 1; } });
    const badAnswer = await startTiny({ keys: lookup, tamper: (i, m) => { m[m.length - 10] ^= 1; } });
    try {
      const stream = await dig(bad.port, [...y(k), origin, 'AXFR']);
      // dig goes on after a failure; the first one is reported right after the 6th message
      const at = stream.indexOf("Couldn't verify signature: tsig verify failure");
      expect(at).toBeGreaterThan(0);
      expect(stream.slice(0, at).match(/\sANY\s+TSIG\s/g)!.length).toBe(5);
      const answer = await dig(badAnswer.port, [...y(k), 'www.example.org', 'A']);
      expect(answer).toMatch(/Couldn't verify signature: tsig verify failure/);
      expect(answer).toMatch(/WARNING -- Some TSIG could not be validated/);
    } finally {
      await bad.close();
      await badAnswer.close();
    }
  });

  test.each(keys.map((k) => [k.algorithm, k] as const))('%s: dig transfers a 31-message AXFR signed by TsigStreamSigner', async (_alg, k) => {
    const out = await dig(tiny.port, [...y(k), origin, 'AXFR']);
    clean(out);
    const m = /XFR size: (\d+) records \(messages (\d+),/.exec(out);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(z.records.length + 2);
    expect(Number(m![2])).toBe(Math.ceil((z.records.length + 2) / 100));
    expect(Number(m![2])).toBeGreaterThan(30);
    // dig prints the TSIG of every message; count them
    expect(out.match(/\sANY\s+TSIG\s/g)!.length).toBe(Number(m![2]));
  });
});

// ------------------------------------------------------------------------------ NSD ------------

describe('against NSD', () => {
  const keys = ALGOS.map((x) => keyFor(x, `nsd-${x}.`));
  const lookup = new Map(keys.map((k) => [k.name, k]));
  const origin = 'xfr.test.';
  const N = 20_000;
  const zone = zoneRecords(origin, N);
  const secOrigin = (alg: string) => `sec-${alg}.test.`;
  const secZones = new Map(ALGOS.map((x) => [x, zoneRecords(secOrigin(x), 2000)]));
  let dir: string;
  let nsd: NsdHandle | undefined;
  const primaries: TinyServer[] = [];
  let badPrimary: TinyServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-tsig-'));
    writeFileSync(join(dir, 'xfr.test.zone'), zone.text);
    // tiny primaries for NSD as a secondary: one per algorithm, and one whose 4th message has a bad MAC
    for (const k of keys) {
      const x = k.algorithm;
      const z = secZones.get(x)!;
      primaries.push(await startTiny({ keys: lookup, zone: { origin: secOrigin(x), soa: z.soa, records: z.records, perMessage: 50 } }));
    }
    const bz = zoneRecords('sec-bad.test.', 2000);
    badPrimary = await startTiny({
      keys: lookup, zone: { origin: 'sec-bad.test.', soa: bz.soa, records: bz.records, perMessage: 50 },
      tamper: (i, m) => { if (i === 3) m[m.length - 10] ^= 1; },
    });
    const conf: string[] = [];
    for (const k of keys) conf.push('key:', `  name: "${k.name}"`, `  algorithm: ${k.algorithm}`, `  secret: "${k.secret.toString('base64')}"`, '');
    conf.push('zone:', `  name: "${origin}"`, `  zonefile: "${join(dir, 'xfr.test.zone')}"`);
    for (const k of keys) conf.push(`  provide-xfr: 127.0.0.1 ${k.name}`);
    conf.push('');
    keys.forEach(({ algorithm: x }, i) => {
      conf.push('zone:', `  name: "${secOrigin(x)}"`, `  request-xfr: AXFR 127.0.0.1@${primaries[i].port} ${keys[i].name}`, `  allow-notify: 127.0.0.1 ${keys[i].name}`, '');
    });
    conf.push('zone:', '  name: "sec-bad.test."', `  request-xfr: AXFR 127.0.0.1@${badPrimary.port} ${keys[0].name}`, '');
    writeFileSync(join(dir, 'tsig.conf'), conf.join('\n'));
    // test/support/nsd.ts knows no keys; NSD's include: brings the key and zone clauses in
    nsd = await startNsd({ zones: [], serverOptions: { include: JSON.stringify(join(dir, 'tsig.conf')) } });
    await waitForSoa(nsd.port, [origin], 60_000, () => nsd!.proc.exitCode === null);
  });

  afterAll(async () => {
    await nsd?.stop();
    for (const p of primaries) await p.close();
    await badPrimary?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const axfr = (id: number) => query(origin, RRType.AXFR, id);

  test.each(keys.map((k) => [k.algorithm, k] as const))('%s: a request from signRequest gets NSD\'s whole AXFR; the stream verifier accepts every message', async (_alg, k) => {
    const s = signRequest(axfr(0x5150), k, nowS());
    const msgs = await tcpExchange(nsd!.port, s.message, true);
    const v = new TsigStreamVerifier(k, s.mac);
    let records = 0;
    let signedCount = 0;
    for (const m of msgs) {
      const r = v.verify(m, nowS());
      if (!r.ok) throw new Error(`message ${v.messages}: ${r.error} ${r.reason}`);
      if (r.signed) signedCount++;
      records += r.message.answer.length;
    }
    expect(v.finish()).toEqual({ ok: true });
    expect(msgs.length).toBeGreaterThan(50);
    expect(records).toBe(N + 4); // SOA, NS, A, N TXT, SOA
    expect(signedCount).toBe(msgs.length); // NSD 4.6 signs every message
    // negative control: one answer byte changed in the 10th message fails that message
    const v2 = new TsigStreamVerifier(k, s.mac);
    msgs.forEach((m, i) => {
      const x = i === 9 ? Buffer.from(m) : m;
      if (i === 9) x[100] ^= 1;
      const r = v2.verify(x, nowS());
      if (i < 9) expect(r.ok).toBe(true);
      if (i === 9) expectError(r, 'BADSIG');
    });
  });

  // NSD 4.6 answers BADTIME unsigned (RFC 8945 5.2.3 says signed); verify() reports it as such
  test('unsigned: REFUSED; unknown key: BADKEY, wrong secret: BADSIG, off clock: BADTIME (all three unsigned by NSD)', async () => {
    const k = keys[0];
    const plain = await tcpExchange(nsd!.port, axfr(1), true);
    expect(plain.length).toBe(1);
    expect(decodeMessage(plain[0])).toMatchObject({ rcode: 5, answer: [] });
    expect(decodeMessage(plain[0]).tsig).toBeUndefined();

    const cases: [string, TsigKey, number, number, boolean][] = [
      ['unknown key', keyFor('hmac-sha256', 'nobody.'), 0, TsigRcode.BADKEY, false],
      ['wrong secret', { ...k, secret: randomBytes(32) }, 0, TsigRcode.BADSIG, false],
      ['1000 s fast', k, 1000, TsigRcode.BADTIME, false],
      ['1000 s slow', k, -1000, TsigRcode.BADTIME, false],
    ];
    for (const [what, key, skew, code, authenticated] of cases) {
      const s = signRequest(axfr(2), key, nowS() + skew);
      const got = await tcpExchange(nsd!.port, s.message, true);
      expect([what, got.length]).toEqual([what, 1]);
      expect([what, decodeMessage(got[0]).rcode]).toEqual([what, RCODE_NOTAUTH]);
      const r = expectError(verify(got[0], key, nowS(), { requestMac: s.mac }), 'PEER_ERROR');
      expect([what, r.peerError, r.authenticated]).toEqual([what, code, authenticated]);
      if (code === TsigRcode.BADTIME) expect(Math.abs(r.peerTime! - nowS())).toBeLessThan(60);
    }
  });

  test.each(keys.map((k, i) => [k.algorithm, k, i] as const))('%s: NSD as a secondary transfers a zone our TsigStreamSigner signs (41 messages)', async (alg, k, i) => {
    const z = secZones.get(alg)!;
    const origin2 = secOrigin(alg);
    await waitForSoa(nsd!.port, [origin2], 60_000, () => nsd!.proc.exitCode === null);
    const xfrs = primaries[i].handled.filter((h) => h.transport === 'tcp' && h.result.ok);
    expect(xfrs.length).toBeGreaterThan(0);
    const first = xfrs[0].result;
    expectOk(first);
    expect(first.key).toBe(k);
    expect([RRType.AXFR, RRType.IXFR]).toContain(first.message.question[0].type);
    // NSD serves what it got: the last record, and the record count through its own AXFR
    const last = z.records.at(-1)!;
    const out = await dig(nsd!.port, ['+norec', String(last.name), 'TXT']);
    expect(out).toMatch(/status: NOERROR/);
    expect(out).toMatch(/record 1999 x{60}/);
    expect(Math.ceil((z.records.length + 2) / 50)).toBe(41);
    expect(nsd!.output()).toMatch(new RegExp(`zone ${origin2.replace(/\./g, '\\.')} committed "received update to serial 7 .* TSIG verified with key ${k.name.replace(/\./g, '\\.')}"`));
  });

  test('negative control: NSD does not take a transfer with one bad MAC', async () => {
    // NSD logs the TSIG failure of the transfer from the tampering primary
    await waitFor('NSD rejecting the tampered transfer', () => /zone sec-bad\.test\., from 127\.0\.0\.1@\d+: bad tsig signature/.test(nsd!.output()));
    expect(badPrimary.handled.filter((h) => h.transport === 'tcp' && h.result.ok).length).toBeGreaterThan(0);
    const out = await dig(nsd!.port, ['+norec', 'sec-bad.test.', 'SOA']);
    expect(out).toMatch(/status: SERVFAIL/);
  });
});

// ------------------------------------------------------------------------------ Knot, BIND -----

interface Daemon {
  port: number;
  output(): string;
  alive(): boolean;
  stop(): Promise<void>;
}

/** Starts a daemon in the foreground in its own process group; stop() ends that group only. */
function startDaemon(cmd: string, args: string[], port: number): Daemon {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let exited = false;
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  proc.on('exit', () => (exited = true));
  proc.on('error', (e) => {
    out += `spawn error: ${e.message}\n`;
    exited = true;
  });
  const kill = (sig: NodeJS.Signals) => {
    try {
      if (proc.pid) process.kill(-proc.pid, sig);
    } catch {
      /* gone */
    }
  };
  return {
    port,
    output: () => out,
    alive: () => !exited,
    stop: async () => {
      if (exited) return;
      const done = new Promise<void>((r) => proc.once('exit', () => r()));
      kill('SIGTERM');
      const t = setTimeout(() => kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(t);
    },
  };
}

interface SecondaryZone {
  origin: string;
  key: TsigKey;
  primary: number;
}

const secondaries = {
  Knot: {
    bin: '/usr/sbin/knotd',
    start(dir: string, port: number, zones: SecondaryZone[], keys: TsigKey[]): Daemon {
      const c = ['server:', `  rundir: "${dir}"`, `  listen: 127.0.0.1@${port}`, 'log:', '  - target: stderr', '    any: info',
        'database:', `  storage: "${dir}"`, 'key:'];
      for (const k of keys) c.push(`  - id: ${k.name}`, `    algorithm: ${k.algorithm}`, `    secret: ${k.secret.toString('base64')}`);
      c.push('remote:');
      zones.forEach((z, i) => c.push(`  - id: p${i}`, `    address: 127.0.0.1@${z.primary}`, `    key: ${z.key.name}`));
      c.push('template:', '  - id: default', `    storage: "${dir}"`, 'zone:');
      zones.forEach((z, i) => c.push(`  - domain: ${z.origin}`, `    master: p${i}`));
      writeFileSync(join(dir, 'knot.conf'), c.join('\n') + '\n');
      return startDaemon('/usr/sbin/knotd', ['-c', join(dir, 'knot.conf')], port);
    },
    // Knot 3.2 names no key in its log; it has the key of the remote and refuses what does not verify
    verified: (z: SecondaryZone) => new RegExp(`\\[${z.origin.replace(/\./g, '\\.')}\\] AXFR, incoming, remote 127\\.0\\.0\\.1@${z.primary}, finished, [0-9.]+ seconds, 41 messages`),
    rejected: (z: SecondaryZone) => new RegExp(`\\[${z.origin.replace(/\./g, '\\.')}\\] refresh, remote p\\d+, address 127\\.0\\.0\\.1@${z.primary}, failed \\(failed to verify TSIG\\)`),
  },
  BIND: {
    bin: '/usr/sbin/named',
    start(dir: string, port: number, zones: SecondaryZone[], keys: TsigKey[]): Daemon {
      const c = [`options { directory "${dir}"; listen-on port ${port} { 127.0.0.1; }; listen-on-v6 { none; }; pid-file "${dir}/named.pid";`,
        `  recursion no; dnssec-validation no; session-keyfile "${dir}/session.key"; managed-keys-directory "${dir}"; notify no; };`,
        'controls { };'];
      for (const k of keys) c.push(`key "${k.name}" { algorithm ${k.algorithm}; secret "${k.secret.toString('base64')}"; };`);
      for (const z of zones) {
        c.push(`zone "${z.origin}" { type secondary; primaries { 127.0.0.1 port ${z.primary} key "${z.key.name}"; }; file "${dir}/${z.origin}db"; };`);
      }
      writeFileSync(join(dir, 'named.conf'), c.join('\n') + '\n');
      return startDaemon('/usr/sbin/named', ['-g', '-c', join(dir, 'named.conf')], port);
    },
    verified: (z: SecondaryZone) => new RegExp(`transfer of '${z.origin.slice(0, -1).replace(/\./g, '\\.')}/IN' from 127\\.0\\.0\\.1#${z.primary}: Transfer completed: 41 messages, 2004 records, \\d+ bytes`),
    rejected: (z: SecondaryZone) => new RegExp(`transfer of '${z.origin.slice(0, -1).replace(/\./g, '\\.')}/IN' from 127\\.0\\.0\\.1#${z.primary}: failed while receiving responses: tsig verify failure`),
  },
};

describe.each(Object.entries(secondaries))('%s as a secondary of a primary signing with TsigStreamSigner', (_name, impl) => {
  const keys = ALGOS.map((x) => keyFor(x, `sec-${x}.`));
  const lookup = new Map(keys.map((k) => [k.name, k]));
  const zones: (SecondaryZone & { data: ReturnType<typeof zoneRecords>; server: TinyServer })[] = [];
  let bad: SecondaryZone & { server: TinyServer };
  let dir: string;
  let daemon: Daemon | undefined;

  beforeAll(async () => {
    expect(existsSync(impl.bin)).toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'fc-tsig-sec-'));
    for (const [i, k] of keys.entries()) {
      const origin = `z-${k.algorithm}.test.`;
      const data = zoneRecords(origin, 2000);
      const server = await startTiny({ keys: lookup, zone: { origin, soa: data.soa, records: data.records, perMessage: 50 } });
      zones.push({ origin, key: k, primary: server.port, data, server });
    }
    const bz = zoneRecords('z-bad.test.', 2000);
    const bserver = await startTiny({
      keys: lookup, zone: { origin: 'z-bad.test.', soa: bz.soa, records: bz.records, perMessage: 50 },
      tamper: (i, m) => { if (i === 3) m[m.length - 10] ^= 1; },
    });
    bad = { origin: 'z-bad.test.', key: keys[0], primary: bserver.port, server: bserver };
    daemon = impl.start(dir, await freePort(), [...zones, bad], keys);
    await waitForSoa(daemon.port, zones.map((z) => z.origin), 60_000, () => daemon!.alive()).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemon!.output()}`);
    });
  });

  afterAll(async () => {
    await daemon?.stop();
    for (const z of zones) await z.server.close();
    await bad?.server.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test.each(ALGOS.map((x, i) => [x, i] as const))('%s: the zone arrives over a verified 41-message AXFR', async (_alg, i) => {
    const z = zones[i];
    const xfr = z.server.handled.find((h) => h.transport === 'tcp' && h.result.ok);
    expect(xfr).toBeDefined();
    expect((xfr!.result as { key: TsigKey }).key).toBe(z.key);
    await waitFor(`the secondary logging the transfer of ${z.origin}`, () => impl.verified(z).test(daemon!.output()))
      .catch((e: Error) => { throw new Error(`${e.message}; its log:\n${daemon!.output()}`); });
    const out = await dig(daemon!.port, ['+norec', `r1999.${z.origin}`, 'TXT']);
    expect(out).toMatch(/status: NOERROR/);
    expect(out).toMatch(/record 1999 x{60}/);
  });

  test('negative control: a transfer with one bad MAC is rejected', async () => {
    await waitFor('the secondary rejecting the tampered transfer', () => impl.rejected(bad).test(daemon!.output()))
      .catch((e: Error) => { throw new Error(`${e.message}; its log:\n${daemon!.output()}`); });
    const out = await dig(daemon!.port, ['+norec', bad.origin, 'SOA']);
    expect(out).toMatch(/status: SERVFAIL/);
  });
});

/**
 * The responder in process: header handling, the wire cache (ID, case, RD/CD patching),
 * EDNS (OPT echo, BADVERS, FORMERR for two OPTs, payload cap), truncation, error rcodes.
 * Responses are decoded with the independent decoder in tiny-dns.ts.
 */
import { describe, expect, test } from '@jest/globals';
import { ZoneSet } from '../../src/dns/engine/engine.js';
import { Responder } from '../../src/dns/server/responder.js';
import { parseMasterFile } from '../../src/dns/zone/master-file.js';
import { buildZone } from '../../src/dns/zone/zone.js';
import { buildQuery, decode, encodeOpt, T } from './tiny-dns.js';

const bigTxt = Array.from({ length: 40 }, (_, i) => `big TXT "record ${i} ${'x'.repeat(40)}"`).join('\n');
const ZONE = `$ORIGIN r.test.
$TTL 300
@ SOA ns host 1 2 3 4 60
@ NS ns
ns A 192.0.2.1
www A 192.0.2.2
${bigTxt}
`;
const zoneSet = () => new ZoneSet([buildZone(parseMasterFile(ZONE, { origin: 'r.test.', file: 'r.test.zone' }))]);

function ask(r: Responder, q: Buffer, tcp = false) {
  const out = r.respond(q, tcp);
  return out ? decode(out) : null;
}

describe('responder', () => {
  test('answers authoritatively, echoes ID, question case, RD and CD; RA is never set', () => {
    const r = new Responder(zoneSet());
    for (const [id, name, rd] of [[1, 'www.r.test', true], [0xbeef, 'WwW.R.TeSt', false], [7, 'www.r.test', true]] as const) {
      const q = buildQuery(name, { id, rd });
      q[3] |= 0x10; // CD
      const d = ask(r, q)!;
      expect(d.id).toBe(id);
      expect(d.questions[0].name).toBe(name + '.');
      expect(d.rd).toBe(rd);
      expect(d.ra).toBe(false);
      expect(d.aa).toBe(true);
      expect(d.answers.map((a) => a.rdata.toString('hex'))).toEqual(['c0000202']);
      expect(d.answers[0].name.toLowerCase()).toBe('www.r.test.');
    }
  });

  test.each([
    ['no EDNS', null, 512],
    ['EDNS 512', { udpSize: 512 }, 512],
    ['EDNS 100 counts as 512', { udpSize: 100 }, 512],
    ['EDNS 4096 is capped at 1232', { udpSize: 4096 }, 1232],
  ])('truncation with %s: TC=1 within the limit, OPT kept when the query had one', (_n, edns, limit) => {
    const r = new Responder(zoneSet());
    const out = r.respond(buildQuery('big.r.test', { type: T.TXT, edns }), false)!;
    expect(out.length).toBeLessThanOrEqual(limit);
    const d = decode(out);
    expect(d.tc).toBe(true);
    expect(d.opt !== null).toBe(edns !== null);
    if (d.opt) expect(d.opt.udpSize).toBe(1232);
    const tcp = decode(r.respond(buildQuery('big.r.test', { type: T.TXT, edns }), true)!);
    expect(tcp.tc).toBe(false);
    expect(tcp.answers).toHaveLength(40);
  });

  test.each([
    ['EDNS version 1 gets BADVERS with an OPT', buildQuery('www.r.test', { edns: { version: 1 } }), 16],
    ['two OPT records: FORMERR', (() => {
      const q = Buffer.concat([buildQuery('www.r.test', { edns: {} }), encodeOpt({})]);
      q.writeUInt16BE(2, 10);
      return q;
    })(), 1],
    ['no question: FORMERR', (() => {
      const q = buildQuery('www.r.test');
      q.writeUInt16BE(0, 4);
      return q;
    })(), 1],
    ['two questions: FORMERR', (() => {
      const q = buildQuery('www.r.test');
      q.writeUInt16BE(2, 4);
      return q;
    })(), 1],
    ['compression pointer in the question: FORMERR', Buffer.from('00010000000100000000000003777777c00c00010001', 'hex'), 1],
    ['opcode UPDATE: NOTIMP', buildQuery('www.r.test', { opcode: 5 }), 4],
    ['opcode STATUS: NOTIMP', buildQuery('www.r.test', { opcode: 2 }), 4],
    ['class CH: REFUSED', buildQuery('version.bind', { qclass: 3, type: T.TXT }), 5],
    ['AXFR: REFUSED', buildQuery('r.test', { type: 252 }), 5],
    ['outside our zones: REFUSED', buildQuery('www.example.org'), 5],
  ])('%s', (_n, q, rcode) => {
    const d = ask(new Responder(zoneSet()), q)!;
    expect(d.rcode).toBe(rcode);
    expect(d.qr).toBe(true);
    expect(d.ra).toBe(false);
    if (rcode === 16) expect(d.opt).not.toBeNull();
  });

  test.each([
    ['a datagram shorter than a header', Buffer.alloc(11)],
    ['a response (QR=1)', buildQuery('www.r.test', { qr: true })],
  ])('%s gets no answer at all', (_n, q) => {
    const r = new Responder(zoneSet());
    expect(r.respond(q, false)).toBeNull();
  });

  test('DO bit is echoed and the cache keeps DO and non-DO answers apart', () => {
    const r = new Responder(zoneSet());
    expect(ask(r, buildQuery('www.r.test', { edns: { do: true } }))!.opt!.do).toBe(true);
    expect(ask(r, buildQuery('www.r.test', { edns: { do: false } }))!.opt!.do).toBe(false);
    expect(ask(r, buildQuery('www.r.test'))!.opt).toBeNull();
  });

  test('update() swaps zones at once: cached answers are not served afterwards', () => {
    const r = new Responder(zoneSet());
    expect(ask(r, buildQuery('www.r.test'))!.rcode).toBe(0);
    const gen = r.generation;
    r.update({ zones: new ZoneSet([]) });
    expect(r.generation).toBe(gen + 1);
    expect(ask(r, buildQuery('www.r.test'))!.rcode).toBe(5);
  });

  test('the cache stays bounded under random names', () => {
    const r = new Responder(zoneSet(), { cacheEntries: 1000 });
    for (let i = 0; i < 10_000; i++) r.respond(buildQuery(`n${i}.r.test`), false);
    expect(r.cacheSize).toBeLessThanOrEqual(2000);
  });

  test('counts every answer by transport and rcode', () => {
    const r = new Responder(zoneSet());
    r.respond(buildQuery('www.r.test'), false);
    r.respond(buildQuery('nope.r.test'), true);
    r.respond(buildQuery('www.example.org'), false);
    r.respond(Buffer.alloc(5), false);
    expect(r.stats.queries[0]).toBe(1); // udp NOERROR
    expect(r.stats.queries[8 + 3]).toBe(1); // tcp NXDOMAIN
    expect(r.stats.queries[5]).toBe(1); // udp REFUSED
    expect(r.stats.dropped[0]).toBe(1); // short
  });
});

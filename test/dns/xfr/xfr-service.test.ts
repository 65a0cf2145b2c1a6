/**
 * The hidden primary in process (setupDns with secondaries and a TSIG key), spoken to over real
 * sockets on loopback: who gets a transfer and who does not, AXFR and IXFR as RFC 5936 / 1995 say,
 * NOTIFY on a change (signed; sent again until acknowledged), IXFR over UDP, malformed requests,
 * and a transfer client that stops reading while queries go on. The real secondaries (NSD, Knot,
 * BIND) follow changes in test/e2e/secondaries.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Registry } from 'prom-client';
import { parseConfig } from '../../../src/config/config.js';
import { compileOverlay } from '../../../src/core/overlay.js';
import { setupDns, type DnsCapability } from '../../../src/dns/setup.js';
import { Opcode, Rcode, RRType } from '../../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage, type Message } from '../../../src/dns/wire/message.js';
import { readSoa } from '../../../src/dns/wire/rdata.js';
import { parseTsigRecord, signRequest, signResponse, tsigKey, TsigStreamVerifier, verify, type TsigKey, type TsigRecord } from '../../../src/dns/xfr/tsig.js';
import { createRegistry } from '../../../src/metrics/registry.js';
import { freePort } from '../../support/controller.js';
import { waitFor } from '../../support/wait-for.js';

const SECRET = Buffer.alloc(32, 9).toString('base64');
const KEY = tsigKey('xfr-key', 'hmac-sha256', SECRET);
const WRONG = tsigKey('xfr-key', 'hmac-sha256', Buffer.alloc(32, 1).toString('base64'));
const OTHER = tsigKey('other-key', 'hmac-sha256', SECRET);
const now = () => Math.floor(Date.now() / 1000);
const ZONE = `$ORIGIN hosted.test.
$TTL 3600
@ SOA ns1 hostmaster 7 7200 900 1209600 300
@ NS ns1
ns1 A 192.0.2.53
@ A 203.0.113.10
www A 203.0.113.10
shop A 192.0.2.99
`;
/** A zone big enough for many transfer messages. */
const BIG = ['$ORIGIN big.test.', '$TTL 300', '@ SOA ns1 hostmaster 1 7200 900 1209600 300', '@ NS ns1', 'ns1 A 192.0.2.53',
  ...Array.from({ length: 20_000 }, (_, i) => `h${i} A 198.51.100.${i % 250} ; ${'x'.repeat(10)}`)].join('\n') + '\n';

let dir: string;
let dns: DnsCapability;
let registry: Registry;
let port: number;
/** Stands in for the secondary: receives NOTIFY on the configured address. */
let secondary: UdpSocket;
const notifies: { msg: Message; raw: Buffer; from: number }[] = [];
let ackNotifies = false;
let configText: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fc-xfr-'));
  writeFileSync(join(dir, 'hosted.test.zone'), ZONE);
  writeFileSync(join(dir, 'big.test.zone'), BIG);
  secondary = createSocket('udp4');
  await new Promise<void>((r) => secondary.bind(0, '127.0.0.1', () => r()));
  secondary.on('message', (raw, rinfo) => {
    const msg = decodeMessage(raw);
    if (msg.opcode !== Opcode.NOTIFY) return; // the controller's SOA polls (propagation): left unanswered
    notifies.push({ msg, raw, from: rinfo.port });
    if (!ackNotifies) return;
    const v = verify(raw, KEY, now());
    if (!v.ok) return;
    const reply = encodeMessage({ id: msg.id, opcode: Opcode.NOTIFY, flags: { qr: true, aa: true }, question: msg.question.map((q) => ({ name: q.name, type: q.type, class: q.class })) });
    secondary.send(signResponse(reply, KEY, now(), v.mac).message, rinfo.port, rinfo.address);
  });
  port = await freePort();
  configText = `dns:
  listen: ["127.0.0.1:${port}"]
  zones: ${dir}
  tsig_keys: [{name: xfr-key, secret_env: XFR_SECRET}, {name: other-key, secret_env: XFR_SECRET}]
  secondaries: [{name: ns1, address: "127.0.0.1:${(secondary.address()).port}", tsig: xfr-key}]
  catalog: catalog.invalid.
api:
  listen: "127.0.0.1:1"
`;
  const cfg = parseConfig(configText, join(dir, 'config.yaml'), { XFR_SECRET: SECRET });
  registry = createRegistry();
  dns = await setupDns({ config: cfg.dns, registry, logger: pino({ level: 'silent' }), env: { XFR_SECRET: SECRET } });
  await dns.listen();
}, 60_000);

afterAll(async () => {
  await dns?.stop();
  secondary?.close();
  rmSync(dir, { recursive: true, force: true });
});

function query(name: string, type: number, extra: { authority?: { name: string; type: number; ttl: number; rdata: Uint8Array }[] } = {}): Buffer {
  return encodeMessage({ id: 4242, question: [{ name, type }], authority: extra.authority });
}

/** A TCP exchange: sends `msg` and collects framed replies until `done(replies)` or the peer closes. */
function tcp(msg: Buffer, done: (replies: Buffer[]) => boolean, opts: { localAddress?: string; read?: boolean } = {}): Promise<{ replies: Buffer[]; sock: Socket }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port, localAddress: opts.localAddress });
    const replies: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    sock.on('connect', () => sock.write(Buffer.concat([len, msg])));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        replies.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (done(replies)) {
        sock.destroy();
        resolve({ replies, sock });
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve({ replies, sock }));
  });
}

function udp(msg: Buffer, opts: { localAddress?: string } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.on('message', (m) => {
      s.close();
      resolve(m);
    });
    s.bind(0, opts.localAddress ?? '127.0.0.1', () => s.send(msg, port, '127.0.0.1', (err) => err && reject(err)));
  });
}

/** failover_dns_transfers_total's non-zero samples as "secondary kind result" → value. */
async function transferCounts(): Promise<Map<string, number>> {
  const metric = await registry.getSingleMetric('failover_dns_transfers_total')!.get();
  return new Map(metric.values.filter((v) => v.value > 0).map((v) => [`${v.labels.secondary} ${v.labels.kind} ${v.labels.result}`, v.value]));
}

/** What `action` added to failover_dns_transfers_total, as "secondary kind result" → increase. */
async function countedBy(action: () => Promise<unknown>): Promise<Record<string, number>> {
  const before = await transferCounts();
  await action();
  const out: Record<string, number> = {};
  for (const [k, v] of await transferCounts()) if (v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

/** A whole signed transfer: every message verified; the records of the answer sections in order. */
async function transfer(msg: Buffer, key: TsigKey = KEY) {
  const signed = signRequest(msg, key, now());
  const verifier = new TsigStreamVerifier(key, signed.mac);
  let counted = 0;
  let soas = 0;
  const { replies } = await tcp(signed.message, (r) => {
    for (; counted < r.length; counted++) soas += decodeMessage(r[counted]).answer.filter((x) => x.type === RRType.SOA).length;
    if (r.length === 0) return false;
    const m = decodeMessage(r[r.length - 1]);
    return m.rcode !== Rcode.NOERROR || (r.length === 1 && m.answer.length === 1) || (soas >= 2 && m.answer.at(-1)?.type === RRType.SOA);
  });
  const messages = replies.map((r) => {
    const v = verifier.verify(r, now());
    expect(v.ok).toBe(true);
    return decodeMessage(r);
  });
  return { messages, records: messages.flatMap((m) => m.answer) };
}

const serialOf = (rdata: Uint8Array) => readSoa(rdata).serial;

describe('the hidden primary', () => {
  test('AXFR, signed: SOA first and last, every record, each message signed; the catalog lists the zones', async () => {
    const { messages, records } = await transfer(query('hosted.test.', RRType.AXFR));
    expect(messages[0].rcode).toBe(Rcode.NOERROR);
    expect(messages[0].flags.aa).toBe(true);
    expect(records[0].type).toBe(RRType.SOA);
    expect(records.at(-1)!.type).toBe(RRType.SOA);
    expect(records.length).toBe(7);
    const big = await transfer(query('big.test.', RRType.AXFR));
    expect(big.messages.length).toBeGreaterThan(10);
    expect(big.messages.every((_, i) => big.messages[i].question.length === (i === 0 ? 1 : 0))).toBe(true);
    expect(big.records.length).toBe(20_004);
    const cat = await transfer(query('catalog.invalid.', RRType.AXFR));
    expect(cat.records.filter((r) => r.type === RRType.PTR).length).toBe(2);
  });

  test.each([
    ['unsigned while the secondary has a key', (m: Buffer) => m, Rcode.REFUSED, undefined],
    ['signed with a wrong secret', (m: Buffer) => signRequest(m, WRONG, now()).message, Rcode.NOTAUTH, 16],
    ['signed with an unknown key', (m: Buffer) => signRequest(m, tsigKey('nobody', 'hmac-sha256', SECRET), now()).message, Rcode.NOTAUTH, 17],
    ['signed an hour ago', (m: Buffer) => signRequest(m, KEY, now() - 3600).message, Rcode.NOTAUTH, 18],
    ['signed with another valid key', (m: Buffer) => signRequest(m, OTHER, now()).message, Rcode.REFUSED, undefined],
  ])('AXFR %s: refused, no zone data', async (_n, prepare, rcode, tsigError) => {
    const { replies } = await tcp(prepare(query('hosted.test.', RRType.AXFR)), (r) => r.length > 0);
    expect(replies).toHaveLength(1);
    const m = decodeMessage(replies[0]);
    expect(m.rcode).toBe(rcode);
    expect(m.answer).toEqual([]);
    if (tsigError !== undefined) expect((parseTsigRecord(m.tsig!) as TsigRecord).error).toBe(tsigError);
  });

  test('AXFR from an address that is not a secondary: REFUSED, signed or not', async () => {
    for (const msg of [query('hosted.test.', RRType.AXFR), signRequest(query('hosted.test.', RRType.AXFR), KEY, now()).message]) {
      const { replies } = await tcp(msg, (r) => r.length > 0, { localAddress: '127.0.0.2' });
      expect(decodeMessage(replies[0]).rcode).toBe(Rcode.REFUSED);
      expect(decodeMessage(replies[0]).answer).toEqual([]);
    }
  });

  test('a zone not served: NOTAUTH; IXFR without the client SOA: FORMERR; garbage: FORMERR; the connection stays usable', async () => {
    expect((await transfer(query('nowhere.test.', RRType.AXFR))).messages[0].rcode).toBe(Rcode.NOTAUTH);
    expect((await transfer(query('hosted.test.', RRType.IXFR))).messages[0].rcode).toBe(Rcode.FORMERR);
    const junk = Buffer.from(query('hosted.test.', RRType.AXFR));
    junk.writeUInt16BE(5, 8); // five authority records that are not there
    const signedJunk = Buffer.concat([junk, Buffer.from([0xff, 0xff])]);
    const { replies } = await tcp(signedJunk, (r) => r.length > 0);
    expect(decodeMessage(replies[0]).rcode).toBe(Rcode.FORMERR);
  });

  test('a signed SOA query is answered signed; IXFR over UDP gets the SOA only', async () => {
    const s = signRequest(query('hosted.test.', RRType.SOA), KEY, now());
    const reply = await udp(s.message);
    expect(verify(reply, KEY, now(), { requestMac: s.mac }).ok).toBe(true);
    const soa = decodeMessage(reply).answer[0];
    const ixfr = signRequest(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: soa.rdata }] }), KEY, now());
    const r = await udp(ixfr.message);
    expect(verify(r, KEY, now(), { requestMac: ixfr.mac }).ok).toBe(true);
    expect(decodeMessage(r).answer.map((x) => x.type)).toEqual([RRType.SOA]);
  });

  describe('signed queries (the SOA query of Knot over TCP and BIND over UDP before a transfer): answered, and counted as kind query', () => {
    const NOBODY = tsigKey('nobody', 'hmac-sha256', SECRET);
    const cases = [
      { what: 'the right key', key: KEY, at: 0, name: 'hosted.test.', rcode: Rcode.NOERROR, tsigError: 0, signed: true, result: 'ok' },
      { what: 'a wrong secret', key: WRONG, at: 0, name: 'hosted.test.', rcode: Rcode.NOTAUTH, tsigError: 16, signed: false, result: 'notauth' },
      { what: 'an unknown key', key: NOBODY, at: 0, name: 'hosted.test.', rcode: Rcode.NOTAUTH, tsigError: 17, signed: false, result: 'notauth' },
      { what: 'the right key, an hour ago', key: KEY, at: -3600, name: 'hosted.test.', rcode: Rcode.NOTAUTH, tsigError: 18, signed: true, result: 'notauth' },
      { what: 'the right key, a zone not served', key: KEY, at: 0, name: 'nowhere.test.', rcode: Rcode.REFUSED, tsigError: 0, signed: true, result: 'refused' },
    ];
    const rows = ['udp', 'tcp'].flatMap((transport) => cases.flatMap((c) => [
      { ...c, transport, from: '127.0.0.1', secondary: 'ns1' },
      { ...c, transport, from: '127.0.0.2', secondary: 'other' },
    ]));
    test.each(rows)('$transport from $from, $what: rcode $rcode, counted {$secondary, query, $result}', async (c) => {
      const s = signRequest(query(c.name, RRType.SOA), c.key, now() + c.at);
      let reply: Buffer | undefined;
      const counted = await countedBy(async () => {
        reply = c.transport === 'udp'
          ? await udp(s.message, { localAddress: c.from })
          : (await tcp(s.message, (r) => r.length > 0, { localAddress: c.from })).replies[0];
      });
      expect(counted).toEqual({ [`${c.secondary} query ${c.result}`]: 1 });
      const m = decodeMessage(reply!);
      expect(m.rcode).toBe(c.rcode);
      expect(m.question[0]?.name).toBe(c.name);
      expect((parseTsigRecord(m.tsig!) as TsigRecord).error).toBe(c.tsigError);
      // BADKEY and BADSIG unsigned (RFC 8945 5.3.2); the rest signed with the request's key
      if (c.signed) {
        const v = verify(reply!, c.key, now(), { requestMac: s.mac });
        expect(v.ok ? 'verified' : `${v.error} ${v.authenticated}`).toBe(c.tsigError === 0 ? 'verified' : 'PEER_ERROR true');
      } else {
        expect((parseTsigRecord(m.tsig!) as TsigRecord).mac.length).toBe(0);
      }
      if (c.rcode === Rcode.NOERROR) expect(m.answer.map((r) => r.type)).toEqual([RRType.SOA]);
      else expect(m.answer).toEqual([]);
    });

    test('an unsigned SOA query is answered as any query and not counted', async () => {
      let reply: Buffer | undefined;
      expect(await countedBy(async () => (reply = await udp(query('hosted.test.', RRType.SOA))))).toEqual({});
      expect(decodeMessage(reply!).answer.map((r) => r.type)).toEqual([RRType.SOA]);
    });
  });

  test('a change: NOTIFY (signed, sent again until acknowledged), then IXFR gives exactly the difference; an unknown serial gets the whole zone', async () => {
    const before = (await transfer(query('hosted.test.', RRType.AXFR))).records[0];
    notifies.length = 0;
    dns.overlay.apply(compileOverlay({
      servers: [{ server: 'srv-42', transit: 'transit-3', operationId: 'op-1', since: 1, pairs: [{ address: '203.0.113.10', transitAddress: '198.51.100.20', family: 4 }] }],
      ttlCap: 60,
      serialBump: 1,
    }));
    await waitFor('two NOTIFYs of hosted.test (the first one not acknowledged)', () => notifies.filter((n) => n.msg.question[0]?.name === 'hosted.test.').length >= 2, { timeoutMs: 20_000 });
    const n = notifies.find((x) => x.msg.question[0]?.name === 'hosted.test.')!;
    expect(n.msg.opcode).toBe(Opcode.NOTIFY);
    expect(verify(n.raw, KEY, now()).ok).toBe(true);
    ackNotifies = true;
    const count = notifies.length;
    await waitFor('an acknowledged NOTIFY', () => notifies.length > count, { timeoutMs: 20_000 });

    const ixfr = await transfer(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: before.rdata }] }));
    const types = ixfr.records.map((r) => r.type);
    expect(types).toEqual([RRType.SOA, RRType.SOA, RRType.A, RRType.A, RRType.SOA, RRType.A, RRType.A, RRType.SOA]);
    expect(serialOf(ixfr.records[1].rdata)).toBe(serialOf(before.rdata));
    expect(serialOf(ixfr.records[0].rdata)).toBe(serialOf(before.rdata) + 1);
    const deleted = ixfr.records.slice(2, 4).map((r) => [r.name, Buffer.from(r.rdata).join('.'), r.ttl]);
    const added = ixfr.records.slice(5, 7).map((r) => [r.name, Buffer.from(r.rdata).join('.'), r.ttl]);
    expect(deleted).toEqual([['hosted.test.', '203.0.113.10', 3600], ['www.hosted.test.', '203.0.113.10', 3600]]);
    expect(added).toEqual([['hosted.test.', '198.51.100.20', 60], ['www.hosted.test.', '198.51.100.20', 60]]);

    const soaAt = (serial: number) => {
      const b = Buffer.from(before.rdata);
      b.writeUInt32BE(serial, b.length - 20);
      return b;
    };
    const full = await transfer(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: soaAt(3) }] }));
    expect(full.messages[0].rcode).toBe(Rcode.NOERROR);
    expect(full.records.length).toBe(7); // AXFR form
    const current = await transfer(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: soaAt(serialOf(before.rdata) + 1) }] }));
    expect(current.records.map((r) => r.type)).toEqual([RRType.SOA]);
  }, 60_000);

  test('after a restart the stored journal still gives IXFR from before it', async () => {
    const overlay = compileOverlay({
      servers: [{ server: 'srv-42', transit: 'transit-3', operationId: 'op-1', since: 1, pairs: [{ address: '203.0.113.10', transitAddress: '198.51.100.20', family: 4 }] }],
      ttlCap: 60,
      serialBump: 1,
    });
    const cfg = parseConfig(configText, join(dir, 'config.yaml'), { XFR_SECRET: SECRET });
    await dns.stop(); // the journals are stored before stop() resolves
    registry = createRegistry();
    dns = await setupDns({ config: cfg.dns, registry, logger: pino({ level: 'silent' }), env: { XFR_SECRET: SECRET } });
    dns.overlay.apply(overlay); // the controller restores its overlays before DNS listens
    await dns.listen();
    const soa7 = Buffer.from((await transfer(query('hosted.test.', RRType.AXFR))).records[0].rdata);
    soa7.writeUInt32BE(7, soa7.length - 20);
    const ixfr = await transfer(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: soa7 }] }));
    expect(ixfr.records.map((r) => r.type)).toEqual([RRType.SOA, RRType.SOA, RRType.A, RRType.A, RRType.SOA, RRType.A, RRType.A, RRType.SOA]);
  }, 60_000);

  test('a transfer client that stops reading does not stop answering', async () => {
    const signed = signRequest(query('big.test.', RRType.AXFR), KEY, now());
    const sock = connect({ host: '127.0.0.1', port });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(signed.message.length);
    await new Promise<void>((r) => sock.on('connect', () => r()));
    sock.pause(); // never reads
    sock.write(Buffer.concat([len, signed.message]));
    try {
      for (let i = 0; i < 50; i++) {
        const r = decodeMessage(await udp(query('www.hosted.test.', RRType.A)));
        expect(r.rcode).toBe(Rcode.NOERROR);
      }
    } finally {
      sock.destroy();
    }
  });

  test('a transfer waits only for its own zone: IXFR of a small zone is answered while a big zone is versioned', async () => {
    const hosted = (await transfer(query('hosted.test.', RRType.AXFR))).records[0];
    // a big zone reloaded: its version is a full snapshot (many slices of the event loop)
    const bigLines = BIG.replace('hostmaster 1 ', 'hostmaster 2 ') + Array.from({ length: 40_000 }, (_, i) => `g${i} A 198.51.100.${i % 250}`).join('\n') + '\n';
    writeFileSync(join(dir, 'big.test.zone'), bigLines);
    notifies.length = 0;
    await dns.reload(); // the update pass has started
    const current = await transfer(query('hosted.test.', RRType.IXFR, { authority: [{ name: 'hosted.test.', type: RRType.SOA, ttl: 0, rdata: hosted.rdata }] }));
    const bigNotifiedBefore = notifies.some((n) => n.msg.question[0]?.name === 'big.test.');
    expect(current.records.map((r) => r.type)).toEqual([RRType.SOA]);
    // the small zone's answer did not wait for the big zone's new version (announced once it is made)
    expect(bigNotifiedBefore).toBe(false);
    await waitFor('the NOTIFY of the reloaded big.test.', () => notifies.some((n) => n.msg.question[0]?.name === 'big.test.'), { timeoutMs: 60_000 });
    writeFileSync(join(dir, 'big.test.zone'), BIG.replace('hostmaster 1 ', 'hostmaster 3 '));
    await dns.reload();
  }, 120_000);
});

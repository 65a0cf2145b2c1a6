/**
 * The Notifier against stand-in secondaries on 127.0.0.1 (real UDP sockets) that answer each
 * NOTIFY as NSD, Knot and BIND were seen to (test/e2e/secondaries.test.ts with the real ones): an
 * acknowledgement signed with the key; NOTAUTH with an unsigned TSIG BADSIG or BADKEY (their key
 * differs; NSD's without a question section); NOTAUTH with BADTIME (their clock); REFUSED, NOTAUTH or NXDOMAIN without TSIG error
 * (the zone is not, or not yet, there; their allow-notify); a forged unsigned acknowledgement;
 * silence. What is counted, and whether the NOTIFY is sent again.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { Opcode, Rcode } from '../../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage } from '../../../src/dns/wire/message.js';
import { Notifier, tsigNotifySigner, type NotifyResult } from '../../../src/dns/xfr/notify.js';
import { signResponse, tsigErrorResponse, tsigKey, verify, type TsigKey } from '../../../src/dns/xfr/tsig.js';

const KEY = tsigKey('xfr-key', 'hmac-sha256', Buffer.alloc(32, 9).toString('base64'));
const THEIR_WRONG_SECRET = tsigKey('xfr-key', 'hmac-sha256', Buffer.alloc(32, 1).toString('base64'));
const THEIR_OTHER_KEY = tsigKey('their-key', 'hmac-sha256', Buffer.alloc(32, 9).toString('base64'));
const now = () => Math.floor(Date.now() / 1000);
const SOA = { ttl: 300, rdata: Buffer.concat([Buffer.from([0, 0]), Buffer.alloc(20, 1)]) };
/** Generous enough that a reply on loopback comes before the next try, even on a loaded machine. */
const TIMING = { firstTimeoutMs: 300, maxDelayMs: 300, maxTries: 3 };

/** How a stand-in secondary answers one NOTIFY. */
type Answer = 'ack' | 'badsig' | 'badsig-no-question' | 'badkey' | 'badtime' | 'refused' | 'notauth' | 'nxdomain' | 'forged-ack' | 'silent';

const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.close();
});

/** What the stand-in secondary sends back for the NOTIFY `raw` when it answers `answer`; null: nothing. */
function reply(raw: Buffer, answer: Answer): Buffer | null {
  const m = decodeMessage(raw);
  const plain = (rcode: number) => encodeMessage({ id: m.id, opcode: Opcode.NOTIFY, rcode, flags: { qr: true, aa: rcode === Rcode.NOERROR }, question: m.question });
  const rejected = (keys: TsigKey, at: number, question = true) => {
    const v = verify(raw, keys, at);
    if (v.ok) throw new Error('the stand-in secondary verified a NOTIFY it should reject');
    return tsigErrorResponse(raw, question ? v : { ...v, message: { ...v.message!, question: [] } }, at)!;
  };
  switch (answer) {
    case 'ack': {
      const v = verify(raw, KEY, now());
      if (!v.ok) throw new Error(`the stand-in secondary could not verify the NOTIFY: ${v.reason}`);
      return signResponse(plain(Rcode.NOERROR), KEY, now(), v.mac).message;
    }
    case 'badsig': return rejected(THEIR_WRONG_SECRET, now());
    case 'badsig-no-question': return rejected(THEIR_WRONG_SECRET, now(), false); // NSD 4.6
    case 'badkey': return rejected(THEIR_OTHER_KEY, now());
    case 'badtime': return rejected(KEY, now() + 3600);
    case 'refused': return plain(Rcode.REFUSED);
    case 'notauth': return plain(Rcode.NOTAUTH);
    case 'nxdomain': return plain(Rcode.NXDOMAIN);
    case 'forged-ack': return plain(Rcode.NOERROR);
    case 'silent': return null;
  }
}

/** A stand-in secondary answering its n-th NOTIFY with `answers[n]` (the last one from then on). */
async function standIn(answers: Answer[]): Promise<{ port: number; received: () => number }> {
  const s = createSocket('udp4');
  sockets.push(s);
  let n = 0;
  s.on('message', (raw, rinfo) => {
    const out = reply(raw, answers[Math.min(n++, answers.length - 1)]);
    if (out) s.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return { port: s.address().port, received: () => n };
}

describe('NOTIFY outcomes', () => {
  test.each([
    { answers: ['ack'], optional: false, results: ['acked'], sent: 1 },
    // a TSIG error: the same answer every time; refused at once, not sent again
    { answers: ['badsig'], optional: false, results: ['refused'], sent: 1 },
    { answers: ['badsig-no-question'], optional: false, results: ['refused'], sent: 1 },
    { answers: ['badkey'], optional: false, results: ['refused'], sent: 1 },
    { answers: ['badtime'], optional: false, results: ['refused'], sent: 1 },
    { answers: ['badsig'], optional: true, results: ['refused'], sent: 1 },
    // an error without TSIG error: sent again with the backoff; refused when no try is acknowledged
    { answers: ['refused'], optional: false, results: ['retried', 'retried', 'refused'], sent: 3 },
    { answers: ['notauth', 'silent'], optional: false, results: ['retried', 'retried', 'refused'], sent: 3 },
    // a zone the secondary had not yet (added through the catalog a moment before)
    { answers: ['notauth', 'ack'], optional: false, results: ['retried', 'acked'], sent: 2 },
    // the catalog zone to a secondary that does not serve it (NSD: NXDOMAIN; Knot: NOTAUTH): ends, uncounted
    { answers: ['nxdomain'], optional: true, results: [], sent: 1 },
    { answers: ['notauth'], optional: true, results: [], sent: 1 },
    // an unsigned acknowledgement of a signed NOTIFY is not one
    { answers: ['forged-ack'], optional: false, results: ['retried', 'retried', 'gave_up'], sent: 3 },
    { answers: ['silent'], optional: false, results: ['retried', 'retried', 'gave_up'], sent: 3 },
  ] as { answers: Answer[]; optional: boolean; results: NotifyResult[]; sent: number }[])('$answers (optional: $optional): $results', async (c) => {
    const secondary = await standIn(c.answers);
    const results: NotifyResult[] = [];
    const notifier = new Notifier({
      targets: [{ name: 'ns1', address: { host: '127.0.0.1', port: secondary.port, family: 4 }, signer: tsigNotifySigner(KEY, now) }],
      logger: pino({ level: 'silent' }),
      onResult: (_t, r) => results.push(r),
      ...TIMING,
    });
    try {
      await notifier.notify('hosted.test.', SOA, { optional: c.optional }); // resolves with the final outcome
      expect({ results, sent: secondary.received() }).toEqual({ results: c.results, sent: c.sent });
    } finally {
      notifier.close();
    }
  });
});

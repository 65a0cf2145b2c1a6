/**
 * A SIGHUP reload of a big zone never stops answering: while the controller (the built CLI)
 * reloads a 300,000-record zone, a UDP client on loopback keeps asking about it and about another
 * zone, and answers keep coming throughout the reload: the time from SIGHUP to the new serial
 * being served is cut into 20 equal parts, and (all but at most one of) them see answers. The old
 * version is served until the new one is swapped in, never a mix, never SERVFAIL. No wall-clock
 * bound: the reload takes as long as it takes on this machine; only its shares are compared.
 */
import { afterAll, expect, test } from '@jest/globals';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startController } from '../support/controller.js';
import { QueryStream } from './query-stream.js';

const RECORDS = 300_000;
const PARTS = 20;
const tmp = mkdtempSync(join(tmpdir(), 'fc-reload-answering-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The big zone: 4 records per host name (2 A, AAAA, TXT). */
function bigZone(serial: number): string {
  const parts = [`$ORIGIN big.test.\n$TTL 300\n@ SOA ns host ${serial} 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n`];
  for (let i = 0; i < RECORDS / 4; i++) {
    const a = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    parts.push(`h${i} A ${a}\nh${i} A 192.0.2.${i % 250}\nh${i} AAAA 2001:db8::${(i & 0xffff).toString(16)}\nh${i} TXT "host ${i} serial ${serial}"\n`);
  }
  return parts.join('');
}

test('queries keep being answered during a reload of a 300,000-record zone', async () => {
  const zones = join(tmp, 'zones');
  mkdirSync(zones);
  const big = join(zones, 'big.test.zone');
  writeFileSync(big, bigZone(1));
  writeFileSync(join(zones, 'small.test.zone'), '$ORIGIN small.test.\n$TTL 300\n@ SOA ns host 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.80\n');
  const ctl = await startController({ zonesDir: zones });
  const stream = new QueryStream({
    port: ctl.dnsPort,
    zone: 'big.test',
    soaEvery: 4,
    names: (i) => (i % 2 === 0 ? 'www.small.test' : `h${(i * 7919) % (RECORDS / 4)}.big.test`),
  });
  try {
    // the new version (serial 2) is in place before the SIGHUP
    writeFileSync(big + '.new', bigZone(2));
    renameSync(big + '.new', big);
    await stream.start();
    await stream.waitAnswers(200);
    const hup = performance.now();
    ctl.reload();
    const deadline = hup + 180_000;
    let swap: number | null = null;
    while (swap === null && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      swap = stream.answered.find((a) => a.answeredAt >= hup && a.serial === 2)?.answeredAt ?? null;
    }
    await stream.waitAnswers(200);
    stream.stop();
    if (swap === null) throw new Error(`serial 2 never served\n${ctl.output().slice(-3000)}`);

    const during = stream.answered.filter((a) => a.answeredAt >= hup && a.answeredAt < swap!);
    const part = (swap - hup) / PARTS;
    const perPart = new Array<number>(PARTS).fill(0);
    for (const a of during) perPart[Math.min(PARTS - 1, Math.floor((a.answeredAt - hup) / part))]++;
    const withAnswers = perPart.filter((n) => n > 0).length;
    const report = `reload ${(swap - hup).toFixed(0)} ms, answers per 1/${PARTS}: ${perPart.join(' ')}`;
    expect({ report, withAnswers: withAnswers >= PARTS - 1 }).toEqual({ report, withAnswers: true });
    // the old version until the swap, the new one after; never a SERVFAIL
    expect(during.filter((a) => a.serial !== undefined && a.serial !== 1)).toEqual([]);
    expect(stream.answered.filter((a) => a.answeredAt > swap! && a.serial !== undefined && a.serial !== 2)).toEqual([]);
    expect(stream.answered.filter((a) => a.rcode !== 0)).toEqual([]);
  } finally {
    stream.stop();
    await ctl.stop();
  }
});

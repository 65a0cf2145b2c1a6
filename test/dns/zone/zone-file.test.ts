/**
 * Reading zone files safely (regular files only, a byte limit per zone with its includes, refused
 * before reading), the zone directory's reports (a directory named x.zone, a missing directory),
 * and the packed zone handed over by the parser process: it answers exactly as the zone built here.
 * (The same faults against the running server: test/dns/zone-file-safety.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lookup, ZoneSet } from '../../../src/dns/engine/engine.js';
import { nameKey } from '../../../src/dns/name.js';
import { RRType } from '../../../src/dns/wire/constants.js';
import { loadZoneFile, readZoneText, ReadBudget, ZoneFileError } from '../../../src/dns/zone/zone-file.js';
import { sweepParserDirs, ZoneDirectory, ZoneDirectoryError } from '../../../src/dns/zone/zone-loader.js';
import { encodeFrame, FrameReader, readZoneData, writeZoneData, type FramedReply, type ParseReply } from '../../../src/dns/zone/zone-parse-child.js';
import { packedZone, packZone, type PackedZone } from '../../../src/dns/zone/zone-transfer.js';
import type { Zone } from '../../../src/dns/zone/zone.js';
import { REPO_ROOT } from '../../support/controller.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-zone-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const zoneText = (origin: string, extra = '') => `$ORIGIN ${origin}.\n$TTL 300\n@ SOA ns host 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n${extra}`;

/** RSS of this process in bytes. */
const rss = () => process.memoryUsage().rss;

describe('readZoneText', () => {
  test('reads a regular file and counts its bytes against the budget', () => {
    const f = join(dir, 'plain.txt');
    writeFileSync(f, 'abc\n');
    const b = new ReadBudget(100);
    expect(readZoneText(f, b).text).toBe('abc\n');
    expect(b.used).toBe(4);
  });

  test.each([
    ['a FIFO', () => {
      const f = join(dir, 'fifo');
      execFileSync('mkfifo', [f]);
      return f;
    }, 'a FIFO'],
    ['a directory', () => dir, 'a directory'],
    ['/dev/zero', () => '/dev/zero', 'a character device'],
    ['/dev/urandom', () => '/dev/urandom', 'a character device'],
  ])('refuses %s unread', (_n, make, kind) => {
    const f = make();
    const b = new ReadBudget(1 << 20);
    expect(() => readZoneText(f, b)).toThrow(new ZoneFileError(f, `not a regular file (it is ${kind})`));
    expect(b.used).toBe(0);
  });

  test('a file over the budget is refused with the file and the limit; includes share one budget', () => {
    const f = join(dir, 'ten.txt');
    writeFileSync(f, '0123456789');
    expect(() => readZoneText(f, new ReadBudget(9))).toThrow(`${f}: 10 bytes, over the limit of 9 bytes (dns.max_zone_file_bytes)`);
    const b = new ReadBudget(15);
    readZoneText(f, b);
    expect(() => readZoneText(f, b)).toThrow(`${f}: 10 bytes; with the 10 bytes already read for this zone that is over the limit of 15 bytes (dns.max_zone_file_bytes)`);
  });

  test('a sparse 1 GiB file is refused without being read: memory stays flat', () => {
    const f = join(dir, 'sparse.zone');
    writeFileSync(f, '');
    truncateSync(f, 1024 ** 3);
    const before = rss();
    expect(() => readZoneText(f, new ReadBudget(64 * 1024 * 1024))).toThrow(`${f}: 1073741824 bytes, over the limit of 67108864 bytes`);
    expect(rss() - before).toBeLessThan(32 * 1024 * 1024);
    rmSync(f);
  });
});

describe('loadZoneFile', () => {
  test('the zone file and its includes together are bounded', () => {
    const d = join(dir, 'budget');
    mkdirSync(d);
    const part = 'x A 192.0.2.9\n'.repeat(20); // 280 bytes
    writeFileSync(join(d, 'part.inc'), part);
    const top = zoneText('budget.test', '$INCLUDE part.inc\n$INCLUDE part.inc\n');
    writeFileSync(join(d, 'budget.test.zone'), top);
    const size = Buffer.byteLength(top);
    expect(loadZoneFile(join(d, 'budget.test.zone'), 'budget.test', size + 560).zone.recordCount).toBe(4);
    expect(() => loadZoneFile(join(d, 'budget.test.zone'), 'budget.test', size + 559))
      .toThrow(`budget.test.zone:7: cannot read $INCLUDE file "part.inc": ${join(d, 'part.inc')}: 280 bytes; with the ${size + 280} bytes already read`);
  });

  test('an include loop is still refused', () => {
    const d = join(dir, 'loop');
    mkdirSync(d);
    writeFileSync(join(d, 'a.inc'), '$INCLUDE b.inc\n');
    writeFileSync(join(d, 'b.inc'), '$INCLUDE a.inc\n');
    writeFileSync(join(d, 'loop.test.zone'), zoneText('loop.test', '$INCLUDE a.inc\n'));
    expect(() => loadZoneFile(join(d, 'loop.test.zone'), 'loop.test')).toThrow(`b.inc:1: $INCLUDE loop: ${join(d, 'a.inc')} includes itself`);
  });
});

describe('ZoneDirectory', () => {
  test('a directory named x.zone and a FIFO named y.zone are reported; the other zones are served', async () => {
    const d = join(dir, 'kinds');
    mkdirSync(d);
    writeFileSync(join(d, 'good.test.zone'), zoneText('good.test'));
    mkdirSync(join(d, 'x.zone'));
    execFileSync('mkfifo', [join(d, 'y.zone')]);
    const r = await new ZoneDirectory(d).load();
    expect(r.zones.map((z) => z.origin)).toEqual(['good.test.']);
    expect(r.errors).toEqual([
      { file: join(d, 'x.zone'), reason: 'not a regular file (it is a directory)', keptPrevious: false },
      { file: join(d, 'y.zone'), reason: 'not a regular file (it is a FIFO)', keptPrevious: false },
    ]);
  });

  test('a zone over maxZoneBytes is refused naming the file and the limit; a smaller one is served', async () => {
    const d = join(dir, 'limit');
    mkdirSync(d);
    writeFileSync(join(d, 'small.test.zone'), zoneText('small.test'));
    const big = zoneText('big.test', 'h A 192.0.2.2\n'.repeat(100));
    writeFileSync(join(d, 'big.test.zone'), big);
    const r = await new ZoneDirectory(d, { maxZoneBytes: 500 }).load();
    expect(r.zones.map((z) => z.origin)).toEqual(['small.test.']);
    expect(r.errors).toEqual([{
      file: join(d, 'big.test.zone'), line: undefined, keptPrevious: false,
      reason: `${Buffer.byteLength(big)} bytes, over the limit of 500 bytes (dns.max_zone_file_bytes)`,
    }]);
  });

  test('a missing directory: one line at the first load; later one error and every zone stays served', async () => {
    const missing = join(dir, 'nope');
    const first = new ZoneDirectory(missing).load();
    await expect(first).rejects.toThrow(new ZoneDirectoryError(missing, 'cannot read the zones directory: no such file or directory (ENOENT)'));
    await expect(first).rejects.toThrow(/^[^\n]+$/);
    const d = join(dir, 'vanishing');
    mkdirSync(d);
    writeFileSync(join(d, 'v.test.zone'), zoneText('v.test'));
    const zd = new ZoneDirectory(d);
    expect((await zd.load()).zones).toHaveLength(1);
    renameSync(d, d + '.away');
    const r = await zd.load();
    expect(r.zones.map((z) => z.origin)).toEqual(['v.test.']);
    expect(r.errors).toEqual([{ file: d, reason: 'cannot read the zones directory: no such file or directory (ENOENT)', keptPrevious: true }]);
    renameSync(d + '.away', d);
    expect((await zd.load()).errors).toEqual([]);
  });
});

describe('the packed zone from the parser process', () => {
  const fixtures = [join(REPO_ROOT, 'test', 'fixtures', 'differential'), join(REPO_ROOT, 'test', 'fixtures', 'zones')];
  const zones: { built: Zone; packed: Zone }[] = [];
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-packed-'));
    try {
      for (const d of fixtures) {
        for (const name of readdirSync(d).filter((n) => n.endsWith('.zone'))) {
          const built = loadZoneFile(join(d, name), name.slice(0, -5)).zone;
          // as from the parser process: the arrays in a file, the frame's bytes in chunks of any size
          zones.push({ built, packed: packedZone((await throughFrame(dir, name, packZone(built))).zone) });
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(zones.length).toBeGreaterThanOrEqual(8);
  });

  const show = (z: Zone) => ({
    origin: z.origin, serial: z.serial, recordCount: z.recordCount, soa: z.soa, size: z.nodes.size,
    nodes: [...z.nodes].map(([k, sets]) => [k, sets.map((s) => [s.type, s.ttl, s.rdata.map((b) => b.toString('hex'))])]),
    cuts: [...z.cuts].sort(), cutCount: z.cuts.size,
  });

  test('holds the same names, RRsets, cuts and SOA, in the same order', () => {
    for (const { built, packed } of zones) {
      expect(show(packed)).toEqual(show(built));
      for (const k of built.nodes.keys()) {
        expect(packed.nodes.has(k)).toBe(true);
        expect(packed.cuts.has(k)).toBe(built.cuts.has(k));
      }
      for (const k of ['nope.' + built.origin, 'x', '', '.', 'é.' + built.origin, built.origin.toUpperCase()]) {
        expect(packed.nodes.has(k)).toBe(built.nodes.has(k));
        expect(packed.nodes.get(k)).toEqual(built.nodes.get(k));
      }
    }
  });

  test('the engine answers the same from both, for every name and type, below names and at wildcards', () => {
    const built = new ZoneSet(zones.map((z) => z.built));
    const packed = new ZoneSet(zones.map((z) => z.packed));
    const types = [RRType.A, RRType.AAAA, RRType.NS, RRType.SOA, RRType.MX, RRType.TXT, RRType.CNAME, RRType.DS, RRType.ANY, 99];
    let n = 0;
    for (const { built: z } of zones) {
      for (const owner of z.nodes.keys()) {
        for (const q of [owner, nameKey('below.' + owner.replace(/^\*\./, 'w.'))]) {
          for (const t of types) {
            for (const tcp of [false, true]) {
              expect(lookup(packed, q, t, { tcp })).toEqual(lookup(built, q, t, { tcp }));
              n++;
            }
          }
        }
      }
    }
    expect(n).toBeGreaterThan(1000);
  });
});

describe('parser frames', () => {
  test('several frames in one chunk, failures among them; the arrays read back and their file deleted; malformed frames are errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-frames-'));
    try {
      const zone = packZone(loadZoneFile(join(REPO_ROOT, 'test', 'fixtures', 'zones', readdirSync(join(REPO_ROOT, 'test', 'fixtures', 'zones')).find((n) => n.endsWith('.zone'))!), 'example.test').zone);
      const rdata = Buffer.from(zone.rdata);
      const data = join(dir, 'b.bin');
      const lengths = writeZoneData(data, zone);
      const frames = Buffer.concat([
        encodeFrame({ file: 'a', ok: false, line: 3, reason: 'bad' }),
        encodeFrame({ file: 'b', ok: true, zone: { ...zone }, includes: ['i'], fingerprint: 'f', data, lengths }),
        encodeFrame({ file: 'c', ok: false, reason: 'worse' }),
      ]);
      const got: FramedReply[] = [];
      new FrameReader((r) => got.push(r)).push(frames);
      expect(got.map((r) => [r.file, r.ok])).toEqual([['a', false], ['b', true], ['c', false]]);
      expect(got[0]).toEqual({ file: 'a', ok: false, line: 3, reason: 'bad' });
      const b = await readZoneData(got[1] as Extract<FramedReply, { ok: true }>);
      expect(Buffer.from(b.zone.rdata).equals(rdata)).toBe(true);
      expect(b.zone.table).toBeInstanceOf(Uint32Array);
      expect(b.zone.table.length).toBe(zone.table.length);
      expect(b).not.toHaveProperty('data');
      expect(readdirSync(dir)).toEqual([]);
      // a file shorter than its lengths say
      const short = join(dir, 's.bin');
      writeFileSync(short, Buffer.alloc(3));
      await expect(readZoneData({ file: 's', ok: true, zone: { ...zone }, includes: [], fingerprint: 'f', data: short, lengths })).rejects.toThrow(/ends at 3 bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const huge = Buffer.alloc(8);
    huge.writeUInt32LE(0xffffffff);
    expect(() => new FrameReader(() => undefined).push(huge)).toThrow('a reply header of 4294967295 bytes');
    const notJson = Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.from('{x}')]);
    expect(() => new FrameReader(() => undefined).push(notJson)).toThrow(SyntaxError);
    const noArrays = encodeFrame({ file: 'x', ok: true, zone: {}, includes: [], fingerprint: 'f' } as unknown as FramedReply);
    expect(() => new FrameReader(() => undefined).push(noArrays)).toThrow('a reply without its arrays');
  });
});

/** A packed zone through the parser's hand-over: arrays to a file, the frame in odd-sized chunks, the arrays read back. */
async function throughFrame(dir: string, name: string, zone: PackedZone): Promise<Extract<ParseReply, { ok: true }>> {
  const data = join(dir, name + '.bin');
  const lengths = writeZoneData(data, zone);
  const bytes = encodeFrame({ file: name, ok: true, zone: { ...zone }, includes: [], fingerprint: 'f', data, lengths });
  const replies: FramedReply[] = [];
  const reader = new FrameReader((r) => replies.push(r));
  for (let at = 0, size = 1; at < bytes.length; at += size, size = (size * 7) % 61 + 1) reader.push(bytes.subarray(at, at + size));
  expect(reader.midFrame).toBe(false);
  expect(replies).toHaveLength(1);
  const reply = replies[0];
  if (!reply.ok) throw new Error(reply.reason);
  return readZoneData(reply);
}

describe('parser directories', () => {
  test('those left by processes that no longer run are removed; those of running processes and other names stay', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-sweep-'));
    try {
      const dead = spawnSync('true').pid!; // exited: its pid names no process (reuse within the test is unlikely)
      mkdirSync(join(dir, `failover-zones-${dead}-abc`));
      writeFileSync(join(dir, `failover-zones-${dead}-abc`, '0.bin'), 'x');
      mkdirSync(join(dir, `failover-zones-${process.pid}-def`));
      mkdirSync(join(dir, 'failover-zones-notapid'));
      mkdirSync(join(dir, 'other'));
      expect(await sweepParserDirs(dir)).toEqual([`failover-zones-${dead}-abc`]);
      expect(readdirSync(dir).sort()).toEqual([`failover-zones-${process.pid}-def`, 'failover-zones-notapid', 'other']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

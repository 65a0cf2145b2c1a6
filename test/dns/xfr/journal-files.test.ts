/**
 * The journal files: each save appends the versions since the last one; the file is written whole
 * when it does not continue (restart, gap, failed append) or is mostly dropped versions; a torn
 * append reads as the journal before it; saving a large journal holds the event loop in slices.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, jest, test } from '@jest/globals';
import type { SnapshotRecord, ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import { createJournalFiles, journalFileName, type JournalFilesOptions } from '../../../src/dns/xfr/journal-files.js';
import { Journal, type JournalOptions, type ZoneDiff } from '../../../src/dns/xfr/journal.js';

const ZONE = 'files.test.';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function setup(opts: JournalFilesOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'fc-journal-files-'));
  dirs.push(dir);
  const file = join(dir, journalFileName(ZONE));
  return { dir, file, store: createJournalFiles(dir, opts), inode: () => statSync(file).ino, size: () => statSync(file).size };
}

function soa(serial: number): SnapshotRecord {
  const rdata = Buffer.alloc(2 + 2 + 20);
  rdata.set([1, 0x61, 0, 1, 0x62, 0]); // a. b. (relative to nothing: any names do)
  rdata.writeUInt32BE(serial >>> 0, 4);
  return { owner: ZONE, type: 6, ttl: 3600, rdata };
}

/** The version serial -> serial + 1: `n` A records re-addressed. */
function version(serial: number, n = 20): ZoneDiff {
  const deleted: SnapshotRecord[] = [];
  const added: SnapshotRecord[] = [];
  for (let i = 0; i < n; i++) {
    const owner = `h${(serial * 31 + i) % 100_000}.${ZONE}`;
    deleted.push({ owner, type: 1, ttl: 3600, rdata: Buffer.from([192, 0, 2, serial & 0xff]) });
    added.push({ owner, type: 1, ttl: 3600, rdata: Buffer.from([192, 0, 2, (serial + 1) & 0xff]) });
  }
  const bytes = [soa(serial), soa(serial + 1), ...deleted, ...added].reduce((a, r) => a + r.owner.length + 11 + r.rdata.length, 0);
  return { fromSerial: serial, toSerial: serial + 1, fromSoa: soa(serial), toSoa: soa(serial + 1), deleted, added, toDigest: digestOf(serial + 1), bytes };
}

const digestOf = (serial: number) => serial.toString(16).padStart(64, '0');
const at = (serial: number) => ({ serial, digest: digestOf(serial) }) as ZoneSnapshot;

/** A journal at serial `from`, then `count` versions. */
function journal(from: number, count: number, opts: JournalOptions = {}): Journal {
  const j = new Journal(ZONE, opts);
  j.reset(at(from));
  for (let s = from; s < from + count; s++) j.add(version(s));
  return j;
}

/** The file's journal equals `j` (read with its bounds), nothing ignored. */
function expectStored(file: string, j: Journal) {
  const { journal: back, ignored } = Journal.read(readFileSync(file), { maxVersions: j.maxVersions, maxBytes: j.maxBytes });
  expect({ ignored, serial: back.serial, digest: back.digest, oldest: back.oldestSerial, bytes: back.bytes }).toEqual({ ignored: 0, serial: j.serial, digest: j.digest, oldest: j.oldestSerial, bytes: j.bytes });
  expect(back.entries()).toEqual(j.entries());
}

describe('journal files', () => {
  test('each save appends the versions since the last one; the journal as it was at the call', async () => {
    const { file, store, inode, size } = setup();
    const j = journal(100, 2);
    await store.save(ZONE, j);
    expectStored(file, j);
    const ino = inode();
    // one version, then two at once (changes faster than saves)
    for (const count of [1, 2]) {
      const before = size();
      const whole = j.toBuffer().length;
      for (let k = 0; k < count; k++) j.add(version(j.serial!));
      await store.save(ZONE, j);
      expectStored(file, j);
      expect(inode()).toBe(ino);
      expect(size() - before).toBe(j.toBuffer().length - whole); // the new frames only
    }
    // later changes are for a later save; saves of a zone are done in call order
    const first = store.save(ZONE, j);
    const was = Journal.fromBuffer(j.toBuffer());
    j.add(version(j.serial!));
    const second = store.save(ZONE, j);
    await first;
    expectStored(file, was);
    await second;
    expectStored(file, j);
    expect(inode()).toBe(ino);
    // nothing new: nothing written
    const mtime = statSync(file).mtimeMs;
    await store.save(ZONE, j);
    expect(statSync(file).mtimeMs).toBe(mtime);
  });

  test('written whole when the journal restarts, after a version dropped unwritten, and when dropped versions outweigh the kept', async () => {
    const cases: [string, (j: Journal) => Journal][] = [
      ['restarted', (j) => {
        j.reset(at(500));
        return j;
      }],
      ['restarted, then a version', (j) => {
        j.reset(at(500));
        j.add(version(500));
        return j;
      }],
      ['a version dropped before it was written', (j) => {
        for (let k = 0; k < 3; k++) j.add(version(j.serial!));
        return j;
      }],
      ['another journal of the zone', () => journal(100, 3, { maxVersions: 2 })],
    ];
    for (const [label, change] of cases) {
      const { file, store, inode } = setup({ minDeadBytes: Infinity });
      const j = journal(100, 1, { maxVersions: 2 });
      await store.save(ZONE, j);
      const ino = inode();
      const next = change(j);
      await store.save(ZONE, next);
      expect({ label, rewritten: inode() !== ino }).toEqual({ label, rewritten: true });
      expectStored(file, next);
    }

    // compaction: two versions kept, one dropped per save; written whole once the dropped outweigh the kept
    const { file, store, inode, size } = setup({ minDeadBytes: 0 });
    const j = journal(100, 2, { maxVersions: 2 });
    await store.save(ZONE, j);
    const whole = j.toBuffer().length;
    let appends = 0;
    let rewrites = 0;
    for (let k = 0; k < 12; k++) {
      const ino = inode();
      j.add(version(j.serial!));
      await store.save(ZONE, j);
      expectStored(file, j);
      if (inode() === ino) appends++;
      else rewrites++;
      expect(size()).toBeLessThanOrEqual(3 * whole);
    }
    expect({ appends: appends > 0, rewrites: rewrites > 0 }).toEqual({ appends: true, rewrites: true });
  });

  test('a torn append reads as the journal before it; the next save writes the file whole', async () => {
    const { file, store } = setup();
    const j = journal(100, 3);
    await store.save(ZONE, j);
    const good = readFileSync(file);
    j.add(version(103));
    await store.save(ZONE, j);
    const full = readFileSync(file);
    const frame = full.length - good.length;
    for (const torn of [1, 5, 40, frame - 1]) {
      // the crash: part of the last frame reached the disk
      writeFileSync(file, full.subarray(0, good.length + torn));
      const { journal: back, ignored } = Journal.read(readFileSync(file));
      expect({ torn, ignored, serial: back.serial }).toEqual({ torn, ignored: torn, serial: 103 });
      expect(back.toBuffer().equals(good)).toBe(true);
      // after the restart: the journal as read, continued; a new process knows nothing of the file
      const again = createJournalFiles(join(file, '..'));
      const restored = Journal.fromBuffer((await again.load(ZONE))!);
      restored.add(version(103));
      await again.save(ZONE, restored);
      expectStored(file, restored);
    }
  });

  test('a file changed or removed behind the store is written whole; a leftover temporary file is no matter', async () => {
    const cases: [string, (file: string) => void][] = [
      ['bytes appended', (f) => appendFileSync(f, Buffer.from('torn'))],
      ['truncated', (f) => truncateSync(f, statSync(f).size - 3)],
      ['removed', (f) => unlinkSync(f)],
      ['a temporary file left', (f) => writeFileSync(`${f}.tmp`, 'half a journal')],
    ];
    for (const [label, damage] of cases) {
      const { file, store } = setup();
      const j = journal(100, 2);
      await store.save(ZONE, j);
      damage(file);
      j.add(version(102));
      await store.save(ZONE, j);
      expect({ label, ignored: Journal.read(readFileSync(file)).ignored }).toEqual({ label, ignored: 0 });
      expectStored(file, j);
    }
  });

  test('saving a large journal holds the event loop in slices', async () => {
    // about 8 MiB: 6 versions of 24,000 records each way
    const j = new Journal(ZONE);
    j.reset(at(1));
    for (let s = 1; s <= 6; s++) j.add(version(s, 24_000));
    expect(j.length).toBe(6);
    const records = j.entries().reduce((n, d) => n + d.deleted.length + d.added.length, 0);

    // structurally: with no time per slice, the store gives the loop a turn every 256 records
    const yields = jest.spyOn(globalThis, 'setImmediate');
    try {
      const { file, store } = setup({ sliceMs: 0 });
      await store.save(ZONE, j);
      expect(yields.mock.calls.length).toBeGreaterThanOrEqual(Math.floor(records / 256));
      expect(readFileSync(file).equals(j.toBuffer())).toBe(true);
    } finally {
      yields.mockRestore();
    }

    // in time, with the default slices: the longest turn far below the encoding in one go (as
    // every save did before). Loose, the best of three: GC pauses, a loaded machine.
    const runs: { longestMs: number; oneGoMs: number }[] = [];
    for (let run = 0; run < 3; run++) {
      const t0 = performance.now();
      j.toBuffer();
      const oneGo = performance.now() - t0;
      let longest = 0;
      let saving = true;
      const ticker = (async () => {
        let last = performance.now();
        while (saving) {
          await new Promise((r) => setImmediate(r));
          const now = performance.now();
          longest = Math.max(longest, now - last);
          last = now;
        }
      })();
      await setup().store.save(ZONE, j); // a new file: the journal written whole
      saving = false;
      await ticker;
      runs.push({ longestMs: Math.round(longest), oneGoMs: Math.round(oneGo) });
      if (longest < oneGo / 3) break;
    }
    expect({ runs, wellBelow: runs.some((r) => r.longestMs < r.oneGoMs / 3) }).toEqual({ runs, wellBelow: true });
  }, 120_000);
});

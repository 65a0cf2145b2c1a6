/**
 * The IXFR journal: diffs between served snapshots (checked against a set difference), bounds,
 * the chain from a client's serial (RFC 1982), persistence: round trip, appended versions, torn
 * and corrupt files (a journal that was current once, or refused), format 1 still read.
 */
import { createHash } from 'node:crypto';
import { describe, expect, test } from '@jest/globals';
import { runSync, Slicer, snapshotRecords, snapshotZone, type SnapshotRecord, type ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import {
  diffSnapshots, diffSnapshotsAsync, Journal, JournalFormatError, journalStart, serialLess, versionFrameSteps, type ZoneDiff,
} from '../../../src/dns/xfr/journal.js';
import { prng } from '../tiny-dns.js';
import { bigZoneText, EXAMPLE, overlay, zoneOf } from './fixture.js';

const ORIGIN = 'example.test.';
const key = (r: SnapshotRecord) => `${r.owner}|${r.type}|${r.ttl}|${r.rdata.toString('hex')}`;
const keys = (s: ZoneSnapshot) => new Set([...snapshotRecords(s)].filter((r) => r.type !== 6).map(key));

/** A snapshot of EXAMPLE with `serial`, lines replaced/added. */
function snap(serial: number, edit: (text: string) => string = (t) => t, ov = overlay({ serialBump: 0 })): ZoneSnapshot {
  const text = edit(EXAMPLE.replace('hostmaster 41 ', `hostmaster ${serial} `));
  return snapshotZone(zoneOf(text, ORIGIN, true), ov);
}

/** Applies a diff to a set of record keys the way a secondary applies IXFR. */
function apply(set: Set<string>, d: ZoneDiff): Set<string> {
  const out = new Set(set);
  for (const r of d.deleted) expect(out.delete(key(r))).toBe(true);
  for (const r of d.added) {
    expect(out.has(key(r))).toBe(false);
    out.add(key(r));
  }
  return out;
}

describe('diffSnapshots', () => {
  test('deleted, added, TTL changes as delete + add, overlay changes; SOAs head the diff', () => {
    const a = snap(41);
    const b = snap(42, (t) =>
      t
        .replace('mail A 192.0.2.25\n', 'mail A 192.0.2.26\n') // data change
        .replace('x.wild TXT "blocks the wildcard"\n', '') // deletion
        .replace('ns1 A 192.0.2.53\n', 'ns1 7200 A 192.0.2.53\nnew AAAA 2001:db8::99\n'), // TTL change, addition
    );
    const d = diffSnapshots(a, b);
    expect(d.fromSerial).toBe(41);
    expect(d.toSerial).toBe(42);
    expect(d.fromSoa.rdata.readUInt32BE(d.fromSoa.rdata.length - 20)).toBe(41);
    expect(d.toSoa.rdata.readUInt32BE(d.toSoa.rdata.length - 20)).toBe(42);
    const show = (rs: SnapshotRecord[]) => rs.map((r) => `${r.owner} ${r.ttl} ${r.type} ${r.rdata.toString('hex')}`);
    expect(show(d.deleted)).toEqual([
      'mail.example.test. 3600 1 c0000219',
      'ns1.example.test. 3600 1 c0000235',
      `x.wild.example.test. 3600 16 13${Buffer.from('blocks the wildcard').toString('hex')}`,
    ]);
    expect(show(d.added)).toEqual([
      'mail.example.test. 3600 1 c000021a',
      'new.example.test. 3600 28 20010db8000000000000000000000099',
      'ns1.example.test. 7200 1 c0000235',
    ]);
    expect(apply(keys(a), d)).toEqual(keys(b));
    // an overlay change alone (cut over lifted, serial bumped) is a diff too
    const lifted = snapshotZone(zoneOf(EXAMPLE, ORIGIN, true), overlay({ servers: [], serialBump: 1 }));
    const withOv = snapshotZone(zoneOf(EXAMPLE, ORIGIN, true), overlay({ serialBump: 0 }));
    const d2 = diffSnapshots(withOv, lifted);
    expect(d2.deleted.map((r) => r.owner)).toContain('ns.sub.example.test.');
    expect(apply(keys(withOv), d2)).toEqual(keys(lifted));
  });

  test('random edits of a 3,000-record zone: applying the diff gives the new snapshot, and the diff is minimal', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const base = bigZoneText('example.test.', 3000).split('\n');
    let prev = snapshotZone(zoneOf(base.join('\n'), ORIGIN, true), null);
    for (let round = 0; round < 5; round++) {
      const lines = [...base];
      for (let k = 0; k < 60; k++) {
        const i = 7 + rnd(lines.length - 8);
        const kind = rnd(3);
        if (kind === 0) lines[i] = '';
        else if (kind === 1) lines[i] = lines[i].replace(/ A 192\.0\.2\.\d+/, ` A 192.0.2.${rnd(250)}`);
        else lines.push(`added${round}-${k} ${rnd(2) ? 600 : 3600} TXT "r${rnd(5)}"`);
      }
      lines[2] = lines[2].replace('hostmaster 1 ', `hostmaster ${round + 2} `);
      const next = snapshotZone(zoneOf(lines.join('\n'), ORIGIN, true), null);
      const d = diffSnapshots(prev, next);
      const before = keys(prev);
      const after = keys(next);
      expect(apply(before, d)).toEqual(after);
      expect(d.deleted.length).toBe([...before].filter((k) => !after.has(k)).length);
      expect(d.added.length).toBe([...after].filter((k) => !before.has(k)).length);
      prev = next;
    }
  });

  test('the sliced diff equals the synchronous one', async () => {
    const a = snap(41);
    const b = snap(42, (t) => t.replace('mail A 192.0.2.25', 'mail A 192.0.2.26'));
    const d = await diffSnapshotsAsync(a, b, { sliceMs: 0 });
    expect(d).toEqual(diffSnapshots(a, b));
  });
});

describe('Journal', () => {
  test('serial arithmetic (RFC 1982)', () => {
    expect.assertions(6);
    expect(serialLess(1, 2)).toBe(true);
    expect(serialLess(2, 1)).toBe(false);
    expect(serialLess(5, 5)).toBe(false);
    expect(serialLess(0xfffffffe, 3)).toBe(true);
    expect(serialLess(3, 0xfffffffe)).toBe(false);
    expect(serialLess(0, 0x80000000)).toBe(false); // undefined in RFC 1982: not "less"
  });

  /** A chain of snapshots s[0..n] with serials start, start+1, ... (mod 2^32). */
  /**
   * A journal of the versions between `s`, stored as a store does: the journal's bytes once, then
   * each new version's frame appended; `check` sees the file after each append (a journal it
   * returns must equal the one written).
   */
  function appended(s: ZoneSnapshot[], opts: { maxVersions?: number }, check: (parts: Buffer[]) => Journal | void): Journal {
    const j = new Journal(ORIGIN, opts);
    j.record(s[0], s[1]);
    const parts = [j.toBuffer()];
    for (let k = 2; k < s.length; k++) {
      j.record(s[k - 1], s[k]);
      // a store appends the new version's frame only; older ones stay in the file
      const { diffs } = j.view();
      parts.push(Buffer.concat(versionFrame(diffs[diffs.length - 1])));
      const read = check(parts);
      if (read) same(read, j);
    }
    return j;
  }

  function chain(n: number, start = 100): ZoneSnapshot[] {
    const out: ZoneSnapshot[] = [];
    for (let i = 0; i <= n; i++) {
      const serial = (start + i) >>> 0;
      out.push(snap(serial, (t) => t.replace('mail A 192.0.2.25', `mail A 192.0.2.25\nv${i} TXT "version ${i}"`)));
    }
    return out;
  }

  test('diffsSince: the chain to the current serial, [] when current, null when out of reach or ahead', () => {
    const s = chain(4);
    const j = new Journal(ORIGIN);
    expect(j.diffsSince(100)).toBeNull(); // nothing recorded yet
    for (let i = 1; i < s.length; i++) expect(j.record(s[i - 1], s[i])).toBe('recorded');
    expect(j.serial).toBe(104);
    expect(j.oldestSerial).toBe(100);
    expect(j.diffsSince(104)).toEqual([]);
    expect(j.diffsSince(102)!.map((d) => [d.fromSerial, d.toSerial])).toEqual([[102, 103], [103, 104]]);
    expect(j.diffsSince(100)).toHaveLength(4);
    expect(j.diffsSince(99)).toBeNull(); // older than the journal
    expect(j.diffsSince(105)).toBeNull(); // ahead of us
    expect(j.diffsSince(104 + 0x7fffffff)).toBeNull();
    // walking the chain from 100 gives the current snapshot
    let set = keys(s[0]);
    for (const d of j.diffsSince(100)!) set = apply(set, d);
    expect(set).toEqual(keys(s[4]));
  });

  test('serials that wrap around 2^32 chain (RFC 1982)', () => {
    const s = chain(3, 0xfffffffe);
    const j = new Journal(ORIGIN);
    for (let i = 1; i < s.length; i++) expect(j.record(s[i - 1], s[i])).toBe('recorded');
    expect(j.serial).toBe(1);
    expect(j.diffsSince(0xfffffffe)!.map((d) => d.toSerial)).toEqual([0xffffffff, 0, 1]);
    expect(j.diffsSince(0)!.map((d) => d.toSerial)).toEqual([1]);
    expect(j.diffsSince(2)).toBeNull();
  });

  test('bounded by versions and by bytes, oldest dropped first', () => {
    const s = chain(6);
    const byCount = new Journal(ORIGIN, { maxVersions: 3 });
    for (let i = 1; i < s.length; i++) byCount.record(s[i - 1], s[i]);
    expect(byCount.length).toBe(3);
    expect(byCount.oldestSerial).toBe(103);
    expect(byCount.diffsSince(102)).toBeNull();
    expect(byCount.diffsSince(103)).toHaveLength(3);

    const one = diffSnapshots(s[0], s[1]).bytes;
    const byBytes = new Journal(ORIGIN, { maxBytes: one * 2 + 10 });
    for (let i = 1; i < s.length; i++) byBytes.record(s[i - 1], s[i]);
    expect(byBytes.length).toBe(2);
    expect(byBytes.bytes).toBeLessThanOrEqual(byBytes.maxBytes);
    expect(byBytes.diffsSince(104)).toHaveLength(2);

    // a version larger than the bound: the journal is empty but knows the current serial
    const tiny = new Journal(ORIGIN, { maxBytes: 10 });
    expect(tiny.record(s[0], s[1])).toBe('recorded');
    expect(tiny.length).toBe(0);
    expect(tiny.diffsSince(101)).toEqual([]);
    expect(tiny.diffsSince(100)).toBeNull();
  });

  test('record: unchanged, reset when the serial does not increase or the chain is broken', () => {
    const s = chain(3);
    const j = new Journal(ORIGIN);
    expect(j.record(s[0], s[0])).toBe('unchanged');
    expect(j.serial).toBe(100);
    expect(j.record(s[0], s[1])).toBe('recorded');
    // same serial, different content: cannot be told to secondaries; the journal restarts
    const sameSerial = snap(101, (t) => t.replace('mail A 192.0.2.25', 'mail A 192.0.2.99'));
    expect(j.record(s[1], sameSerial)).toBe('reset');
    expect(j.length).toBe(0);
    expect(j.diffsSince(100)).toBeNull();
    // a `from` that is not the journal's last version: restart
    const j2 = new Journal(ORIGIN);
    j2.record(s[0], s[1]);
    expect(j2.record(s[2], s[3])).toBe('reset');
    expect(j2.serial).toBe(103);
    // serial going backwards
    const j3 = new Journal(ORIGIN);
    j3.record(s[0], s[1]);
    expect(j3.record(s[1], s[0])).toBe('reset');
    expect(j3.serial).toBe(100);
    expect(() => j3.add(diffSnapshots(s[2], s[3]))).toThrow('does not follow');
  });

  test('recordAsync records the same versions', async () => {
    const s = chain(2);
    const a = new Journal(ORIGIN);
    const b = new Journal(ORIGIN);
    for (let i = 1; i < s.length; i++) {
      a.record(s[i - 1], s[i]);
      expect(await b.recordAsync(s[i - 1], s[i], { sliceMs: 0 })).toBe('recorded');
    }
    expect(b.entries()).toEqual(a.entries());
  });

  /** The journal after each of `s`'s versions: [0] the fresh one, [k] after k versions. */
  function states(s: ZoneSnapshot[], opts = {}): Journal[] {
    const out: Journal[] = [];
    const j = new Journal(ORIGIN, opts);
    for (let k = 0; k < s.length; k++) {
      if (k > 0) j.record(s[k - 1], s[k]);
      out.push(Journal.fromBuffer(j.toBuffer(), opts));
    }
    return out;
  }

  const same = (a: Journal, b: Journal) => {
    expect({ serial: a.serial, digest: a.digest, bytes: a.bytes, oldest: a.oldestSerial }).toEqual({ serial: b.serial, digest: b.digest, bytes: b.bytes, oldest: b.oldestSerial });
    expect(a.entries()).toEqual(b.entries());
  };

  const refused = (b: Buffer) => {
    try {
      Journal.fromBuffer(b);
    } catch (e) {
      return e instanceof JournalFormatError;
    }
    return false;
  };

  test('persistence: round trip, bounds applied on load', () => {
    const s = chain(4);
    const j = new Journal(ORIGIN);
    for (let i = 1; i < s.length; i++) j.record(s[i - 1], s[i]);
    const buf = j.toBuffer();
    const { journal: back, ignored } = Journal.read(buf);
    expect(ignored).toBe(0);
    expect(back.origin).toBe(ORIGIN);
    same(back, j);
    expect(back.toBuffer().equals(buf)).toBe(true);
    // the restored journal continues from the snapshot it ends at
    const next = snap(105);
    expect(back.record(s[4], next)).toBe('recorded');
    expect(back.diffsSince(100)).toHaveLength(5);
    expect(Journal.fromBuffer(buf, { maxVersions: 2 }).diffsSince(102)).toHaveLength(2);
    // an empty journal and a fresh one
    const empty = new Journal(ORIGIN);
    expect(Journal.fromBuffer(empty.toBuffer()).serial).toBeUndefined();
    empty.reset(s[0]);
    expect(Journal.fromBuffer(empty.toBuffer()).diffsSince(100)).toEqual([]);
    expect(Journal.fromBuffer(empty.toBuffer()).digest).toBe(s[0].digest);
  });

  test('persistence: versions appended to a stored journal read back as the journal, its bounds applied as they were', () => {
    const opts = { maxVersions: 3 };
    const j = appended(chain(7), opts, (parts) => {
      const { journal, ignored } = Journal.read(Buffer.concat(parts), opts);
      expect(ignored).toBe(0);
      return journal;
    });
    expect(j.oldestSerial).toBe(104);
  });

  test('persistence: readAsync reads what read does, in slices with the event loop served between them; torn and refused alike', async () => {
    // 40 versions of 100 new records each
    const s = Array.from({ length: 41 }, (_, i) => snap(100 + i, (t) => t.replace('mail A 192.0.2.25', ['mail A 192.0.2.25', ...Array.from({ length: 100 * i }, (_, k) => `v${k} TXT "record ${k}"`)].join('\n'))));
    let bytes = Buffer.alloc(0);
    const j = appended(s, {}, (parts) => void (bytes = Buffer.concat(parts)));
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    try {
      const got = await Journal.readAsync(bytes, { sliceMs: 0 });
      expect(got.ignored).toBe(0);
      same(got.journal, Journal.read(bytes).journal);
      same(got.journal, j);
    } finally {
      clearInterval(timer);
    }
    expect(turns).toBeGreaterThan(5); // a slice of 0 ms: a turn after every version
    const torn = bytes.subarray(0, bytes.length - 7);
    const a = await Journal.readAsync(torn);
    const b = Journal.read(torn);
    expect(a.ignored).toBe(b.ignored);
    same(a.journal, b.journal);
    await expect(Journal.readAsync(bytes.subarray(0, 12))).rejects.toThrow(JournalFormatError);
  });

  test('persistence: a torn or corrupt file reads as a journal that was current once, or is refused; never another one', () => {
    const s = chain(4);
    const st = states(s);
    const buf = st[4].toBuffer();
    // where each version's frame ends; before the start frame ends nothing is readable
    const startEnd = journalStart(st[4].view()).length;
    const stored = st.map((x) => x.toBuffer());
    const ends = [startEnd, ...stored.slice(1).map((x) => x.length)];
    expect(ends[4]).toBe(buf.length);
    const whole = (len: number) => ends.filter((e) => e <= len).length - 1; // versions wholly inside `len` bytes
    const expectPrefix = (b: Buffer, versions: number) => {
      const { journal, ignored } = Journal.read(b);
      if (versions === 0) {
        // the start says the versions begin at 100; with none of them whole nothing is current
        expect({ serial: journal.serial, length: journal.length }).toEqual({ serial: undefined, length: 0 });
      } else {
        expect(journal.toBuffer().equals(stored[versions])).toBe(true);
        expect(journal.digest).toBe(st[versions].digest);
      }
      expect(ignored).toBe(b.length - ends[versions]);
    };
    // every 5th length and byte, and each frame's edges
    const at = new Set<number>();
    for (let i = 0; i <= buf.length; i += 5) at.add(i);
    for (const e of ends) for (const i of [e - 1, e, e + 1]) if (i <= buf.length) at.add(i);
    for (const len of at) {
      if (len < startEnd) expect(refused(buf.subarray(0, len))).toBe(true);
      else expectPrefix(buf.subarray(0, len), whole(len));
    }
    for (const i of at) {
      if (i === buf.length) continue;
      const bad = Buffer.from(buf);
      bad[i] ^= i % 2 ? 0x5a : 0x01;
      if (i < startEnd) expect(refused(bad)).toBe(true);
      else expectPrefix(bad, ends.findIndex((e) => e > i) - 1);
    }
    // garbage after the last frame (a torn append of a fifth version)
    expectPrefix(Buffer.concat([buf, Buffer.from([2, 0, 0, 1, 0, 7])]), 4);
    expectPrefix(Buffer.concat([buf, Buffer.alloc(100)]), 4);
    // a whole frame that does not continue the chain ends the journal too
    const other = new Journal(ORIGIN);
    other.record(s[3], s[4]);
    expectPrefix(Buffer.concat([st[2].toBuffer(), Buffer.concat(versionFrame(other.entries()[0]))]), 2);
  });

  test('persistence: a sealed frame with a malformed payload ends the journal there, never another error', () => {
    const s = chain(3);
    const j = new Journal(ORIGIN);
    j.record(s[0], s[1]);
    const good = j.toBuffer();
    j.record(s[1], s[2]);
    const payload = Buffer.concat(versionFrame(j.entries()[1])).subarray(5, -32);
    let kept = 0;
    for (let i = 0; i < payload.length; i += 3) {
      const bad = Buffer.from(payload);
      bad[i] ^= i % 2 ? 0xff : 0x01;
      const read = Journal.read(Buffer.concat([good, seal(2, bad)]));
      if (read.ignored === 0) {
        kept++;
        expect(read.journal.length).toBe(2);
      } else {
        expect(read.journal.length).toBe(1);
        expect(read.journal.serial).toBe(101);
      }
    }
    expect(kept).toBeGreaterThan(0); // flipped RDATA bytes are still a version
    expect(Journal.read(Buffer.concat([good, seal(2, Buffer.concat([payload, Buffer.from([0])]))])).journal.length).toBe(1);
    expect(Journal.read(Buffer.concat([good, seal(9, payload)])).journal.length).toBe(1); // an unknown kind
    expect(refused(Buffer.concat([good.subarray(0, 5), seal(1, Buffer.from('junk'))]))).toBe(true); // a sealed start that is not one
    // random sealed frames, of either kind, after the head or after a version: never another error
    const rnd = prng(11);
    const head = good.subarray(0, journalStart(j.view()).length);
    for (let k = 0; k < 300; k++) {
      const junk = Buffer.from(Array.from({ length: Math.floor(rnd() * 120) }, () => Math.floor(rnd() * 256)));
      for (const b of [Buffer.concat([good.subarray(0, 5), seal(1, junk)]), Buffer.concat([head, seal(2, junk)]), Buffer.concat([good, seal(2, junk), good])]) {
        try {
          expect(Journal.read(b).journal.length).toBeLessThanOrEqual(2);
        } catch (e) {
          expect(e).toBeInstanceOf(JournalFormatError);
        }
      }
    }
  });

  test('persistence: format 1 (the whole journal under one checksum) is still read, and refused unless intact', () => {
    const s = chain(4);
    const j = new Journal(ORIGIN);
    for (let i = 1; i < s.length; i++) j.record(s[i - 1], s[i]);
    const buf = formatOne(j);
    same(Journal.fromBuffer(buf), j);
    expect(Journal.fromBuffer(buf, { maxVersions: 2 }).diffsSince(102)).toHaveLength(2);
    const fresh = new Journal(ORIGIN);
    fresh.reset(s[0]);
    same(Journal.fromBuffer(formatOne(fresh)), fresh);
    for (let len = 0; len < buf.length; len += Math.max(1, Math.floor(buf.length / 300))) expect(refused(buf.subarray(0, len))).toBe(true);
    for (let i = 0; i < buf.length; i += 7) {
      const bad = Buffer.from(buf);
      bad[i] ^= 0x5a;
      expect(refused(bad)).toBe(true);
    }
    expect(refused(Buffer.concat([buf, Buffer.from([0])]))).toBe(true);
    // corruption behind a valid checksum: read as a journal or refused, never another error
    const body = buf.subarray(0, buf.length - 32);
    let kept = 0;
    for (let i = 0; i < body.length; i += 3) {
      const bad = Buffer.from(body);
      bad[i] ^= i % 2 ? 0xff : 0x01;
      const sealed = Buffer.concat([bad, createHash('sha256').update(bad).digest()]);
      try {
        Journal.fromBuffer(sealed);
        kept++;
      } catch (e) {
        expect(e).toBeInstanceOf(JournalFormatError);
      }
    }
    expect(kept).toBeGreaterThan(0); // flipped RDATA bytes are still a journal
  });

  test('persistence: a version is encoded in slices, the same bytes as in one go', () => {
    const s = chain(1);
    const j = new Journal(ORIGIN);
    j.record(s[0], s[1]);
    const d = j.entries()[0];
    const steps = versionFrameSteps(d, new Slicer(0));
    let yields = 0;
    let r = steps.next();
    for (; !r.done; r = steps.next()) yields++;
    expect(Buffer.concat(r.value).equals(Buffer.concat(versionFrame(d)))).toBe(true);
    expect(yields).toBeGreaterThanOrEqual(1); // the frame's hash at least, each chunk a slice
  });
});

/** One version's frame, in one go. */
function versionFrame(d: ZoneDiff): Buffer[] {
  return runSync(versionFrameSteps(d, new Slicer(Infinity)));
}

/** A format-2 frame around `payload`, with a valid checksum. */
function seal(kind: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = kind;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload, createHash('sha256').update(head).update(payload).digest()]);
}

/** The journal in format 1, as it was stored before format 2: the whole journal, then a SHA-256 of it. */
function formatOne(j: Journal): Buffer {
  const parts: Buffer[] = [];
  const int = (v: number, n: 1 | 2 | 4) => {
    const b = Buffer.alloc(n);
    b.writeUIntBE(v >>> 0, 0, n);
    parts.push(b);
  };
  const str = (v: string) => {
    int(Buffer.byteLength(v), 2);
    parts.push(Buffer.from(v));
  };
  const rec = (r: SnapshotRecord) => {
    str(r.owner);
    int(r.type, 2);
    int(r.ttl, 4);
    int(r.rdata.length, 2);
    parts.push(r.rdata);
  };
  parts.push(Buffer.from('FCXJ'));
  int(1, 1);
  str(j.origin);
  int(j.serial === undefined ? 0 : 1, 1);
  int(j.serial ?? 0, 4);
  parts.push(Buffer.from(j.digest ?? '0'.repeat(64), 'hex'));
  int(j.length, 4);
  for (const d of j.entries()) {
    int(d.fromSerial, 4);
    int(d.toSerial, 4);
    parts.push(Buffer.from(d.toDigest, 'hex'));
    rec(d.fromSoa);
    rec(d.toSoa);
    for (const list of [d.deleted, d.added]) {
      int(list.length, 4);
      list.forEach(rec);
    }
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

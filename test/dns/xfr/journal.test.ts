/**
 * The IXFR journal: diffs between served snapshots (checked against a set difference), bounds,
 * the chain from a client's serial (RFC 1982), persistence round trip and corrupt input.
 */
import { createHash } from 'node:crypto';
import { describe, expect, test } from '@jest/globals';
import { snapshotRecords, snapshotZone, type SnapshotRecord, type ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import {
  diffSnapshots, diffSnapshotsAsync, Journal, JournalFormatError, serialLess, type ZoneDiff,
} from '../../../src/dns/xfr/journal.js';
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

  test('persistence: round trip, bounds applied on load, every corruption refused with JournalFormatError', () => {
    const s = chain(4);
    const j = new Journal(ORIGIN);
    for (let i = 1; i < s.length; i++) j.record(s[i - 1], s[i]);
    const buf = j.toBuffer();
    const back = Journal.fromBuffer(buf);
    expect(back.origin).toBe(ORIGIN);
    expect(back.serial).toBe(j.serial);
    expect(back.digest).toBe(j.digest);
    expect(back.bytes).toBe(j.bytes);
    expect(back.entries()).toEqual(j.entries());
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

    const refused = (b: Buffer) => {
      try {
        Journal.fromBuffer(b);
      } catch (e) {
        return e instanceof JournalFormatError;
      }
      return false;
    };
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
});

/**
 * The per-zone journal of served differences, for IXFR (RFC 1995): each version change is one
 * {@link ZoneDiff} (old SOA, deleted records, new SOA, added records), computed from two
 * successive snapshots of what the zone serves (../engine/snapshot.ts).
 *
 * - Diffing walks the two snapshots side by side: both are in canonical order (owner, type,
 *   RDATA), so a record is in both, only in the old one (deleted) or only in the new one (added)
 *   in one linear pass, with no map of a million keys. A record whose TTL changed is deleted
 *   and added again (RFC 1995 has no TTL update). SOAs are not in the lists; they head them.
 * - The journal is bounded by versions (default 100) and bytes (default 16 MiB, the estimated
 *   wire size of its records); the oldest versions are dropped first. A version larger than the
 *   byte bound leaves the journal empty (transfers fall back to the whole zone).
 * - {@link Journal.diffsSince} gives the chain from a client's serial to ours, [] when the client
 *   is current, null when the journal does not reach back to it (or it is ahead of ours).
 * - Serializable: {@link Journal.toBuffer} / {@link Journal.fromBuffer} (checksummed; any
 *   malformed input throws {@link JournalFormatError}).
 */
import { createHash } from 'node:crypto';
import { isAtOrBelow } from '../name.js';
import { RRType } from '../wire/constants.js';
import {
  canonicalSortKey, runSliced, runSync, Slicer, snapshotRecord,
  type SliceOptions, type SnapshotRecord, type ZoneSnapshot,
} from '../engine/snapshot.js';

/** One version change: what an IXFR sends for it (RFC 1995 4). */
export interface ZoneDiff {
  fromSerial: number;
  toSerial: number;
  /** The SOA served before and after. */
  fromSoa: SnapshotRecord;
  toSoa: SnapshotRecord;
  /** Records no longer served (old TTL), SOA excluded, canonical order. */
  deleted: SnapshotRecord[];
  /** Records newly served (new TTL), SOA excluded, canonical order. */
  added: SnapshotRecord[];
  /** Digest of the snapshot after the change (ZoneSnapshot.digest). */
  toDigest: string;
  /** Estimated wire size of its records (what the byte bound counts). */
  bytes: number;
}

/** RFC 1982 serial number arithmetic: whether `a` is less than `b` (32-bit serials). */
export function serialLess(a: number, b: number): boolean {
  const d = ((b >>> 0) - (a >>> 0) + 0x100000000) % 0x100000000;
  return d !== 0 && d < 0x80000000;
}

/** Estimated wire size of a record: owner, fixed fields, RDATA (uncompressed). */
export function recordBytes(r: SnapshotRecord): number {
  return r.owner.length + 1 + 10 + r.rdata.length;
}

/** Compares record `i` of `a` with record `j` of `b` by owner (given as compared), type, RDATA. */
function compareRest(a: ZoneSnapshot, i: number, b: ZoneSnapshot, j: number): number {
  const t = a.types[i] - b.types[j];
  if (t !== 0) return t;
  const as = i === 0 ? 0 : a.rdataEnds[i - 1];
  const bs = j === 0 ? 0 : b.rdataEnds[j - 1];
  return a.rdata.compare(b.rdata, bs, b.rdataEnds[j], as, a.rdataEnds[i]);
}

/**
 * The diff from `from` to `to` as a step generator (yields when `slicer` says so). The origins
 * must match; serials are not checked here (see {@link Journal.record}).
 */
export function* diffSteps(from: ZoneSnapshot, to: ZoneSnapshot, slicer: Slicer): Generator<void, ZoneDiff> {
  if (from.origin !== to.origin) throw new Error(`diff of ${from.origin} against ${to.origin}`);
  const deleted: SnapshotRecord[] = [];
  const added: SnapshotRecord[] = [];
  let bytes = recordBytes(from.soa) + recordBytes(to.soa);
  // owner order: the same key compares equal; otherwise canonical keys, cached per owner index
  let ka = -1;
  let kb = -1;
  let sa = '';
  let sb = '';
  let i = 0;
  let j = 0;
  const del = (k: number) => {
    if (from.types[k] === RRType.SOA) return;
    const r = snapshotRecord(from, k);
    deleted.push({ ...r, rdata: Buffer.from(r.rdata) });
    bytes += recordBytes(r);
  };
  const add = (k: number) => {
    if (to.types[k] === RRType.SOA) return;
    const r = snapshotRecord(to, k);
    added.push({ ...r, rdata: Buffer.from(r.rdata) });
    bytes += recordBytes(r);
  };
  while (i < from.count && j < to.count) {
    const oa = from.owners[from.ownerIndex[i]];
    const ob = to.owners[to.ownerIndex[j]];
    let c: number;
    if (oa === ob) {
      c = compareRest(from, i, to, j);
    } else {
      if (ka !== from.ownerIndex[i]) {
        ka = from.ownerIndex[i];
        sa = canonicalSortKey(oa);
      }
      if (kb !== to.ownerIndex[j]) {
        kb = to.ownerIndex[j];
        sb = canonicalSortKey(ob);
      }
      c = sa < sb ? -1 : 1;
    }
    if (c < 0) del(i++);
    else if (c > 0) add(j++);
    else {
      if (from.ttls[i] !== to.ttls[j]) {
        del(i);
        add(j);
      }
      i++;
      j++;
    }
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  while (i < from.count) del(i++);
  while (j < to.count) add(j++);
  return {
    fromSerial: from.serial, toSerial: to.serial, fromSoa: from.soa, toSoa: to.soa,
    deleted, added, toDigest: to.digest, bytes,
  };
}

/** The diff from `from` to `to`, synchronously (100,000 records: 30-50 ms; 1,000,000: about 250 ms). */
export function diffSnapshots(from: ZoneSnapshot, to: ZoneSnapshot): ZoneDiff {
  return runSync(diffSteps(from, to, new Slicer(Infinity)));
}

/** {@link diffSnapshots} in slices of about `sliceMs` (default 4). */
export function diffSnapshotsAsync(from: ZoneSnapshot, to: ZoneSnapshot, opts: SliceOptions = {}): Promise<ZoneDiff> {
  return runSliced(diffSteps(from, to, new Slicer(opts.sliceMs ?? 4)), opts.signal);
}

export interface JournalOptions {
  /** Versions kept (default 100). */
  maxVersions?: number;
  /** Estimated bytes kept (default 16 MiB). */
  maxBytes?: number;
}

/** What {@link Journal.record} did with a new snapshot. */
export type RecordResult =
  /** Same content, same serial: nothing to record. */
  | 'unchanged'
  /** The change is in the journal (or was too large for it: then the journal is empty). */
  | 'recorded'
  /**
   * The content changed but the serial did not increase (RFC 1982), or the new snapshot does not
   * follow the journal's last one: the journal was emptied; IXFR clients get the whole zone.
   */
  | 'reset';

/** A journal input that cannot be read back: truncated, corrupt, or not a journal. */
export class JournalFormatError extends Error {
  override name = 'JournalFormatError';
}

/** The versions of one zone, oldest first, each starting where the previous one ended. */
export class Journal {
  readonly maxVersions: number;
  readonly maxBytes: number;
  private diffs: ZoneDiff[] = [];
  private total = 0;
  private current: { serial: number; digest: string } | undefined;

  constructor(readonly origin: string, opts: JournalOptions = {}) {
    this.maxVersions = opts.maxVersions ?? 100;
    this.maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  }

  /** The serial of the latest version recorded (undefined before the first). */
  get serial(): number | undefined {
    return this.current?.serial;
  }

  /** The digest of the latest version recorded (ZoneSnapshot.digest). */
  get digest(): string | undefined {
    return this.current?.digest;
  }

  /** The oldest serial a client can be brought up from (the current one when the journal is empty). */
  get oldestSerial(): number | undefined {
    return this.diffs.length > 0 ? this.diffs[0].fromSerial : this.current?.serial;
  }

  /** Versions held. */
  get length(): number {
    return this.diffs.length;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.total;
  }

  /** The versions held, oldest first (read-only). */
  entries(): readonly ZoneDiff[] {
    return this.diffs;
  }

  /**
   * Starts from `snapshot` with no history (the first snapshot after start, or after the
   * persisted journal did not match what is served).
   */
  reset(snapshot?: ZoneSnapshot): void {
    this.diffs = [];
    this.total = 0;
    this.current = snapshot ? { serial: snapshot.serial, digest: snapshot.digest } : undefined;
  }

  /**
   * Records the change from `from` (what was served) to `to` (what is served now). `from` must
   * be the snapshot of the journal's latest version (same digest) for the chain to continue;
   * otherwise, or when the serial does not increase, the journal restarts at `to`.
   */
  record(from: ZoneSnapshot, to: ZoneSnapshot): RecordResult {
    return this.unchangedOrReset(from, to) ?? this.recordDiff(from, to, diffSnapshots(from, to));
  }

  /** {@link record} with the diff already computed (an incremental snapshot step gives it). */
  recordDiff(from: ZoneSnapshot, to: ZoneSnapshot, diff: ZoneDiff): RecordResult {
    const early = this.unchangedOrReset(from, to);
    if (early) return early;
    this.add(diff);
    return 'recorded';
  }

  /** 'unchanged' or 'reset' (done) when `to` is not a next version after `from`; null when it is. */
  private unchangedOrReset(from: ZoneSnapshot, to: ZoneSnapshot): RecordResult | null {
    if (from.digest === to.digest && from.serial === to.serial) {
      if (!this.current) this.current = { serial: to.serial, digest: to.digest };
      return 'unchanged';
    }
    if (!this.follows(from, to)) {
      this.reset(to);
      return 'reset';
    }
    return null;
  }

  /** {@link record} with the diff computed in slices. */
  async recordAsync(from: ZoneSnapshot, to: ZoneSnapshot, opts: SliceOptions = {}): Promise<RecordResult> {
    const early = this.unchangedOrReset(from, to);
    if (early) return early;
    const diff = await diffSnapshotsAsync(from, to, opts);
    // the journal may have moved while the diff was computed
    return this.recordDiff(from, to, diff);
  }

  private follows(from: ZoneSnapshot, to: ZoneSnapshot): boolean {
    if (from.origin !== this.origin || to.origin !== this.origin) throw new Error(`journal of ${this.origin} given ${from.origin} -> ${to.origin}`);
    if (!serialLess(from.serial, to.serial)) return false;
    return this.current === undefined || (this.current.serial === from.serial && this.current.digest === from.digest);
  }

  /** Appends a diff that continues the journal (its fromSerial is the current serial), then trims. */
  add(diff: ZoneDiff): void {
    if (!serialLess(diff.fromSerial, diff.toSerial)) throw new Error(`serial ${diff.toSerial} does not follow ${diff.fromSerial}`);
    if (this.current && this.current.serial !== diff.fromSerial) throw new Error(`diff from ${diff.fromSerial} does not follow ${this.current.serial}`);
    this.diffs.push(diff);
    this.total += diff.bytes;
    this.current = { serial: diff.toSerial, digest: diff.toDigest };
    while (this.diffs.length > 0 && (this.diffs.length > this.maxVersions || this.total > this.maxBytes)) {
      this.total -= this.diffs.shift()!.bytes;
    }
  }

  /**
   * The versions from `serial` to the current one, oldest first: [] when `serial` is current,
   * null when the journal does not reach back to it, when it is ahead of ours (RFC 1982), or when
   * nothing has been recorded.
   */
  diffsSince(serial: number): ZoneDiff[] | null {
    if (!this.current) return null;
    serial >>>= 0;
    if (serial === this.current.serial) return [];
    if (!serialLess(serial, this.current.serial)) return null;
    for (let i = 0; i < this.diffs.length; i++) {
      if (this.diffs[i].fromSerial === serial) return this.diffs.slice(i);
    }
    return null;
  }

  // ---------------------------------------------------------------------------- persistence ---

  /**
   * The journal as bytes: "FCXJ", format 1, origin, current serial and digest, the versions
   * (serials, digest, SOAs, deleted and added records), then a SHA-256 of all that.
   */
  toBuffer(): Buffer {
    const w = new Writer();
    w.raw(MAGIC);
    w.u8(FORMAT);
    w.str(this.origin);
    w.u8(this.current ? 1 : 0);
    w.u32(this.current?.serial ?? 0);
    w.hex32(this.current?.digest ?? '0'.repeat(64));
    w.u32(this.diffs.length);
    for (const d of this.diffs) {
      w.u32(d.fromSerial);
      w.u32(d.toSerial);
      w.hex32(d.toDigest);
      w.record(d.fromSoa);
      w.record(d.toSoa);
      w.u32(d.deleted.length);
      for (const r of d.deleted) w.record(r);
      w.u32(d.added.length);
      for (const r of d.added) w.record(r);
    }
    const body = w.finish();
    return Buffer.concat([body, createHash('sha256').update(body).digest()]);
  }

  /**
   * A journal read back from {@link toBuffer}'s bytes, with these bounds (it is trimmed to them).
   * Throws {@link JournalFormatError} for anything else: it never returns a journal that was not
   * written whole.
   */
  static fromBuffer(buf: Buffer, opts: JournalOptions = {}): Journal {
    if (buf.length < MAGIC.length + 1 + 32) throw new JournalFormatError(`journal of ${buf.length} bytes is truncated`);
    const body = buf.subarray(0, buf.length - 32);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) {
      throw new JournalFormatError('journal checksum mismatch (truncated or corrupt)');
    }
    const r = new Reader(body);
    if (!r.raw(MAGIC.length).equals(MAGIC)) throw new JournalFormatError('not a journal (bad magic)');
    const format = r.u8();
    if (format !== FORMAT) throw new JournalFormatError(`journal format ${format} is not supported`);
    const origin = r.str();
    const j = new Journal(origin, opts);
    const has = r.u8();
    const serial = r.u32();
    const digest = r.hex32();
    const n = r.u32();
    const diffs: ZoneDiff[] = [];
    for (let k = 0; k < n; k++) {
      const fromSerial = r.u32();
      const toSerial = r.u32();
      const toDigest = r.hex32();
      const fromSoa = r.record(origin);
      const toSoa = r.record(origin);
      const deleted = r.records(origin);
      const added = r.records(origin);
      let bytes = recordBytes(fromSoa) + recordBytes(toSoa);
      for (const x of deleted) bytes += recordBytes(x);
      for (const x of added) bytes += recordBytes(x);
      if (deleted.some((x) => x.type === RRType.SOA) || added.some((x) => x.type === RRType.SOA)) throw new JournalFormatError('an SOA among the deleted or added records');
      for (const soa of [fromSoa, toSoa]) {
        if (soa.type !== RRType.SOA || soa.owner !== origin || soa.rdata.length < 22) throw new JournalFormatError('a version does not start with the zone SOA');
      }
      if (fromSoa.rdata.readUInt32BE(fromSoa.rdata.length - 20) !== fromSerial || toSoa.rdata.readUInt32BE(toSoa.rdata.length - 20) !== toSerial) {
        throw new JournalFormatError('a version SOA does not carry its serial');
      }
      diffs.push({ fromSerial, toSerial, fromSoa, toSoa, deleted, added, toDigest, bytes });
    }
    if (!r.atEnd()) throw new JournalFormatError('bytes after the last version');
    if (has > 1 || (has === 0 && n > 0)) throw new JournalFormatError('bad journal header');
    for (let k = 0; k < diffs.length; k++) {
      const d = diffs[k];
      if (!serialLess(d.fromSerial, d.toSerial)) throw new JournalFormatError(`version ${d.fromSerial} -> ${d.toSerial} does not increase`);
      if (k > 0 && diffs[k - 1].toSerial !== d.fromSerial) throw new JournalFormatError(`versions do not chain at ${d.fromSerial}`);
    }
    if (diffs.length > 0 && (diffs[diffs.length - 1].toSerial !== serial || diffs[diffs.length - 1].toDigest !== digest)) {
      throw new JournalFormatError('the last version does not end at the current serial');
    }
    if (has === 1) j.current = { serial, digest };
    for (const d of diffs) {
      j.diffs.push(d);
      j.total += d.bytes;
    }
    while (j.diffs.length > 0 && (j.diffs.length > j.maxVersions || j.total > j.maxBytes)) j.total -= j.diffs.shift()!.bytes;
    return j;
  }
}

const MAGIC = Buffer.from('FCXJ', 'latin1');
const FORMAT = 1;

class Writer {
  private chunks: Buffer[] = [];
  private buf = Buffer.allocUnsafe(1 << 16);
  private o = 0;

  private room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    this.chunks.push(this.buf.subarray(0, this.o));
    this.buf = Buffer.allocUnsafe(Math.max(1 << 16, n));
    this.o = 0;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.o++] = v;
  }
  u16(v: number): void {
    this.room(2);
    this.buf.writeUInt16BE(v, this.o);
    this.o += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.o);
    this.o += 4;
  }
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.o);
    this.o += b.length;
  }
  hex32(h: string): void {
    this.raw(Buffer.from(h, 'hex'));
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u16(b.length);
    this.raw(b);
  }
  record(r: SnapshotRecord): void {
    this.str(r.owner);
    this.u16(r.type);
    this.u32(r.ttl);
    this.u16(r.rdata.length);
    this.raw(r.rdata);
  }
  finish(): Buffer {
    this.chunks.push(this.buf.subarray(0, this.o));
    return Buffer.concat(this.chunks);
  }
}

class Reader {
  private o = 0;

  constructor(private readonly b: Buffer) {}

  private need(n: number): void {
    if (this.o + n > this.b.length) throw new JournalFormatError(`journal truncated at byte ${this.o}`);
  }
  atEnd(): boolean {
    return this.o === this.b.length;
  }
  u8(): number {
    this.need(1);
    return this.b[this.o++];
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.o);
    this.o += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }
  raw(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }
  hex32(): string {
    return this.raw(32).toString('hex');
  }
  str(): string {
    return this.raw(this.u16()).toString('utf8');
  }
  record(origin: string): SnapshotRecord {
    const owner = this.str();
    if (!/^[\x21-\x7e]+$/.test(owner) || !isAtOrBelow(owner, origin)) throw new JournalFormatError(`record owner ${JSON.stringify(owner)} outside ${origin}`);
    const type = this.u16();
    const ttl = this.u32();
    const rdata = Buffer.from(this.raw(this.u16()));
    return { owner, type, ttl, rdata };
  }
  records(origin: string): SnapshotRecord[] {
    const n = this.u32();
    // each record takes at least 11 bytes: a count beyond what is left is corrupt, not a huge allocation
    if (n * 11 > this.b.length - this.o) throw new JournalFormatError(`journal truncated: ${n} records announced`);
    const out: SnapshotRecord[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.record(origin);
    return out;
  }
}

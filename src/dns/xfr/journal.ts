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
 * - Stored as an append-only log: a start frame, then a checksummed frame per version, so that
 *   a new version costs its own bytes ({@link journalStart}, {@link versionFrameSteps}, encoded in
 *   slices; journal-files.ts writes them). {@link Journal.read} gives the journal after the last
 *   whole frame (a torn append is ignored), or throws {@link JournalFormatError}; the older
 *   format 1 (one checksum over the whole journal) is still read.
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
    let c: number;
    if (from.owners.same(from.ownerIndex[i], to.owners, to.ownerIndex[j])) {
      c = compareRest(from, i, to, j);
    } else {
      if (ka !== from.ownerIndex[i]) {
        ka = from.ownerIndex[i];
        sa = canonicalSortKey(from.owners.at(ka));
      }
      if (kb !== to.ownerIndex[j]) {
        kb = to.ownerIndex[j];
        sb = canonicalSortKey(to.owners.at(kb));
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
  /** Versions added since construction (the next one's sequence number). */
  private added = 0;
  /** Bumped by every {@link reset}: the versions of one generation form one chain. */
  private generation = 0;

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
    this.generation++;
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
    this.added++;
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

  /** The journal as it is now, for storing it: O(versions), the versions themselves are shared (never changed). */
  view(): JournalView {
    return {
      journal: this, generation: this.generation, next: this.added,
      origin: this.origin, current: this.current, diffs: this.diffs.slice(),
    };
  }

  /**
   * The journal as a file, synchronously (a store writes the same frames in slices: see
   * {@link journalStart} and {@link versionFrameSteps}). Format 2: "FCXJ", 2, then frames, each
   * a kind, a length, the payload and a SHA-256 of those: first the start (origin; the serial the
   * versions start from, or the current serial and digest when there are none), then one per
   * version (serials, digest, SOAs, deleted and added records). Versions may be appended to it.
   */
  toBuffer(): Buffer {
    const v = this.view();
    const slicer = new Slicer(Infinity);
    const out = [journalStart(v)];
    for (const d of v.diffs) out.push(...runSync(versionFrameSteps(d, slicer)));
    return Buffer.concat(out);
  }

  /** {@link read}'s journal. */
  static fromBuffer(buf: Buffer, opts: JournalOptions = {}): Journal {
    return Journal.read(buf, opts).journal;
  }

  /**
   * A journal read back from a file, with these bounds (it is trimmed to them).
   *
   * - Format 2 (appended to): the journal as it was after the last whole version frame that
   *   continues the chain. A torn or corrupt frame ends it: what follows is not read, and its
   *   bytes are `ignored`. It is always a journal that was once current, never a mix.
   * - Format 1 (the whole journal under one SHA-256): all of it or a {@link JournalFormatError}.
   *
   * Throws {@link JournalFormatError} when the start itself is not whole; never another error.
   */
  static read(buf: Buffer, opts: JournalOptions = {}): { journal: Journal; ignored: number } {
    return runSync(Journal.readSteps(buf, opts, new Slicer(Infinity)));
  }

  /** {@link read} in slices of about `sliceMs` (default 4), the event loop served between them (a format-2 journal: between versions). */
  static readAsync(buf: Buffer, opts: JournalOptions & SliceOptions = {}): Promise<{ journal: Journal; ignored: number }> {
    return runSliced(Journal.readSteps(buf, opts, new Slicer(opts.sliceMs ?? 4)), opts.signal);
  }

  private static *readSteps(buf: Buffer, opts: JournalOptions, slicer: Slicer): Generator<void, { journal: Journal; ignored: number }> {
    if (buf.length >= MAGIC.length + 1 && buf.subarray(0, MAGIC.length).equals(MAGIC) && buf[MAGIC.length] === FORMAT_LOG) {
      return yield* Journal.readLog(buf, opts, slicer);
    }
    return { journal: Journal.readWhole(buf, opts), ignored: 0 };
  }

  private static *readLog(buf: Buffer, opts: JournalOptions, slicer: Slicer): Generator<void, { journal: Journal; ignored: number }> {
    const start = frameAt(buf, MAGIC.length + 1);
    if (!start || start.kind !== FRAME_START) throw new JournalFormatError('journal start truncated or corrupt');
    const r = new Reader(start.payload);
    const origin = r.str();
    const has = r.u8();
    const serial = r.u32();
    const digest = r.hex32();
    if (!r.atEnd() || has > 2) throw new JournalFormatError('bad journal start');
    const j = new Journal(origin, opts);
    if (has === 1) j.current = { serial, digest };
    let from = has === 0 ? undefined : serial;
    let o = start.end;
    for (;;) {
      const f = frameAt(buf, o);
      if (!f || f.kind !== FRAME_VERSION) break;
      let d: ZoneDiff;
      try {
        const v = new Reader(f.payload);
        d = readVersion(v, origin);
        if (!v.atEnd()) break;
      } catch (err) {
        if (err instanceof JournalFormatError) break;
        throw err;
      }
      if ((from !== undefined && d.fromSerial !== from) || !serialLess(d.fromSerial, d.toSerial)) break;
      j.add(d);
      from = d.toSerial;
      o = f.end;
      if (slicer.due(2 + d.deleted.length + d.added.length)) {
        yield;
        slicer.reset();
      }
    }
    return { journal: j, ignored: buf.length - o };
  }

  private static readWhole(buf: Buffer, opts: JournalOptions): Journal {
    if (buf.length < MAGIC.length + 1 + 32) throw new JournalFormatError(`journal of ${buf.length} bytes is truncated`);
    const body = buf.subarray(0, buf.length - 32);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(buf.length - 32))) {
      throw new JournalFormatError('journal checksum mismatch (truncated or corrupt)');
    }
    const r = new Reader(body);
    if (!r.raw(MAGIC.length).equals(MAGIC)) throw new JournalFormatError('not a journal (bad magic)');
    const format = r.u8();
    if (format !== FORMAT_WHOLE) throw new JournalFormatError(`journal format ${format} is not supported`);
    const origin = r.str();
    const j = new Journal(origin, opts);
    const has = r.u8();
    const serial = r.u32();
    const digest = r.hex32();
    const n = r.u32();
    const diffs: ZoneDiff[] = [];
    for (let k = 0; k < n; k++) diffs.push(readVersion(r, origin));
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

/** A journal's content at one moment, as a store writes it (journal-files.ts). */
export interface JournalView {
  readonly journal: Journal;
  /** Bumped by every reset of the journal: the versions of one generation form one chain. */
  readonly generation: number;
  /** The sequence number of the version after the last one: `diffs[i]` is `next - diffs.length + i`. */
  readonly next: number;
  readonly origin: string;
  readonly current: { readonly serial: number; readonly digest: string } | undefined;
  readonly diffs: readonly ZoneDiff[];
}

/** One version as both formats store it (the SOAs checked against the serials). */
function readVersion(r: Reader, origin: string): ZoneDiff {
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
  return { fromSerial, toSerial, fromSoa, toSoa, deleted, added, toDigest, bytes };
}

/**
 * The head of a format-2 journal file for `view`: magic, format, the start frame. The version
 * frames follow ({@link versionFrameSteps}), then any appended later.
 */
export function journalStart(view: JournalView): Buffer {
  const w = new Writer();
  w.str(view.origin);
  if (view.diffs.length > 0) {
    // the versions carry the chain; the digest before the first one is not known
    w.u8(2);
    w.u32(view.diffs[0].fromSerial);
    w.hex32(NO_DIGEST);
  } else {
    w.u8(view.current ? 1 : 0);
    w.u32(view.current?.serial ?? 0);
    w.hex32(view.current?.digest ?? NO_DIGEST);
  }
  return Buffer.concat([MAGIC, Buffer.from([FORMAT_LOG]), ...runSync(frameSteps(FRAME_START, w.finish(), new Slicer(Infinity)))]);
}

/** The frame of one version (format 2), encoded in slices of `slicer`; its bytes in order. */
export function* versionFrameSteps(d: ZoneDiff, slicer: Slicer): Generator<void, Buffer[]> {
  const w = new Writer();
  w.u32(d.fromSerial);
  w.u32(d.toSerial);
  w.hex32(d.toDigest);
  w.record(d.fromSoa);
  w.record(d.toSoa);
  for (const list of [d.deleted, d.added]) {
    w.u32(list.length);
    for (const r of list) {
      w.record(r);
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
  }
  return yield* frameSteps(FRAME_VERSION, w.finish(), slicer);
}

/** A frame: kind, payload length, the payload, SHA-256 of those (hashed a chunk per clock read). */
function* frameSteps(kind: number, payload: Buffer[], slicer: Slicer): Generator<void, Buffer[]> {
  let n = 0;
  for (const c of payload) n += c.length;
  if (n > 0xffffffff) throw new RangeError(`journal frame of ${n} bytes`);
  const head = Buffer.allocUnsafe(5);
  head[0] = kind;
  head.writeUInt32BE(n, 1);
  const hash = createHash('sha256').update(head);
  for (const c of payload) {
    hash.update(c);
    if (slicer.due(256)) {
      yield;
      slicer.reset();
    }
  }
  return [head, ...payload, hash.digest()];
}

/** The whole frame at `o`, or null (truncated, or its checksum does not match). */
function frameAt(buf: Buffer, o: number): { kind: number; payload: Buffer; end: number } | null {
  if (o + 5 > buf.length) return null;
  const n = buf.readUInt32BE(o + 1);
  const end = o + 5 + n + 32;
  if (end > buf.length) return null;
  if (!createHash('sha256').update(buf.subarray(o, o + 5 + n)).digest().equals(buf.subarray(end - 32, end))) return null;
  return { kind: buf[o], payload: buf.subarray(o + 5, o + 5 + n), end };
}

const MAGIC = Buffer.from('FCXJ', 'latin1');
/** The whole journal under one checksum (read only). */
const FORMAT_WHOLE = 1;
/** A start frame, then a frame per version (appendable). */
const FORMAT_LOG = 2;
const FRAME_START = 1;
const FRAME_VERSION = 2;
const NO_DIGEST = '0'.repeat(64);

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
    const n = Buffer.byteLength(s, 'utf8');
    this.u16(n);
    this.room(n);
    this.o += this.buf.write(s, this.o, 'utf8');
  }
  record(r: SnapshotRecord): void {
    const owner = r.owner;
    const rdata = r.rdata;
    // owners are ASCII (canonical keys): bytes copied directly, else encoded as UTF-8
    let n = owner.length;
    for (let i = 0; i < owner.length; i++) {
      if (owner.charCodeAt(i) > 0x7f) {
        n = Buffer.byteLength(owner, 'utf8');
        break;
      }
    }
    this.room(2 + n + 8 + rdata.length);
    const b = this.buf;
    let o = this.o;
    b[o] = n >>> 8;
    b[o + 1] = n & 0xff;
    o += 2;
    if (n === owner.length) {
      for (let i = 0; i < n; i++) b[o + i] = owner.charCodeAt(i);
    } else {
      b.write(owner, o, 'utf8');
    }
    o += n;
    const ttl = r.ttl >>> 0;
    b[o] = r.type >>> 8;
    b[o + 1] = r.type & 0xff;
    b[o + 2] = ttl >>> 24;
    b[o + 3] = (ttl >>> 16) & 0xff;
    b[o + 4] = (ttl >>> 8) & 0xff;
    b[o + 5] = ttl & 0xff;
    b[o + 6] = rdata.length >>> 8;
    b[o + 7] = rdata.length & 0xff;
    o += 8;
    if (rdata.length <= 32) {
      for (let i = 0; i < rdata.length; i++) b[o + i] = rdata[i];
    } else {
      b.set(rdata, o);
    }
    this.o = o + rdata.length;
  }
  /** The bytes written, in chunks of about 64 KiB. */
  finish(): Buffer[] {
    this.chunks.push(this.buf.subarray(0, this.o));
    return this.chunks;
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

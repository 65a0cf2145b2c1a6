/**
 * A zone as it is served: every record of the zone with the overlay applied exactly as
 * {@link lookup} applies it when it answers for that owner and type — what a secondary must hold
 * after a zone transfer (AXFR/IXFR, see ../xfr/transfer.ts) and what the journal diffs
 * (../xfr/journal.ts).
 *
 * Rules (the engine's applyOverlay, per RRset, records in zone order):
 * - SOA: serial + serialBump(origin) (RFC 1982, mod 2^32).
 * - A/AAAA: a record whose address has a replacement in the record's zone gets it, TTL
 *   min(TTL, ttlCap); a record not rewritten whose address has a ttlCapFor below its TTL gets that
 *   TTL. When any record of the RRset changed, duplicates are dropped (the first kept) and the
 *   RRset takes the lowest TTL left.
 * - The record's zone for a replacement is the served zone that answers for its owner
 *   (`zones.find(owner)`, as the engine does) when `zones` is given, else this zone.
 * - Delegations, glue and occluded data are zone data: included as in the zone file (with the
 *   same A/AAAA rewriting a referral applies to glue).
 *
 * Order: owners in canonical order (RFC 4034 6.1), types ascending, RDATA by bytes; the
 * snapshot is packed (typed arrays and one RDATA buffer, no object per record) since zones go up
 * to 1,000,000 records. Building is a generator of slices ({@link snapshotSteps}) so a large zone
 * can be snapshotted without holding the event loop ({@link snapshotZoneAsync}); a zone from the
 * parser process walks its nodes in canonical order (sorted there), so the serving thread does not
 * sort, and keeps the columns it built as the snapshot's.
 *
 * An overlay change on the same zone object is a step ({@link nextSnapshot}): only the owners
 * whose A/AAAA records carry an address either overlay touches (found through a per-zone index
 * of addresses, built along a full snapshot) and the apex (SOA) are rendered again; the rest is
 * copied. The digest is the root of a hash tree over the owners ({@link DIGEST_LEAF} per
 * leaf) so a step hashes again only the leaves it changed and their ancestors.
 */
import { createHash } from 'node:crypto';
import type { OverlayDelta } from '../../core/overlay.js';
import { bytesHash, keyHash } from '../hash.js';
import { isAtOrBelow, keyToLabels } from '../name.js';
import { RRType } from '../wire/constants.js';
import type { RRset, Zone } from '../zone/zone.js';
import type { ZoneDiff } from '../xfr/journal.js';
import type { AddressOverlay, ZoneSet } from './engine.js';
import { OwnerList, OwnerListBuilder } from './owner-list.js';

/** One served record (class IN). */
export interface SnapshotRecord {
  /** Owner as a canonical key. */
  owner: string;
  type: number;
  ttl: number;
  /** Uncompressed wire RDATA. */
  rdata: Buffer;
}

/** Every record a zone serves, packed, in canonical order. Immutable. */
export interface ZoneSnapshot {
  readonly origin: string;
  /** The served serial (the zone's + its serialBump). */
  readonly serial: number;
  /** The served SOA record. */
  readonly soa: SnapshotRecord;
  /** Records, the SOA included. */
  readonly count: number;
  /** Distinct owners with records, canonical order. */
  readonly owners: OwnerList;
  /** Per record: its owner's index in `owners` (non-decreasing). */
  readonly ownerIndex: Uint32Array;
  readonly types: Uint16Array;
  readonly ttls: Uint32Array;
  /** Per record: end of its RDATA in `rdata` (it starts where the previous one ends). */
  readonly rdataEnds: Uint32Array;
  readonly rdata: Buffer;
  /** SHA-256 (hex) of the content: two snapshots with the same digest serve the same records. */
  readonly digest: string;
}

export interface SnapshotOptions {
  /** The served zones: the zone of a record, for a per-zone replacement, is the one that answers for its owner. */
  zones?: ZoneSet;
  /**
   * Also builds the zone's address index (base A/AAAA address → owners carrying it) that
   * {@link nextSnapshot} uses, when it is not built yet for this zone object (kept while the
   * zone object lives). Adds about 10% for 100,000 records, 20% for 1,000,000 (sliced like
   * the rest); built alone, {@link addressIndex} takes about 0.1 s and 1 s.
   */
  index?: boolean;
}

export interface SliceOptions {
  /** Longest synchronous slice, ms (default 4). */
  sliceMs?: number;
  /** Stops the work between slices (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

// ------------------------------------------------------------------------------ slicing --------

/** Decides when a step generator should yield: checked every few units of work. */
export class Slicer {
  private start = performance.now();
  private n = 0;

  constructor(private readonly sliceMs: number) {}

  /**
   * True when the current slice has used its time (the caller yields, then calls {@link reset}).
   * The clock is read once per 256 units of `cost` (1 for a small step).
   */
  due(cost = 1): boolean {
    if (this.sliceMs === Infinity) return false;
    this.n += cost;
    if (this.n < 256) return false;
    this.n = 0;
    return performance.now() - this.start >= this.sliceMs;
  }

  reset(): void {
    this.start = performance.now();
  }
}

/** Runs a step generator to its end synchronously. */
export function runSync<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** A turn of the event loop longer than this (ms) found work waiting (an idle turn takes tens of µs). */
const BUSY_TURN_MS = 0.2;
/** Longest a step generator waits for a busy event loop after a slice (ms): it keeps at least about a fifth of the thread. */
const MAX_WAIT_MS = 16;

/**
 * Runs a step generator, the event loop served between slices: after each slice it gives the
 * loop turns (setImmediate) until one finds nothing more waiting, or for at most
 * {@link MAX_WAIT_MS}. (One turn reads at most 32 datagrams per UDP socket: one turn per slice
 * would cap answering at 32 queries per slice while the work runs.)
 */
export async function runSliced<T>(steps: Generator<void, T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    signal?.throwIfAborted();
    const r = steps.next();
    if (r.done) return r.value;
    await serveWaiting();
  }
}

/**
 * Gives the event loop turns (setImmediate) until one finds nothing more waiting, or for at most
 * {@link MAX_WAIT_MS}: what long work calls between its slices so that queries waiting meanwhile
 * are all answered, not 32 per slice.
 */
export async function serveWaiting(): Promise<void> {
  const start = performance.now();
  for (let turn = start; ;) {
    await new Promise((res) => setImmediate(res));
    const now = performance.now();
    if (now - turn < BUSY_TURN_MS || now - start >= MAX_WAIT_MS) break;
    turn = now;
  }
}

// ------------------------------------------------------------------------------ ordering -------

const scratch = new Uint16Array(600);

/**
 * A string whose code-unit order is the canonical order of names (RFC 4034 6.1): labels from
 * the root down, each as its bytes + 1, separated by 0 (so a label sorts before its extensions
 * and a shorter name before the names below it). Keys are lower-cased already.
 */
export function canonicalSortKey(key: string): string {
  if (key === '.') return '';
  let n = 0;
  if (key.indexOf('\\') < 0) {
    let end = key.length - 1;
    while (end > 0) {
      const start = key.lastIndexOf('.', end - 1) + 1;
      if (n > 0) scratch[n++] = 0;
      for (let i = start; i < end; i++) scratch[n++] = key.charCodeAt(i) + 1;
      end = start - 1;
    }
  } else {
    const labels = keyToLabels(key);
    for (let l = labels.length - 1; l >= 0; l--) {
      if (n > 0) scratch[n++] = 0;
      const lab = labels[l];
      for (let i = 0; i < lab.length; i++) scratch[n++] = lab[i] + 1;
    }
  }
  return String.fromCharCode.apply(null, scratch.subarray(0, n) as unknown as number[]);
}

/** Canonical order of two owner keys (RFC 4034 6.1): negative, 0 or positive. */
export function compareOwners(a: string, b: string): number {
  if (a === b) return 0;
  const ka = canonicalSortKey(a);
  const kb = canonicalSortKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Sorts `idx` by `keys[idx[i]]`, yielding when the slicer says so: sorted runs of 1024, then
 * bottom-up merges. Returns the sorted array (`idx` or a scratch of the same size).
 */
function* sortIndices(idx: Uint32Array, keys: string[], slicer: Slicer): Generator<void, Uint32Array> {
  const n = idx.length;
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) {
    if (keys[idx[i - 1]] > keys[idx[i]]) sorted = false;
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  if (sorted) return idx;
  const RUN = 1024;
  const cmp = (x: number, y: number) => (keys[x] < keys[y] ? -1 : keys[x] > keys[y] ? 1 : 0);
  for (let s = 0; s < n; s += RUN) {
    idx.subarray(s, Math.min(n, s + RUN)).sort(cmp);
    if (slicer.due(256)) {
      yield;
      slicer.reset();
    }
  }
  let src: Uint32Array = idx;
  let dst: Uint32Array = new Uint32Array(n);
  for (let width = RUN; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(n, lo + width);
      const hi = Math.min(n, lo + 2 * width);
      let i = lo;
      let j = mid;
      let o = lo;
      while (i < mid && j < hi) {
        dst[o++] = keys[src[j]] < keys[src[i]] ? src[j++] : src[i++];
        if (slicer.due()) {
          yield;
          slicer.reset();
        }
      }
      while (i < mid) dst[o++] = src[i++];
      while (j < hi) dst[o++] = src[j++];
    }
    [src, dst] = [dst, src];
  }
  return src;
}

// ------------------------------------------------------------------------------ building -------

/** A growable byte buffer. */
class Bytes {
  buf: Buffer;
  length = 0;

  /** `capacity`: bytes expected (the buffer grows past it). */
  constructor(capacity = 1 << 16) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, 1 << 16));
  }

  push(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  /** Appends `src[start, end)` (no view made). */
  pushRange(src: Buffer, start: number, end: number): void {
    this.room(end - start);
    src.copy(this.buf, this.length, start, end);
    this.length += end - start;
  }

  /** Grows the buffer (doubling) to take `n` more bytes. */
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
}

/** Growable typed columns of the records, in the order they were produced. */
class Columns {
  types: Uint16Array;
  ttls: Uint32Array;
  ends: Uint32Array;
  count = 0;
  readonly data: Bytes;

  /** `capacity`: records expected, `bytes`: RDATA bytes expected (the columns grow past them). */
  constructor(capacity = 1024, bytes?: number) {
    this.data = new Bytes(bytes);
    this.types = new Uint16Array(capacity);
    this.ttls = new Uint32Array(capacity);
    this.ends = new Uint32Array(capacity);
  }

  push(type: number, ttl: number, rdata: Uint8Array): void {
    this.grow();
    this.data.push(rdata);
    this.end(type, ttl);
  }

  /** Appends a record whose RDATA is `src[start, end)`. */
  pushRange(type: number, ttl: number, src: Buffer, start: number, end: number): void {
    this.grow();
    this.data.pushRange(src, start, end);
    this.end(type, ttl);
  }

  private end(type: number, ttl: number): void {
    this.types[this.count] = type;
    this.ttls[this.count] = ttl;
    this.ends[this.count] = this.data.length;
    this.count++;
  }

  private grow(): void {
    if (this.count === this.types.length) {
      const grow = <A extends Uint16Array | Uint32Array>(a: A): A => {
        const next = new (a.constructor as new (n: number) => A)(a.length * 2);
        next.set(a);
        return next;
      };
      this.types = grow(this.types);
      this.ttls = grow(this.ttls);
      this.ends = grow(this.ends);
    }
  }
}

interface Served {
  rdata: Buffer;
  ttl: number;
}

/** The served form of one RRset (the engine's applyOverlay on it), RDATA sorted by bytes. */
function serveSet(set: RRset, overlay: AddressOverlay | null | undefined, zoneOf: () => string): Served[] {
  let out: Served[] = set.rdata.map((rdata) => ({ rdata, ttl: set.ttl }));
  if (overlay) {
    // a SOA is at its zone's apex: the zone answering for its owner is its own
    const bump = set.type === RRType.SOA ? (overlay.serialBump?.(zoneOf()) ?? 0) : 0;
    if (bump !== 0) {
      out = out.map((r) => {
        const rd = Buffer.from(r.rdata);
        const at = rd.length - 20;
        rd.writeUInt32BE((rd.readUInt32BE(at) + bump) % 0x100000000, at);
        return { rdata: rd, ttl: r.ttl };
      });
    } else if (set.type === RRType.A || set.type === RRType.AAAA) {
      let changed = false;
      for (let i = 0; i < out.length; i++) {
        const r = out[i];
        const repl = overlay.replacement(r.rdata, zoneOf());
        if (repl) {
          out[i] = { rdata: repl, ttl: Math.min(r.ttl, overlay.ttlCap) };
          changed = true;
          continue;
        }
        const cap = overlay.ttlCapFor?.(r.rdata);
        if (cap !== undefined && cap < r.ttl) {
          out[i] = { rdata: r.rdata, ttl: cap };
          changed = true;
        }
      }
      if (changed) {
        // as the engine: the first of equal records is kept, then the RRset takes the lowest TTL
        const seen = new Set<string>();
        out = out.filter((r) => {
          const k = r.rdata.toString('latin1');
          if (seen.has(k)) return false;
          seen.add(k);
          return true;
        });
        let ttl = Infinity;
        for (const r of out) ttl = Math.min(ttl, r.ttl);
        for (const r of out) r.ttl = ttl;
      }
    }
  }
  if (out.length > 1) {
    out.sort((a, b) => Buffer.compare(a.rdata, b.rdata));
    out = out.filter((r, i) => i === 0 || !r.rdata.equals(out[i - 1].rdata));
  }
  return out;
}

/** Receives the rendered records of one owner, in snapshot order. */
type Push = (type: number, ttl: number, rdata: Uint8Array) => void;

/** The served records of one owner (its RRsets by type, each as {@link serveSet} or sorted and deduplicated). */
function renderNode(sets: RRset[], overlay: AddressOverlay | null | undefined, zoneOf: () => string, push: Push): void {
  const ordered = sets.length > 1 ? [...sets].sort((a, b) => a.type - b.type) : sets;
  for (const set of ordered) {
    const touched = overlay && (set.type === RRType.A || set.type === RRType.AAAA || set.type === RRType.SOA);
    if (touched) {
      for (const r of serveSet(set, overlay, zoneOf)) push(set.type, r.ttl, r.rdata);
    } else if (set.rdata.length === 1) {
      push(set.type, set.ttl, set.rdata[0]);
    } else {
      const sorted = [...set.rdata].sort(Buffer.compare);
      for (let i = 0; i < sorted.length; i++) if (i === 0 || !sorted[i].equals(sorted[i - 1])) push(set.type, set.ttl, sorted[i]);
    }
  }
}

// ------------------------------------------------------------------------------ digest ---------

/** Ends each owner's key in a leaf's hash. */
const NEWLINE = Buffer.from('\n');

/** Owners per leaf of the digest tree. */
export const DIGEST_LEAF = 16;
/** Children per inner node of the digest tree. */
const DIGEST_FANOUT = 32;

/** The packed columns of a snapshot, as hashed. */
type Packed = Pick<ZoneSnapshot, 'owners' | 'ownerIndex' | 'types' | 'ttls' | 'rdataEnds' | 'rdata'>;

/**
 * Per snapshot built here: its digest tree, 32-byte SHA-256 per node, level 0 the leaves (one
 * per {@link DIGEST_LEAF} owners), each next level one node per {@link DIGEST_FANOUT} nodes
 * below, the last level one node (the root).
 */
const digestTrees = new WeakMap<ZoneSnapshot, Buffer[]>();

/**
 * Writes the SHA-256 of leaf `b` (owners [b·LEAF, +LEAF), records [recFrom, recTo)) into `out`:
 * owner and record counts, RDATA bytes, per record its owner (relative to the leaf) and RDATA
 * length; owner names; types; TTLs; the RDATA. Independent of where the leaf sits in the
 * snapshot.
 */
function hashLeaf(s: Packed, b: number, recFrom: number, recTo: number, out: Buffer): void {
  const ownerFrom = b * DIGEST_LEAF;
  const ownerTo = Math.min(s.owners.length, ownerFrom + DIGEST_LEAF);
  const n = recTo - recFrom;
  const start = recFrom === 0 ? 0 : s.rdataEnds[recFrom - 1];
  const end = n === 0 ? start : s.rdataEnds[recTo - 1];
  const meta = new Uint32Array(3 + 2 * n);
  meta[0] = ownerTo - ownerFrom;
  meta[1] = n;
  meta[2] = end - start;
  for (let r = recFrom, prevEnd = start, m = 3; r < recTo; r++) {
    meta[m++] = s.ownerIndex[r] - ownerFrom;
    meta[m++] = s.rdataEnds[r] - prevEnd;
    prevEnd = s.rdataEnds[r];
  }
  const bytes = (a: Uint16Array | Uint32Array) => new Uint8Array(a.buffer, a.byteOffset + recFrom * a.BYTES_PER_ELEMENT, n * a.BYTES_PER_ELEMENT);
  const hash = createHash('sha256').update(new Uint8Array(meta.buffer));
  for (let k = ownerFrom; k < ownerTo; k++) hash.update(s.owners.bytesAt(k)).update(NEWLINE);
  hash
    .update(bytes(s.types))
    .update(bytes(s.ttls))
    .update(s.rdata.subarray(start, end))
    .digest()
    .copy(out, b * 32);
}

/** Hashes node `j` of `level` from the level below. */
function hashInner(below: Buffer, level: Buffer, j: number): void {
  createHash('sha256').update(below.subarray(j * 32 * DIGEST_FANOUT, Math.min(below.length, (j + 1) * 32 * DIGEST_FANOUT))).digest().copy(level, j * 32);
}

/** The inner levels above `leaves`, up to the root (all nodes hashed), as a step generator. */
function* treeAbove(leaves: Buffer, slicer: Slicer): Generator<void, Buffer[]> {
  const levels = [leaves];
  while (levels[levels.length - 1].length > 32) {
    const below = levels[levels.length - 1];
    const level = Buffer.allocUnsafe(32 * Math.ceil(below.length / 32 / DIGEST_FANOUT));
    for (let j = 0; j < level.length / 32; j++) {
      hashInner(below, level, j);
      if (slicer.due(8)) {
        yield;
        slicer.reset();
      }
    }
    levels.push(level);
  }
  return levels;
}

/** The snapshot digest: its origin and the root of its digest tree. */
/** A finished snapshot: its serial read from the SOA, its digest from the tree (kept for the next step). */
function sealed(
  origin: string,
  soa: SnapshotRecord,
  columns: Pick<ZoneSnapshot, 'count' | 'owners' | 'ownerIndex' | 'types' | 'ttls' | 'rdataEnds' | 'rdata'>,
  tree: Buffer[],
): ZoneSnapshot {
  const snapshot: ZoneSnapshot = { origin, serial: soa.rdata.readUInt32BE(soa.rdata.length - 20), soa, ...columns, digest: digestOf(origin, tree) };
  digestTrees.set(snapshot, tree);
  return snapshot;
}

function digestOf(origin: string, levels: Buffer[]): string {
  return createHash('sha256').update(origin + '\n').update(levels[levels.length - 1]).digest('hex');
}

/** Where the RDATA of record `r` starts (the end of record r - 1's). */
function endOf(ends: Uint32Array, r: number): number {
  return r === 0 ? 0 : ends[r - 1];
}

/** The first record of owner `k` (or `count` when `k` is past the last owner): a lower bound on `ownerIndex`. */
function firstRecordOf(ownerIndex: Uint32Array, count: number, k: number): number {
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ownerIndex[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// ------------------------------------------------------------------------------ address index --

/**
 * Per zone object: base A/AAAA address (latin1 of its RDATA) → positions (in the snapshot's
 * canonical owner order, the same in every snapshot of that zone object) of the owners whose A
 * or AAAA RRset carries it; and the apex position.
 */
export interface AddressIndex {
  readonly owners: number;
  readonly apex: number;
  readonly byAddress: ReadonlyMap<string, readonly number[]>;
}

const addressIndexes = new WeakMap<Zone, AddressIndex>();

/** The address index of `zone` when it is built (by a snapshot with `index`, or {@link addressIndex}). */
export function cachedAddressIndex(zone: Zone): AddressIndex | undefined {
  return addressIndexes.get(zone);
}

/**
 * The zones of `zones` whose served records a change of the overlay described by `delta` may
 * alter: those carrying one of its addresses (an account's addresses only in its zones and the
 * zones above them, which may hold records of its names). 'all' when a zone has no address
 * index to tell (see {@link SnapshotOptions.index}).
 */
export function zonesChangedBy(zones: ZoneSet, delta: OverlayDelta): string[] | 'all' {
  const out: string[] = [];
  for (const zone of zones.zones()) {
    const index = addressIndexes.get(zone);
    if (!index) return 'all';
    let hit = false;
    for (const k of delta.anyZone) if ((hit = index.byAddress.has(k))) break;
    for (const [z, keys] of delta.byZone) {
      if (hit) break;
      if (!isAtOrBelow(z, zone.origin)) continue;
      for (const k of keys) if ((hit = index.byAddress.has(k))) break;
    }
    if (hit) out.push(zone.origin);
  }
  return out;
}

/**
 * The address index of `zone`, built from the owners of a snapshot of it when it is not cached
 * yet (synchronously: about as long as the index part of a full snapshot with `index`). Throws
 * when the snapshot's owners are not the zone's (a snapshot of another zone object).
 */
export function addressIndex(zone: Zone, snapshot: Pick<ZoneSnapshot, 'owners' | 'origin'>): AddressIndex {
  return runSync(addressIndexSteps(zone, snapshot, new Slicer(Infinity)));
}

/** {@link addressIndex} as a step generator. */
function* addressIndexSteps(zone: Zone, snapshot: Pick<ZoneSnapshot, 'owners' | 'origin'>, slicer: Slicer): Generator<void, AddressIndex> {
  const mismatch = () => new Error(`the snapshot of ${snapshot.origin} is not one of this ${zone.origin} zone object`);
  const have = addressIndexes.get(zone);
  if (have) {
    if (have.owners !== snapshot.owners.length || snapshot.origin !== zone.origin) throw mismatch();
    return have;
  }
  let nonEmpty = 0;
  for (const sets of zone.nodes.values()) {
    if (sets.length > 0) nonEmpty++;
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  if (nonEmpty !== snapshot.owners.length || snapshot.origin !== zone.origin) throw mismatch();
  const postings = new AddressPostings();
  const firstOf = new Uint32Array(snapshot.owners.length + 1);
  let apex = -1;
  for (let k = 0; k < snapshot.owners.length; k++) {
    const owner = snapshot.owners.at(k);
    if (owner === zone.origin) apex = k;
    const sets = zone.nodes.get(owner);
    if (!sets || sets.length === 0) throw mismatch();
    firstOf[k] = postings.count;
    for (const set of sets) {
      if (set.type !== RRType.A && set.type !== RRType.AAAA) continue;
      for (const rd of set.rdata) postings.push(rd);
    }
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  firstOf[snapshot.owners.length] = postings.count;
  if (apex < 0) throw mismatch();
  const byAddress = yield* postings.table(snapshot.owners.length, (k) => firstOf[k], (k) => firstOf[k + 1], slicer);
  const index = { owners: snapshot.owners.length, apex, byAddress };
  addressIndexes.set(zone, index);
  return index;
}

/**
 * An address index packed in typed arrays: no object per address. (A Map of a 1,000,000-record
 * zone's addresses holds about a million objects and rehashes for tens of milliseconds as it
 * grows: the serving thread would stop for the rehashes and for the garbage collector to trace
 * them at every major collection.) Read-only Map semantics; `get` returns a fresh array.
 */
class AddressTable implements ReadonlyMap<string, readonly number[]> {
  constructor(
    /** Address bytes: posting r's at [ends[r - 1], ends[r]). */
    private readonly bytes: Buffer,
    private readonly ends: Uint32Array,
    /** Open addressing, linear probing: distinct address + 1, 0 when empty. */
    private readonly table: Uint32Array,
    /** Per distinct address: the posting holding its bytes, its hash, its first list node + 1. */
    private readonly rep: Uint32Array,
    private readonly hashes: Uint32Array,
    private readonly head: Uint32Array,
    /** Per list node: an owner position (ascending along a list) and the next node + 1 (0: the end). */
    private readonly pos: Uint32Array,
    private readonly next: Uint32Array,
    readonly size: number,
  ) {}

  private find(key: string): number {
    const mask = this.table.length - 1;
    const h = keyHash(key);
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const e = this.table[slot];
      if (e === 0) return -1;
      const d = e - 1;
      if (this.hashes[d] !== h) continue;
      const r = this.rep[d];
      const start = r === 0 ? 0 : this.ends[r - 1];
      if (this.ends[r] - start !== key.length) continue;
      let j = 0;
      while (j < key.length && this.bytes[start + j] === key.charCodeAt(j)) j++;
      if (j === key.length) return d;
    }
  }

  private list(d: number): number[] {
    const out: number[] = [];
    for (let n = this.head[d]; n !== 0; n = this.next[n - 1]) out.push(this.pos[n - 1]);
    return out;
  }

  private keyOf(d: number): string {
    const r = this.rep[d];
    return this.bytes.toString('latin1', r === 0 ? 0 : this.ends[r - 1], this.ends[r]);
  }

  get(key: string): readonly number[] | undefined {
    const d = this.find(key);
    return d < 0 ? undefined : this.list(d);
  }

  has(key: string): boolean {
    return this.find(key) >= 0;
  }

  *entries(): MapIterator<[string, readonly number[]]> {
    for (let d = 0; d < this.size; d++) yield [this.keyOf(d), this.list(d)];
  }

  *keys(): MapIterator<string> {
    for (let d = 0; d < this.size; d++) yield this.keyOf(d);
  }

  *values(): MapIterator<readonly number[]> {
    for (let d = 0; d < this.size; d++) yield this.list(d);
  }

  [Symbol.iterator](): MapIterator<[string, readonly number[]]> {
    return this.entries();
  }

  forEach(fn: (value: readonly number[], key: string, map: ReadonlyMap<string, readonly number[]>) => void, thisArg?: unknown): void {
    for (let d = 0; d < this.size; d++) fn.call(thisArg, this.list(d), this.keyOf(d), this);
  }
}

/**
 * Collects (address bytes, owner) postings, then builds an {@link AddressTable} in slices: the
 * postings are added owner by owner in canonical order (`add` with positions ascending).
 */
class AddressPostings {
  readonly bytes = new Bytes();
  ends = new Uint32Array(1024);
  count = 0;

  /** Records the address `rdata` (4 or 16 bytes) of the owner being rendered. */
  push(rdata: Uint8Array): void {
    this.bytes.push(rdata);
    this.end();
  }

  /** As {@link push}, the address being `src[start, end)`. */
  pushRange(src: Buffer, start: number, end: number): void {
    this.bytes.pushRange(src, start, end);
    this.end();
  }

  private end(): void {
    if (this.count === this.ends.length) {
      const next = new Uint32Array(this.ends.length * 2);
      next.set(this.ends);
      this.ends = next;
    }
    this.ends[this.count++] = this.bytes.length;
  }

  /**
   * The table: `owners` owners in canonical order, owner k's postings [firstOf(k), endOf(k)).
   * Yields when `slicer` says so.
   */
  *table(owners: number, firstOf: (k: number) => number, endOf: (k: number) => number, slicer: Slicer): Generator<void, AddressTable> {
    const n = this.count;
    let tableSize = 2;
    while (tableSize < 2 * n) tableSize *= 2;
    const mask = tableSize - 1;
    const bytes = this.bytes.buf;
    const ends = this.ends;
    const table = new Uint32Array(tableSize);
    const rep = new Uint32Array(n);
    const hashes = new Uint32Array(n);
    const head = new Uint32Array(n);
    const tail = new Uint32Array(n);
    const pos = new Uint32Array(n);
    const next = new Uint32Array(n);
    let distinct = 0;
    let nodes = 0;
    for (let k = 0; k < owners; k++) {
      for (let r = firstOf(k), end = endOf(k); r < end; r++) {
        const start = r === 0 ? 0 : ends[r - 1];
        const len = ends[r] - start;
        const h = bytesHash(bytes, start, ends[r]);
        let d = -1;
        let slot = h & mask;
        for (; ; slot = (slot + 1) & mask) {
          const e = table[slot];
          if (e === 0) break;
          if (hashes[e - 1] !== h) continue;
          const q = rep[e - 1];
          const qs = q === 0 ? 0 : ends[q - 1];
          if (ends[q] - qs !== len) continue;
          let j = 0;
          while (j < len && bytes[start + j] === bytes[qs + j]) j++;
          if (j === len) {
            d = e - 1;
            break;
          }
        }
        if (d < 0) {
          d = distinct++;
          table[slot] = d + 1;
          rep[d] = r;
          hashes[d] = h;
        } else if (pos[tail[d] - 1] === k) {
          continue; // the owner carries the address twice
        }
        pos[nodes] = k;
        if (head[d] === 0) head[d] = nodes + 1;
        else next[tail[d] - 1] = nodes + 1;
        tail[d] = nodes + 1;
        nodes++;
      }
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
    return new AddressTable(bytes.subarray(0, this.bytes.length), ends.subarray(0, n), table, rep, hashes, head, pos, next, distinct);
  }
}

// ------------------------------------------------------------------------------ full build -----

/**
 * Nodes from the parser process (../zone/zone-transfer.ts): their packed layout (nodes in
 * canonical order, records read in place) and the size of their RDATA, so that a snapshot neither
 * sorts, nor decodes most nodes, nor grows its buffers on the serving thread.
 */
interface WorkerNodes {
  readonly rdataBytes: number;
  readonly raw: PackedLayout;
  keyAt(node: number): string;
  setsAt(node: number): RRset[];
}

/** The packed layout of a zone from the parser (../zone/zone-transfer.ts PackedNodes.raw). */
interface PackedLayout {
  readonly names: Uint8Array;
  readonly nameEnds: Uint32Array;
  readonly canonical: Uint32Array;
  readonly nodeStarts: Uint32Array;
  readonly index: Uint32Array;
  readonly rdata: Buffer;
}

/** Whether node `node`'s key in `raw` is `key` (compared in place). */
function keyIs(raw: PackedLayout, node: number, key: string): boolean {
  const start = node === 0 ? 0 : raw.nameEnds[node - 1];
  if (raw.nameEnds[node] - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (raw.names[start + i] !== key.charCodeAt(i)) return false;
  return true;
}

/** Scratch addresses handed to an overlay's lookups (they read the address during the call only). */
const SCRATCH = { 4: Buffer.alloc(4), 16: Buffer.alloc(16) } as Record<number, Buffer>;

/**
 * {@link renderNode} for a packed node, straight from its arrays, when its served form is its
 * stored form: RRsets in ascending type order, RDATA of each in strictly ascending byte order
 * (sorted, no duplicate), and nothing the overlay changes (no serial bump on its SOA, no
 * replacement or TTL cap on its addresses). Returns false, having pushed nothing, otherwise.
 */
function renderPacked(raw: PackedLayout, node: number, overlay: AddressOverlay | null | undefined, zoneOf: () => string, cols: Columns): boolean {
  const { index, rdata } = raw;
  const first = raw.nodeStarts[node] + 1;
  const sets = index[first - 1];
  let prevType = -1;
  for (let s = 0, p = first; s < sets; s++) {
    const type = index[p];
    const ttl = index[p + 1];
    const n = index[p + 2];
    if (type <= prevType) return false;
    prevType = type;
    if (overlay && type === RRType.SOA) {
      if ((overlay.serialBump?.(zoneOf()) ?? 0) !== 0) return false;
    } else if (overlay && (type === RRType.A || type === RRType.AAAA)) {
      for (let k = 0, start = index[p + 3]; k < n; k++) {
        const end = index[p + 4 + k];
        const addr = SCRATCH[end - start];
        if (addr) {
          rdata.copy(addr, 0, start, end);
          if (overlay.replacement(addr, zoneOf())) return false;
          const cap = overlay.ttlCapFor?.(addr);
          if (cap !== undefined && cap < ttl) return false;
        }
        start = end;
      }
    }
    // served RDATA are sorted and without duplicates (serveSet and renderNode alike)
    for (let k = 1, prevStart = index[p + 3]; k < n; k++) {
      const prevEnd = index[p + 3 + k];
      if (rdata.compare(rdata, prevEnd, index[p + 4 + k], prevStart, prevEnd) >= 0) return false;
      prevStart = prevEnd;
    }
    p += 4 + n;
  }
  for (let s = 0, p = first; s < sets; s++) {
    const type = index[p];
    const ttl = index[p + 1];
    const n = index[p + 2];
    for (let k = 0, start = index[p + 3]; k < n; k++) {
      const end = index[p + 4 + k];
      cols.pushRange(type, ttl, rdata, start, end);
      start = end;
    }
    p += 4 + n;
  }
  return true;
}

/**
 * The snapshot as a step generator: yields whenever `slicer` says the slice is used up, returns
 * the snapshot. See {@link snapshotZone} for the contract.
 */
export function* snapshotSteps(
  zone: Zone,
  overlay: AddressOverlay | null | undefined,
  opts: SnapshotOptions,
  slicer: Slicer,
): Generator<void, ZoneSnapshot> {
  const fromWorker = zone.nodes as Partial<WorkerNodes>;
  const cols = new Columns(zone.recordCount + 1, fromWorker.rdataBytes);
  /** A zone from the parser: the owners' keys in canonical order. */
  const owners = new OwnerListBuilder(zone.nodes.size);
  /** Any other zone: the owners' keys in zone order (sorted below). */
  const ownerKeys: string[] = [];
  /** Per owner (in zone order): its first record in `cols`; one more entry for the end. */
  const firstOf: number[] = [];
  /** The index being built: the base addresses of each owner, in zone order (owner i's from postingsOf[i]). */
  const postings = opts.index && !addressIndexes.has(zone) ? new AddressPostings() : null;
  const postingsOf: number[] = [];
  let apex = -1;
  const push: Push = (type, ttl, rdata) => cols.push(type, ttl, rdata);
  // a zone from the parser process comes with its nodes in canonical order: no sort here, and
  // most nodes are copied from its arrays as they are (no RRset objects)
  const raw = fromWorker.raw;
  if (raw) {
    const packed = fromWorker as WorkerNodes;
    const order = raw.canonical;
    // the owners' keys are the parser's bytes, lent (no string per owner)
    const names = Buffer.from(raw.names.buffer, raw.names.byteOffset, raw.names.byteLength);
    for (let i = 0; i < order.length; i++) {
      const node = order[i];
      const first = raw.nodeStarts[node] + 1;
      const sets = raw.index[first - 1];
      if (sets === 0) continue;
      let zoneKey: string | undefined;
      const zoneOf = () => (zoneKey ??= opts.zones ? (opts.zones.find(packed.keyAt(node))?.origin ?? '') : zone.origin);
      if (postings) {
        postingsOf.push(postings.count);
        for (let s = 0, p = first; s < sets; s++) {
          const type = raw.index[p];
          const n = raw.index[p + 2];
          if (type === RRType.A || type === RRType.AAAA) {
            for (let k = 0, start = raw.index[p + 3]; k < n; k++) {
              const end = raw.index[p + 4 + k];
              postings.pushRange(raw.rdata, start, end);
              start = end;
            }
          }
          p += 4 + n;
        }
      }
      if (keyIs(raw, node, zone.origin)) apex = owners.size;
      owners.pushRange(names, node === 0 ? 0 : raw.nameEnds[node - 1], raw.nameEnds[node]);
      firstOf.push(cols.count);
      if (!renderPacked(raw, node, overlay, zoneOf, cols)) renderNode(packed.setsAt(node), overlay, zoneOf, push);
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
  }
  for (const [owner, sets] of raw ? [] : zone.nodes) {
    if (sets.length === 0) continue;
    let zoneKey: string | undefined;
    const zoneOf = () => (zoneKey ??= opts.zones ? (opts.zones.find(owner)?.origin ?? '') : zone.origin);
    if (postings) {
      postingsOf.push(postings.count);
      for (const set of sets) {
        if (set.type !== RRType.A && set.type !== RRType.AAAA) continue;
        for (const rd of set.rdata) postings.push(rd);
      }
    }
    if (owner === zone.origin) apex = ownerKeys.length;
    ownerKeys.push(owner);
    firstOf.push(cols.count);
    renderNode(sets, overlay, zoneOf, push);
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  firstOf.push(cols.count);
  postingsOf.push(postings?.count ?? 0);

  const idx = new Uint32Array(raw ? owners.size : ownerKeys.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  let order: Uint32Array = idx;
  let sortedOwners: OwnerList;
  if (raw) {
    sortedOwners = owners.build();
  } else {
    const keys: string[] = new Array(ownerKeys.length);
    for (let i = 0; i < ownerKeys.length; i++) {
      keys[i] = canonicalSortKey(ownerKeys[i]);
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
    order = yield* sortIndices(idx, keys, slicer);
    const sorted = new OwnerListBuilder(order.length);
    for (let k = 0; k < order.length; k++) sorted.push(ownerKeys[order[k]]);
    sortedOwners = sorted.build();
  }

  const count = cols.count;
  // already in canonical order (a zone from the parser process): the columns are the snapshot's
  const identity = !!raw;
  const ownerIndex = new Uint32Array(count);
  const types = identity ? cols.types.subarray(0, count) : new Uint16Array(count);
  const ttls = identity ? cols.ttls.subarray(0, count) : new Uint32Array(count);
  const rdataEnds = identity ? cols.ends.subarray(0, count) : new Uint32Array(count);
  const rdata = identity ? cols.data.buf.subarray(0, cols.data.length) : Buffer.allocUnsafe(cols.data.length);
  const packed: Packed = { owners: sortedOwners, ownerIndex, types, ttls, rdataEnds, rdata };
  const leaves = Buffer.allocUnsafe(32 * Math.ceil(order.length / DIGEST_LEAF));
  let o = 0;
  let ro = 0;
  let leafStart = 0;
  let soa: SnapshotRecord | undefined;
  for (let k = 0; k < order.length; k++) {
    const src = order[k];
    const apexHere = src === apex;
    const from = firstOf[src];
    const to = firstOf[src + 1];
    const start = from === 0 ? 0 : cols.ends[from - 1];
    const end = cols.ends[to - 1];
    if (!identity) cols.data.buf.copy(rdata, ro, start, end);
    for (let r = from; r < to; r++) {
      ownerIndex[o] = k;
      if (!identity) {
        types[o] = cols.types[r];
        ttls[o] = cols.ttls[r];
        rdataEnds[o] = ro + (cols.ends[r] - start);
      }
      if (types[o] === RRType.SOA && apexHere) {
        const rs = o === 0 ? 0 : rdataEnds[o - 1];
        soa = { owner: zone.origin, type: RRType.SOA, ttl: ttls[o], rdata: Buffer.from(rdata.subarray(rs, rdataEnds[o])) };
      }
      o++;
    }
    ro += end - start;
    if ((k + 1) % DIGEST_LEAF === 0 || k + 1 === order.length) {
      hashLeaf(packed, Math.floor(k / DIGEST_LEAF), leafStart, o, leaves);
      leafStart = o;
    }
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  if (!soa) throw new Error(`zone ${zone.origin} has no SOA record`);
  const tree = yield* treeAbove(leaves, slicer);
  if (postings) {
    const byAddress = yield* postings.table(order.length, (k) => postingsOf[order[k]], (k) => postingsOf[order[k] + 1], slicer);
    let apexAt = -1;
    for (let k = 0; k < order.length && apexAt < 0; k++) if (order[k] === apex) apexAt = k;
    addressIndexes.set(zone, { owners: order.length, apex: apexAt, byAddress });
  }
  return sealed(zone.origin, soa, { count, owners: sortedOwners, ownerIndex, types, ttls, rdataEnds, rdata }, tree);
}

/**
 * Every record `zone` serves with `overlay` applied, as {@link lookup} answers it for that owner
 * and type, in canonical order (see the module comment). Synchronous: a 100,000-record zone takes
 * about 300 ms, 1,000,000 about 4 s; use {@link snapshotZoneAsync} on the serving thread.
 */
export function snapshotZone(zone: Zone, overlay?: AddressOverlay | null, opts: SnapshotOptions = {}): ZoneSnapshot {
  return runSync(snapshotSteps(zone, overlay, opts, new Slicer(Infinity)));
}

/** {@link snapshotZone} in slices of at most about `sliceMs` (default 4), the event loop served between them. */
export function snapshotZoneAsync(
  zone: Zone,
  overlay?: AddressOverlay | null,
  opts: SnapshotOptions & SliceOptions = {},
): Promise<ZoneSnapshot> {
  return runSliced(snapshotSteps(zone, overlay, opts, new Slicer(opts.sliceMs ?? 4)), opts.signal);
}

/** Record `i` of a snapshot (its RDATA a view on the snapshot's buffer). */
export function snapshotRecord(s: ZoneSnapshot, i: number): SnapshotRecord {
  const start = i === 0 ? 0 : s.rdataEnds[i - 1];
  return { owner: s.owners.at(s.ownerIndex[i]), type: s.types[i], ttl: s.ttls[i], rdata: s.rdata.subarray(start, s.rdataEnds[i]) };
}

/** Every record of a snapshot, in its order. */
export function* snapshotRecords(s: ZoneSnapshot): Generator<SnapshotRecord> {
  for (let i = 0; i < s.count; i++) yield snapshotRecord(s, i);
}

// ------------------------------------------------------------------------------ step -----------

/** An overlay that lists the base addresses it changes (core/overlay.ts CompiledOverlay). */
export interface TouchingOverlay extends AddressOverlay {
  /** Every base address (latin1 of its 4 or 16 bytes) whose records this overlay can change. */
  touched(): Iterable<string>;
  /**
   * The base addresses whose served form may differ from what `prev` gives (a superset of the
   * real ones); without it, every address either overlay touches counts as changed.
   */
  changedSince?(prev: TouchingOverlay | null | undefined): Iterable<string>;
}

/** Whether `overlay` can be stepped from or to ({@link nextSnapshot}): none, or one that lists what it touches. */
export function isTouchingOverlay(overlay: AddressOverlay | null | undefined): overlay is TouchingOverlay | null | undefined {
  return !overlay || typeof (overlay as Partial<TouchingOverlay>).touched === 'function';
}

/** A new snapshot and the change to it, as the journal records it. */
export interface SnapshotStep {
  snapshot: ZoneSnapshot;
  /** What diffSnapshots(prev, snapshot) gives (../xfr/journal.ts). */
  diff: ZoneDiff;
}

/** Records copied per slice check. */
const COPY_CHUNK = 1 << 16;

/**
 * {@link nextSnapshot} as a step generator (yields when `slicer` says so).
 */
export function* nextSnapshotSteps(
  prev: ZoneSnapshot,
  zone: Zone,
  from: TouchingOverlay | null | undefined,
  to: TouchingOverlay | null | undefined,
  opts: SnapshotOptions,
  slicer: Slicer,
): Generator<void, SnapshotStep> {
  if (prev.origin !== zone.origin) throw new Error(`step of ${prev.origin} with zone ${zone.origin}`);
  const index = yield* addressIndexSteps(zone, prev, slicer);
  // the owners to render again, canonical positions ascending: those carrying an address whose
  // served form may change, and the apex when the zone's serial bump changes
  const marked: number[] = [];
  const bumpOf = (ov: TouchingOverlay | null | undefined) => ov?.serialBump?.(zone.origin) ?? 0;
  if (bumpOf(from) !== bumpOf(to)) marked.push(index.apex);
  const mark = (key: string) => {
    const l = index.byAddress.get(key);
    if (l) for (let i = 0; i < l.length; i++) marked.push(l[i]);
  };
  if (to?.changedSince) {
    for (const key of to.changedSince(from)) mark(key);
  } else {
    for (const ov of [from, to]) if (ov) for (const key of ov.touched()) mark(key);
  }
  if (marked.length === 0) {
    // nothing this zone serves changes: the same snapshot, an empty diff
    return { snapshot: prev, diff: { fromSerial: prev.serial, toSerial: prev.serial, fromSoa: prev.soa, toSoa: prev.soa, deleted: [], added: [], toDigest: prev.digest, bytes: 2 * recordSize(prev.soa) } };
  }
  if (!marked.includes(index.apex)) marked.push(index.apex);
  const sorted = Uint32Array.from(marked).sort();
  const touched: number[] = [];
  for (const k of sorted) if (touched.length === 0 || touched[touched.length - 1] !== k) touched.push(k);

  // render them: owner i's new records are fresh[freshStart[i], freshStart[i + 1])
  const fresh = new Columns();
  const push: Push = (type, ttl, rdata) => fresh.push(type, ttl, rdata);
  const freshStart = new Uint32Array(touched.length + 1);
  const oldStart = new Uint32Array(touched.length);
  const oldEnd = new Uint32Array(touched.length);
  let count = prev.count;
  let bytes = prev.rdata.length;
  for (let i = 0; i < touched.length; i++) {
    const k = touched[i];
    const owner = prev.owners.at(k);
    const sets = zone.nodes.get(owner);
    if (!sets || sets.length === 0) throw new Error(`zone ${zone.origin} is not the zone of its snapshot (${owner})`);
    freshStart[i] = fresh.count;
    let zoneKey: string | undefined;
    renderNode(sets, to, () => (zoneKey ??= opts.zones ? (opts.zones.find(owner)?.origin ?? '') : zone.origin), push);
    const a = firstRecordOf(prev.ownerIndex, prev.count, k);
    const b = firstRecordOf(prev.ownerIndex, prev.count, k + 1);
    oldStart[i] = a;
    oldEnd[i] = b;
    count += fresh.count - freshStart[i] - (b - a);
    bytes += endOf(fresh.ends, fresh.count) - endOf(fresh.ends, freshStart[i]) - (endOf(prev.rdataEnds, b) - endOf(prev.rdataEnds, a));
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
  }
  freshStart[touched.length] = fresh.count;

  // assemble
  /** Whether every rendered owner has as many records as before, of the same types and RDATA lengths. */
  let sameShape = count === prev.count && bytes === prev.rdata.length;
  for (let i = 0; i < touched.length && sameShape; i++) {
    if (freshStart[i + 1] - freshStart[i] !== oldEnd[i] - oldStart[i]) sameShape = false;
    for (let f = freshStart[i], x = oldStart[i]; f < freshStart[i + 1] && sameShape; f++, x++) {
      if (fresh.types[f] !== prev.types[x] || fresh.ends[f] - endOf(fresh.ends, f) !== prev.rdataEnds[x] - endOf(prev.rdataEnds, x)) sameShape = false;
    }
  }
  // the same shape (addresses replaced by addresses, TTLs changed): owners, types and RDATA
  // offsets are shared with `prev` (immutable), TTLs and RDATA copied and patched
  const ownerIndex = sameShape ? prev.ownerIndex : new Uint32Array(count);
  const types = sameShape ? prev.types : new Uint16Array(count);
  const rdataEnds = sameShape ? prev.rdataEnds : new Uint32Array(count);
  const ttls = new Uint32Array(count);
  const rdata = Buffer.allocUnsafe(bytes);
  /** Per rendered owner: its records in the new snapshot. */
  const newStart = new Uint32Array(touched.length);
  const newEnd = new Uint32Array(touched.length);
  let o = 0;
  let ro = 0;
  /** Copies records [r, end) of `prev` to `o`, `ro` on. */
  function* copy(r: number, end: number): Generator<void> {
    while (r < end) {
      const e = Math.min(end, r + COPY_CHUNK);
      const rs = endOf(prev.rdataEnds, r);
      const shift = ro - rs;
      if (!sameShape) {
        ownerIndex.set(prev.ownerIndex.subarray(r, e), o);
        types.set(prev.types.subarray(r, e), o);
        if (shift === 0) rdataEnds.set(prev.rdataEnds.subarray(r, e), o);
        else for (let x = r; x < e; x++) rdataEnds[o + x - r] = prev.rdataEnds[x] + shift;
      }
      ttls.set(prev.ttls.subarray(r, e), o);
      const re = prev.rdataEnds[e - 1];
      rdata.set(prev.rdata.subarray(rs, re), ro);
      ro += re - rs;
      o += e - r;
      r = e;
      if (slicer.due(256)) {
        yield;
        slicer.reset();
      }
    }
  }
  if (sameShape) {
    // everything copied in large runs, then the rendered owners' TTLs and RDATA written over
    yield* copy(0, prev.count);
    for (let i = 0; i < touched.length; i++) {
      newStart[i] = oldStart[i];
      newEnd[i] = oldEnd[i];
      let at = endOf(prev.rdataEnds, oldStart[i]);
      for (let f = freshStart[i], x = oldStart[i]; f < freshStart[i + 1]; f++, x++) {
        ttls[x] = fresh.ttls[f];
        for (let j = endOf(fresh.ends, f); j < fresh.ends[f]; j++) rdata[at++] = fresh.data.buf[j];
      }
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
  } else {
    // copied runs between the rendered owners, whose records are written in between
    let r = 0;
    for (let i = 0; i < touched.length; i++) {
      yield* copy(r, oldStart[i]);
      newStart[i] = o;
      const fs = endOf(fresh.ends, freshStart[i]);
      for (let f = freshStart[i]; f < freshStart[i + 1]; f++) {
        ownerIndex[o] = touched[i];
        types[o] = fresh.types[f];
        ttls[o] = fresh.ttls[f];
        rdataEnds[o] = ro + fresh.ends[f] - fs;
        o++;
      }
      const fe = endOf(fresh.ends, freshStart[i + 1]);
      rdata.set(fresh.data.buf.subarray(fs, fe), ro);
      ro += fe - fs;
      newEnd[i] = o;
      r = oldEnd[i];
      if (slicer.due()) {
        yield;
        slicer.reset();
      }
    }
    yield* copy(r, prev.count);
  }

  const packed: Packed = { owners: prev.owners, ownerIndex, types, ttls, rdataEnds, rdata };
  let soa: SnapshotRecord | undefined;
  const ai = touched.indexOf(index.apex);
  for (let x = newStart[ai]; x < newEnd[ai]; x++) {
    if (types[x] === RRType.SOA) soa = { owner: zone.origin, type: RRType.SOA, ttl: ttls[x], rdata: Buffer.from(rdata.subarray(endOf(rdataEnds, x), rdataEnds[x])) };
  }
  if (!soa) throw new Error(`zone ${zone.origin} has no SOA record`);

  // digest: the leaves of the rendered owners hashed again, then their ancestors
  const prevTree = digestTrees.get(prev);
  let tree: Buffer[];
  const leafOf = (leaves: Buffer, b: number) =>
    hashLeaf(packed, b, firstRecordOf(ownerIndex, count, b * DIGEST_LEAF), firstRecordOf(ownerIndex, count, (b + 1) * DIGEST_LEAF), leaves);
  if (prevTree) {
    tree = prevTree.map((level) => Buffer.from(level));
    let dirty: number[] = [];
    for (const k of touched) {
      const b = Math.floor(k / DIGEST_LEAF);
      if (dirty.length > 0 && dirty[dirty.length - 1] === b) continue;
      leafOf(tree[0], b);
      dirty.push(b);
      if (slicer.due(4)) {
        yield;
        slicer.reset();
      }
    }
    for (let l = 1; l < tree.length; l++) {
      const up: number[] = [];
      for (const b of dirty) {
        const j = Math.floor(b / DIGEST_FANOUT);
        if (up.length > 0 && up[up.length - 1] === j) continue;
        hashInner(tree[l - 1], tree[l], j);
        up.push(j);
      }
      dirty = up;
    }
  } else {
    const leaves = Buffer.allocUnsafe(32 * Math.ceil(prev.owners.length / DIGEST_LEAF));
    for (let b = 0; b < leaves.length / 32; b++) {
      leafOf(leaves, b);
      if (slicer.due(4)) {
        yield;
        slicer.reset();
      }
    }
    tree = yield* treeAbove(leaves, slicer);
  }
  const snapshot = sealed(zone.origin, soa, { count, owners: prev.owners, ownerIndex, types, ttls, rdataEnds, rdata }, tree);

  // the diff: the rendered owners' old records against their new ones, as journal.ts diffSteps
  const deleted: SnapshotRecord[] = [];
  const added: SnapshotRecord[] = [];
  let diffBytes = recordSize(prev.soa) + recordSize(soa);
  const take = (s: ZoneSnapshot, x: number, into: SnapshotRecord[]) => {
    if (s.types[x] === RRType.SOA) return;
    const rec = snapshotRecord(s, x);
    into.push({ ...rec, rdata: Buffer.from(rec.rdata) });
    diffBytes += recordSize(rec);
  };
  for (let i = 0; i < touched.length; i++) {
    if (slicer.due()) {
      yield;
      slicer.reset();
    }
    let x = oldStart[i];
    let y = newStart[i];
    const xe = oldEnd[i];
    const ye = newEnd[i];
    while (x < xe && y < ye) {
      let c = prev.types[x] - types[y];
      if (c === 0) c = prev.rdata.compare(rdata, endOf(rdataEnds, y), rdataEnds[y], endOf(prev.rdataEnds, x), prev.rdataEnds[x]);
      if (c < 0) take(prev, x++, deleted);
      else if (c > 0) take(snapshot, y++, added);
      else {
        if (prev.ttls[x] !== ttls[y]) {
          take(prev, x, deleted);
          take(snapshot, y, added);
        }
        x++;
        y++;
      }
    }
    while (x < xe) take(prev, x++, deleted);
    while (y < ye) take(snapshot, y++, added);
  }
  return {
    snapshot,
    diff: {
      fromSerial: prev.serial, toSerial: snapshot.serial, fromSoa: prev.soa, toSoa: soa,
      deleted, added, toDigest: snapshot.digest, bytes: diffBytes,
    },
  };
}

/** Estimated wire size of a record, as journal.ts recordBytes counts it. */
function recordSize(r: SnapshotRecord): number {
  return r.owner.length + 1 + 10 + r.rdata.length;
}

/**
 * The snapshot of `zone` with overlay `to`, and the diff from `prev`, given that `prev` is the
 * snapshot of the same zone object with overlay `from` (snapshotZone(zone, from, opts)): the
 * result is identical to snapshotZone(zone, to, opts) (records, order, digest) and the diff to
 * diffSnapshots(prev, it). Only the apex and the owners whose A/AAAA RRsets carry an address
 * `from` or `to` touches are rendered again; everything else is copied from `prev`. The address
 * index is built first when the zone has none (pass `index` to the full snapshot to have it
 * ready). Anything else (another zone object, an overlay without `touched`) needs a full snapshot.
 */
export function nextSnapshot(
  prev: ZoneSnapshot,
  zone: Zone,
  from: TouchingOverlay | null | undefined,
  to: TouchingOverlay | null | undefined,
  opts: SnapshotOptions = {},
): SnapshotStep {
  return runSync(nextSnapshotSteps(prev, zone, from, to, opts, new Slicer(Infinity)));
}

/** {@link nextSnapshot} in slices of about `sliceMs` (default 4). */
export function nextSnapshotAsync(
  prev: ZoneSnapshot,
  zone: Zone,
  from: TouchingOverlay | null | undefined,
  to: TouchingOverlay | null | undefined,
  opts: SnapshotOptions & SliceOptions = {},
): Promise<SnapshotStep> {
  return runSliced(nextSnapshotSteps(prev, zone, from, to, opts, new Slicer(opts.sliceMs ?? 4)), opts.signal);
}

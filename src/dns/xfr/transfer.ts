/**
 * Zone transfer responses as a sequence of DNS messages (TCP), from a zone snapshot
 * (../engine/snapshot.ts) and the journal's diffs (journal.ts):
 * - AXFR (RFC 5936): the SOA, every other record, the SOA again.
 * - IXFR (RFC 1995 4): the current SOA; per version: the old SOA, the deleted records, the new
 *   SOA, the added records; the current SOA again. A client already at our serial gets the single
 *   SOA; a client the journal does not reach (or one ahead of us) gets the whole zone in AXFR form
 *   (never an error rcode).
 *
 * Every message: the request's ID, QR, opcode QUERY, AA, RD copied, rcode NOERROR, the question
 * in the first message only (RFC 5936 2.2.1 allows the later ones to omit it), records in the
 * answer section, names compressed by the shared codec (../wire/message.ts). Messages are filled
 * up to `maxMessageSize - reserve` bytes (default 16 KiB, like BIND and Knot); `reserve` leaves
 * room for the TSIG record the caller appends to each message. A record too large for that goes
 * alone in a message of up to 65,535 - reserve bytes.
 *
 * The generators encode one message per `next()`: whole zones straight from the snapshot's
 * columns (a 16 KiB message, about 450 records, in about 0.3 ms), IXFR versions through the codec;
 * the caller sends it and awaits before asking for the next, so a transfer never holds the event
 * loop for long ({@link paced} does the awaiting). The snapshot
 * and the diffs are immutable: a transfer started on one version finishes on it.
 */
import { keyToLabels, type Labels } from '../name.js';
import { RRType } from '../wire/constants.js';
import { encodeMessage, type EdnsInput, type MessageInput, type RecordInput } from '../wire/message.js';
import { serveWaiting, snapshotRecord, type SnapshotRecord, type ZoneSnapshot } from '../engine/snapshot.js';
import type { ZoneDiff } from './journal.js';

/** Largest DNS message over TCP. */
export const MAX_MESSAGE_SIZE = 65535;
/** Default size of a transfer message (TSIG reserve included). */
export const DEFAULT_TRANSFER_MESSAGE_SIZE = 16384;

export interface TransferOptions {
  /** ID of the request, copied to every message. */
  id: number;
  /** The request's question, echoed in the first message (labels keep the request's letter case). */
  question: { name: string | Labels; type: number; class?: number };
  /** RD of the request (copied, RFC 5936 2.2.1). */
  rd?: boolean;
  /** Target size of one message, `reserve` included: 512 to 65,535 (default 16,384). */
  maxMessageSize?: number;
  /** Bytes left free in every message for a record the caller appends (a TSIG; default 0). */
  reserve?: number;
  /** An OPT record for every message (when the request had EDNS). */
  edns?: EdnsInput;
  /**
   * IXFR only: when the versions hold more records than this times the zone, the whole zone is
   * sent instead (smaller; BIND's max-ixfr-ratio). Default 1.
   */
  maxIxfrRatio?: number;
}

/** A transfer that cannot be encoded (a record that does not fit in a message at all). */
export class TransferError extends Error {
  override name = 'TransferError';
}

/** Which IXFR response a client gets. */
export type IxfrForm =
  /** The client has our serial: the single current SOA. */
  | 'current'
  /** The journal's versions from the client's serial to ours. */
  | 'incremental'
  /** The whole zone in AXFR form. */
  | 'full';

/** Minimal encoded RDATA of the types the codec compresses (a name may shrink to a pointer). */
const COMPRESSED_MIN = new Map<number, number>([
  [RRType.NS, 2], [RRType.CNAME, 2], [RRType.PTR, 2], [RRType.MX, 4], [RRType.SOA, 22],
]);

/** A lower bound of a record's encoded size (owner at least 1 byte, fixed fields, RDATA). */
function minSize(r: RecordInput): number {
  const m = COMPRESSED_MIN.get(r.type);
  return 11 + (m === undefined ? r.rdata.length : Math.min(r.rdata.length, m));
}

/** The labels of an owner key: views on one buffer when the key has no escapes (most keys). */
function ownerLabels(key: string): Labels {
  if (key.indexOf('\\') >= 0) return keyToLabels(key);
  if (key === '.') return [];
  const b = Buffer.from(key, 'latin1');
  const out: Labels = [];
  let start = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x2e) {
      out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/** Snapshot records as codec records; each gets its own labels array, so the codec packs record by record. */
function* wireRecords(records: Iterable<SnapshotRecord>): Generator<RecordInput> {
  let owner = '';
  let labels: Labels = [];
  for (const r of records) {
    if (r.owner !== owner) {
      owner = r.owner;
      labels = ownerLabels(owner);
    }
    yield { name: labels.slice(), type: r.type, ttl: r.ttl, rdata: r.rdata };
  }
}

/** The AXFR sequence of a snapshot: SOA, the other records, SOA. */
function* axfrSequence(s: ZoneSnapshot): Generator<SnapshotRecord> {
  yield s.soa;
  for (let i = 0; i < s.count; i++) {
    if (s.types[i] === RRType.SOA && s.owners.is(s.ownerIndex[i], s.origin)) continue;
    yield snapshotRecord(s, i);
  }
  yield s.soa;
}

/** The IXFR sequence (RFC 1995 4): current SOA, per version old SOA, deletions, new SOA, additions; current SOA. */
function* ixfrSequence(s: ZoneSnapshot, diffs: readonly ZoneDiff[]): Generator<SnapshotRecord> {
  yield s.soa;
  for (const d of diffs) {
    yield d.fromSoa;
    yield* d.deleted;
    yield d.toSoa;
    yield* d.added;
  }
  yield s.soa;
}

/**
 * Packs records into messages: each holds as many records as fit in `maxMessageSize - reserve`
 * (the codec fills it; records it left out start the next message).
 */
function* pack(records: Iterable<SnapshotRecord>, opts: TransferOptions): Generator<Buffer, void, undefined> {
  const { limit, hardLimit } = limits(opts);
  const header: MessageInput = {
    id: opts.id,
    opcode: 0,
    rcode: 0,
    flags: { qr: true, aa: true, rd: opts.rd ?? false },
    edns: opts.edns,
  };
  const question = [opts.question];
  const source = wireRecords(records)[Symbol.iterator]();
  let pending: RecordInput[] = [];
  let head = 0;
  /** Sum of minSize over pending[head..]. */
  let est = 0;
  let exhausted = false;
  let first = true;
  for (;;) {
    // offer the codec more records than can fit, so that it fills the message
    while (!exhausted && est <= limit) {
      const n = source.next();
      if (n.done) exhausted = true;
      else {
        pending.push(n.value);
        est += minSize(n.value);
      }
    }
    if (head === pending.length) return;
    const q = first ? question : [];
    let msg = encodeMessage({ ...header, question: q, answer: pending.slice(head) }, { maxSize: limit, truncate: true });
    let n = msg.readUInt16BE(6);
    if (n === 0) {
      // the next record alone is over the target: a message of its own, up to 65,535 bytes
      try {
        msg = encodeMessage({ ...header, question: q, answer: [pending[head]] }, { maxSize: hardLimit });
      } catch (e) {
        const r = pending[head];
        throw new TransferError(`a record of type ${r.type} (${r.rdata.length} bytes of RDATA) does not fit in a message: ${(e as Error).message}`);
      }
      n = 1;
    }
    msg[2] &= ~0x02; // the codec's TC: the records left out go in the next message
    for (let k = head; k < head + n; k++) est -= minSize(pending[k]);
    head += n;
    if (head >= 4096) {
      pending = pending.slice(head);
      head = 0;
    }
    first = false;
    yield msg;
  }
}

/** The target and hard limits of a message's records (the caller's reserve taken off), checked. */
function limits(opts: TransferOptions): { limit: number; hardLimit: number } {
  const target = opts.maxMessageSize ?? DEFAULT_TRANSFER_MESSAGE_SIZE;
  const reserve = opts.reserve ?? 0;
  if (!Number.isInteger(target) || target < 512 || target > MAX_MESSAGE_SIZE) throw new RangeError(`maxMessageSize ${target} is not within 512..65535`);
  if (!Number.isInteger(reserve) || reserve < 0 || target - reserve < 256) throw new RangeError(`reserve ${reserve} leaves less than 256 bytes of ${target}`);
  return { limit: target - reserve, hardLimit: MAX_MESSAGE_SIZE - reserve };
}

/** Largest offset a compression pointer can reach. */
const MAX_POINTER = 0x3fff;

/**
 * Writes the owner `key` at `off` (room checked by the caller: key length + 1 bytes), compressed
 * against the names already in the message (`dict`: name key -> offset), and returns the end.
 */
function writeOwner(buf: Buffer, off: number, key: string, dict: Map<string, number>): number {
  if (key === '.') {
    buf[off] = 0;
    return off + 1;
  }
  if (key.indexOf('\\') >= 0) {
    // escaped bytes in a label (rare): written whole, not offered for compression
    for (const l of keyToLabels(key)) {
      buf[off++] = l.length;
      buf.set(l, off);
      off += l.length;
    }
    buf[off] = 0;
    return off + 1;
  }
  let i = 0;
  while (i < key.length) {
    const suffix = i === 0 ? key : key.slice(i);
    const at = dict.get(suffix);
    if (at !== undefined) {
      buf.writeUInt16BE(0xc000 | at, off);
      return off + 2;
    }
    if (off <= MAX_POINTER) dict.set(suffix, off);
    const dot = key.indexOf('.', i);
    buf[off++] = dot - i;
    for (let k = i; k < dot; k++) buf[off++] = key.charCodeAt(k);
    i = dot + 1;
  }
  buf[off] = 0;
  return off + 1;
}

/**
 * The AXFR sequence of a snapshot (SOA, every other record, SOA) packed into messages straight
 * from its columns: no object per record, owner names compressed against the message's earlier
 * owners (a record of the previous record's owner costs a 2-byte pointer), RDATA copied as
 * stored (uncompressed, which RFC 3597 asks for unknown types and allows for all). Messages as
 * {@link pack}: filled up to the target less the reserve, a record over it alone in a message of
 * up to 65,535 bytes less the reserve.
 */
function* packSnapshot(s: ZoneSnapshot, opts: TransferOptions): Generator<Buffer, void, undefined> {
  const { limit, hardLimit } = limits(opts);
  const prefix = encodeMessage({ id: opts.id, opcode: 0, rcode: 0, flags: { qr: true, aa: true, rd: opts.rd ?? false }, question: [opts.question] });
  const scratch = Buffer.allocUnsafe(hardLimit);
  const dict = new Map<string, number>();
  const end = s.count;
  const origin = s.origin;
  let pos = -1; // -1: the leading SOA; `end`: the closing SOA
  let first = true;
  /** The key of owner `keyOf` (records of one owner are consecutive: one string per owner). */
  let keyOf = -1;
  let key = '';
  while (pos <= end) {
    let off: number;
    if (first) {
      prefix.copy(scratch, 0);
      off = prefix.length;
    } else {
      prefix.copy(scratch, 0, 0, 12);
      scratch.writeUInt16BE(0, 4); // later messages omit the question (RFC 5936 2.2.1)
      off = 12;
    }
    dict.clear();
    let n = 0;
    let max = limit;
    let lastOwner = -2;
    let lastOwnerAt = 0;
    while (pos <= end) {
      let owner: string;
      let ownerIdx: number;
      let type: number;
      let ttl: number;
      let rdata: Buffer;
      let start: number;
      let stop: number;
      if (pos < 0 || pos === end) {
        owner = origin;
        ownerIdx = -1;
        type = RRType.SOA;
        ttl = s.soa.ttl;
        rdata = s.soa.rdata;
        start = 0;
        stop = rdata.length;
      } else {
        type = s.types[pos];
        if (type === RRType.SOA && s.owners.is(s.ownerIndex[pos], origin)) {
          pos++;
          continue;
        }
        ownerIdx = s.ownerIndex[pos];
        if (keyOf !== ownerIdx) {
          keyOf = ownerIdx;
          key = s.owners.at(ownerIdx);
        }
        owner = key;
        ttl = s.ttls[pos];
        rdata = s.rdata;
        start = pos === 0 ? 0 : s.rdataEnds[pos - 1];
        stop = s.rdataEnds[pos];
      }
      const sameOwner = ownerIdx === lastOwner && ownerIdx >= 0;
      const need = (sameOwner ? 2 : owner.length + 1) + 10 + (stop - start);
      if (off + need > max) {
        if (n > 0) break;
        if (max < hardLimit) {
          max = hardLimit;
          continue;
        }
        throw new TransferError(`a record of type ${type} (${stop - start} bytes of RDATA) does not fit in a message`);
      }
      if (sameOwner) {
        scratch.writeUInt16BE(0xc000 | lastOwnerAt, off);
        off += 2;
      } else {
        const at = off;
        off = writeOwner(scratch, off, owner, dict);
        if (at <= MAX_POINTER && off - at > 2) {
          lastOwner = ownerIdx;
          lastOwnerAt = at;
        } else if (off - at === 2) {
          lastOwner = ownerIdx;
          lastOwnerAt = scratch.readUInt16BE(at) & MAX_POINTER;
        } else lastOwner = -2;
      }
      scratch.writeUInt16BE(type, off);
      scratch.writeUInt16BE(1, off + 2); // class IN
      scratch.writeUInt32BE(ttl, off + 4);
      scratch.writeUInt16BE(stop - start, off + 8);
      off += 10;
      rdata.copy(scratch, off, start, stop);
      off += stop - start;
      n++;
      pos++;
      if (max > limit) break; // a record over the target travels alone
    }
    if (n === 0) return;
    scratch.writeUInt16BE(n, 6);
    first = false;
    yield Buffer.from(scratch.subarray(0, off));
  }
}

/** AXFR response messages for `snapshot` (RFC 5936). Throws TransferError or DnsEncodeError (close the connection). */
export function* axfrMessages(snapshot: ZoneSnapshot, opts: TransferOptions): Generator<Buffer, void, undefined> {
  if (opts.edns) yield* pack(axfrSequence(snapshot), opts);
  else yield* packSnapshot(snapshot, opts);
}

/**
 * The form of the IXFR response to a client at `clientSerial`, given the journal's
 * `diffsSince(clientSerial)`: incremental only when the diffs run from the client's serial to
 * exactly this snapshot and hold at most `maxIxfrRatio` (default 1) times its record count.
 */
export function ixfrForm(snapshot: ZoneSnapshot, clientSerial: number, diffs: readonly ZoneDiff[] | null, maxIxfrRatio = 1): IxfrForm {
  if (clientSerial >>> 0 === snapshot.serial) return 'current';
  if (!diffs || diffs.length === 0) return 'full';
  if (diffs[0].fromSerial !== clientSerial >>> 0) return 'full';
  let records = 0;
  for (let k = 0; k < diffs.length; k++) {
    if (k > 0 && diffs[k].fromSerial !== diffs[k - 1].toSerial) return 'full';
    records += 2 + diffs[k].deleted.length + diffs[k].added.length;
  }
  const last = diffs[diffs.length - 1];
  if (last.toSerial !== snapshot.serial || last.toDigest !== snapshot.digest) return 'full';
  return records > maxIxfrRatio * snapshot.count ? 'full' : 'incremental';
}

/**
 * IXFR response messages (RFC 1995 4) for a client at `clientSerial`: see {@link ixfrForm}.
 * `diffs` is the journal's `diffsSince(clientSerial)`. Throws as {@link axfrMessages}.
 */
export function* ixfrMessages(
  snapshot: ZoneSnapshot,
  clientSerial: number,
  diffs: readonly ZoneDiff[] | null,
  opts: TransferOptions,
): Generator<Buffer, void, undefined> {
  switch (ixfrForm(snapshot, clientSerial, diffs, opts.maxIxfrRatio)) {
    case 'current':
      yield* pack([snapshot.soa], opts);
      return;
    case 'incremental':
      yield* pack(ixfrSequence(snapshot, diffs!), opts);
      return;
    case 'full':
      yield* axfrMessages(snapshot, opts);
  }
}

/** The messages of a transfer, the event loop served after each one (every query waiting meanwhile answered: {@link serveWaiting}). */
export async function* paced(messages: Iterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
  for (const m of messages) {
    yield m;
    await serveWaiting();
  }
}

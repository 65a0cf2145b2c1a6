/**
 * Query parsing for the hot path: one pass over the header, the question and the additional
 * section (for EDNS), no allocation beyond the cache key. Never throws: a packet that cannot be
 * a query yields a `QueryProblem`.
 */
import { Opcode, RRType } from './constants.js';

/** A query as far as the server needs it. Offsets point into the original packet. */
export interface ParsedQuery {
  id: number;
  opcode: number;
  /** Header flag bytes 2 and 3 as received (RD and CD are echoed). */
  flags: number;
  /** End offset of the question name (exclusive); the question is packet[12, qnameEnd+4). */
  qnameEnd: number;
  qtype: number;
  qclass: number;
  /** EDNS: -1 without OPT, else the advertised UDP payload size. */
  ednsPayload: number;
  ednsVersion: number;
  /** DNSSEC OK bit from the OPT TTL. */
  dnssecOk: boolean;
  /** Cache key: lower-cased question bytes + EDNS shape. */
  key: string;
}

/** Why a packet is not served normally. `drop`: send nothing; others: answer with that rcode. */
export type QueryProblem =
  | { kind: 'drop'; reason: 'short' | 'response' }
  | { kind: 'formerr'; reason: string; qnameEnd: number }
  | { kind: 'notimp'; opcode: number; qnameEnd: number };

const scratch = Buffer.allocUnsafe(260);

/**
 * Reads the question name at offset 12. Returns the end offset, or -1 when the name is malformed
 * (compression pointers are not accepted in a question; label types 0x40/0x80 are invalid).
 */
export function questionNameEnd(msg: Buffer): number {
  let o = 12;
  const n = msg.length;
  for (;;) {
    if (o >= n) return -1;
    const len = msg[o];
    if (len === 0) return o + 1;
    if (len > 63) return -1;
    o += 1 + len;
    if (o - 12 > 254) return -1; // with the root byte, at most 255 bytes
  }
}

/**
 * Skips a name at `o` (in the additional section); returns the offset after it or -1 when it is
 * malformed. Compression pointers must point backwards to a well-formed name; chains are bounded.
 */
function skipName(msg: Buffer, o: number): number {
  const n = msg.length;
  let end = -1;
  let limit = o; // a pointer must point before the name that uses it
  let total = 0;
  for (let guard = 0; guard < 128; guard++) {
    if (o >= n) return -1;
    const len = msg[o];
    if (len === 0) return end >= 0 ? end : o + 1;
    if ((len & 0xc0) === 0xc0) {
      if (o + 2 > n) return -1;
      const target = ((len & 0x3f) << 8) | msg[o + 1];
      if (end < 0) end = o + 2;
      if (target < 12 || target >= limit) return -1;
      limit = target;
      o = target;
      continue;
    }
    if (len > 63) return -1;
    total += 1 + len;
    if (total > 254) return -1;
    o += 1 + len;
  }
  return -1;
}

/** Parses a datagram or TCP message as a query. */
export function parseQuery(msg: Buffer): ParsedQuery | QueryProblem {
  if (msg.length < 12) return { kind: 'drop', reason: 'short' };
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return { kind: 'drop', reason: 'response' };
  const opcode = (flags >> 11) & 0xf;
  const qd = msg.readUInt16BE(4);
  const an = msg.readUInt16BE(6);
  const ns = msg.readUInt16BE(8);
  const ar = msg.readUInt16BE(10);
  const qnameEnd = qd === 1 ? questionNameEnd(msg) : -1;
  if (opcode !== Opcode.QUERY) {
    return { kind: 'notimp', opcode, qnameEnd: qnameEnd > 0 && qnameEnd + 4 <= msg.length ? qnameEnd : -1 };
  }
  if (qd !== 1) return { kind: 'formerr', reason: qd === 0 ? 'no question' : 'more than one question', qnameEnd: -1 };
  if (qnameEnd < 0 || qnameEnd + 4 > msg.length) return { kind: 'formerr', reason: 'bad question', qnameEnd: -1 };
  if (an !== 0 || ns !== 0) return { kind: 'formerr', reason: 'answer or authority records in a query', qnameEnd };
  const qtype = msg.readUInt16BE(qnameEnd);
  const qclass = msg.readUInt16BE(qnameEnd + 2);

  let ednsPayload = -1;
  let ednsVersion = 0;
  let dnssecOk = false;
  let o = qnameEnd + 4;
  for (let i = 0; i < ar; i++) {
    const nameStart = o;
    o = skipName(msg, o);
    if (o < 0 || o + 10 > msg.length) return { kind: 'formerr', reason: 'bad additional record', qnameEnd };
    const type = msg.readUInt16BE(o);
    const rdlen = msg.readUInt16BE(o + 8);
    if (o + 10 + rdlen > msg.length) return { kind: 'formerr', reason: 'record runs past the end', qnameEnd };
    if (type === RRType.OPT) {
      if (ednsPayload >= 0) return { kind: 'formerr', reason: 'more than one OPT record', qnameEnd };
      if (msg[nameStart] !== 0) return { kind: 'formerr', reason: 'OPT owner is not the root', qnameEnd };
      ednsPayload = msg.readUInt16BE(o + 2);
      ednsVersion = msg[o + 5];
      dnssecOk = (msg[o + 6] & 0x80) !== 0;
      // options must be well-formed TLVs
      let p = o + 10;
      const end = p + rdlen;
      while (p < end) {
        if (p + 4 > end) return { kind: 'formerr', reason: 'truncated EDNS option', qnameEnd };
        p += 4 + msg.readUInt16BE(p + 2);
        if (p > end) return { kind: 'formerr', reason: 'EDNS option runs past the OPT record', qnameEnd };
      }
    }
    o += 10 + rdlen;
  }

  // Cache key: the question with ASCII upper case folded (the name region only), then the shape.
  let upper = false;
  for (let i = 13; i < qnameEnd; i++) {
    const b = msg[i];
    if (b >= 0x41 && b <= 0x5a) {
      upper = true;
      break;
    }
  }
  let key: string;
  if (!upper) {
    key = msg.toString('latin1', 12, qnameEnd + 4);
  } else {
    const len = qnameEnd + 4 - 12;
    msg.copy(scratch, 0, 12, qnameEnd + 4);
    for (let i = 0; i < len - 4; i++) {
      const b = scratch[i];
      if (b >= 0x41 && b <= 0x5a) scratch[i] = b | 0x20;
    }
    key = scratch.toString('latin1', 0, len);
  }
  key += ednsPayload < 0 ? 'N' : dnssecOk ? 'D' : 'E';

  return {
    id: msg.readUInt16BE(0), opcode, flags, qnameEnd, qtype, qclass,
    ednsPayload, ednsVersion, dnssecOk, key,
  };
}

/** Whether a parse result is a problem rather than a query. */
export function isProblem(q: ParsedQuery | QueryProblem): q is QueryProblem {
  return (q as QueryProblem).kind !== undefined;
}

/** Type number of TSIG (RFC 8945). */
const TSIG = 250;

/**
 * Whether a message belongs to the transfer path rather than the hot path: a query (QR 0,
 * opcode QUERY, one question) for AXFR or IXFR, or one carrying a TSIG record. Cheap (header,
 * question type, the record types after it); anything malformed is left to the hot path, which
 * answers it as such.
 */
export function isTransferPath(msg: Buffer): boolean {
  if (msg.length < 12 || (msg[2] & 0x80) !== 0 || ((msg[2] >> 3) & 0xf) !== Opcode.QUERY || msg.readUInt16BE(4) !== 1) return false;
  const qnameEnd = questionNameEnd(msg);
  if (qnameEnd < 0 || qnameEnd + 4 > msg.length) return false;
  const qtype = msg.readUInt16BE(qnameEnd);
  if (qtype === RRType.AXFR || qtype === RRType.IXFR) return true;
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  if (msg.readUInt16BE(10) === 0) return false;
  let o = qnameEnd + 4;
  for (let i = 0; i < records; i++) {
    o = skipName(msg, o);
    if (o < 0 || o + 10 > msg.length) return false;
    if (msg.readUInt16BE(o) === TSIG) return true;
    o += 10 + msg.readUInt16BE(o + 8);
  }
  return false;
}

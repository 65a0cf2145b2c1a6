/**
 * Response encoder: name compression (RFC 1035 4.1.4, only for the RDATA names of the types that
 * allow it, RFC 3597 4), whole-RRset truncation with TC (RFC 2181 9), EDNS OPT (RFC 6891) with our
 * payload size and extended rcodes. Runs off the hot path: its output is cached (see answer-cache.ts).
 */
import { keyToLabels, labelsToKey, type Labels } from '../name.js';
import { MAX_UDP_PAYLOAD, RRType } from './constants.js';

/** A record ready to be encoded. */
export interface WireRecord {
  /** Owner as a canonical key. */
  owner: string;
  type: number;
  ttl: number;
  /** Uncompressed wire RDATA. */
  rdata: Buffer;
}

/** What the engine decided; the encoder turns it into a message. */
export interface Answer {
  /** Full rcode (may be > 15: BADVERS). */
  rcode: number;
  aa: boolean;
  answer: WireRecord[];
  authority: WireRecord[];
  additional: WireRecord[];
}

/** What the encoder needs to know about the query. */
export interface EncodeContext {
  /** Question bytes: name (as it should appear before ID/case patching), type, class. Empty for none. */
  question: Buffer;
  opcode: number;
  /** RD and CD are copied from these header flags (patched again per query when cached). */
  queryFlags: number;
  /** Include an OPT record (the query had one). */
  edns: boolean;
  dnssecOk: boolean;
  /** Largest message allowed (UDP payload or 65535 on TCP). */
  maxSize: number;
}

const work = Buffer.allocUnsafe(65535 + 512);

/** Splits an uncompressed wire name at `o` into labels; returns labels and the end offset. */
function readWireName(buf: Buffer, o: number): { labels: Labels; end: number } {
  const labels: Labels = [];
  for (;;) {
    const len = buf[o];
    if (len === 0 || len === undefined) return { labels, end: o + 1 };
    labels.push(buf.subarray(o + 1, o + 1 + len));
    o += 1 + len;
  }
}

class Writer {
  o = 0;
  dict = new Map<string, number>();
  added: string[] = [];

  constructor(readonly buf: Buffer) {}

  u16(v: number): void {
    this.buf.writeUInt16BE(v, this.o);
    this.o += 2;
  }
  u32(v: number): void {
    this.buf.writeUInt32BE(v >>> 0, this.o);
    this.o += 4;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.o);
    this.o += b.length;
  }

  /** Writes a name, compressed when `compress`; registers its suffixes for later pointers. */
  name(labels: Labels, compress: boolean): void {
    const suffixKeys: string[] = [];
    for (let i = 0; i < labels.length; i++) suffixKeys.push(labelsToKey(labels.slice(i)));
    for (let i = 0; i < labels.length; i++) {
      const k = suffixKeys[i];
      const at = compress ? this.dict.get(k) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.o < 0x4000 && !this.dict.has(k)) {
        this.dict.set(k, this.o);
        this.added.push(k);
      }
      this.buf[this.o++] = labels[i].length;
      this.bytes(labels[i]);
    }
    this.buf[this.o++] = 0;
  }

  /** Forgets dictionary entries that point at or past `offset` (after a rollback). */
  rollback(offset: number, addedMark: number): void {
    this.o = offset;
    for (let i = this.added.length - 1; i >= addedMark; i--) this.dict.delete(this.added[i]);
    this.added.length = addedMark;
  }

  rdata(type: number, rdata: Buffer): void {
    const lenAt = this.o;
    this.o += 2;
    switch (type) {
      case RRType.NS:
      case RRType.CNAME:
      case RRType.PTR:
        this.name(readWireName(rdata, 0).labels, true);
        break;
      case RRType.MX:
        this.bytes(rdata.subarray(0, 2));
        this.name(readWireName(rdata, 2).labels, true);
        break;
      case RRType.SOA: {
        const m = readWireName(rdata, 0);
        const r = readWireName(rdata, m.end);
        this.name(m.labels, true);
        this.name(r.labels, true);
        this.bytes(rdata.subarray(r.end));
        break;
      }
      default:
        this.bytes(rdata);
    }
    this.buf.writeUInt16BE(this.o - lenAt - 2, lenAt);
  }

  record(rr: WireRecord): void {
    this.name(keyToLabels(rr.owner), true);
    this.u16(rr.type);
    this.u16(1);
    this.u32(rr.ttl);
    this.rdata(rr.type, rr.rdata);
  }
}

/** Groups consecutive records of one owner and type: the unit of truncation. */
function rrsets(records: WireRecord[]): WireRecord[][] {
  const out: WireRecord[][] = [];
  for (const rr of records) {
    const last = out[out.length - 1];
    if (last && last[0].owner === rr.owner && last[0].type === rr.type) last.push(rr);
    else out.push([rr]);
  }
  return out;
}

/** Encodes a response. The ID is left 0 (patched per query). */
export function encodeResponse(ans: Answer, ctx: EncodeContext): Buffer {
  const w = new Writer(work);
  const optSize = ctx.edns ? 11 : 0;
  const limit = Math.min(ctx.maxSize, 65535) - optSize;
  w.o = 12;
  if (ctx.question.length > 0) {
    const q = readWireName(ctx.question, 0);
    w.name(q.labels, false);
    w.bytes(ctx.question.subarray(q.end));
  }
  let tc = false;
  const counts = [0, 0, 0];
  const sections = [ans.answer, ans.authority, ans.additional];
  for (let s = 0; s < 3 && !tc; s++) {
    for (const set of rrsets(sections[s])) {
      const start = w.o;
      const mark = w.added.length;
      for (const rr of set) w.record(rr);
      if (w.o > limit) {
        w.rollback(start, mark);
        if (s < 2) {
          tc = true;
          break;
        }
        continue; // additional data that does not fit is left out (RFC 2181 9)
      }
      counts[s] += set.length;
    }
  }
  let arcount = counts[2];
  if (ctx.edns) {
    work[w.o++] = 0;
    w.u16(RRType.OPT);
    w.u16(MAX_UDP_PAYLOAD);
    const ext = (ans.rcode >> 4) & 0xff;
    w.u32(((ext << 24) | (ctx.dnssecOk ? 0x8000 : 0)) >>> 0);
    w.u16(0);
    arcount++;
  }
  const flags =
    0x8000 |
    ((ctx.opcode & 0xf) << 11) |
    (ans.aa ? 0x0400 : 0) |
    (tc ? 0x0200 : 0) |
    (ctx.queryFlags & 0x0100) | // RD
    (ctx.queryFlags & 0x0010) | // CD
    (ans.rcode & 0xf);
  work.writeUInt16BE(0, 0);
  work.writeUInt16BE(flags, 2);
  work.writeUInt16BE(ctx.question.length > 0 ? 1 : 0, 4);
  work.writeUInt16BE(counts[0], 6);
  work.writeUInt16BE(counts[1], 8);
  work.writeUInt16BE(arcount, 10);
  return Buffer.from(work.subarray(0, w.o));
}

/** Whether an encoded response has TC set. */
export function isTruncated(msg: Buffer): boolean {
  return (msg[2] & 0x02) !== 0;
}

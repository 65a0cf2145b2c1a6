/**
 * The DNS message codec: one encoder and one decoder for every message the controller builds or
 * reads (the server's responses through encoder.ts, the MX audit's client). Only the server's
 * hot-path query parse has its own reader (query.ts).
 *
 * - Header with every flag, the full rcode (EDNS extended bits included), questions, the three
 *   record sections, EDNS (RFC 6891) with its options, Extended DNS Errors (RFC 8914) read out.
 * - Names come out as canonical keys (see ../name.ts); RDATA stays bytes, with the names of the
 *   types that may carry compressed names (RFC 3597 4) decompressed; every record keeps its
 *   offsets into the message (what a TSIG verifier, RFC 8945, works on).
 * - Decoding is strict and total: any input yields a {@link Message} or throws
 *   {@link DnsFormatError}, nothing else; compression pointers must point strictly backwards and
 *   past the header, so no input loops.
 * - Encoding compresses owner names and the RDATA names of the RFC 1035 types the server
 *   compresses (NS, CNAME, PTR, MX, SOA), never question names. Compression matches names
 *   case-insensitively, so a compressed name takes the letter case of the earlier one. With
 *   `truncate`, whole RRsets are left out to fit `maxSize` (TC for answer/authority, silently
 *   for additional, RFC 2181 9).
 */
import {
  keyToLabels, labelsToKey, labelsToWire, wireLength, MAX_LABEL_LENGTH, MAX_NAME_WIRE_LENGTH, type Labels,
} from '../name.js';
import { EdnsOptionCode, MAX_UDP_PAYLOAD, RRType, typeName } from './constants.js';

/** A message (or a part of one) that cannot be decoded; `message` says why, `offset` where. */
export class DnsFormatError extends Error {
  override name = 'DnsFormatError';
  constructor(message: string, readonly offset = -1) {
    super(message);
  }
}

/** A message that cannot be encoded as asked (too large without truncation, bad RDATA, ...). */
export class DnsEncodeError extends Error {
  override name = 'DnsEncodeError';
}

/** Header flags (RFC 1035 4.1.1, RFC 4035 3.2 for AD and CD). */
export interface Flags {
  qr: boolean;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The reserved Z bit (0x40 of the fourth byte). */
  z: boolean;
  ad: boolean;
  cd: boolean;
}

export interface Question {
  /** Canonical key. */
  name: string;
  type: number;
  class: number;
}

/** A record to encode. `name` is a presentation name / key, or labels (their case is kept). */
export interface RecordInput {
  name: string | Labels;
  type: number;
  /** Default IN. */
  class?: number;
  ttl: number;
  /** Uncompressed wire RDATA. */
  rdata: Uint8Array;
}

/** A decoded record: RDATA uncompressed, with where the record lies in the message. */
export interface DecodedRecord {
  /** Owner as a canonical key. */
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** Uncompressed RDATA: a view into the message unless names had to be decompressed. */
  rdata: Buffer;
  /** Offset of the record's owner name in the message. */
  offset: number;
  /** Offset of the RDATA in the message, and its length there (RDLENGTH, possibly compressed). */
  rdataOffset: number;
  rdataLength: number;
  /** Offset just past the record. */
  end: number;
}

/** One EDNS option (RFC 6891 6.1.2), data as bytes. */
export interface EdnsOption {
  code: number;
  data: Uint8Array;
}

/** Extended DNS Error (RFC 8914): INFO-CODE and EXTRA-TEXT (trailing NULs dropped). */
export interface Ede {
  code: number;
  text?: string;
}

/** EDNS of a decoded message (the OPT pseudo-record). */
export interface Edns {
  udpPayload: number;
  version: number;
  dnssecOk: boolean;
  /** The 16 flag bits of the OPT TTL (DO is 0x8000). */
  flags: number;
  /** Upper 8 bits of the rcode, as carried (already merged into Message.rcode). */
  extendedRcode: number;
  /** Every option in order, EDE included. */
  options: EdnsOption[];
  /** The EDE options, decoded. */
  ede: Ede[];
}

/** EDNS to encode. The extended rcode comes from the message's rcode. */
export interface EdnsInput {
  /** Default {@link MAX_UDP_PAYLOAD}. */
  udpPayload?: number;
  version?: number;
  dnssecOk?: boolean;
  /** Flag bits other than DO. */
  flags?: number;
  options?: EdnsOption[];
}

/** A decoded message. OPT is in `edns` and TSIG in `tsig`, not in `additional`. */
export interface Message {
  id: number;
  opcode: number;
  /** Full rcode: the header's 4 bits plus the EDNS extended bits. */
  rcode: number;
  flags: Flags;
  question: Question[];
  answer: DecodedRecord[];
  authority: DecodedRecord[];
  additional: DecodedRecord[];
  edns?: Edns;
  /** The TSIG record (RFC 8945), the last one of the message, with its offset. */
  tsig?: DecodedRecord;
}

/** A message to encode; what is left out is 0, false or empty. */
export interface MessageInput {
  id?: number;
  opcode?: number;
  /** Full rcode; above 15 needs `edns`. */
  rcode?: number;
  flags?: Partial<Flags>;
  question?: { name: string | Labels; type: number; class?: number }[];
  answer?: readonly RecordInput[];
  authority?: readonly RecordInput[];
  additional?: readonly RecordInput[];
  edns?: EdnsInput;
  /** Written last, uncompressed (RFC 8945 4.2). */
  tsig?: RecordInput;
}

export interface EncodeOptions {
  /** Largest message (default and at most 65535). */
  maxSize?: number;
  /**
   * Leave whole RRsets out to fit `maxSize`: answer/authority ones with TC set (and the rest of
   * the message too), additional ones silently. Without it an oversize message throws.
   */
  truncate?: boolean;
}

/** Type number of TSIG (RFC 8945). */
export const TSIG_TYPE = 250;

// ------------------------------------------------------------------------------ decoding -------

/** A name read from a message: its labels, where the bytes after it start, whether it was compressed. */
interface ReadName {
  labels: Labels;
  next: number;
  compressed: boolean;
}

/**
 * Reads a possibly compressed name at `off`. Its uncompressed part must lie before `limit`; a
 * pointer must point past the header and before the start of the name that led to it, so each
 * hop goes strictly backwards and every input terminates.
 */
function readName(b: Buffer, off: number, limit: number): ReadName {
  const labels: Labels = [];
  let pos = off;
  let next = -1;
  let total = 1;
  let minPtr = off;
  for (;;) {
    if (pos >= limit) throw new DnsFormatError('name runs past the end', pos);
    const len = b[pos];
    if (len === 0) return next < 0 ? { labels, next: pos + 1, compressed: false } : { labels, next, compressed: true };
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= limit) throw new DnsFormatError('truncated compression pointer', pos);
      const ptr = ((len & 0x3f) << 8) | b[pos + 1];
      if (next < 0) next = pos + 2;
      if (ptr >= minPtr) throw new DnsFormatError('compression pointer does not point backwards', pos);
      if (ptr < 12) throw new DnsFormatError('compression pointer into the header', pos);
      minPtr = ptr;
      pos = ptr;
      limit = b.length; // the target lies before the name, anywhere in the message
      continue;
    }
    if (kind !== 0) throw new DnsFormatError(`unknown label type 0x${kind.toString(16)}`, pos);
    if (pos + 1 + len > limit) throw new DnsFormatError('label runs past the end', pos);
    total += len + 1;
    if (total > MAX_NAME_WIRE_LENGTH) throw new DnsFormatError('name longer than 255 bytes', off);
    labels.push(b.subarray(pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
}

/** RDATA layouts of the types whose names are decompressed: name, fixed bytes, char-string, rest. */
type Field = 'name' | 'string' | 'rest' | number;
const NAME1: Field[] = ['name'];
const LAYOUTS = new Map<number, Field[]>([
  [RRType.NS, NAME1], [3 /* MD */, NAME1], [4 /* MF */, NAME1], [RRType.CNAME, NAME1],
  [7 /* MB */, NAME1], [8 /* MG */, NAME1], [9 /* MR */, NAME1], [RRType.PTR, NAME1], [RRType.DNAME, NAME1],
  [RRType.SOA, ['name', 'name', 20]],
  [14 /* MINFO */, ['name', 'name']], [17 /* RP */, ['name', 'name']],
  [RRType.MX, [2, 'name']], [18 /* AFSDB */, [2, 'name']], [21 /* RT */, [2, 'name']],
  [26 /* PX */, [2, 'name', 'name']],
  [RRType.SRV, [6, 'name']],
  [RRType.NAPTR, [4, 'string', 'string', 'string', 'name']],
  [24 /* SIG */, [18, 'name', 'rest']], [30 /* NXT */, ['name', 'rest']],
]);

/** RDATA of a record at [start, end): checked, and uncompressed for the types in LAYOUTS. */
function readRdata(b: Buffer, type: number, start: number, end: number): Buffer {
  const len = end - start;
  const layout = LAYOUTS.get(type);
  if (layout === undefined) {
    switch (type) {
      case RRType.A:
        if (len !== 4) throw new DnsFormatError(`A record of ${len} bytes`, start);
        break;
      case RRType.AAAA:
        if (len !== 16) throw new DnsFormatError(`AAAA record of ${len} bytes`, start);
        break;
      case RRType.TXT: {
        if (len === 0) throw new DnsFormatError('empty TXT RDATA', start);
        for (let p = start; p < end; p += 1 + b[p]) {
          if (p + 1 + b[p] > end) throw new DnsFormatError('TXT string runs past its RDATA', p);
        }
        break;
      }
    }
    return b.subarray(start, end);
  }
  const parts: Uint8Array[] = [];
  let compressed = false;
  let p = start;
  for (const f of layout) {
    if (f === 'name') {
      const n = readName(b, p, end);
      if (n.compressed) {
        compressed = true;
        parts.push(labelsToWire(n.labels));
      } else {
        parts.push(b.subarray(p, n.next));
      }
      p = n.next;
      continue;
    }
    const size = f === 'rest' ? end - p : f === 'string' ? (p < end ? 1 + b[p] : 1) : f;
    if (p + size > end) throw new DnsFormatError(`${typeName(type)} RDATA shorter than its layout`, p);
    parts.push(b.subarray(p, p + size));
    p += size;
  }
  if (p !== end) throw new DnsFormatError(`${end - p} trailing bytes in ${typeName(type)} RDATA`, p);
  return compressed ? Buffer.concat(parts) : b.subarray(start, end);
}

/** Decodes an EDE option's data (RFC 8914 2). */
export function decodeEde(data: Uint8Array): Ede {
  if (data.length < 2) throw new DnsFormatError('short EDE option');
  const code = (data[0] << 8) | data[1];
  const text = Buffer.from(data.buffer, data.byteOffset + 2, data.length - 2).toString('utf8').replace(/\0+$/, '');
  return text ? { code, text } : { code };
}

/** EDNS option data of an EDE (RFC 8914 2). */
export function edeOption(ede: Ede): EdnsOption {
  const text = Buffer.from(ede.text ?? '', 'utf8');
  const data = Buffer.alloc(2 + text.length);
  data.writeUInt16BE(ede.code, 0);
  text.copy(data, 2);
  return { code: EdnsOptionCode.EDE, data };
}

function readEdns(b: Buffer, rec: DecodedRecord, ownerIsRoot: boolean): Edns {
  if (!ownerIsRoot) throw new DnsFormatError('OPT owner is not the root', rec.offset);
  const options: EdnsOption[] = [];
  const ede: Ede[] = [];
  const end = rec.rdataOffset + rec.rdataLength;
  for (let p = rec.rdataOffset; p < end; ) {
    if (p + 4 > end) throw new DnsFormatError('truncated EDNS option', p);
    const code = b.readUInt16BE(p);
    const olen = b.readUInt16BE(p + 2);
    if (p + 4 + olen > end) throw new DnsFormatError('EDNS option runs past its record', p);
    const data = b.subarray(p + 4, p + 4 + olen);
    options.push({ code, data });
    if (code === EdnsOptionCode.EDE) ede.push(decodeEde(data));
    p += 4 + olen;
  }
  return {
    udpPayload: rec.class,
    extendedRcode: rec.ttl >>> 24,
    version: (rec.ttl >>> 16) & 0xff,
    flags: rec.ttl & 0xffff,
    dnssecOk: (rec.ttl & 0x8000) !== 0,
    options,
    ede,
  };
}

/**
 * Decodes a whole message. Throws {@link DnsFormatError} (and nothing else) when it is
 * malformed: truncated anywhere, a bad name or pointer, RDATA that does not fit its type's
 * layout (A, AAAA, TXT and the name-bearing types), OPT outside the additional section or
 * repeated or not owned by the root, TSIG not last, bytes after the last record.
 */
export function decodeMessage(b: Buffer): Message {
  if (b.length < 12) throw new DnsFormatError(`truncated header (${b.length} bytes)`, 0);
  const f1 = b[2];
  const f2 = b[3];
  const flags: Flags = {
    qr: (f1 & 0x80) !== 0, aa: (f1 & 0x04) !== 0, tc: (f1 & 0x02) !== 0, rd: (f1 & 0x01) !== 0,
    ra: (f2 & 0x80) !== 0, z: (f2 & 0x40) !== 0, ad: (f2 & 0x20) !== 0, cd: (f2 & 0x10) !== 0,
  };
  const qd = b.readUInt16BE(4);
  const counts = [b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)];
  let off = 12;
  const question: Question[] = [];
  for (let i = 0; i < qd; i++) {
    const n = readName(b, off, b.length);
    if (n.next + 4 > b.length) throw new DnsFormatError('truncated question', n.next);
    question.push({ name: labelsToKey(n.labels), type: b.readUInt16BE(n.next), class: b.readUInt16BE(n.next + 2) });
    off = n.next + 4;
  }
  const sections: DecodedRecord[][] = [[], [], []];
  let edns: Edns | undefined;
  let tsig: DecodedRecord | undefined;
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]; i++) {
      const n = readName(b, off, b.length);
      const h = n.next;
      if (h + 10 > b.length) throw new DnsFormatError('truncated record header', h);
      const type = b.readUInt16BE(h);
      const rdataOffset = h + 10;
      const rdataLength = b.readUInt16BE(h + 8);
      const end = rdataOffset + rdataLength;
      if (end > b.length) throw new DnsFormatError(`RDATA runs past the end (RDLENGTH ${rdataLength})`, h + 8);
      const rec: DecodedRecord = {
        name: labelsToKey(n.labels), type, class: b.readUInt16BE(h + 2), ttl: b.readUInt32BE(h + 4),
        rdata: b.subarray(rdataOffset, end), offset: off, rdataOffset, rdataLength, end,
      };
      off = end;
      if (tsig) throw new DnsFormatError('TSIG record is not the last record', tsig.offset);
      if (type === RRType.OPT) {
        if (s !== 2) throw new DnsFormatError('OPT record outside the additional section', rec.offset);
        if (edns) throw new DnsFormatError('more than one OPT record', rec.offset);
        edns = readEdns(b, rec, n.labels.length === 0);
        continue;
      }
      if (type === TSIG_TYPE) {
        if (s !== 2) throw new DnsFormatError('TSIG record outside the additional section', rec.offset);
        tsig = rec;
        continue;
      }
      rec.rdata = readRdata(b, type, rdataOffset, end);
      sections[s].push(rec);
    }
  }
  if (off !== b.length) throw new DnsFormatError(`${b.length - off} bytes after the last record`, off);
  const m: Message = {
    id: b.readUInt16BE(0),
    opcode: (f1 >> 3) & 0x0f,
    rcode: (f2 & 0x0f) | (edns ? edns.extendedRcode << 4 : 0),
    flags,
    question,
    answer: sections[0],
    authority: sections[1],
    additional: sections[2],
  };
  if (edns) m.edns = edns;
  if (tsig) m.tsig = tsig;
  return m;
}

// ------------------------------------------------------------------------------ encoding -------

/** RDATA layouts the encoder compresses (the RFC 1035 types the server has always compressed). */
const COMPRESS = new Map<number, Field[]>([
  [RRType.NS, NAME1], [RRType.CNAME, NAME1], [RRType.PTR, NAME1],
  [RRType.MX, [2, 'name']],
  [RRType.SOA, ['name', 'name', 20]],
]);

/** Reads an uncompressed name from RDATA being encoded; throws DnsEncodeError when malformed. */
function rdataName(rd: Uint8Array, o: number, type: number): { labels: Labels; end: number } {
  const labels: Labels = [];
  let total = 1;
  for (;;) {
    if (o >= rd.length) throw new DnsEncodeError(`${typeName(type)} RDATA: name runs past the end`);
    const len = rd[o];
    if (len === 0) return { labels, end: o + 1 };
    if (len > MAX_LABEL_LENGTH) throw new DnsEncodeError(`${typeName(type)} RDATA: bad label length ${len}`);
    total += 1 + len;
    if (o + 1 + len > rd.length || total > MAX_NAME_WIRE_LENGTH) throw new DnsEncodeError(`${typeName(type)} RDATA: bad name`);
    labels.push(rd.subarray(o + 1, o + 1 + len));
    o += 1 + len;
  }
}

/**
 * Scratch for encoding: a record is written whole before the size check, and one record (owner,
 * fixed fields, up to 65535 bytes of RDATA) fits after 65535 bytes of message.
 */
const work = Buffer.allocUnsafe(2 * 65536 + 1024);

/** Writes names with compression (RFC 1035 4.1.4); the dictionary can be rolled back. */
class Writer {
  o = 12;
  private dict = new Map<string, number>();
  private added: string[] = [];

  constructor(readonly buf: Buffer) {}

  get mark(): number {
    return this.added.length;
  }

  u16(v: number): void {
    this.buf.writeUInt16BE(v & 0xffff, this.o);
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
    // keys of the suffixes, longest first, each label converted once
    const n = labels.length;
    const keys: string[] = new Array(n);
    let suffix = '';
    for (let i = n - 1; i >= 0; i--) keys[i] = suffix = labelsToKey([labels[i]]) + suffix;
    for (let i = 0; i < n; i++) {
      const k = keys[i];
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

  /** Goes back to `offset`, forgetting dictionary entries added since `mark`. */
  rollback(offset: number, mark: number): void {
    this.o = offset;
    for (let i = this.added.length - 1; i >= mark; i--) this.dict.delete(this.added[i]);
    this.added.length = mark;
  }

  rdata(type: number, rd: Uint8Array): void {
    if (rd.length > 65535) throw new DnsEncodeError(`${typeName(type)} RDATA of ${rd.length} bytes`);
    const lenAt = this.o;
    this.o += 2;
    const layout = COMPRESS.get(type);
    if (layout === undefined) {
      this.bytes(rd);
    } else {
      let p = 0;
      for (const f of layout) {
        if (f === 'name') {
          const n = rdataName(rd, p, type);
          this.name(n.labels, true);
          p = n.end;
        } else {
          const size = f as number;
          if (p + size > rd.length) throw new DnsEncodeError(`${typeName(type)} RDATA shorter than its layout`);
          this.bytes(rd.subarray(p, p + size));
          p += size;
        }
      }
      if (p !== rd.length) throw new DnsEncodeError(`${rd.length - p} trailing bytes in ${typeName(type)} RDATA`);
    }
    this.buf.writeUInt16BE(this.o - lenAt - 2, lenAt);
  }

  record(rr: RecordInput, compress = true): void {
    this.name(labelsOf(rr.name), compress);
    this.u16(rr.type);
    this.u16(rr.class ?? 1);
    this.u32(rr.ttl);
    if (compress) this.rdata(rr.type, rr.rdata);
    else {
      if (rr.rdata.length > 65535) throw new DnsEncodeError(`${typeName(rr.type)} RDATA of ${rr.rdata.length} bytes`);
      this.u16(rr.rdata.length);
      this.bytes(rr.rdata);
    }
  }
}

function labelsOf(name: string | Labels): Labels {
  if (typeof name === 'string') return keyToLabels(name);
  let n = 1;
  for (const l of name) {
    if (l.length === 0 || l.length > MAX_LABEL_LENGTH) throw new DnsEncodeError(`bad label length ${l.length}`);
    n += 1 + l.length;
  }
  if (n > MAX_NAME_WIRE_LENGTH) throw new DnsEncodeError('name longer than 255 bytes');
  return name;
}

function optionsSize(options: readonly EdnsOption[] | undefined): number {
  let n = 0;
  for (const o of options ?? []) n += 4 + o.data.length;
  return n;
}

/**
 * Encodes a message. Throws {@link DnsEncodeError} when it cannot be encoded as asked (larger
 * than `maxSize` without `truncate`, rcode above 15 without EDNS, RDATA that does not fit its
 * type's layout or exceeds 65535 bytes) and NameError (../name.ts) for a bad presentation name.
 */
export function encodeMessage(m: MessageInput, opts: EncodeOptions = {}): Buffer {
  const maxSize = Math.min(opts.maxSize ?? 65535, 65535);
  const rcode = m.rcode ?? 0;
  if (!Number.isInteger(rcode) || rcode < 0 || rcode > 0xfff) throw new DnsEncodeError(`bad rcode ${rcode}`);
  if (rcode > 15 && !m.edns) throw new DnsEncodeError(`rcode ${rcode} needs EDNS`);
  const edns = m.edns;
  const optRdata = edns ? optionsSize(edns.options) : 0;
  if (optRdata > 65535) throw new DnsEncodeError('EDNS options longer than 65535 bytes');
  const optSize = edns ? 11 + optRdata : 0;
  const tsigSize = m.tsig ? wireLength(labelsOf(m.tsig.name)) + 10 + m.tsig.rdata.length : 0;
  const limit = maxSize - optSize - tsigSize;
  const w = new Writer(work);

  const questions = m.question ?? [];
  if (questions.length > 65535) throw new DnsEncodeError('more than 65535 questions');
  for (const q of questions) {
    w.name(labelsOf(q.name), false);
    w.u16(q.type);
    w.u16(q.class ?? 1);
    if (w.o > limit) throw new DnsEncodeError(`the question section does not fit in ${maxSize} bytes`);
  }

  let tc = false;
  const counts = [0, 0, 0];
  const sections = [m.answer ?? [], m.authority ?? [], m.additional ?? []];
  for (let s = 0; s < 3 && !tc; s++) {
    const recs = sections[s];
    for (let i = 0; i < recs.length && !tc; ) {
      // one RRset: consecutive records of one owner and type, the unit of truncation
      let j = i + 1;
      while (j < recs.length && recs[j].type === recs[i].type && recs[j].name === recs[i].name) j++;
      const start = w.o;
      const mark = w.mark;
      let fits = true;
      for (let k = i; k < j && fits; k++) {
        w.record(recs[k]);
        fits = w.o <= limit;
      }
      if (fits) {
        counts[s] += j - i;
      } else if (!opts.truncate) {
        throw new DnsEncodeError(`the message does not fit in ${maxSize} bytes`);
      } else {
        w.rollback(start, mark);
        if (s < 2) tc = true; // additional data that does not fit is left out (RFC 2181 9)
      }
      i = j;
    }
  }
  if (counts[0] > 65535 || counts[1] > 65535 || counts[2] + (edns ? 1 : 0) + (m.tsig ? 1 : 0) > 65535) {
    throw new DnsEncodeError('more than 65535 records in a section');
  }

  let arcount = counts[2];
  if (edns) {
    work[w.o++] = 0;
    w.u16(RRType.OPT);
    w.u16(edns.udpPayload ?? MAX_UDP_PAYLOAD);
    const ext = (rcode >> 4) & 0xff;
    const version = (edns.version ?? 0) & 0xff;
    const eflags = ((edns.flags ?? 0) & 0x7fff) | (edns.dnssecOk ? 0x8000 : 0);
    w.u32(((ext << 24) | (version << 16) | eflags) >>> 0);
    w.u16(optRdata);
    for (const o of edns.options ?? []) {
      w.u16(o.code);
      w.u16(o.data.length);
      w.bytes(o.data);
    }
    arcount++;
  }
  if (m.tsig) {
    w.record(m.tsig, false);
    arcount++;
  }

  const f = m.flags ?? {};
  const b2 =
    (f.qr ? 0x80 : 0) | (((m.opcode ?? 0) & 0xf) << 3) | (f.aa ? 0x04 : 0) | (f.tc || tc ? 0x02 : 0) | (f.rd ? 0x01 : 0);
  const b3 = (f.ra ? 0x80 : 0) | (f.z ? 0x40 : 0) | (f.ad ? 0x20 : 0) | (f.cd ? 0x10 : 0) | (rcode & 0xf);
  work.writeUInt16BE((m.id ?? 0) & 0xffff, 0);
  work[2] = b2;
  work[3] = b3;
  work.writeUInt16BE(questions.length, 4);
  work.writeUInt16BE(counts[0], 6);
  work.writeUInt16BE(counts[1], 8);
  work.writeUInt16BE(arcount, 10);
  return Buffer.from(work.subarray(0, w.o));
}

/**
 * A tiny, independent DNS wire encoder/decoder and client helpers for black-box tests.
 * Deliberately shares no code with src/ so that a bug there cannot hide itself here.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket as TcpSocket } from 'node:net';
import { readFileSync } from 'node:fs';

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 } as const;
export const RC = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
export const RCODE_NAME: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS',
};
/** Name of an rcode, RCODE<n> for the rest. */
export const rcodeName = (n: number): string => RCODE_NAME[n] ?? `RCODE${n}`;

/** Uncompressed wire form of a presentation name (no escapes; "." is the root). */
export function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter((p) => p.length > 0);
  const bufs: Buffer[] = [];
  for (const p of parts) {
    const b = Buffer.from(p, 'latin1');
    bufs.push(Buffer.from([b.length]), b);
  }
  bufs.push(Buffer.from([0]));
  return Buffer.concat(bufs);
}

export interface EdnsOptions {
  udpSize?: number;
  version?: number;
  extRcode?: number;
  do?: boolean;
  /** Raw options bytes (already TLV-encoded). */
  options?: Buffer;
}

export interface QueryOptions {
  id?: number;
  type?: number;
  qclass?: number;
  rd?: boolean;
  opcode?: number;
  qr?: boolean;
  edns?: EdnsOptions | null;
}

/** An OPT pseudo-RR in wire form. */
export function encodeOpt(e: EdnsOptions = {}, owner: Buffer = Buffer.from([0])): Buffer {
  const opts = e.options ?? Buffer.alloc(0);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(T.OPT, 0);
  fixed.writeUInt16BE(e.udpSize ?? 1232, 2);
  fixed.writeUInt8(e.extRcode ?? 0, 4);
  fixed.writeUInt8(e.version ?? 0, 5);
  fixed.writeUInt16BE(e.do ? 0x8000 : 0, 6);
  fixed.writeUInt16BE(opts.length, 8);
  return Buffer.concat([owner, fixed, opts]);
}

/** A standard query in wire form. */
export function buildQuery(name: string, o: QueryOptions = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE((o.id ?? 0x1234) & 0xffff, 0);
  let flags = ((o.opcode ?? 0) & 0xf) << 11;
  if (o.qr) flags |= 0x8000;
  if (o.rd ?? true) flags |= 0x0100;
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(o.edns ? 1 : 0, 10);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(o.type ?? T.A, 0);
  q.writeUInt16BE(o.qclass ?? 1, 2);
  const parts = [h, encodeName(name), q];
  if (o.edns) parts.push(encodeOpt(o.edns));
  return Buffer.concat(parts);
}

export class DecodeError extends Error {
  override name = 'DecodeError';
}

export interface RR {
  name: string;
  type: number;
  class: number;
  ttl: number;
  rdata: Buffer;
  /** Offset of rdata in the message (for names inside rdata that use compression). */
  rdataOffset: number;
}

export interface Decoded {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** The 4-bit header rcode. */
  headerRcode: number;
  /** Full rcode: header rcode plus the OPT extended bits when an OPT is present. */
  rcode: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
  questions: { name: string; type: number; class: number }[];
  answers: RR[];
  authority: RR[];
  additional: RR[];
  opt: { udpSize: number; extRcode: number; version: number; do: boolean; options: Buffer } | null;
  /** Bytes after the last record (should be 0). */
  trailing: number;
}

/** Reads a (possibly compressed) name; pointers must point strictly backwards. */
export function readName(buf: Buffer, off: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = off;
  let next = -1;
  let wire = 1;
  let limit = off; // pointers must go strictly before the earliest position read so far
  for (let hops = 0; ; hops++) {
    if (hops > 128) throw new DecodeError('too many labels/pointers');
    if (pos >= buf.length) throw new DecodeError('name runs past the end');
    const len = buf[pos];
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DecodeError('pointer runs past the end');
      const target = ((len & 0x3f) << 8) | buf[pos + 1];
      if (next < 0) next = pos + 2;
      if (target >= limit) throw new DecodeError('forward or looping compression pointer');
      limit = target;
      pos = target;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DecodeError(`bad label type 0x${len.toString(16)}`);
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if (pos + 1 + len > buf.length) throw new DecodeError('label runs past the end');
    labels.push(buf.subarray(pos + 1, pos + 1 + len).toString('latin1'));
    wire += 1 + len;
    if (wire > 255) throw new DecodeError('name longer than 255 bytes');
    pos += 1 + len;
  }
  return { name: labels.length ? labels.join('.') + '.' : '.', next };
}

/** Decodes a whole DNS message; throws DecodeError on anything malformed. */
export function decode(buf: Buffer): Decoded {
  if (buf.length < 12) throw new DecodeError(`message of ${buf.length} bytes`);
  const flags = buf.readUInt16BE(2);
  const d: Decoded = {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    headerRcode: flags & 0xf,
    rcode: flags & 0xf,
    qdcount: buf.readUInt16BE(4),
    ancount: buf.readUInt16BE(6),
    nscount: buf.readUInt16BE(8),
    arcount: buf.readUInt16BE(10),
    questions: [],
    answers: [],
    authority: [],
    additional: [],
    opt: null,
    trailing: 0,
  };
  let off = 12;
  for (let i = 0; i < d.qdcount; i++) {
    const n = readName(buf, off);
    off = n.next;
    if (off + 4 > buf.length) throw new DecodeError('question runs past the end');
    d.questions.push({ name: n.name, type: buf.readUInt16BE(off), class: buf.readUInt16BE(off + 2) });
    off += 4;
  }
  const readRR = (): RR => {
    const n = readName(buf, off);
    off = n.next;
    if (off + 10 > buf.length) throw new DecodeError('RR header runs past the end');
    const type = buf.readUInt16BE(off);
    const klass = buf.readUInt16BE(off + 2);
    const ttl = buf.readUInt32BE(off + 4);
    const rdlen = buf.readUInt16BE(off + 8);
    off += 10;
    if (off + rdlen > buf.length) throw new DecodeError('RDATA runs past the end');
    const rr: RR = { name: n.name, type, class: klass, ttl, rdata: buf.subarray(off, off + rdlen), rdataOffset: off };
    off += rdlen;
    return rr;
  };
  for (let i = 0; i < d.ancount; i++) d.answers.push(readRR());
  for (let i = 0; i < d.nscount; i++) d.authority.push(readRR());
  for (let i = 0; i < d.arcount; i++) {
    const rr = readRR();
    if (rr.type === T.OPT) {
      if (d.opt) throw new DecodeError('two OPT records');
      if (rr.name !== '.') throw new DecodeError('OPT not at the root');
      d.opt = {
        udpSize: rr.class,
        extRcode: rr.ttl >>> 24,
        version: (rr.ttl >>> 16) & 0xff,
        do: (rr.ttl & 0x8000) !== 0,
        options: rr.rdata,
      };
      d.rcode = (d.opt.extRcode << 4) | d.headerRcode;
    }
    d.additional.push(rr);
  }
  d.trailing = buf.length - off;
  return d;
}

/** Presentation form of an A or AAAA rdata. */
export function ipOf(rr: RR): string {
  if (rr.type === T.A && rr.rdata.length === 4) return Array.from(rr.rdata).join('.');
  if (rr.type === T.AAAA && rr.rdata.length === 16) {
    const g: string[] = [];
    for (let i = 0; i < 16; i += 2) g.push(rr.rdata.readUInt16BE(i).toString(16));
    return g.join(':');
  }
  return `<${rr.type}:${rr.rdata.toString('hex')}>`;
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export { delay };

/** Sends one datagram from a fresh socket and returns the first reply, or null after `timeoutMs`. */
export async function udpExchange(
  port: number,
  msg: Buffer,
  timeoutMs = 1000,
  host = '127.0.0.1',
): Promise<Buffer | null> {
  const s: UdpSocket = createSocket('udp4');
  try {
    return await new Promise<Buffer | null>((resolve, reject) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      s.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      s.send(msg, port, host);
    });
  } finally {
    s.close();
  }
}

/** Frames a message with the 2-byte TCP length prefix. */
export function frame(msg: Buffer): Buffer {
  const l = Buffer.alloc(2);
  l.writeUInt16BE(msg.length, 0);
  return Buffer.concat([l, msg]);
}

/** What happened on a TCP connection: complete frames received and how it ended. */
export interface TcpResult {
  messages: Buffer[];
  /** Raw bytes left over that do not form a complete frame. */
  leftover: number;
  /**
   * 'complete' (got `want` messages, connection still open), 'closed' (server ended or reset it),
   * 'timeout' (still open when we gave up), 'refused', 'error'.
   */
  end: 'complete' | 'closed' | 'timeout' | 'refused' | 'error';
  error?: string;
  /** ms from the last write to the server closing the connection (when it did). */
  closedAfterMs?: number;
}

/**
 * Opens a TCP connection, writes `chunks` (with `gapMs` between them), optionally half-closes,
 * and collects framed replies until `want` messages arrived, the server closed, or `timeoutMs`.
 */
export async function tcpSession(
  port: number,
  chunks: Buffer[],
  o: { want?: number; timeoutMs?: number; gapMs?: number; endAfterWrite?: boolean; host?: string } = {},
): Promise<TcpResult> {
  const { want = Infinity, timeoutMs = 2000, gapMs = 0, endAfterWrite = false, host = '127.0.0.1' } = o;
  return new Promise<TcpResult>((resolve) => {
    const sock: TcpSocket = connect({ port, host });
    let buf = Buffer.alloc(0);
    const messages: Buffer[] = [];
    let lastWrite = Date.now();
    let done = false;
    const finish = (end: TcpResult['end'], error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const r: TcpResult = { messages, leftover: buf.length, end };
      if (error) r.error = error;
      if (end === 'closed') r.closedAfterMs = Date.now() - lastWrite;
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const l = buf.readUInt16BE(0);
        if (buf.length < 2 + l) break;
        messages.push(buf.subarray(2, 2 + l));
        buf = buf.subarray(2 + l);
      }
      if (messages.length >= want) finish('complete');
    });
    sock.on('end', () => finish('closed'));
    sock.on('close', () => finish('closed'));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') finish('refused', e.code);
      else if (e.code === 'ECONNRESET' || e.code === 'EPIPE') finish('closed', e.code);
      else finish('error', e.code ?? e.message);
    });
    sock.on('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (done) return;
        sock.write(chunks[i]);
        lastWrite = Date.now();
        if (gapMs && i < chunks.length - 1) await delay(gapMs);
      }
      if (endAfterWrite && !done) sock.end();
    });
  });
}

/** One query over a fresh TCP connection; the decoded reply or null. */
export async function tcpQuery(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | null> {
  const r = await tcpSession(port, [frame(msg)], { want: 1, timeoutMs });
  return r.messages[0] ?? null;
}

/** Resident set size of a process in bytes, from /proc/PID/status (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Whether a process is alive (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Small, fast, seedable PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

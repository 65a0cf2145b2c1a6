/**
 * Response encoding for the server: an engine {@link Answer} and what the query said become one
 * message through the shared codec (message.ts: name compression, whole-RRset truncation with
 * TC, EDNS OPT with our payload size and the extended rcode). Runs off the hot path: its output
 * is cached (see server/responder.ts).
 */
import { MAX_UDP_PAYLOAD } from './constants.js';
import { encodeMessage, type RecordInput } from './message.js';

/** A record ready to be encoded (class IN). */
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

function records(rrs: WireRecord[]): RecordInput[] {
  const out: RecordInput[] = new Array(rrs.length);
  for (let i = 0; i < rrs.length; i++) {
    const r = rrs[i];
    out[i] = { name: r.owner, type: r.type, ttl: r.ttl, rdata: r.rdata };
  }
  return out;
}

/** The question of `ctx` (an uncompressed name, type and class) as labels, type and class. */
function question(q: Buffer): { name: Uint8Array[]; type: number; class: number }[] {
  if (q.length === 0) return [];
  const labels: Uint8Array[] = [];
  let o = 0;
  while (q[o] !== 0) {
    labels.push(q.subarray(o + 1, o + 1 + q[o]));
    o += 1 + q[o];
  }
  return [{ name: labels, type: q.readUInt16BE(o + 1), class: q.readUInt16BE(o + 3) }];
}

/** Encodes a response. The ID is left 0 (patched per query). */
export function encodeResponse(ans: Answer, ctx: EncodeContext): Buffer {
  return encodeMessage(
    {
      id: 0,
      opcode: ctx.opcode,
      rcode: ctx.edns ? ans.rcode : ans.rcode & 0xf,
      flags: { qr: true, aa: ans.aa, rd: (ctx.queryFlags & 0x0100) !== 0, cd: (ctx.queryFlags & 0x0010) !== 0 },
      question: question(ctx.question),
      answer: records(ans.answer),
      authority: records(ans.authority),
      additional: records(ans.additional),
      edns: ctx.edns ? { udpPayload: MAX_UDP_PAYLOAD, dnssecOk: ctx.dnssecOk } : undefined,
    },
    { maxSize: ctx.maxSize, truncate: true },
  );
}

/** Whether an encoded response has TC set. */
export function isTruncated(msg: Buffer): boolean {
  return (msg[2] & 0x02) !== 0;
}

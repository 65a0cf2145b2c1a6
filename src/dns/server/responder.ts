/**
 * Message in → message out, for UDP and TCP alike. The hot path: parse the header and question,
 * look the answer up in the wire cache, copy it, patch ID, question case, RD and CD. A miss runs
 * the engine and the encoder once and caches the result until the zones or the overlay change.
 * Never throws: an internal error becomes SERVFAIL.
 */
import { addressFromBytes } from '../../core/addresses.js';
import { labelsToKey, nameKey } from '../name.js';
import { lookup, type AddressOverlay, type ZoneSet } from '../engine/engine.js';
import { MAX_UDP_PAYLOAD, Rcode, RRClass, RRType } from '../wire/constants.js';
import { encodeResponse, type Answer } from '../wire/encoder.js';
import { isProblem, parseQuery, type ParsedQuery } from '../wire/query.js';

/** Counters the responder keeps; read by the metrics collector. */
export interface ResponderStats {
  /** Indexed by transport (0 udp, 1 tcp) × RCODE_LABELS index. */
  readonly queries: Float64Array;
  /** Packets answered with nothing, by DROP_REASONS index. */
  readonly dropped: Float64Array;
  /** Internal errors turned into SERVFAIL. */
  internalErrors: number;
}

export const TRANSPORTS = ['udp', 'tcp'] as const;
/** Bounded rcode label values; anything else counts as "other". */
export const RCODE_LABELS = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'BADVERS', 'other'] as const;
export const DROP_REASONS = ['short', 'response'] as const;

function rcodeIndex(rcode: number): number {
  switch (rcode) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 2;
    case 3: return 3;
    case 4: return 4;
    case 5: return 5;
    case 16: return 6;
    default: return 7;
  }
}

/** The smallest size limit a response can have (RFC 1035 UDP; EDNS sizes below it are raised to it). */
const MIN_LIMIT = 512;

interface CacheEntry {
  full: Buffer;
  /**
   * What re-encodes the answer for a smaller limit: kept only when `full` is over
   * {@link MIN_LIMIT} bytes, so that most entries are a Buffer alone (a cache of 400,000 entries
   * is then a fraction of the heap that major garbage collections walk).
   */
  source?: { answer: Answer; ctx: { opcode: number; edns: boolean; dnssecOk: boolean; question: Buffer } };
  /** Truncated encodings by size limit. */
  truncated?: Map<number, Buffer>;
}

/** Sampling hook for the latency histogram: called with seconds for one query in `sampleEvery`. */
export type LatencySink = (seconds: number) => void;

export interface ResponderOptions {
  /** Entries per cache generation (two generations are kept). */
  cacheEntries?: number;
  latency?: LatencySink;
  /** 1 in N queries is timed (a power of two). */
  sampleEvery?: number;
  /** Called for internal errors (logged by the server, rate-limited there). */
  onError?: (err: unknown, query: Buffer) => void;
}

/** Answers DNS messages from a zone set (and an optional overlay), through a wire cache. */
export class Responder {
  readonly stats: ResponderStats = {
    queries: new Float64Array(TRANSPORTS.length * RCODE_LABELS.length),
    dropped: new Float64Array(DROP_REASONS.length),
    internalErrors: 0,
  };
  private zones: ZoneSet;
  private overlay: AddressOverlay | undefined;
  private hot = new Map<string, CacheEntry>();
  private cold = new Map<string, CacheEntry>();
  private readonly cacheEntries: number;
  private readonly sampleMask: number;
  private counter = 0;
  /** Bumped on every change of zones or overlay. */
  generation = 0;

  constructor(zones: ZoneSet, private readonly opts: ResponderOptions = {}) {
    this.zones = zones;
    this.cacheEntries = opts.cacheEntries ?? 200_000;
    this.sampleMask = (opts.sampleEvery ?? 64) - 1;
  }

  /** Replaces the zones and/or overlay atomically; cached answers are dropped. */
  update(change: { zones?: ZoneSet; overlay?: AddressOverlay | null }): void {
    if (change.zones) this.zones = change.zones;
    if (change.overlay !== undefined) this.overlay = change.overlay ?? undefined;
    this.hot = new Map();
    this.cold = new Map();
    this.generation++;
  }

  /** Encoded answers currently cached. */
  get cacheSize(): number {
    return this.hot.size + this.cold.size;
  }

  get zoneSet(): ZoneSet {
    return this.zones;
  }

  /** The overlay answers are built with now. */
  get currentOverlay(): AddressOverlay | undefined {
    return this.overlay;
  }

  /**
   * The first address the server answers for `name` now (A, else AAAA), following CNAMEs in our
   * zones, overlays applied: what a customer on our DNS gets. Null when there is none.
   */
  resolve(name: string): { address: string; family: 4 | 6 } | null {
    let key: string;
    try {
      key = nameKey(name.endsWith('.') ? name : name + '.');
    } catch {
      return null;
    }
    for (const type of [RRType.A, RRType.AAAA]) {
      const ans = lookup(this.zones, key, type, { tcp: false, overlay: this.overlay });
      const rr = ans.answer.find((r) => r.type === type);
      if (rr) {
        return addressFromBytes(rr.rdata);
      }
    }
    return null;
  }

  /** Answers one message; null means send nothing. `tcp` selects limits and counters. */
  respond(msg: Buffer, tcp: boolean): Buffer | null {
    const timed = this.opts.latency !== undefined && (++this.counter & this.sampleMask) === 0;
    const t0 = timed ? process.hrtime.bigint() : 0n;
    let out: Buffer | null;
    try {
      out = this.answer(msg, tcp);
    } catch (err) {
      this.stats.internalErrors++;
      this.opts.onError?.(err, msg);
      out = msg.length >= 12 && (msg[2] & 0x80) === 0 ? errorResponse(msg, -1, Rcode.SERVFAIL) : null;
    }
    if (out) this.stats.queries[(tcp ? RCODE_LABELS.length : 0) + rcodeIndex(responseRcode(out))]++;
    if (timed) this.opts.latency!(Number(process.hrtime.bigint() - t0) / 1e9);
    return out;
  }

  private answer(msg: Buffer, tcp: boolean): Buffer | null {
    const q = parseQuery(msg);
    if (isProblem(q)) {
      switch (q.kind) {
        case 'drop':
          this.stats.dropped[DROP_REASONS.indexOf(q.reason)]++;
          return null;
        case 'formerr':
          return errorResponse(msg, q.qnameEnd, Rcode.FORMERR);
        case 'notimp':
          return errorResponse(msg, q.qnameEnd, Rcode.NOTIMP);
      }
    }
    if (q.ednsVersion > 0) return this.encodeFresh(msg, q, bare(Rcode.BADVERS), tcp);
    const key = q.qtype === RRType.ANY && tcp ? q.key + 'T' : q.key;
    let entry = this.hot.get(key);
    if (entry === undefined) {
      entry = this.cold.get(key);
      if (entry === undefined) entry = this.build(q, tcp);
      if (this.hot.size >= this.cacheEntries) {
        this.cold = this.hot;
        this.hot = new Map();
      }
      this.hot.set(key, entry);
    }
    const limit = tcp ? 65535 : q.ednsPayload < 0 ? MIN_LIMIT : Math.min(Math.max(q.ednsPayload, MIN_LIMIT), MAX_UDP_PAYLOAD);
    let wire = entry.full;
    if (wire.length > limit) wire = this.truncated(entry, limit);
    const out = Buffer.allocUnsafe(wire.length);
    wire.copy(out);
    out[0] = msg[0];
    out[1] = msg[1];
    out[2] = (out[2] & 0xfe) | (msg[2] & 0x01);
    out[3] = (out[3] & 0xef) | (msg[3] & 0x10);
    msg.copy(out, 12, 12, q.qnameEnd);
    return out;
  }

  private build(q: ParsedQuery, tcp: boolean): CacheEntry {
    const question = Buffer.from(q.key.slice(0, q.qnameEnd + 4 - 12), 'latin1');
    let answer: Answer;
    if (q.qclass !== RRClass.IN || q.qtype === RRType.AXFR || q.qtype === RRType.IXFR) {
      answer = bare(Rcode.REFUSED); // other classes and zone transfers are not served
    } else if (q.qtype === RRType.OPT || (q.qtype >= 128 && q.qtype <= 254)) {
      answer = bare(Rcode.FORMERR); // meta-types other than ANY/AXFR/IXFR cannot be asked for (RFC 6895 3.1)
    } else {
      answer = lookup(this.zones, questionKey(question), q.qtype, { tcp, overlay: this.overlay });
    }
    const ctx = { opcode: q.opcode, edns: q.ednsPayload >= 0, dnssecOk: q.dnssecOk, question };
    const full = encodeResponse(answer, { ...ctx, queryFlags: 0, maxSize: 65535 });
    return full.length > MIN_LIMIT ? { full, source: { answer, ctx } } : { full };
  }

  private truncated(entry: CacheEntry, limit: number): Buffer {
    let t = entry.truncated?.get(limit);
    if (!t) {
      const { answer, ctx } = entry.source!; // limit < full.length, so full is over MIN_LIMIT
      t = encodeResponse(answer, { ...ctx, queryFlags: 0, maxSize: limit });
      entry.truncated ??= new Map();
      if (entry.truncated.size < 64) entry.truncated.set(limit, t);
    }
    return t;
  }

  private encodeFresh(msg: Buffer, q: ParsedQuery, answer: Answer, tcp: boolean): Buffer {
    const question = msg.subarray(12, q.qnameEnd + 4);
    const out = encodeResponse(answer, {
      question, opcode: q.opcode, queryFlags: q.flags, edns: q.ednsPayload >= 0, dnssecOk: q.dnssecOk,
      maxSize: tcp ? 65535 : 512,
    });
    out[0] = msg[0];
    out[1] = msg[1];
    return out;
  }
}

/** A non-authoritative answer with an rcode and nothing else. */
function bare(rcode: number): Answer {
  return { rcode, aa: false, answer: [], authority: [], additional: [] };
}

/** The full rcode of an encoded response (header rcode; extended bits are only used for BADVERS). */
function responseRcode(msg: Buffer): number {
  const r = msg[3] & 0x0f;
  if (r === 0 && msg.readUInt16BE(10) > 0 && msg.length >= 23 && msg.readUInt16BE(msg.length - 10) === RRType.OPT) {
    return (msg[msg.length - 6] << 4) | r;
  }
  return r;
}

/** Canonical key of a question name in wire form (no compression). */
function questionKey(question: Buffer): string {
  const labels: Uint8Array[] = [];
  let o = 0;
  while (question[o] !== 0) {
    labels.push(question.subarray(o + 1, o + 1 + question[o]));
    o += 1 + question[o];
  }
  return labelsToKey(labels);
}

/**
 * A header-only error response (with the question when it parsed). Used for FORMERR, NOTIMP and
 * SERVFAIL, where nothing else about the query can be trusted.
 */
export function errorResponse(msg: Buffer, qnameEnd: number, rcode: number): Buffer {
  const withQuestion = qnameEnd > 12 && qnameEnd + 4 <= msg.length;
  const len = withQuestion ? qnameEnd + 4 : 12;
  const out = Buffer.alloc(len);
  msg.copy(out, 0, 0, Math.min(len, msg.length));
  out[2] = 0x80 | (msg[2] & 0x79); // QR, opcode and RD as received
  out[3] = (msg[3] & 0x10) | (rcode & 0x0f); // CD as received
  out.writeUInt16BE(withQuestion ? 1 : 0, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  return out;
}

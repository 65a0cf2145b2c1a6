/**
 * RDATA in presentation form (RFC 1035 section 5, RFC 3597 section 5) to uncompressed wire
 * form and back. The master-file lexer (master-file.ts) hands over the tokens of one record's
 * RDATA; this module knows what each type's fields are.
 *
 * Supported presentation formats: A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, NAPTR,
 * DNAME, DS, SSHFP, TLSA, CAA. Every type (these included) also accepts the RFC 3597 generic
 * form `\# <length> <hex>...`; for the types above the generic bytes are checked to be
 * well-formed. Other types can only be written in the generic form.
 */
import {
  type Labels, NameError, labelsToKey, labelsToText, labelsToWire, parseName, MAX_LABEL_LENGTH,
  MAX_NAME_WIRE_LENGTH,
} from '../name.js';
import { RRType, typeName } from '../wire/constants.js';

/** Largest RDATA (the RDLENGTH field is 16 bits). */
export const MAX_RDATA_LENGTH = 65535;

/** Largest TTL accepted in a zone (RFC 2181 section 8). */
export const MAX_TTL = 0x7fffffff;

/** A bad RDATA field: `reason` says why, `token` is the index of the offending token. */
export class RdataError extends Error {
  override name = 'RdataError';
  constructor(readonly reason: string, readonly token: number) {
    super(reason);
  }
}

/** The origin that relative names in RDATA are resolved against, in the three forms we need. */
export interface Origin {
  labels: Labels;
  /** Canonical key (see name.ts). */
  key: string;
  /** Uncompressed wire form. */
  wire: Buffer;
}

/** Builds an {@link Origin} from a key or absolute presentation name ("example.com."). */
export function makeOrigin(name: string): Origin {
  const labels = parseName(name.endsWith('.') ? name : name + '.', null);
  return originFromLabels(labels);
}

/** Builds an {@link Origin} from labels. */
export function originFromLabels(labels: Labels): Origin {
  return { labels, key: labelsToKey(labels), wire: labelsToWire(labels) };
}

/**
 * Parses a TTL or SOA timer: plain seconds, or a sequence of `<number><unit>` with units
 * w, d, h, m, s in any case (BIND semantics: `1h30m`, `2W`; `1h30` is invalid).
 * Returns -1 when the text is not a TTL or exceeds 2^32-1.
 */
export function parseTtl(s: string): number {
  const n = s.length;
  if (n === 0 || n > 63) return -1;
  let total = 0;
  let i = 0;
  let sawUnit = false;
  while (i < n) {
    let v = 0;
    const start = i;
    while (i < n) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      i++;
    }
    if (i === start || i - start > 10 || v > 0xffffffff) return -1;
    if (i === n) {
      if (sawUnit) return -1;
      return v;
    }
    const u = s.charCodeAt(i) | 0x20;
    let mult: number;
    if (u === 0x77 /* w */) mult = 604800;
    else if (u === 0x64 /* d */) mult = 86400;
    else if (u === 0x68 /* h */) mult = 3600;
    else if (u === 0x6d /* m */) mult = 60;
    else if (u === 0x73 /* s */) mult = 1;
    else return -1;
    i++;
    sawUnit = true;
    total += v * mult;
    if (total > 0xffffffff) return -1;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Presentation -> wire
// ---------------------------------------------------------------------------------------------

/**
 * Scratch output; every encoder writes here and the result is copied out once. The slack past
 * MAX_RDATA_LENGTH absorbs one name or character before the length checks catch an overflow.
 */
const W = Buffer.allocUnsafe(MAX_RDATA_LENGTH + 1024);
let wp = 0;

// the tokens being encoded
let T: readonly string[] = [];
let Q: readonly boolean[] = [];
let ti = 0;
let tEnd = 0;
let ORIGIN: Origin;

function fail(reason: string, tok: number = ti): never {
  throw new RdataError(reason, tok);
}

function tooLong(): never {
  fail(`RDATA longer than ${MAX_RDATA_LENGTH} bytes`);
}

/** Fails unless n more bytes fit in an RDATA. */
function room(n: number): void {
  if (wp + n > MAX_RDATA_LENGTH) tooLong();
}

/** Next token, which must exist. */
function need(what: string): string {
  if (ti >= tEnd) fail(`missing ${what}`, tEnd - 1);
  return T[ti];
}

/** Next token, which must exist and not be quoted. */
function plain(what: string): string {
  const t = need(what);
  if (Q[ti]) fail(`bad ${what} "${t}" (must not be quoted)`);
  return t;
}

function parseUint(t: string, max: number): number {
  const n = t.length;
  if (n === 0 || n > 10) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v > max ? -1 : v;
}

function u8(what: string): void {
  const t = plain(what);
  const v = parseUint(t, 0xff);
  if (v < 0) fail(`bad ${what} "${t}" (0-255)`);
  W[wp++] = v;
  ti++;
}

function u16(what: string): void {
  const t = plain(what);
  const v = parseUint(t, 0xffff);
  if (v < 0) fail(`bad ${what} "${t}" (0-65535)`);
  W[wp++] = v >>> 8;
  W[wp++] = v & 0xff;
  ti++;
}

function u32(what: string, units: boolean): void {
  const t = plain(what);
  const v = units ? parseTtl(t) : parseUint(t, 0xffffffff);
  if (v < 0) fail(`bad ${what} "${t}"`);
  W.writeUInt32BE(v, wp);
  wp += 4;
  ti++;
}

/** Encodes a domain name (relative to the origin, `@` allowed), case kept. */
function name(what: string): void {
  const raw = plain(what);
  if (wp > MAX_RDATA_LENGTH) tooLong();
  writeName(raw, what);
  ti++;
}

function writeName(raw: string, what: string): void {
  if (raw === '@') {
    ORIGIN.wire.copy(W, wp);
    wp += ORIGIN.wire.length;
    return;
  }
  // Fast path: plain ASCII without escapes. Same result as parseName(); anything unusual
  // (escapes, empty labels, over-long names) goes through parseName() for its checks and messages.
  const start = wp;
  const n = raw.length;
  let lenPos = wp++;
  let labelLen = 0;
  let ok = n > 0;
  for (let i = 0; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x2e) {
      if (labelLen === 0 || labelLen > MAX_LABEL_LENGTH) { ok = false; break; }
      W[lenPos] = labelLen;
      lenPos = wp++;
      labelLen = 0;
    } else if (c === 0x5c || c >= 0x80) {
      ok = false;
      break;
    } else {
      W[wp++] = c;
      labelLen++;
    }
  }
  if (ok) {
    if (labelLen > 0) {
      if (labelLen > MAX_LABEL_LENGTH) ok = false;
      else {
        W[lenPos] = labelLen;
        ORIGIN.wire.copy(W, wp);
        wp += ORIGIN.wire.length;
      }
    } else {
      W[lenPos] = 0; // absolute: the slot is the root label
    }
    if (ok && wp - start <= MAX_NAME_WIRE_LENGTH) return;
  }
  wp = start;
  let labels: Labels;
  try {
    labels = parseName(raw, ORIGIN.labels);
  } catch (e) {
    if (e instanceof NameError) fail(`bad ${what}: ${e.message}`);
    throw e;
  }
  for (const l of labels) {
    W[wp++] = l.length;
    W.set(l, wp);
    wp += l.length;
  }
  W[wp++] = 0;
}

/**
 * Writes the bytes of a character-string's text (escapes `\X`, `\DDD` decoded; other non-ASCII
 * characters as UTF-8) at wp; returns the byte count.
 */
function writeText(t: string, what: string): number {
  const start = wp;
  const n = t.length;
  for (let i = 0; i < n; i++) {
    if (wp > MAX_RDATA_LENGTH) tooLong();
    let c = t.charCodeAt(i);
    if (c === 0x5c) {
      const d1 = t.charCodeAt(i + 1) - 0x30;
      if (d1 >= 0 && d1 <= 9) {
        const d2 = t.charCodeAt(i + 2) - 0x30;
        const d3 = t.charCodeAt(i + 3) - 0x30;
        if (!(d2 >= 0 && d2 <= 9 && d3 >= 0 && d3 <= 9)) fail(`bad escape in ${what} "${t}" (\\DDD needs 3 digits)`);
        const v = d1 * 100 + d2 * 10 + d3;
        if (v > 255) fail(`bad escape in ${what} "${t}" (\\${t.slice(i + 1, i + 4)} is over 255)`);
        W[wp++] = v;
        i += 3;
        continue;
      }
      if (i + 1 >= n) fail(`dangling backslash in ${what} "${t}"`);
      c = t.charCodeAt(++i);
    }
    if (c < 0x80) W[wp++] = c;
    else if (c < 0x800) {
      W[wp++] = 0xc0 | (c >> 6);
      W[wp++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const cp = t.codePointAt(i) as number;
      i++;
      W[wp++] = 0xf0 | (cp >> 18);
      W[wp++] = 0x80 | ((cp >> 12) & 0x3f);
      W[wp++] = 0x80 | ((cp >> 6) & 0x3f);
      W[wp++] = 0x80 | (cp & 0x3f);
    } else {
      W[wp++] = 0xe0 | (c >> 12);
      W[wp++] = 0x80 | ((c >> 6) & 0x3f);
      W[wp++] = 0x80 | (c & 0x3f);
    }
  }
  return wp - start;
}

/** A <character-string>: length byte + at most 255 bytes (longer is an error, as in BIND). */
function charString(what: string): void {
  const t = need(what);
  room(1);
  const lenPos = wp++;
  const len = writeText(t, what);
  if (len > 255) fail(`${what} longer than 255 bytes (${len}); split it into several quoted strings`);
  W[lenPos] = len;
  ti++;
}

/**
 * A TXT string: like a <character-string>, but a string over 255 bytes is split into consecutive
 * 255-byte strings (as Knot and PowerDNS do for long DKIM keys; BIND 9.18 rejects them).
 */
function txtString(): void {
  const t = need('TXT string');
  room(1);
  const lenPos = wp++;
  const len = writeText(t, 'TXT string');
  if (len <= 255) {
    W[lenPos] = len;
  } else {
    const data = Buffer.from(W.subarray(lenPos + 1, lenPos + 1 + len));
    wp = lenPos;
    for (let o = 0; o < len; o += 255) {
      const n = Math.min(255, len - o);
      room(n + 1);
      W[wp++] = n;
      data.copy(W, wp, o, o + n);
      wp += n;
    }
  }
  ti++;
}

/** Hex digits in all remaining tokens (at least one byte unless allowEmpty). */
function hexRest(what: string, allowEmpty: boolean): void {
  if (ti >= tEnd && !allowEmpty) fail(`missing ${what}`, tEnd - 1);
  let half = -1;
  for (; ti < tEnd; ti++) {
    const t = T[ti];
    if (Q[ti]) fail(`bad ${what} "${t}" (must not be quoted)`);
    room(t.length >> 1);
    for (let i = 0; i < t.length; i++) {
      const v = hexVal(t.charCodeAt(i));
      if (v < 0) fail(`bad ${what} "${t}" (not hex)`);
      if (half < 0) half = v;
      else {
        W[wp++] = (half << 4) | v;
        half = -1;
      }
    }
  }
  if (half >= 0) fail(`bad ${what} (odd number of hex digits)`, tEnd - 1);
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

function ipv4(): void {
  const t = plain('IPv4 address');
  if (!writeIPv4(t)) fail(`bad IPv4 address "${t}"`);
  ti++;
}

/** Writes a dotted quad at wp (no leading zeros, as inet_pton). */
function writeIPv4(t: string): boolean {
  const n = t.length;
  let parts = 0;
  let v = 0;
  let digits = 0;
  const start = wp;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? t.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || parts === 4) { wp = start; return false; }
      W[wp++] = v;
      parts++;
      v = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && v === 0) { wp = start; return false; } // leading zero
      v = v * 10 + (c - 0x30);
      digits++;
      if (v > 255) { wp = start; return false; }
    } else {
      wp = start;
      return false;
    }
  }
  if (parts !== 4) { wp = start; return false; }
  return true;
}

function ipv6(): void {
  const t = plain('IPv6 address');
  if (!writeIPv6(t)) fail(`bad IPv6 address "${t}"`);
  ti++;
}

/** Writes an IPv6 address (RFC 4291 section 2.2 text forms, embedded IPv4 allowed) at wp. */
function writeIPv6(t: string): boolean {
  const words: number[] = [];
  let gap = -1; // index in words where "::" is
  const n = t.length;
  let i = 0;
  if (n < 2) return false;
  if (t.charCodeAt(0) === 0x3a) {
    if (t.charCodeAt(1) !== 0x3a) return false;
    gap = 0;
    i = 2;
    if (i === n) return writeWords(words, gap);
  }
  for (;;) {
    // one group: hex (1-4) or a trailing dotted quad
    let j = i;
    let v = 0;
    while (j < n && j - i < 5) {
      const h = hexVal(t.charCodeAt(j));
      if (h < 0) break;
      v = (v << 4) | h;
      j++;
    }
    if (j < n && t.charCodeAt(j) === 0x2e) {
      // embedded IPv4 in the last 32 bits
      const save = wp;
      if (!writeIPv4(t.slice(i))) return false;
      words.push((W[save] << 8) | W[save + 1], (W[save + 2] << 8) | W[save + 3]);
      wp = save;
      break;
    }
    if (j === i || j - i > 4) return false;
    words.push(v);
    if (j === n) break;
    if (t.charCodeAt(j) !== 0x3a) return false;
    j++;
    if (j < n && t.charCodeAt(j) === 0x3a) {
      if (gap >= 0) return false;
      gap = words.length;
      j++;
      if (j === n) break;
    } else if (j === n) {
      return false; // trailing single colon
    }
    i = j;
  }
  return writeWords(words, gap);
}

function writeWords(words: number[], gap: number): boolean {
  if (gap < 0 ? words.length !== 8 : words.length > 7) return false;
  const fill = 8 - words.length;
  for (let k = 0; k < words.length; k++) {
    if (k === gap) for (let z = 0; z < fill; z++) { W[wp++] = 0; W[wp++] = 0; }
    W[wp++] = words[k] >>> 8;
    W[wp++] = words[k] & 0xff;
  }
  if (gap === words.length) for (let z = 0; z < fill; z++) { W[wp++] = 0; W[wp++] = 0; }
  return true;
}

function caa(): void {
  u8('CAA flags');
  const tag = plain('CAA tag');
  if (tag.length === 0 || tag.length > 255) fail(`bad CAA tag "${tag}"`);
  for (let i = 0; i < tag.length; i++) {
    const c = tag.charCodeAt(i) | 0x20;
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39))) fail(`bad CAA tag "${tag}" (letters and digits only)`);
  }
  W[wp++] = tag.length;
  wp += W.write(tag, wp, 'latin1');
  ti++;
  const v = need('CAA value');
  writeText(v, 'CAA value');
  ti++;
}

/** DS digest lengths by digest type (RFC 4509, 5933, 6605). */
const DS_DIGEST_LENGTH: Record<number, number> = { 1: 20, 2: 32, 3: 32, 4: 48 };

function encodeKnown(type: number): void {
  switch (type) {
    case RRType.A: ipv4(); break;
    case RRType.AAAA: ipv6(); break;
    case RRType.NS: name('NS target'); break;
    case RRType.CNAME: name('CNAME target'); break;
    case RRType.PTR: name('PTR target'); break;
    case RRType.DNAME: name('DNAME target'); break;
    case RRType.MX: u16('MX preference'); name('MX exchange'); break;
    case RRType.SOA:
      name('SOA MNAME'); name('SOA RNAME');
      u32('SOA serial', false); u32('SOA refresh', true); u32('SOA retry', true);
      u32('SOA expire', true); u32('SOA minimum', true);
      break;
    case RRType.TXT:
      need('TXT string');
      while (ti < tEnd) txtString();
      break;
    case RRType.HINFO: charString('HINFO CPU'); charString('HINFO OS'); break;
    case RRType.SRV: u16('SRV priority'); u16('SRV weight'); u16('SRV port'); name('SRV target'); break;
    case RRType.NAPTR:
      u16('NAPTR order'); u16('NAPTR preference'); charString('NAPTR flags');
      charString('NAPTR services'); charString('NAPTR regexp'); name('NAPTR replacement');
      break;
    case RRType.CAA: caa(); break;
    case RRType.DS: {
      u16('DS key tag'); u8('DS algorithm'); u8('DS digest type');
      const digestType = W[wp - 1];
      const before = wp;
      hexRest('DS digest', false);
      const want = DS_DIGEST_LENGTH[digestType];
      if (want !== undefined && wp - before !== want) {
        fail(`bad DS digest length ${wp - before} for digest type ${digestType} (want ${want})`, tEnd - 1);
      }
      break;
    }
    case RRType.SSHFP: u8('SSHFP algorithm'); u8('SSHFP fingerprint type'); hexRest('SSHFP fingerprint', false); break;
    case RRType.TLSA:
      u8('TLSA usage'); u8('TLSA selector'); u8('TLSA matching type'); hexRest('TLSA data', false);
      break;
    default:
      fail(`type ${typeName(type)} is only supported in RFC 3597 form (\\# <length> <hex>)`);
  }
}

/** Types whose presentation format this module reads and writes. */
const TEXT_TYPES = new Set<number>([
  RRType.A, RRType.AAAA, RRType.NS, RRType.CNAME, RRType.PTR, RRType.DNAME, RRType.MX, RRType.SOA,
  RRType.TXT, RRType.HINFO, RRType.SRV, RRType.NAPTR, RRType.CAA, RRType.DS, RRType.SSHFP, RRType.TLSA,
]);

/** Whether `type` has a presentation format here (otherwise only `\#` works). */
export function hasTextFormat(type: number): boolean {
  return TEXT_TYPES.has(type);
}

/** RFC 3597 section 5: `\# <length> <hex>...`, length in decimal, hex in any number of tokens. */
function generic(type: number): void {
  ti++; // the \# token
  const lt = plain('RFC 3597 data length');
  const len = parseUint(lt, MAX_RDATA_LENGTH);
  if (len < 0) fail(`bad RFC 3597 data length "${lt}"`);
  ti++;
  const lenTok = ti - 1;
  hexRest('RFC 3597 data', true);
  if (wp !== len) fail(`RFC 3597 data is ${wp} bytes but the length says ${len}`, lenTok);
  if (TEXT_TYPES.has(type)) {
    try {
      decode(type, W.subarray(0, wp));
    } catch (e) {
      if (e instanceof WireError) fail(`bad RFC 3597 data for type ${typeName(type)}: ${e.message}`, lenTok);
      throw e;
    }
  }
}

/**
 * Encodes the RDATA of one record from its tokens `text[start..end)` (as the master-file lexer
 * gives them: escapes undecoded, quotes removed, `quoted[i]` telling which were quoted).
 * Relative names are resolved against `origin`. Throws {@link RdataError} naming the token.
 */
export function rdataFromTokens(
  type: number, text: readonly string[], quoted: readonly boolean[], start: number, end: number, origin: Origin,
): Buffer {
  T = text;
  Q = quoted;
  ti = start;
  tEnd = end;
  ORIGIN = origin;
  wp = 0;
  if (ti < tEnd && !Q[ti] && T[ti] === '\\#') generic(type);
  else encodeKnown(type);
  if (ti < tEnd) fail(`unexpected "${T[ti]}" after the ${typeName(type)} data`);
  if (wp > MAX_RDATA_LENGTH) tooLong();
  const out = Buffer.allocUnsafe(wp);
  if (wp <= 64) for (let k = 0; k < wp; k++) out[k] = W[k];
  else W.copy(out, 0, 0, wp);
  T = Q = [];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Wire -> presentation
// ---------------------------------------------------------------------------------------------

/** Malformed wire RDATA for its type. */
export class WireError extends Error {
  override name = 'WireError';
}

class Reader {
  pos = 0;
  constructor(readonly b: Uint8Array) {}
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new WireError('truncated');
  }
  u8(): number { this.need(1); return this.b[this.pos++]; }
  u16(): number { this.need(2); const v = (this.b[this.pos] << 8) | this.b[this.pos + 1]; this.pos += 2; return v; }
  u32(): number { this.need(4); const v = (this.u16() * 65536) + this.u16(); return v; }
  name(): string {
    const labels: Labels = [];
    let total = 1;
    for (;;) {
      const len = this.u8();
      if (len === 0) break;
      if (len > MAX_LABEL_LENGTH) throw new WireError('bad label length (compression is not allowed in RDATA)');
      this.need(len);
      labels.push(this.b.subarray(this.pos, this.pos + len));
      this.pos += len;
      total += len + 1;
      if (total > MAX_NAME_WIRE_LENGTH) throw new WireError('name longer than 255 bytes');
    }
    return labelsToText(labels);
  }
  charString(): string {
    const len = this.u8();
    this.need(len);
    const s = quoteText(this.b, this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
  rest(): Uint8Array { const r = this.b.subarray(this.pos); this.pos = this.b.length; return r; }
  end(): void {
    if (this.pos !== this.b.length) throw new WireError(`${this.b.length - this.pos} bytes of trailing data`);
  }
}

/** `"..."` with `"` and `\` escaped and non-printable bytes as \DDD (BIND's style). */
function quoteText(b: Uint8Array, from: number, to: number): string {
  let s = '"';
  for (let i = from; i < to; i++) {
    const c = b[i];
    if (c === 0x22 || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c < 0x20 || c >= 0x7f) s += '\\' + String(c).padStart(3, '0');
    else s += String.fromCharCode(c);
  }
  return s + '"';
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex').toUpperCase();
}

/** IPv6 text as BIND's inet_ntop prints it (RFC 5952 compression, embedded IPv4 for ::ffff:0:0/96 and ::/96). */
function ipv6Text(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push((b[i] << 8) | b[i + 1]);
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curBase < 0) { curBase = i; curLen = 1; } else curLen++;
    } else if (curBase >= 0) {
      if (curLen > bestLen) { bestBase = curBase; bestLen = curLen; }
      curBase = -1;
    }
  }
  if (curBase >= 0 && curLen > bestLen) { bestBase = curBase; bestLen = curLen; }
  if (bestLen < 2) bestBase = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) s += ':';
      continue;
    }
    if (i !== 0) s += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      s += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      break;
    }
    s += w[i].toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) s += ':';
  return s;
}

/** Strict decoder: presentation text of a well-formed RDATA, WireError otherwise. */
function decode(type: number, b: Uint8Array): string {
  const r = new Reader(b);
  let s: string;
  switch (type) {
    case RRType.A:
      if (b.length !== 4) throw new WireError(`A RDATA must be 4 bytes, not ${b.length}`);
      return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
    case RRType.AAAA:
      if (b.length !== 16) throw new WireError(`AAAA RDATA must be 16 bytes, not ${b.length}`);
      return ipv6Text(b);
    case RRType.NS: case RRType.CNAME: case RRType.PTR: case RRType.DNAME:
      s = r.name();
      break;
    case RRType.MX:
      s = `${r.u16()} ${r.name()}`;
      break;
    case RRType.SOA:
      s = `${r.name()} ${r.name()} ${r.u32()} ${r.u32()} ${r.u32()} ${r.u32()} ${r.u32()}`;
      break;
    case RRType.TXT: {
      const parts: string[] = [];
      do parts.push(r.charString()); while (r.pos < b.length);
      s = parts.join(' ');
      break;
    }
    case RRType.HINFO:
      s = `${r.charString()} ${r.charString()}`;
      break;
    case RRType.SRV:
      s = `${r.u16()} ${r.u16()} ${r.u16()} ${r.name()}`;
      break;
    case RRType.NAPTR:
      s = `${r.u16()} ${r.u16()} ${r.charString()} ${r.charString()} ${r.charString()} ${r.name()}`;
      break;
    case RRType.CAA: {
      const flags = r.u8();
      const tl = r.u8();
      if (tl === 0) throw new WireError('empty CAA tag');
      r.need(tl);
      const tag = Buffer.from(b.subarray(r.pos, r.pos + tl)).toString('latin1');
      if (!/^[A-Za-z0-9]+$/.test(tag)) throw new WireError('bad CAA tag');
      r.pos += tl;
      s = `${flags} ${tag} ${quoteText(b, r.pos, b.length)}`;
      r.pos = b.length;
      break;
    }
    case RRType.DS: {
      s = `${r.u16()} ${r.u8()} `;
      const dt = r.u8();
      const digest = r.rest();
      if (digest.length === 0) throw new WireError('empty DS digest');
      const want = DS_DIGEST_LENGTH[dt];
      if (want !== undefined && digest.length !== want) throw new WireError(`bad DS digest length for digest type ${dt}`);
      s += `${dt} ${hex(digest)}`;
      break;
    }
    case RRType.SSHFP: {
      s = `${r.u8()} ${r.u8()}`;
      const fp = r.rest();
      if (fp.length === 0) throw new WireError('empty SSHFP fingerprint');
      s += ` ${hex(fp)}`;
      break;
    }
    case RRType.TLSA: {
      s = `${r.u8()} ${r.u8()} ${r.u8()}`;
      const d = r.rest();
      if (d.length === 0) throw new WireError('empty TLSA data');
      s += ` ${hex(d)}`;
      break;
    }
    default:
      return genericText(b);
  }
  r.end();
  return s;
}

function genericText(b: Uint8Array): string {
  return b.length === 0 ? '\\# 0' : `\\# ${b.length} ${hex(b)}`;
}

/**
 * Presentation form of wire RDATA (names absolute, case kept; strings quoted). Types without a
 * presentation format here, and malformed RDATA, come out in RFC 3597 form (`\# 4 0A000001`),
 * which reads back to the same bytes.
 */
export function rdataToText(type: number, rdata: Uint8Array): string {
  try {
    return decode(type, rdata);
  } catch (e) {
    if (e instanceof WireError) return genericText(rdata);
    throw e;
  }
}

/** Checks wire RDATA against its type's layout; throws {@link WireError} when malformed. */
export function validateRdata(type: number, rdata: Uint8Array): void {
  decode(type, rdata);
}

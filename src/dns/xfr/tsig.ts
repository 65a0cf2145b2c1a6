/**
 * TSIG (RFC 8945): DNS messages signed with a shared secret, HMAC through node:crypto. Pure: no
 * I/O, the clock is a parameter (`now`, Unix time in seconds).
 *
 * - Keys: {@link TsigKey} (canonical name as the codec gives it, e.g. "xfr-key.", one of
 *   {@link TSIG_ALGORITHMS}, secret bytes); {@link tsigKey} builds one from configuration text and
 *   throws {@link TsigKeyError} with the reason. hmac-md5 is refused (RFC 8945 6: MUST NOT use).
 * - Signing: {@link signRequest}, {@link signResponse} (covers the request MAC, 4.3.1) and
 *   {@link TsigStreamSigner} for AXFR/IXFR over TCP (5.3.1: every message signed, the first with
 *   the request MAC, the next ones with the prior MAC and the timers only). The input is a whole
 *   message without TSIG; the TSIG RR is appended and ARCOUNT incremented. Reserve
 *   {@link tsigRecordSize} bytes when encoding a message that will be signed.
 * - Verifying: {@link verify} (one message: a request, or a response with `requestMac`) and
 *   {@link TsigStreamVerifier} (a response stream a client receives; up to 99 unsigned messages
 *   between signed ones, the last one signed). Both never throw: any input yields a result, the
 *   failures being the TSIG errors of RFC 8945 5.2 (FORMERR, BADKEY, BADSIG, BADTIME, BADTRUNC),
 *   UNSIGNED (no TSIG) and, for responses, PEER_ERROR (the peer reports a TSIG error).
 * - Errors a server sends back: {@link tsigErrorResponse} (5.2, 5.3.2): BADKEY and BADSIG
 *   unsigned (MAC size 0), BADTIME and BADTRUNC signed with the request's key, all with rcode
 *   NOTAUTH; BADTIME carries the server's time in Other Data and the request's Time Signed.
 *
 * The digested "DNS message" is the message before its TSIG RR, with ARCOUNT decremented and the
 * ID replaced by the TSIG's Original ID (5.2, 4.3.2); names in the TSIG variables are in
 * canonical (lower-case, uncompressed) wire form (4.3.3).
 */
import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { keyToLabels, labelsToKey, labelsToWire, MAX_LABEL_LENGTH, MAX_NAME_WIRE_LENGTH, nameKey, type Labels } from '../name.js';
import { RRClass } from '../wire/constants.js';
import { decodeMessage, encodeMessage, TSIG_TYPE, type DecodedRecord, type Message, type MessageInput } from '../wire/message.js';

// ------------------------------------------------------------------------------ constants ------

/** The HMAC algorithms a key may use, by their TSIG names (RFC 8945 6, without the ".").  */
export const TSIG_ALGORITHMS = ['hmac-sha256', 'hmac-sha384', 'hmac-sha512', 'hmac-sha224', 'hmac-sha1'] as const;
export type TsigAlgorithm = (typeof TSIG_ALGORITHMS)[number];

/** node:crypto digest name and output size in bytes of each algorithm. */
const HASHES: Record<TsigAlgorithm, { digest: string; size: number }> = {
  'hmac-sha256': { digest: 'sha256', size: 32 },
  'hmac-sha384': { digest: 'sha384', size: 48 },
  'hmac-sha512': { digest: 'sha512', size: 64 },
  'hmac-sha224': { digest: 'sha224', size: 28 },
  'hmac-sha1': { digest: 'sha1', size: 20 },
};

/** Fudge we sign with (RFC 8945 10: 300 s recommended). */
export const TSIG_FUDGE = 300;

/** TSIG Error field values (RFC 8945 3, IANA "DNS RCODEs"). */
export const TsigRcode = { NOERROR: 0, BADSIG: 16, BADKEY: 17, BADTIME: 18, BADTRUNC: 22 } as const;

/** The header rcode of a TSIG error response (RFC 8945 5.2). */
export const RCODE_NOTAUTH = 9;
const RCODE_FORMERR = 1;

/** Most consecutive unsigned messages a stream may carry (RFC 8945 5.3.1: accept up to 99). */
export const MAX_UNSIGNED_IN_STREAM = 99;

// ------------------------------------------------------------------------------ keys -----------

/** A TSIG key. `name` is canonical (lower case, absolute: "xfr-key."). */
export interface TsigKey {
  readonly name: string;
  readonly algorithm: TsigAlgorithm;
  readonly secret: Buffer;
}

/** A key given in configuration that cannot be used; `message` says why (never the secret). */
export class TsigKeyError extends Error {
  override name = 'TsigKeyError';
}

/** A message that cannot be signed as asked (not a DNS message, no room for the TSIG RR). */
export class TsigSignError extends Error {
  override name = 'TsigSignError';
}

/** True when `name` is one of {@link TSIG_ALGORITHMS} (exact, lower case). */
export function isTsigAlgorithm(name: string): name is TsigAlgorithm {
  return (TSIG_ALGORITHMS as readonly string[]).includes(name);
}

/**
 * Why `name` cannot be a key's algorithm, or undefined when it can. hmac-md5 is refused: RFC 8945
 * 6 lists it as "MUST NOT" use (MD5 is broken), and a hidden primary is a new deployment; NSD,
 * Knot and BIND all offer hmac-sha256, so a peer never needs it. Supporting it for verification
 * only would not help either: a response must be signed with the request's algorithm.
 */
export function tsigAlgorithmProblem(name: string): string | undefined {
  if (isTsigAlgorithm(name)) return undefined;
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n === 'hmac-md5' || n === 'hmac-md5.sig-alg.reg.int') {
    return 'hmac-md5 is not supported: RFC 8945 section 6 says it MUST NOT be used (MD5 is broken); ' +
      'make a hmac-sha256 key (tsig-keygen -a hmac-sha256 NAME) and configure it on both sides';
  }
  if (isTsigAlgorithm(n)) return `TSIG algorithm "${name}" must be written in lower case without a dot: "${n}"`;
  return `unknown TSIG algorithm "${name}" (supported: ${TSIG_ALGORITHMS.join(', ')})`;
}

/**
 * Decodes a base64 secret as tsig-keygen and nsd-control print it (RFC 4648 alphabet, "="
 * padding; white space is ignored). Throws {@link TsigKeyError} saying what is wrong, never
 * quoting the secret.
 */
export function decodeTsigSecret(text: string): Buffer {
  if (typeof text !== 'string') throw new TsigKeyError('the TSIG secret must be a base64 string');
  const s = text.replace(/[\t\n\r ]+/g, '');
  if (s === '') throw new TsigKeyError('the TSIG secret is empty');
  const bad = /[^A-Za-z0-9+/=]/.exec(s);
  if (bad) {
    const c = bad[0].charCodeAt(0);
    throw new TsigKeyError(`the TSIG secret is not base64: character ${c < 0x20 || c > 0x7e ? `U+${c.toString(16).padStart(4, '0')}` : `"${bad[0]}"`} at position ${bad.index + 1}`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) throw new TsigKeyError('the TSIG secret is not base64: "=" only as padding at the end');
  if (s.length % 4 !== 0) throw new TsigKeyError(`the TSIG secret is not base64: ${s.length} characters, not a multiple of 4 (padding missing or text cut)`);
  return Buffer.from(s, 'base64');
}

/** A checked key from configuration text: canonical name, supported algorithm, decoded secret. */
export function tsigKey(name: string, algorithm: string, secretBase64: string): TsigKey {
  let key: string;
  try {
    key = nameKey(name.endsWith('.') ? name : `${name}.`);
  } catch (e) {
    throw new TsigKeyError(`TSIG key name "${name}": ${(e as Error).message}`);
  }
  if (key === '.') throw new TsigKeyError('a TSIG key name cannot be the root');
  const problem = tsigAlgorithmProblem(algorithm);
  if (problem) throw new TsigKeyError(`TSIG key ${key}: ${problem}`);
  let secret: Buffer;
  try {
    secret = decodeTsigSecret(secretBase64);
  } catch (e) {
    throw new TsigKeyError(`TSIG key ${key}: ${(e as Error).message}`);
  }
  return { name: key, algorithm: algorithm as TsigAlgorithm, secret };
}

/** Where verify() finds keys: one key, a map by canonical name, or a function. */
export type TsigKeyLookup = TsigKey | ReadonlyMap<string, TsigKey> | ((name: string) => TsigKey | undefined);

function findKey(keys: TsigKeyLookup, name: string): TsigKey | undefined {
  if (typeof keys === 'function') return keys(name);
  if (keys instanceof Map) return keys.get(name);
  const k = keys as TsigKey;
  return k.name === name ? k : undefined;
}

/** Wire forms of a key's names, computed once per key. */
interface KeyWire {
  /** Key name, canonical wire form (owner of the TSIG RR and digested). */
  name: Buffer;
  /** Algorithm name, canonical wire form. */
  algorithm: Buffer;
  hash: { digest: string; size: number };
}

const keyWires = new WeakMap<TsigKey, KeyWire>();

function keyWire(key: TsigKey): KeyWire {
  let w = keyWires.get(key);
  if (w) return w;
  if (!isTsigAlgorithm(key.algorithm)) throw new TsigKeyError(`TSIG key ${key.name}: ${tsigAlgorithmProblem(String(key.algorithm))}`);
  if (!Buffer.isBuffer(key.secret)) throw new TsigKeyError(`TSIG key ${key.name}: the secret is not a Buffer`);
  let labels: Labels;
  try {
    labels = keyToLabels(labelsToKey(keyToLabels(key.name))); // canonical: lower case
  } catch (e) {
    throw new TsigKeyError(`TSIG key name "${key.name}": ${(e as Error).message}`);
  }
  w = { name: labelsToWire(labels), algorithm: labelsToWire(keyToLabels(`${key.algorithm}.`)), hash: HASHES[key.algorithm] };
  keyWires.set(key, w);
  return w;
}

/** Bytes the TSIG RR of `key` adds to a message (MAC full length, no Other Data). */
export function tsigRecordSize(key: TsigKey): number {
  const w = keyWire(key);
  return w.name.length + 10 + w.algorithm.length + 16 + w.hash.size;
}

// ------------------------------------------------------------------------------ the record -----

/** The fields of a TSIG RR (RFC 8945 4.2); names as canonical keys. */
export interface TsigRecord {
  keyName: string;
  /** Algorithm name as a canonical key, e.g. "hmac-sha256.". */
  algorithm: string;
  /** Algorithm name in canonical wire form (what is digested and echoed in error responses). */
  algorithmWire: Buffer;
  timeSigned: number;
  fudge: number;
  mac: Buffer;
  originalId: number;
  error: number;
  otherData: Buffer;
}

/** Reads the RDATA of a decoded TSIG RR; a string says why it is malformed. */
export function parseTsigRecord(rec: DecodedRecord): TsigRecord | string {
  const b = rec.rdata;
  const labels: Labels = [];
  let p = 0;
  let total = 1;
  for (;;) {
    if (p >= b.length) return 'algorithm name runs past the RDATA';
    const len = b[p];
    if (len === 0) break;
    if (len > MAX_LABEL_LENGTH) return (len & 0xc0) === 0xc0 ? 'compressed algorithm name' : `bad label length ${len} in the algorithm name`;
    total += len + 1;
    if (total > MAX_NAME_WIRE_LENGTH) return 'algorithm name longer than 255 bytes';
    if (p + 1 + len > b.length) return 'algorithm name runs past the RDATA';
    labels.push(b.subarray(p + 1, p + 1 + len));
    p += 1 + len;
  }
  p += 1;
  if (p + 10 > b.length) return 'RDATA too short for Time Signed, Fudge and MAC Size';
  const timeSigned = b.readUIntBE(p, 6);
  const fudge = b.readUInt16BE(p + 6);
  const macSize = b.readUInt16BE(p + 8);
  p += 10;
  if (p + macSize + 6 > b.length) return `MAC Size ${macSize} runs past the RDATA`;
  const mac = b.subarray(p, p + macSize);
  p += macSize;
  const originalId = b.readUInt16BE(p);
  const error = b.readUInt16BE(p + 2);
  const otherLen = b.readUInt16BE(p + 4);
  p += 6;
  if (p + otherLen !== b.length) {
    return p + otherLen > b.length ? `Other Len ${otherLen} runs past the RDATA` : `${b.length - p - otherLen} bytes after Other Data`;
  }
  const algorithm = labelsToKey(labels);
  return {
    keyName: rec.name, algorithm, algorithmWire: labelsToWire(keyToLabels(algorithm)), timeSigned, fudge, mac,
    originalId, error, otherData: b.subarray(p, p + otherLen),
  };
}

function u16(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(v & 0xffff, 0);
  return b;
}

function u48(v: number): Buffer {
  const b = Buffer.allocUnsafe(6);
  b.writeUIntBE(v, 0, 6);
  return b;
}

/** MAC Size and MAC, as digested for a request MAC or a prior MAC. */
function digestMac(h: Hmac, mac: Buffer): void {
  h.update(u16(mac.length));
  h.update(mac);
}

/** The message before its TSIG RR: bytes [0, end) with `id` and ARCOUNT lowered by `arDelta`. */
function digestMessage(h: Hmac, msg: Buffer, end: number, id: number, arDelta: number): void {
  const head = Buffer.from(msg.subarray(0, 12));
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE((head.readUInt16BE(10) - arDelta) & 0xffff, 10);
  h.update(head);
  h.update(msg.subarray(12, end));
}

interface Variables {
  timeSigned: number;
  fudge: number;
  error: number;
  otherData: Buffer;
}

/** TSIG variables (4.3.3), or the timers only (5.3.1) for the messages after a stream's first. */
function digestVariables(h: Hmac, keyName: Buffer, algorithm: Buffer, v: Variables, timersOnly: boolean): void {
  if (!timersOnly) {
    h.update(keyName);
    h.update(u16(RRClass.ANY));
    h.update(Buffer.alloc(4)); // TTL 0
    h.update(algorithm);
  }
  h.update(u48(v.timeSigned));
  h.update(u16(v.fudge));
  if (!timersOnly) {
    h.update(u16(v.error));
    h.update(u16(v.otherData.length));
    h.update(v.otherData);
  }
}

/** TSIG RR appended to `msg` (ARCOUNT + 1). */
function appendTsig(msg: Buffer, owner: Buffer, algorithm: Buffer, v: Variables, mac: Buffer, originalId: number): Buffer {
  const rdlen = algorithm.length + 16 + mac.length + v.otherData.length;
  const size = msg.length + owner.length + 10 + rdlen;
  if (size > 65535) throw new TsigSignError(`the signed message would be ${size} bytes (over 65535): reserve tsigRecordSize() when encoding it`);
  const out = Buffer.allocUnsafe(size);
  msg.copy(out, 0);
  out.writeUInt16BE(msg.readUInt16BE(10) + 1, 10);
  let o = msg.length;
  o += owner.copy(out, o);
  o = out.writeUInt16BE(TSIG_TYPE, o);
  o = out.writeUInt16BE(RRClass.ANY, o);
  o = out.writeUInt32BE(0, o);
  o = out.writeUInt16BE(rdlen, o);
  o += algorithm.copy(out, o);
  o = out.writeUIntBE(v.timeSigned, o, 6);
  o = out.writeUInt16BE(v.fudge, o);
  o = out.writeUInt16BE(mac.length, o);
  o += mac.copy(out, o);
  o = out.writeUInt16BE(originalId, o);
  o = out.writeUInt16BE(v.error, o);
  o = out.writeUInt16BE(v.otherData.length, o);
  v.otherData.copy(out, o);
  return out;
}

function checkClock(now: number): number {
  const t = Math.floor(now);
  if (!Number.isFinite(t) || t < 0 || t > 0xffffffffffff) throw new TsigSignError(`bad clock value ${now} (Unix time in seconds expected)`);
  return t;
}

function checkUnsigned(message: Buffer): void {
  if (!Buffer.isBuffer(message) || message.length < 12) throw new TsigSignError('not a DNS message (shorter than its header)');
  if (message.readUInt16BE(10) === 0xffff) throw new TsigSignError('no room for a TSIG RR: ARCOUNT is 65535');
}

/** A signed message and the MAC it carries (the request MAC of its response, the prior MAC of the next). */
export interface SignedMessage {
  message: Buffer;
  mac: Buffer;
}

interface SignParams {
  /** Request MAC or prior MAC; absent for a request. */
  prior?: Buffer;
  timersOnly?: boolean;
  timeSigned: number;
  fudge?: number;
  error?: number;
  otherData?: Buffer;
}

function sign(message: Buffer, key: TsigKey, p: SignParams): SignedMessage {
  checkUnsigned(message);
  const w = keyWire(key);
  const v: Variables = { timeSigned: p.timeSigned, fudge: p.fudge ?? TSIG_FUDGE, error: p.error ?? 0, otherData: p.otherData ?? Buffer.alloc(0) };
  const h = createHmac(w.hash.digest, key.secret);
  if (p.prior) digestMac(h, p.prior);
  const id = message.readUInt16BE(0);
  digestMessage(h, message, message.length, id, 0);
  digestVariables(h, w.name, w.algorithm, v, p.timersOnly ?? false);
  const mac = h.digest();
  return { message: appendTsig(message, w.name, w.algorithm, v, mac, id), mac };
}

/** Options of the signers. */
export interface SignOptions {
  /** Fudge in seconds (default {@link TSIG_FUDGE}). */
  fudge?: number;
}

/**
 * Signs a request (RFC 8945 4.3.2): `message` is a whole DNS message without TSIG; returns it
 * with the TSIG RR appended and the MAC (to verify the response with). Throws
 * {@link TsigSignError} / {@link TsigKeyError} for a bad message, key or clock, never for the
 * peer's input.
 */
export function signRequest(message: Buffer, key: TsigKey, now: number, opts: SignOptions = {}): SignedMessage {
  return sign(message, key, { timeSigned: checkClock(now), fudge: opts.fudge });
}

/**
 * Signs a single-message response to a request that verified with `key` (RFC 8945 4.3.1): the
 * request's MAC (as received, see {@link TsigVerified.mac}) is digested first.
 */
export function signResponse(message: Buffer, key: TsigKey, now: number, requestMac: Buffer, opts: SignOptions = {}): SignedMessage {
  return sign(message, key, { prior: requestMac, timeSigned: checkClock(now), fudge: opts.fudge });
}

/**
 * Signs the messages of a response stream (AXFR/IXFR over TCP, RFC 8945 5.3.1), every one of
 * them: the first over the request MAC and all TSIG variables, each next one over the MAC of the
 * one before and the timers only. Messages must be signed in the order they are sent.
 */
export class TsigStreamSigner {
  private prior: Buffer;
  private count = 0;

  constructor(readonly key: TsigKey, requestMac: Buffer, private readonly opts: SignOptions = {}) {
    keyWire(key);
    this.prior = Buffer.from(requestMac);
  }

  /** Messages signed so far. */
  get signed(): number {
    return this.count;
  }

  /** MAC of the last message signed (the request MAC before the first). */
  get lastMac(): Buffer {
    return this.prior;
  }

  /** `message` (whole, without TSIG) with its TSIG RR appended. */
  sign(message: Buffer, now: number): Buffer {
    const s = sign(message, this.key, { prior: this.prior, timersOnly: this.count > 0, timeSigned: checkClock(now), fudge: this.opts.fudge });
    this.prior = s.mac;
    this.count++;
    return s.message;
  }
}

// ------------------------------------------------------------------------------ verifying ------

/** The TSIG errors of RFC 8945 5.2 a verification can end with. */
export type TsigFailure = 'FORMERR' | 'BADKEY' | 'BADSIG' | 'BADTIME' | 'BADTRUNC';

/** A message whose TSIG verified. */
export interface TsigVerified {
  ok: true;
  key: TsigKey;
  /** The MAC as received: the request MAC of the response, the prior MAC of the next message. */
  mac: Buffer;
  tsig: TsigRecord;
  /** The decoded message (its TSIG in `message.tsig`). */
  message: Message;
}

/** A message that did not verify. */
export interface TsigRejected {
  ok: false;
  /**
   * FORMERR..BADTRUNC: what a server answers (see {@link tsigErrorResponse}); UNSIGNED: no TSIG
   * (or, in a stream, too many unsigned messages or an unsigned last one); PEER_ERROR: a response
   * whose TSIG carries an error from the peer (`peerError`).
   */
  error: TsigFailure | 'UNSIGNED' | 'PEER_ERROR';
  /** One line for logs. */
  reason: string;
  /** The decoded message, when it could be decoded. */
  message?: Message;
  /** The TSIG fields, when they could be read. */
  tsig?: TsigRecord;
  /** The key, when it was found (BADSIG, BADTIME, BADTRUNC, PEER_ERROR). */
  key?: TsigKey;
  /** PEER_ERROR: the TSIG Error field of the response. */
  peerError?: number;
  /** PEER_ERROR: whether the response's MAC verified (unsigned error responses do not). */
  authenticated?: boolean;
  /** PEER_ERROR with BADTIME: the peer's clock from Other Data (to be trusted only when `authenticated`). */
  peerTime?: number;
}

export type TsigVerifyResult = TsigVerified | TsigRejected;

/** Options of {@link verify}. */
export interface VerifyOptions {
  /** Verifying a response: the MAC of the request it answers. Absent: verifying a request. */
  requestMac?: Buffer;
  /**
   * Shortest MAC accepted (local policy, RFC 8945 5.2.4): a valid MAC truncated below it is
   * BADTRUNC. Default: the full hash length, i.e. no truncation; RFC 8945 5.2.2.1 never allows
   * below max(10, half the hash) whatever this says.
   */
  minMacSize?: number;
}

const TSIG_ERROR_NAMES: Record<number, string> = { 16: 'BADSIG', 17: 'BADKEY', 18: 'BADTIME', 19: 'BADMODE', 20: 'BADNAME', 21: 'BADALG', 22: 'BADTRUNC' };

/** Name of a TSIG Error field value (BADSIG, ...; RCODE names below 16). */
export function tsigErrorName(code: number): string {
  return TSIG_ERROR_NAMES[code] ?? (code === 0 ? 'NOERROR' : `error ${code}`);
}

function fail(error: TsigRejected['error'], reason: string, extra: Partial<TsigRejected> = {}): TsigRejected {
  return { ok: false, error, reason, ...extra };
}

/** Where a MAC is verified: the digest prefix (request or prior MAC, unsigned messages) and mode. */
interface Context {
  /** The HMAC with the prefix already digested; made when the key is known. */
  start(key: TsigKey): Hmac;
  timersOnly: boolean;
  /** True for responses (peer errors are reported as such). */
  response: boolean;
  minMacSize?: number;
}

function verifySigned(msg: Buffer, m: Message, keys: TsigKeyLookup, now: number, ctx: Context): TsigVerifyResult {
  const rec = m.tsig!;
  if (rec.class !== RRClass.ANY) return fail('FORMERR', `TSIG class ${rec.class}, not ANY`, { message: m });
  if (rec.ttl !== 0) return fail('FORMERR', `TSIG TTL ${rec.ttl}, not 0`, { message: m });
  const t = parseTsigRecord(rec);
  if (typeof t === 'string') return fail('FORMERR', `malformed TSIG RDATA: ${t}`, { message: m });
  const base = { message: m, tsig: t };
  const key = findKey(keys, t.keyName);
  if (!key) return fail('BADKEY', `unknown TSIG key ${t.keyName}`, base);
  const algo = t.algorithm.slice(0, -1);
  if (!isTsigAlgorithm(algo)) return fail('BADKEY', `unsupported TSIG algorithm ${t.algorithm} (key ${t.keyName})`, base);
  if (algo !== key.algorithm) return fail('BADKEY', `key ${t.keyName} is ${key.algorithm}, the message uses ${algo}`, base);
  const withKey = { ...base, key };
  const size = HASHES[algo].size;
  const macSize = t.mac.length;
  const peerTime = t.error === TsigRcode.BADTIME && t.otherData.length === 6 ? t.otherData.readUIntBE(0, 6) : undefined;
  const clocks = peerTime === undefined ? '' : ` (its clock: ${peerTime}, ours: ${Math.floor(now)})`;
  if (ctx.response && t.error !== 0 && macSize === 0) {
    return fail('PEER_ERROR', `the peer answered TSIG error ${tsigErrorName(t.error)}, unsigned${clocks}`,
      { ...withKey, peerError: t.error, authenticated: false, ...(peerTime === undefined ? {} : { peerTime }) });
  }
  // RFC 8945 5.2.2.1: longer than the hash, or shorter than max(10, half of it): FORMERR
  if (macSize > size) return fail('FORMERR', `MAC of ${macSize} bytes, longer than ${algo}'s ${size}`, withKey);
  const floor = Math.max(10, size / 2);
  if (macSize < floor) return fail('FORMERR', `MAC of ${macSize} bytes, shorter than the ${floor} allowed for ${algo}`, withKey);
  const h = ctx.start(key);
  const w = keyWire(key);
  digestMessage(h, msg, rec.offset, t.originalId, 1);
  digestVariables(h, w.name, w.algorithm, t, ctx.timersOnly);
  const expected = h.digest().subarray(0, macSize);
  if (!timingSafeEqual(expected, t.mac)) return fail('BADSIG', `bad MAC from key ${t.keyName}`, withKey);
  if (ctx.response && t.error !== 0) {
    return fail('PEER_ERROR', `the peer answered TSIG error ${tsigErrorName(t.error)}${clocks}`,
      { ...withKey, peerError: t.error, authenticated: true, ...(peerTime === undefined ? {} : { peerTime }) });
  }
  // NaN-safe: a bad clock value is outside every window
  if (!(Math.abs(now - t.timeSigned) <= t.fudge)) {
    return fail('BADTIME', `signed at ${t.timeSigned} with fudge ${t.fudge}, our clock is ${Math.floor(now)}`, withKey);
  }
  const policy = Math.max(floor, Math.min(size, ctx.minMacSize ?? size));
  if (macSize < policy) return fail('BADTRUNC', `MAC truncated to ${macSize} bytes, local policy wants ${policy}`, withKey);
  return { ok: true, key, mac: t.mac, tsig: t, message: m };
}

function decode(msg: Buffer): Message | TsigRejected {
  if (!Buffer.isBuffer(msg)) return fail('FORMERR', 'not a buffer');
  try {
    return decodeMessage(msg);
  } catch (e) {
    return fail('FORMERR', `undecodable message: ${(e as Error).message}`);
  }
}

function guard<T>(f: () => T | TsigRejected): T | TsigRejected {
  try {
    return f();
  } catch (e) {
    return fail('FORMERR', `verification failed unexpectedly: ${(e as Error).message}`);
  }
}

/**
 * Verifies the TSIG of one message (RFC 8945 5.2 for a request; 5.4 for a response when
 * `opts.requestMac` is given) at time `now` (Unix seconds). Checks in the RFC's order: format
 * (FORMERR: undecodable, TSIG not last, class/TTL/RDATA malformed, MAC size out of 5.2.2.1's
 * bounds), key and algorithm (BADKEY), MAC (BADSIG), time against Time Signed ± Fudge
 * (BADTIME), truncation against `minMacSize` (BADTRUNC). Never throws.
 */
export function verify(message: Buffer, keys: TsigKeyLookup, now: number, opts: VerifyOptions = {}): TsigVerifyResult {
  return guard(() => {
    const m = decode(message);
    if ('ok' in m) return m;
    if (!m.tsig) return fail('UNSIGNED', 'no TSIG record', { message: m });
    const requestMac = opts.requestMac;
    return verifySigned(message, m, keys, now, {
      start: (key) => {
        const h = createHmac(keyWire(key).hash.digest, key.secret);
        if (requestMac) digestMac(h, requestMac);
        return h;
      },
      timersOnly: false,
      response: requestMac !== undefined,
      minMacSize: opts.minMacSize,
    });
  });
}

/** One message of a stream that verified; unsigned ones are fine until the next signed one. */
export interface TsigStreamAccepted {
  ok: true;
  /** Whether this message carried a TSIG (then `mac` is its MAC). */
  signed: boolean;
  mac?: Buffer;
  message: Message;
}

/** Options of {@link TsigStreamVerifier}. */
export interface StreamVerifyOptions {
  /** See {@link VerifyOptions.minMacSize}. */
  minMacSize?: number;
  /** Most consecutive unsigned messages (default and at most {@link MAX_UNSIGNED_IN_STREAM}). */
  maxUnsigned?: number;
}

/**
 * Verifies a response stream a client receives for a request signed with `key` (RFC 8945
 * 5.3.1): the first message must be signed (request MAC, all variables); later ones may be
 * unsigned, at most `maxUnsigned` in a row, their bytes digested into the next signed one (prior
 * MAC, timers only). After a failure every call returns it again. {@link finish} says whether
 * the stream ended signed. Never throws.
 */
export class TsigStreamVerifier {
  /** HMAC over the prior MAC and the unsigned messages since (made at the first unsigned one). */
  private running?: Hmac;
  private prior: Buffer;
  private unsigned = 0;
  private count = 0;
  private failed?: TsigRejected;
  private readonly maxUnsigned: number;

  constructor(private readonly key: TsigKey, requestMac: Buffer, private readonly opts: StreamVerifyOptions = {}) {
    this.prior = Buffer.from(requestMac);
    this.maxUnsigned = Math.max(0, Math.min(opts.maxUnsigned ?? MAX_UNSIGNED_IN_STREAM, MAX_UNSIGNED_IN_STREAM));
  }

  /** Messages accepted so far. */
  get messages(): number {
    return this.count;
  }

  /** Checks the next message of the stream at time `now`. */
  verify(message: Buffer, now: number): TsigStreamAccepted | TsigRejected {
    if (this.failed) return this.failed;
    const r = guard((): TsigStreamAccepted | TsigRejected => {
      const m = decode(message);
      if ('ok' in m) return m;
      if (!m.tsig) {
        if (this.count === 0) return fail('UNSIGNED', 'the first message of the stream has no TSIG', { message: m });
        if (this.unsigned >= this.maxUnsigned) {
          return fail('UNSIGNED', `more than ${this.maxUnsigned} messages in a row without TSIG`, { message: m });
        }
        if (!this.running) {
          this.running = createHmac(keyWire(this.key).hash.digest, this.key.secret);
          digestMac(this.running, this.prior);
        }
        this.running.update(message); // digested as received, no TSIG to take out
        this.unsigned++;
        this.count++;
        return { ok: true, signed: false, message: m };
      }
      const v = verifySigned(message, m, this.key, now, {
        start: (key) => {
          if (this.running) return this.running;
          const h = createHmac(keyWire(key).hash.digest, key.secret);
          digestMac(h, this.prior);
          return h;
        },
        timersOnly: this.count > 0,
        response: true,
        minMacSize: this.opts.minMacSize,
      });
      if (!v.ok) return v;
      this.prior = v.mac;
      this.running = undefined;
      this.unsigned = 0;
      this.count++;
      return { ok: true, signed: true, mac: v.mac, message: m };
    });
    if (!r.ok) this.failed = r;
    return r;
  }

  /** At the end of the stream: its last message must have been signed. */
  finish(): { ok: true } | TsigRejected {
    if (this.failed) return this.failed;
    if (this.count === 0) return (this.failed = fail('UNSIGNED', 'the stream carried no message'));
    if (this.unsigned > 0) return (this.failed = fail('UNSIGNED', `the last ${this.unsigned} messages of the stream have no TSIG`));
    return { ok: true };
  }
}

// ------------------------------------------------------------------------------ errors ---------

/** Options of {@link tsigErrorResponse}. */
export interface ErrorResponseOptions {
  /** Fudge of the TSIG RR (default {@link TSIG_FUDGE}). */
  fudge?: number;
}

/**
 * What a server sends back for a request that failed {@link verify} (RFC 8945 5.2, 5.3.2), or
 * undefined when it sends nothing of TSIG's (UNSIGNED, PEER_ERROR, or a FORMERR message too
 * short to have a header). Throws only for a bad `now`. The response echoes ID, opcode, RD, CD and the question, with EDNS
 * when the request had it:
 * - FORMERR: rcode FORMERR, no TSIG (the TSIG could not be interpreted);
 * - BADKEY, BADSIG: rcode NOTAUTH, an unsigned TSIG (MAC size 0) naming the request's key and
 *   algorithm, Time Signed `now` (5.3.2: no signed response when the key or MAC is invalid);
 * - BADTIME: rcode NOTAUTH, signed with the request's key over its MAC, Time Signed the
 *   request's (so the client can check it), Other Data our clock (48 bits) (5.2.3);
 * - BADTRUNC: rcode NOTAUTH, signed like BADTIME with Time Signed `now`.
 */
export function tsigErrorResponse(request: Buffer, rejected: TsigRejected, now: number, opts: ErrorResponseOptions = {}): Buffer | undefined {
  const time = checkClock(now);
  const fudge = opts.fudge ?? TSIG_FUDGE;
  if (rejected.error === 'UNSIGNED' || rejected.error === 'PEER_ERROR') return undefined;
  const m = rejected.message;
  if (rejected.error === 'FORMERR' && !m) {
    if (!Buffer.isBuffer(request) || request.length < 12) return undefined;
    const head = Buffer.alloc(12);
    request.copy(head, 0, 0, 2);
    head[2] = 0x80 | (request[2] & 0x79); // QR, opcode, RD
    head[3] = RCODE_FORMERR;
    return head;
  }
  if (!m) return undefined;
  const input: MessageInput = {
    id: m.id,
    opcode: m.opcode,
    rcode: rejected.error === 'FORMERR' ? RCODE_FORMERR : RCODE_NOTAUTH,
    flags: { qr: true, rd: m.flags.rd, cd: m.flags.cd },
    question: m.question,
  };
  if (m.edns) input.edns = {};
  let unsigned: Buffer;
  try {
    unsigned = encodeMessage(input);
  } catch {
    // a question that was compressed in the request may not fit uncompressed: leave it out
    unsigned = encodeMessage({ ...input, question: [] });
  }
  const t = rejected.tsig;
  if (rejected.error === 'FORMERR' || !t) return unsigned;
  const v: Variables = { timeSigned: time, fudge, error: TsigRcode[rejected.error], otherData: Buffer.alloc(0) };
  if (rejected.error === 'BADKEY' || rejected.error === 'BADSIG' || !rejected.key) {
    const owner = labelsToWire(keyToLabels(t.keyName));
    return appendTsig(unsigned, owner, t.algorithmWire, v, Buffer.alloc(0), t.originalId);
  }
  const key = rejected.key;
  if (rejected.error === 'BADTIME') {
    v.timeSigned = t.timeSigned;
    v.otherData = u48(time);
  }
  const w = keyWire(key);
  const h = createHmac(w.hash.digest, key.secret);
  digestMac(h, t.mac);
  digestMessage(h, unsigned, unsigned.length, t.originalId, 0);
  digestVariables(h, w.name, w.algorithm, v, false);
  return appendTsig(unsigned, w.name, w.algorithm, v, h.digest(), t.originalId);
}

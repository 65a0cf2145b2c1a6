/**
 * RFC 1035 section 5 master-file ("zone file") parser, checked against BIND's named-compilezone.
 *
 * A hand-written lexer walks the text once with charCodeAt; each logical line (parentheses can
 * span lines) becomes a short list of tokens in reused arrays, and each record is turned into a
 * {@link ZoneRecord} right away. The first error throws {@link ZoneParseError}; nothing is
 * returned for a file that is not entirely valid.
 *
 * TTL rules (as BIND's dns_master_load):
 * - `$TTL` (or `opts.defaultTtl`, which acts as a `$TTL` at the top of the file) sets the default
 *   TTL for records without one;
 * - without a default, a record without TTL gets the last explicit TTL (RFC 1035);
 * - with neither, an SOA takes its MINIMUM field, which also becomes the default TTL;
 *   any other record is an error ("no TTL specified").
 */
import { NameError, isAtOrBelow, labelsToKey, parseName, MAX_LABEL_LENGTH, MAX_NAME_WIRE_LENGTH } from '../name.js';
import { RRType, typeFromName, typeName } from '../wire/constants.js';
import { ZoneParseError, type ParsedZone, type ZoneRecord } from './types.js';
import {
  MAX_TTL, RdataError, makeOrigin, originFromLabels, parseTtl, rdataFromTokens, type Origin,
} from './rdata-text.js';

/** Options of {@link parseMasterFile}. */
export interface MasterFileOptions {
  /** Zone origin as a key or absolute name, e.g. "example.com."; the initial $ORIGIN. */
  origin: string;
  /** File name used in error messages. */
  file: string;
  /** Default TTL before any $TTL (as if the file started with `$TTL defaultTtl`). */
  defaultTtl?: number;
  /**
   * Reads the file named by `$INCLUDE` (relative names resolved against the including file);
   * returns its text and the name to report it by. Without it, `$INCLUDE` is an error.
   */
  readInclude?: (name: string, from: string) => { text: string; file: string };
}

/** How deep `$INCLUDE` may nest. */
export const MAX_INCLUDE_DEPTH = 8;

const SP = 0x20, TAB = 0x09, CR = 0x0d, LF = 0x0a, SEMI = 0x3b, LPAR = 0x28, RPAR = 0x29, DQUOTE = 0x22,
  BSLASH = 0x5c;

/**
 * The lexer. `next()` reads one logical line into `text`/`quoted`/`line` (count `n`);
 * `blankOwner` says whether it started with white space.
 */
class Lexer {
  pos = 0;
  lineNo = 1;
  n = 0;
  blankOwner = false;
  readonly text: string[] = [];
  readonly quoted: boolean[] = [];
  readonly line: number[] = [];
  constructor(private readonly src: string, readonly file: string) {
    if (src.charCodeAt(0) === 0xfeff) this.pos = 1; // a UTF-8 byte order mark
  }

  private err(line: number, reason: string): never {
    throw new ZoneParseError(this.file, line, reason);
  }

  private push(t: string, q: boolean): void {
    const k = this.n++;
    this.text[k] = t;
    this.quoted[k] = q;
    this.line[k] = this.lineNo;
  }

  /** Reads the next logical line with at least one token; false at end of input. */
  next(): boolean {
    const s = this.src;
    const len = s.length;
    let pos = this.pos;
    let depth = 0;
    let openLine = 0;
    this.n = 0;
    let atLineStart = true;
    for (;;) {
      if (atLineStart) {
        atLineStart = false;
        if (depth === 0) {
          const c0 = pos < len ? s.charCodeAt(pos) : 0;
          this.blankOwner = c0 === SP || c0 === TAB;
        }
      }
      if (pos >= len) {
        this.pos = pos;
        if (depth > 0) this.err(openLine, 'unbalanced parenthesis: "(" is never closed');
        return this.n > 0;
      }
      const c = s.charCodeAt(pos);
      if (c === SP || c === TAB || c === CR) {
        pos++;
      } else if (c === LF) {
        pos++;
        this.lineNo++;
        atLineStart = true;
        if (depth === 0 && this.n > 0) {
          this.pos = pos;
          return true;
        }
      } else if (c === SEMI) {
        while (pos < len && s.charCodeAt(pos) !== LF) pos++;
      } else if (c === LPAR) {
        if (depth === 0) openLine = this.lineNo;
        depth++;
        pos++;
      } else if (c === RPAR) {
        if (depth === 0) this.err(this.lineNo, 'unbalanced parenthesis: ")" without "("');
        depth--;
        pos++;
      } else if (c === DQUOTE) {
        const start = ++pos;
        for (;;) {
          if (pos >= len) this.err(this.lineNo, 'unterminated string');
          const d = s.charCodeAt(pos);
          if (d === DQUOTE) break;
          if (d === LF) this.err(this.lineNo, 'unterminated string');
          if (d === BSLASH) {
            pos++;
            if (pos >= len || s.charCodeAt(pos) === LF) this.err(this.lineNo, 'unterminated string');
          }
          pos++;
        }
        this.push(s.slice(start, pos), true);
        pos++;
      } else {
        const start = pos;
        for (;;) {
          if (pos >= len) break;
          const d = s.charCodeAt(pos);
          if (d === SP || d === TAB || d === CR || d === LF || d === SEMI || d === LPAR || d === RPAR || d === DQUOTE) {
            break;
          }
          if (d === BSLASH) {
            pos++;
            if (pos >= len || s.charCodeAt(pos) === LF) this.err(this.lineNo, 'backslash at end of line');
          }
          pos++;
        }
        this.push(s.slice(start, pos), false);
      }
    }
  }
}

/** Class mnemonics (RFC 1035, 6895 CLASSnnn) to numbers; only IN (1) is accepted. */
function classFromName(t: string): number {
  const n = t.length;
  if (n === 2) {
    const a = t.charCodeAt(0) | 0x20, b = t.charCodeAt(1) | 0x20;
    if (a === 0x69 && b === 0x6e) return 1; // IN
    if (a === 0x63 && (b === 0x68 || b === 0x73)) return 3; // CH, CS
    if (a === 0x68 && b === 0x73) return 4; // HS
    return -1;
  }
  if (n === 4 && t.toUpperCase() === 'NONE') return 254;
  if (n === 3 && t.toUpperCase() === 'ANY') return 255;
  if (n > 5 && n <= 10 && t.slice(0, 5).toUpperCase() === 'CLASS') {
    const v = /^[0-9]+$/.test(t.slice(5)) ? Number(t.slice(5)) : -1;
    return v >= 0 && v <= 0xffff ? v : -1;
  }
  return -1;
}

/** Whether token k is a class; a class other than IN is an error. */
function isClass(lx: Lexer, k: number): boolean {
  if (lx.quoted[k]) return false;
  const t = lx.text[k];
  const cls = classFromName(t);
  if (cls < 0) return false;
  if (cls !== 1) throw new ZoneParseError(lx.file, lx.line[k], `class "${t}" is not supported (only IN)`);
  return true;
}

/** Cache of type mnemonics (typeFromName allocates); bounded by the distinct spellings seen. */
const typeCache = new Map<string, number>();
function lookupType(t: string): number | undefined {
  let v = typeCache.get(t);
  if (v === undefined) {
    v = typeFromName(t);
    if (v !== undefined && typeCache.size < 1000) typeCache.set(t, v);
  }
  return v;
}

/** Meta and pseudo types that cannot be zone data (RFC 6895 section 3.1, RFC 6891). */
function isMetaType(t: number): boolean {
  return t === 0 || t === RRType.OPT || (t >= 128 && t <= 255);
}

/** Makes V8 flatten a concatenated string now (smaller than the rope it replaces). */
function flatten(s: string): void {
  void s.charCodeAt(s.length - 1);
}

/** Set by ownerKey(): whether the name was relative (so it lies at or below the origin). */
let keyWasRelative = false;

/**
 * Key of an owner name. Fast path for plain host names (letters, digits, '-', '_', '*') that
 * gives exactly what labelsToKey(parseName()) gives; everything else goes through name.ts.
 */
function ownerKey(raw: string, origin: Origin): string {
  keyWasRelative = false;
  if (raw === '@') {
    keyWasRelative = true;
    return origin.key;
  }
  const n = raw.length;
  let labelLen = 0;
  let upper = false;
  let ok = n > 0;
  for (let i = 0; i < n && ok; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x2e) {
      if (labelLen === 0) ok = false;
      labelLen = 0;
    } else if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2a) {
      if (++labelLen > MAX_LABEL_LENGTH) ok = false;
    } else if (c >= 0x41 && c <= 0x5a) {
      upper = true;
      if (++labelLen > MAX_LABEL_LENGTH) ok = false;
    } else ok = false;
  }
  if (ok) {
    const low = upper ? raw.toLowerCase() : raw;
    if (labelLen === 0) {
      // an absolute name: copy it, a slice would keep the whole file text alive
      if (low.length + 1 <= MAX_NAME_WIRE_LENGTH) return low.length < 13 ? low : (' ' + low).slice(1);
    } else {
      const key = origin.key === '.' ? low + '.' : low + '.' + origin.key;
      if (key.length + 1 <= MAX_NAME_WIRE_LENGTH) {
        keyWasRelative = true;
        flatten(key);
        return key;
      }
    }
  }
  return labelsToKey(parseName(raw, origin.labels));
}

/**
 * Parses an RFC 1035 master file for the zone `opts.origin`. Returns every record (class IN)
 * with canonical owner keys and wire RDATA, in file order. Throws {@link ZoneParseError}
 * (`file:line: reason`) on the first problem.
 *
 * Directives: `$ORIGIN`, `$TTL`, `$INCLUDE file [origin]` (RFC 1035 5.1: the included file starts
 * with that origin, and the including file's origin is unchanged after it; needs `readInclude`);
 * `$GENERATE` is rejected. Names outside the zone and an SOA anywhere but the apex are errors.
 */
export function parseMasterFile(text: string, opts: MasterFileOptions): ParsedZone {
  let file = opts.file;
  let lx = new Lexer(text, file);
  /** The including files, innermost last, with the origin to restore. */
  const frames: { lx: Lexer; file: string; origin: Origin; originInZone: boolean }[] = [];
  let zone: Origin;
  try {
    zone = makeOrigin(opts.origin);
  } catch (e) {
    if (e instanceof NameError) throw new ZoneParseError(file, 0, `bad zone origin: ${e.message}`);
    throw e;
  }
  let origin = zone;
  let originInZone = true;
  const records: ZoneRecord[] = [];

  let defaultTtl = 0;
  let defaultKnown = false;
  if (opts.defaultTtl !== undefined) {
    if (!Number.isInteger(opts.defaultTtl) || opts.defaultTtl < 0 || opts.defaultTtl > MAX_TTL) {
      throw new ZoneParseError(file, 0, `bad default TTL ${opts.defaultTtl}`);
    }
    defaultTtl = opts.defaultTtl;
    defaultKnown = true;
  }
  let lastTtl = 0;
  let lastKnown = false;

  let owner = ''; // key of the current owner, '' before the first
  let ownerRaw = '';
  let ownerOrigin: Origin | null = null;

  let toks = lx.text;
  let quoted = lx.quoted;
  let lines = lx.line;
  const use = (l: Lexer) => {
    lx = l;
    file = l.file;
    toks = l.text;
    quoted = l.quoted;
    lines = l.line;
  };
  function err(line: number, reason: string): never {
    throw new ZoneParseError(file, line, reason);
  }

  function readTtl(k: number): number {
    const t = toks[k];
    const v = parseTtl(t);
    if (v < 0) err(lines[k], `bad TTL "${t}"`);
    if (v > MAX_TTL) err(lines[k], `TTL ${t} is over the maximum ${MAX_TTL}`);
    return v;
  }

  for (;;) {
    if (!lx.next()) {
      const f = frames.pop();
      if (!f) break;
      use(f.lx);
      origin = f.origin;
      originInZone = f.originInZone;
      continue;
    }
    const n = lx.n;
    const recLine = lines[0];
    let i = 0;

    if (!lx.blankOwner) {
      const t0 = toks[0];
      if (!quoted[0] && t0.charCodeAt(0) === 0x24 /* $ */) {
        const d = t0.toUpperCase();
        if (d === '$ORIGIN') {
          if (n < 2) err(recLine, '$ORIGIN needs a domain name');
          if (n > 2) err(lines[2], `unexpected "${toks[2]}" after $ORIGIN`);
          if (quoted[1]) err(lines[1], `bad $ORIGIN name "${toks[1]}" (must not be quoted)`);
          try {
            origin = originFromLabels(parseName(toks[1], origin.labels));
            originInZone = isAtOrBelow(origin.key, zone.key);
          } catch (e) {
            if (e instanceof NameError) err(lines[1], `bad $ORIGIN: ${e.message}`);
            throw e;
          }
        } else if (d === '$TTL') {
          if (n < 2) err(recLine, '$TTL needs a TTL');
          if (n > 2) err(lines[2], `unexpected "${toks[2]}" after $TTL`);
          defaultTtl = readTtl(1);
          defaultKnown = true;
        } else if (d === '$INCLUDE') {
          if (!opts.readInclude) err(recLine, '$INCLUDE is not supported here');
          if (n < 2) err(recLine, '$INCLUDE needs a file name');
          if (n > 3) err(lines[3], `unexpected "${toks[3]}" after $INCLUDE`);
          if (frames.length >= MAX_INCLUDE_DEPTH) err(recLine, `$INCLUDE nested more than ${MAX_INCLUDE_DEPTH} deep`);
          let incOrigin = origin;
          if (n === 3) {
            try {
              incOrigin = originFromLabels(parseName(toks[2], origin.labels));
            } catch (e) {
              if (e instanceof NameError) err(lines[2], `bad $INCLUDE origin: ${e.message}`);
              throw e;
            }
          }
          let inc: { text: string; file: string };
          try {
            inc = opts.readInclude(toks[1], file);
          } catch (e) {
            err(lines[1], `cannot read $INCLUDE file "${toks[1]}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
          }
          if (inc.file === file || frames.some((f) => f.file === inc.file)) err(lines[1], `$INCLUDE loop: ${inc.file} includes itself`);
          frames.push({ lx, file, origin, originInZone });
          use(new Lexer(inc.text, inc.file));
          origin = incOrigin;
          originInZone = isAtOrBelow(origin.key, zone.key);
        } else if (d === '$GENERATE') {
          err(recLine, '$GENERATE is not supported');
        } else {
          err(recLine, `unknown directive "${t0}"`);
        }
        continue;
      }
      if (quoted[0]) err(recLine, `bad owner name "${t0}" (must not be quoted)`);
      if (t0 !== ownerRaw || origin !== ownerOrigin) {
        let key: string;
        try {
          key = ownerKey(t0, origin);
        } catch (e) {
          if (e instanceof NameError) err(recLine, `bad owner name: ${e.message}`);
          throw e;
        }
        if (!(keyWasRelative && originInZone) && !isAtOrBelow(key, zone.key)) err(recLine, `name "${key}" is outside the zone "${zone.key}"`);
        owner = key;
        ownerRaw = t0;
        ownerOrigin = origin;
      }
      i = 1;
    } else if (owner === '') {
      err(recLine, 'no current owner name (the first record starts with white space)');
    }

    // [<TTL>] [<class>] <type> or [<class>] [<TTL>] <type>, as BIND reads them
    let explicitTtl = -1;
    let sawClass = false;
    if (i < n && isClass(lx, i)) { sawClass = true; i++; }
    if (i < n && !quoted[i]) {
      const c = toks[i].charCodeAt(0);
      if (c >= 0x30 && c <= 0x39) explicitTtl = readTtl(i++);
    }
    if (!sawClass && i < n && isClass(lx, i)) i++;
    if (i >= n) err(lines[n - 1], 'missing type');
    if (quoted[i]) err(lines[i], `bad type "${toks[i]}" (must not be quoted)`);
    const type = lookupType(toks[i]);
    if (type === undefined) err(lines[i], `unknown type "${toks[i]}"`);
    if (isMetaType(type)) err(lines[i], `type ${toks[i]} cannot appear in a zone`);
    i++;

    let rdata: Buffer;
    try {
      rdata = rdataFromTokens(type, toks, quoted, i, n, origin);
    } catch (e) {
      if (e instanceof RdataError) err(lines[e.token < n ? e.token : n - 1], e.reason);
      throw e;
    }

    if (type === RRType.SOA && owner !== zone.key) err(recLine, 'SOA record not at top of zone');

    let ttl: number;
    if (explicitTtl >= 0) {
      ttl = lastTtl = explicitTtl;
      lastKnown = true;
    } else if (!lastKnown && !defaultKnown) {
      if (type !== RRType.SOA) {
        err(recLine, 'no TTL specified (add a $TTL directive or an explicit TTL)');
      }
      // as BIND: an SOA without any TTL known takes its MINIMUM, which becomes the default
      const min = rdata.readUInt32BE(rdata.length - 4);
      if (min > MAX_TTL) err(recLine, `no TTL specified and the SOA MINIMUM ${min} is over the maximum TTL ${MAX_TTL}`);
      ttl = lastTtl = defaultTtl = min;
      lastKnown = defaultKnown = true;
    } else if (defaultKnown) {
      ttl = lastTtl = defaultTtl;
    } else {
      ttl = lastTtl;
    }

    records.push({ owner, type, ttl, rdata, line: recLine });
  }

  return { origin: zone.key, records };
}

/**
 * Encodes one record's RDATA given as presentation text on one line (e.g. `10 mail`, or
 * `\# 4 0a000001`), relative names against `origin` (a key or absolute name).
 * Throws {@link ZoneParseError} with file "<rdata>" and line 1 on bad input.
 */
export function rdataFromText(type: number, text: string, origin = '.'): Buffer {
  const file = '<rdata>';
  if (/[\r\n]/.test(text)) throw new ZoneParseError(file, 1, 'RDATA text must be on one line');
  const lx = new Lexer(' ' + text, file);
  const o = makeOrigin(origin);
  if (!lx.next()) throw new ZoneParseError(file, 1, `missing ${typeName(type)} data`);
  try {
    return rdataFromTokens(type, lx.text, lx.quoted, 0, lx.n, o);
  } catch (e) {
    if (e instanceof RdataError) throw new ZoneParseError(file, 1, e.reason);
    throw e;
  }
}

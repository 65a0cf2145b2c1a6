/**
 * JSON request bodies of the API. Every body is checked before anything walks it:
 * - UTF-8 only (RFC 8259 8.1); another charset is 415 UNSUPPORTED_MEDIA_TYPE;
 * - nesting (arrays and objects) at most MAX_BODY_DEPTH levels, counted on the raw bytes before
 *   JSON.parse runs, so no recursive code (JSON.stringify, structuredClone, validators) ever sees
 *   a deeper value and parsing never spends time on one: 400 BAD_REQUEST naming the field.
 * `describeValue` names a value in an error message in bounded space without walking it, and
 * `assertShallow` checks an already parsed value (routers mounted without this parser).
 */
import express, { type RequestHandler } from 'express';
import { ApiError } from './errors.js';

/** Deepest nesting of arrays/objects a body may have (the deepest schema needs 4). */
export const MAX_BODY_DEPTH = 32;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b; // [
const OPEN_OBJECT = 0x7b; // {
const CLOSE_ARRAY = 0x5d; // ]
const CLOSE_OBJECT = 0x7d; // }

/**
 * Scans raw UTF-8 JSON (valid or not) for nesting deeper than `max`. Returns null when within,
 * else where it goes deeper: the top-level member it is in (when the body is an object) and the
 * byte offset. Linear, iterative, allocation-free: UTF-8 continuation bytes never equal the ASCII
 * bytes counted here.
 */
export function rawNestingTooDeep(buf: Uint8Array, max: number): { member: string | null; offset: number } | null {
  let depth = 0;
  let inString = false;
  let stringStart = -1;
  let lastTopString: [number, number] | null = null; // last complete string at depth 1: the member's key
  let topIsObject = false;
  for (let i = 0; i < buf.length; i++) {
    if (inString) {
      // jump to the next quote not escaped (an odd run of backslashes before it escapes it)
      let q = buf.indexOf(QUOTE, i);
      for (;;) {
        if (q < 0) return null; // unterminated: JSON.parse reports it
        let n = 0;
        while (q - 1 - n >= i && buf[q - 1 - n] === BACKSLASH) n++;
        if (n % 2 === 0) break;
        q = buf.indexOf(QUOTE, q + 1);
      }
      inString = false;
      if (depth === 1) lastTopString = [stringStart, q + 1];
      i = q;
      continue;
    }
    const c = buf[i];
    if (c === QUOTE) {
      inString = true;
      stringStart = i;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (depth === 0) topIsObject = c === OPEN_OBJECT;
      depth++;
      if (depth > max) {
        let member: string | null = null;
        if (topIsObject && lastTopString) {
          try {
            const k = JSON.parse(Buffer.from(buf.subarray(lastTopString[0], lastTopString[1])).toString('utf8')) as unknown;
            if (typeof k === 'string') member = k;
          } catch {
            member = null;
          }
        }
        return { member, offset: i };
      }
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      if (depth > 0) depth--;
    }
  }
  return null;
}

/** The message of a body nested too deep. */
function tooDeepMessage(where: { member: string | null; offset: number }, max: number): string {
  const field = where.member !== null ? `${fieldName(where.member)}: ` : '';
  return `${field}the body nests arrays/objects deeper than ${max} levels (at byte ${where.offset}); no field of this API nests that deep`;
}

/** A JSON body parser for `limit` bytes with the checks above. Bodies of any content type are read as JSON. */
export function jsonBody(limit: string, maxDepth = MAX_BODY_DEPTH): RequestHandler {
  return express.json({
    limit,
    type: () => true,
    verify: (_req, _res, buf, encoding) => {
      const cs = String(encoding ?? 'utf-8').toLowerCase();
      if (cs !== 'utf-8' && cs !== 'utf8') {
        throw new ApiError('UNSUPPORTED_MEDIA_TYPE', `JSON bodies must be UTF-8, not ${describeValue(cs)}`);
      }
      const deep = rawNestingTooDeep(buf, maxDepth);
      if (deep) throw new ApiError('BAD_REQUEST', tooDeepMessage(deep, maxDepth));
    },
  });
}

/**
 * Throws 400 when a parsed value nests deeper than `max` (iterative; stops at the first level too
 * deep). For values that did not come through {@link jsonBody}.
 */
export function assertShallow(value: unknown, max = MAX_BODY_DEPTH): void {
  const stack: { v: unknown; d: number; member: string | null }[] = [{ v: value, d: 0, member: null }];
  while (stack.length > 0) {
    const { v, d, member } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d + 1 > max) {
      const field = member !== null ? `${fieldName(member)}: ` : '';
      throw new ApiError('BAD_REQUEST', `${field}the body nests arrays/objects deeper than ${max} levels; no field of this API nests that deep`);
    }
    if (Array.isArray(v)) {
      for (const x of v) stack.push({ v: x, d: d + 1, member });
    } else {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) stack.push({ v: x, d: d + 1, member: d === 0 && !Array.isArray(value) ? k : member });
    }
  }
}

const MAX_SHOWN = 60;

/** A member name as it is shown before a colon: bare when it looks like a field name, else quoted and cut. */
export function fieldName(k: string): string {
  return /^[A-Za-z0-9_.-]{1,60}$/.test(k) ? k : describeValue(k);
}

/**
 * A short description of a value for an error message, bounded in size and never walking into
 * it: strings quoted (cut at 60 characters), numbers/booleans/null as JSON, arrays and objects by
 * their size only.
 */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return `an array (${v.length} item${v.length === 1 ? '' : 's'})`;
  if (typeof v === 'object') {
    const n = Object.keys(v).length;
    return `an object (${n} key${n === 1 ? '' : 's'})`;
  }
  return typeof v;
}

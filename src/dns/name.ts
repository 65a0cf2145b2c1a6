/**
 * Domain names. Inside the controller a name is either a list of labels (raw bytes, case kept)
 * or its *key*: the canonical, lower-cased, absolute presentation form used to index zones
 * ("www.example.com.", root is "."). Both directions are lossless for any label bytes.
 */

/** A name as raw labels, most specific first, without the empty root label. */
export type Labels = Uint8Array[];

/** Maximum lengths from RFC 1035 section 2.3.4. */
export const MAX_LABEL_LENGTH = 63;
export const MAX_NAME_WIRE_LENGTH = 255;

const SPECIAL = new Set<number>([0x2e /* . */, 0x5c /* \ */, 0x28, 0x29, 0x3b, 0x22, 0x40, 0x24, 0x20]);

/** The key form of one label (lower-cased unless `keepCase`, escaped). */
function labelKey(label: Uint8Array, keepCase = false): string {
  let s = '';
  for (let i = 0; i < label.length; i++) {
    let b = label[i];
    if (!keepCase && b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (b > 0x20 && b < 0x7f) {
      s += SPECIAL.has(b) ? '\\' + String.fromCharCode(b) : String.fromCharCode(b);
    } else {
      s += '\\' + String(b).padStart(3, '0');
    }
  }
  return s;
}

/** The canonical key of a name: lower-cased, escaped, absolute ("." for the root). */
export function labelsToKey(labels: Labels): string {
  if (labels.length === 0) return '.';
  let s = '';
  for (const l of labels) s += labelKey(l) + '.';
  return s;
}

/** Presentation form of a name with its case kept (escaped, absolute; "." for the root). */
export function labelsToText(labels: Labels): string {
  if (labels.length === 0) return '.';
  let s = '';
  for (const l of labels) s += labelKey(l, true) + '.';
  return s;
}

/** Wire length of a name given as labels (including the root byte). */
export function wireLength(labels: Labels): number {
  let n = 1;
  for (const l of labels) n += 1 + l.length;
  return n;
}

/** Uncompressed wire form of a name. */
export function labelsToWire(labels: Labels): Buffer {
  const out = Buffer.allocUnsafe(wireLength(labels));
  let o = 0;
  for (const l of labels) {
    out[o++] = l.length;
    out.set(l, o);
    o += l.length;
  }
  out[o] = 0;
  return out;
}

/** Error thrown for a name that cannot be a domain name; `message` says why. */
export class NameError extends Error {
  override name = 'NameError';
}

/**
 * Parses a name in presentation form (RFC 1035 5.1: `\X` and `\DDD` escapes).
 * `@` is the origin; a name without a trailing dot is relative to `origin`
 * (an error when origin is null).
 */
export function parseName(text: string, origin: Labels | null): Labels {
  if (text === '@') {
    if (!origin) throw new NameError('"@" used without an origin');
    return origin.slice();
  }
  if (text === '.') return [];
  if (text.length === 0) throw new NameError('empty name');
  const labels: Labels = [];
  let cur: number[] = [];
  let absolute = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c /* \ */) {
      const d = text.slice(i + 1, i + 4);
      if (/^[0-9]{3}$/.test(d)) {
        const v = Number(d);
        if (v > 255) throw new NameError(`escape \\${d} is over 255 in "${text}"`);
        cur.push(v);
        i += 3;
      } else if (i + 1 < text.length) {
        cur.push(text.charCodeAt(i + 1) & 0xff);
        i += 1;
      } else {
        throw new NameError(`dangling backslash in "${text}"`);
      }
    } else if (c === 0x2e /* . */) {
      if (cur.length === 0) throw new NameError(`empty label in "${text}"`);
      labels.push(Uint8Array.from(cur));
      cur = [];
      if (i === text.length - 1) absolute = true;
    } else {
      if (c > 0xff) throw new NameError(`non-ASCII character in "${text}" (use the A-label form)`);
      cur.push(c);
    }
  }
  if (cur.length > 0) labels.push(Uint8Array.from(cur));
  for (const l of labels) {
    if (l.length > MAX_LABEL_LENGTH) throw new NameError(`label longer than 63 bytes in "${text}"`);
  }
  const full = absolute ? labels : origin ? labels.concat(origin) : null;
  if (!full) throw new NameError(`relative name "${text}" without an origin`);
  if (wireLength(full) > MAX_NAME_WIRE_LENGTH) throw new NameError(`name longer than 255 bytes: "${text}"`);
  return full;
}

/** Parses a key (or any absolute presentation name) back into labels. */
export function keyToLabels(key: string): Labels {
  return parseName(key.endsWith('.') ? key : key + '.', null);
}

/** Canonical key of a presentation-form name (relative names resolved against origin). */
export function nameKey(text: string, origin: Labels | null = null): string {
  return labelsToKey(parseName(text, origin));
}

/**
 * Splits a key into the keys of its ancestors, nearest first, ending at the root ".".
 * Escaped dots inside labels are respected.
 */
export function ancestorKeys(key: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (key !== '.' && i < key.length) {
    // advance to the end of the first label
    while (i < key.length && key[i] !== '.') i += key[i] === '\\' ? (/[0-9]/.test(key[i + 1] ?? '') ? 4 : 2) : 1;
    const rest = key.slice(i + 1);
    out.push(rest === '' ? '.' : rest);
    key = rest === '' ? '.' : rest;
    i = 0;
  }
  return out;
}

/** The key of the parent of a key ("." for a top-level name and for the root). */
export function parentKey(key: string): string {
  if (key === '.') return '.';
  if (key.indexOf('\\') < 0) {
    const dot = key.indexOf('.');
    return dot === key.length - 1 ? '.' : key.slice(dot + 1);
  }
  return ancestorKeys(key)[0];
}

/** Whether `key` equals `zoneKey` or lies below it (both canonical keys). */
export function isAtOrBelow(key: string, zoneKey: string): boolean {
  if (zoneKey === '.') return true;
  if (key === zoneKey) return true;
  if (!key.endsWith('.' + zoneKey)) return false;
  // make sure the '.' before zoneKey is a real label separator, not an escaped dot
  let bs = 0;
  for (let j = key.length - zoneKey.length - 2; j >= 0 && key[j] === '\\'; j--) bs++;
  return bs % 2 === 0;
}

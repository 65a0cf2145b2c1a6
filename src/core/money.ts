/**
 * Exact decimal money. Pure.
 *
 * An amount is an exact rational number of currency units (`num / den`, BigInt, reduced, den > 0),
 * not a fixed-scale integer: a prorated day costs price / days_in_month, and 1/31 or 1/29 has no
 * finite decimal expansion at any scale, so a fixed scale (10^6, 10^9…) would already round. With
 * a rational, every sum and proration is exact and rounding happens once, for display.
 *
 * Display rounding is half-up (away from zero on a tie: 0.125 → "0.13", -0.125 → "-0.13"), the
 * commercial rounding customers and accountants check invoices against. Half-even exists to
 * cancel the bias of rounding many intermediate values; here nothing intermediate is rounded,
 * so it buys nothing and surprises people.
 *
 * The exact value is shown as a plain decimal when it has a finite expansion ("29.99",
 * "0.0625"), else as the reduced fraction of currency units ("16483/310").
 */

/** An exact amount of currency units: `num / den`, reduced, `den > 0`. */
export interface Money {
  readonly num: bigint;
  readonly den: bigint;
}

export const ZERO: Money = Object.freeze({ num: 0n, den: 1n });

/** Longest decimal string accepted (a price, not a payload). */
const MAX_TEXT = 40;

function gcd(a: bigint, b: bigint): bigint {
  if (a < 0n) a = -a;
  if (b < 0n) b = -b;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function make(num: bigint, den: bigint): Money {
  if (den === 0n) throw new RangeError('division by zero');
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  const g = gcd(num, den);
  return g > 1n ? { num: num / g, den: den / g } : { num, den };
}

/**
 * Parses a decimal string: digits, optionally a dot and at least one digit ("29.99", "0.5",
 * "1000"). A leading "-" only with `allowNegative`. Returns a message saying what is wrong for
 * anything else: empty, exponents ("1e3"), a comma ("29,99"), a sign, spaces, leading zeros
 * ("029.99"), a bare dot (".5", "5.").
 */
export function parseMoney(text: string, options: { allowNegative?: boolean } = {}): Money | string {
  const shown = JSON.stringify(text);
  if (typeof text !== 'string') return `${String(text)} is not a decimal string`;
  if (text.length === 0) return 'an amount is required: the empty string is not a decimal amount';
  if (text.length > MAX_TEXT) return `${shown} is too long for an amount (at most ${MAX_TEXT} characters)`;
  let body = text;
  let negative = false;
  if (body.startsWith('-')) {
    if (!options.allowNegative) return `${shown} is negative: amounts here must be zero or more`;
    negative = true;
    body = body.slice(1);
  }
  const m = /^([0-9]+)(?:\.([0-9]+))?$/.exec(body);
  if (!m) {
    const why = /\s/.test(text) ? 'spaces are not allowed'
      : /[eE]/.test(body) ? 'exponents are not allowed, write the digits out'
      : body.includes(',') ? 'use a dot as the decimal separator, without thousands separators'
      : body.startsWith('+') ? 'a sign is not allowed'
      : body.startsWith('.') ? 'a digit is required before the dot (write 0.5)'
      : body.endsWith('.') ? 'a digit is required after the dot'
      : 'write digits with an optional dot and fraction, like "29.99"';
    return `${shown} is not a decimal amount: ${why}`;
  }
  const [, int, frac = ''] = m;
  if (int.length > 1 && int.startsWith('0')) return `${shown} is not a decimal amount: leading zeros are not allowed`;
  const value = make(BigInt(int + frac), 10n ** BigInt(frac.length));
  return negative ? make(-value.num, value.den) : value;
}

/** Like parseMoney, but throws an Error with the message. For values already validated (config). */
export function money(text: string, options: { allowNegative?: boolean } = {}): Money {
  const m = parseMoney(text, options);
  if (typeof m === 'string') throw new Error(m);
  return m;
}

function integer(n: number | bigint, what: string): bigint {
  if (typeof n === 'bigint') return n;
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} must be an integer, got ${n}`);
  return BigInt(n);
}

export function add(a: Money, b: Money): Money {
  return make(a.num * b.den + b.num * a.den, a.den * b.den);
}

export function subtract(a: Money, b: Money): Money {
  return make(a.num * b.den - b.num * a.den, a.den * b.den);
}

export function sum(amounts: Iterable<Money>): Money {
  let total = ZERO;
  for (const a of amounts) total = add(total, a);
  return total;
}

/** a × n, n an integer. */
export function multiply(a: Money, n: number | bigint): Money {
  return make(a.num * integer(n, 'the factor'), a.den);
}

/** a ÷ n, exactly; n a non-zero integer. */
export function divide(a: Money, n: number | bigint): Money {
  const d = integer(n, 'the divisor');
  if (d === 0n) throw new RangeError('division by zero');
  return make(a.num, a.den * d);
}

/** a × numerator ÷ denominator, exactly (a proration: price × days / days_in_month). */
export function prorate(a: Money, numerator: number | bigint, denominator: number | bigint): Money {
  return divide(multiply(a, numerator), denominator);
}

/** -1, 0 or 1. */
export function compare(a: Money, b: Money): -1 | 0 | 1 {
  const d = a.num * b.den - b.num * a.den;
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

export function equals(a: Money, b: Money): boolean {
  return a.num === b.num && a.den === b.den;
}

export function isZero(a: Money): boolean {
  return a.num === 0n;
}

/** The amount rounded half-up (ties away from zero) to `decimals` places, still exact. */
export function round(a: Money, decimals = 2): Money {
  return make(roundedScaled(a, decimals), 10n ** BigInt(decimals));
}

/** round(a) × 10^decimals, an integer (minor units for decimals = 2). */
function roundedScaled(a: Money, decimals: number): bigint {
  if (!Number.isSafeInteger(decimals) || decimals < 0) throw new RangeError(`decimals must be an integer ≥ 0, got ${decimals}`);
  const scaled = (a.num < 0n ? -a.num : a.num) * 10n ** BigInt(decimals);
  let q = scaled / a.den;
  if (2n * (scaled % a.den) >= a.den) q += 1n;
  return a.num < 0n ? -q : q;
}

function fixed(scaled: bigint, decimals: number): string {
  const negative = scaled < 0n;
  const digits = (negative ? -scaled : scaled).toString().padStart(decimals + 1, '0');
  const int = digits.slice(0, digits.length - decimals);
  const frac = digits.slice(digits.length - decimals);
  return `${negative ? '-' : ''}${int}${decimals > 0 ? `.${frac}` : ''}`;
}

/** The amount rounded half-up to `decimals` places (2 by default), always with that many: "16.90", "0.00". */
export function format(a: Money, decimals = 2): string {
  return fixed(roundedScaled(a, decimals), decimals);
}

/**
 * The exact value: the shortest plain decimal when it has a finite expansion ("29.99", "1000",
 * "0.0625"), else the reduced fraction of currency units ("16483/310").
 */
export function formatExact(a: Money): string {
  let twos = 0;
  let fives = 0;
  let d = a.den;
  while (d % 2n === 0n) { d /= 2n; twos++; }
  while (d % 5n === 0n) { d /= 5n; fives++; }
  if (d !== 1n) return `${a.num}/${a.den}`;
  const decimals = Math.max(twos, fives);
  return fixed(a.num * (10n ** BigInt(decimals) / a.den), decimals);
}

/** Exact decimal money: parsing, exact arithmetic, half-up display rounding, exact display. */
import { describe, expect, test } from '@jest/globals';
import {
  add, compare, divide, equals, format, formatExact, isZero, money, multiply, parseMoney, prorate, round, subtract, sum, ZERO,
  type Money,
} from '../../src/core/money.js';

const m = (text: string) => money(text, { allowNegative: true });

describe('parseMoney', () => {
  test.each([
    ['29.99', 2999n, 100n],
    ['0.5', 1n, 2n],
    ['1000', 1000n, 1n],
    ['0', 0n, 1n],
    ['0.00', 0n, 1n],
    ['10.10', 101n, 10n],
    ['0.000001', 1n, 1000000n],
    ['123456789012345678901234567890.13', 12345678901234567890123456789013n, 100n],
  ])('%s → %s/%s', (text, num, den) => {
    expect(parseMoney(text)).toEqual({ num, den });
  });

  test.each([
    ['', /empty/],
    ['1e3', /exponents are not allowed/],
    ['1E3', /exponents are not allowed/],
    ['-5', /negative/],
    ['29,99', /use a dot as the decimal separator/],
    ['1,000.00', /use a dot/],
    ['.5', /a digit is required before the dot/],
    ['5.', /a digit is required after the dot/],
    [' 5', /spaces are not allowed/],
    ['5 ', /spaces are not allowed/],
    ['+5', /a sign is not allowed/],
    ['abc', /write digits with an optional dot/],
    ['1.2.3', /write digits/],
    ['029.99', /leading zeros/],
    ['NaN', /write digits/],
    ['Infinity', /write digits/],
    ['0x10', /write digits/],
    ['1'.repeat(41), /too long/],
  ])('%j is refused: %s', (text, why) => {
    const r = parseMoney(text);
    expect(typeof r).toBe('string');
    expect(r).toMatch(why);
    if (text !== '') expect(r).toContain(JSON.stringify(text));
  });

  test('negative amounts only when allowed', () => {
    expect(parseMoney('-5', { allowNegative: true })).toEqual({ num: -5n, den: 1n });
    expect(parseMoney('-0.25', { allowNegative: true })).toEqual({ num: -1n, den: 4n });
    expect(parseMoney('--5', { allowNegative: true })).toMatch(/not a decimal amount/);
  });

  test('money() throws the message', () => {
    expect(() => money('29,99')).toThrow('"29,99" is not a decimal amount: use a dot as the decimal separator');
    expect(money('29.99')).toEqual({ num: 2999n, den: 100n });
  });
});

describe('arithmetic is exact', () => {
  test('0.1 + 0.2 is 0.3', () => {
    expect(equals(add(m('0.1'), m('0.2')), m('0.3'))).toBe(true);
  });

  test('29.99 / 31 × 31 is 29.99 again, with nothing lost', () => {
    const day = divide(m('29.99'), 31);
    expect(formatExact(day)).toBe('2999/3100');
    expect(formatExact(multiply(day, 31))).toBe('29.99');
    expect(formatExact(sum(Array.from({ length: 31 }, () => day)))).toBe('29.99');
  });

  test('a year of prorated days of every month length adds up to 12 prices', () => {
    const price = m('29.99');
    const lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    const total = sum(lengths.flatMap((dim) => Array.from({ length: dim }, () => divide(price, dim))));
    expect(formatExact(total)).toBe('359.88');
  });

  test('prorate, subtract, compare, isZero', () => {
    expect(formatExact(prorate(m('30'), 7, 30))).toBe('7');
    expect(formatExact(subtract(m('1'), m('0.01')))).toBe('0.99');
    expect(compare(m('0.1'), m('0.10'))).toBe(0);
    expect(compare(m('0.09'), m('0.1'))).toBe(-1);
    expect(compare(m('1'), m('0.999'))).toBe(1);
    expect(isZero(ZERO)).toBe(true);
    expect(isZero(subtract(m('2.5'), m('2.50')))).toBe(true);
  });

  test('division by zero and non-integer factors are refused', () => {
    expect(() => divide(m('1'), 0)).toThrow(RangeError);
    expect(() => multiply(m('1'), 1.5)).toThrow(/integer/);
    expect(() => divide(m('1'), Number.NaN)).toThrow(/integer/);
  });
});

describe('format: half-up to 2 decimals', () => {
  const frac = (num: bigint, den: bigint): Money => divide(multiply(m('1'), num), den);
  test.each([
    ['0.005', '0.01'],
    ['0.015', '0.02'],
    ['0.025', '0.03'], // half-even would give 0.02
    ['0.0249999', '0.02'],
    ['1.994999', '1.99'],
    ['1.995', '2.00'],
    ['29.99', '29.99'],
    ['1000', '1000.00'],
    ['0', '0.00'],
    ['-0.125', '-0.13'],
    ['-0.001', '0.00'],
    ['-1.5', '-1.50'],
  ])('%s → %s', (text, shown) => {
    expect(format(m(text))).toBe(shown);
  });

  test('fractions round from their exact value', () => {
    expect(format(frac(2999n, 3100n))).toBe('0.97');
    expect(format(frac(1n, 3n))).toBe('0.33');
    expect(format(frac(2n, 3n))).toBe('0.67');
    expect(format(frac(1n, 8n))).toBe('0.13');
  });

  test('other precisions and round()', () => {
    expect(format(m('0.5'), 0)).toBe('1');
    expect(format(m('2.4'), 0)).toBe('2');
    expect(format(divide(m('1'), 3), 6)).toBe('0.333333');
    expect(formatExact(round(divide(m('1'), 3)))).toBe('0.33');
    expect(() => format(m('1'), -1)).toThrow(RangeError);
  });
});

describe('formatExact', () => {
  test.each([
    ['29.99', '29.99'],
    ['0.50', '0.5'],
    ['1000', '1000'],
    ['0.0625', '0.0625'],
    ['0', '0'],
    ['-0.25', '-0.25'],
  ])('%s → %s', (text, exact) => {
    expect(formatExact(m(text))).toBe(exact);
  });

  test('non-terminating values are reduced fractions', () => {
    expect(formatExact(divide(m('1'), 3))).toBe('1/3');
    expect(formatExact(divide(m('30'), 31))).toBe('30/31');
    expect(formatExact(divide(m('-1'), 7))).toBe('-1/7');
  });
});

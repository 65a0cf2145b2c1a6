/** Transit billing: free period, started 24-hour days, month-by-month proration, exact money. */
import { describe, expect, test } from '@jest/globals';
import { billableDays, billing, DAY_MS, daysInMonth, freeUntil } from '../../src/core/billing.js';
import { add, divide, formatExact, money, multiply } from '../../src/core/money.js';

const H = 3_600_000;
const utc = (iso: string) => Date.parse(iso);
const FREE = 14;

/** A bill whose free period ends at `from` (assigned 14 days before) and that runs for `ms` after it. */
const after = (from: string, ms: number, price = '29.99') =>
  billing({ assignedAt: utc(from) - FREE * DAY_MS, now: utc(from) + ms, freeDays: FREE, monthlyPrice: price });

describe('the 14-day boundary: started 24-hour days after assignedAt + 14 × 24 h', () => {
  const assignedAt = utc('2026-03-10T15:30:00Z');
  test.each([
    ['at the assignment', 0, 0],
    ['1 hour', H, 0],
    ['13 days 23:59:59.999', 14 * DAY_MS - 1, 0],
    ['exactly 14 days', 14 * DAY_MS, 0],
    ['14 days + 1 ms', 14 * DAY_MS + 1, 1],
    ['14 days + 1 hour', 14 * DAY_MS + H, 1],
    ['exactly 15 days', 15 * DAY_MS, 1],
    ['15 days + 1 ms', 15 * DAY_MS + 1, 2],
    ['20 days', 20 * DAY_MS, 6],
  ])('%s → %i billable days', (_n, elapsed, days) => {
    expect(billableDays(assignedAt, assignedAt + elapsed, FREE)).toBe(days);
    const b = billing({ assignedAt, now: assignedAt + elapsed, freeDays: FREE, monthlyPrice: '29.99' });
    expect(b.billableDays).toBe(days);
    expect(b.freeUntil).toBe(assignedAt + 14 * DAY_MS);
    expect(b.billedUntil).toBe(b.freeUntil + days * DAY_MS);
    if (days === 0) expect(b).toMatchObject({ amount: '0.00', amountExact: '0', months: [] });
  });

  test('14 days + 1 ms costs one day of March: 29.99 / 31', () => {
    const b = billing({ assignedAt, now: assignedAt + 14 * DAY_MS + 1, freeDays: FREE, monthlyPrice: '29.99' });
    expect(b).toEqual({
      freeUntil: utc('2026-03-24T15:30:00Z'),
      billableDays: 1,
      billedUntil: utc('2026-03-25T15:30:00Z'),
      amount: '0.97',
      amountExact: '2999/3100',
      months: [{ month: '2026-03', days: 1, daysInMonth: 31, amount: '0.97', amountExact: '2999/3100' }],
    });
  });

  test('freeDays 0 bills from the first millisecond', () => {
    expect(billableDays(0, 1, 0)).toBe(1);
    expect(freeUntil(1000, 0)).toBe(1000);
  });
});

describe('migrations shorter than the free period cost 0', () => {
  test.each([
    ['released at once', 0],
    ['3 days', 3 * DAY_MS],
    ['13 days', 13 * DAY_MS],
    ['14 days', 14 * DAY_MS],
  ])('%s', (_n, elapsed) => {
    const assignedAt = utc('2026-12-25T08:00:00Z');
    const b = billing({ assignedAt, now: assignedAt + elapsed, freeDays: FREE, monthlyPrice: '499.00' });
    expect(b.billableDays).toBe(0);
    expect(b.amount).toBe('0.00');
    expect(b.months).toEqual([]);
  });
});

describe('month by month: each day at the rate of the month in which it starts', () => {
  test.each([
    // from (end of free period), days, price, months [month, days, daysInMonth, amountExact], total exact
    ['2026-01-29T12:00:00Z', 5, '31.00', [['2026-01', 3, 31, '3'], ['2026-02', 2, 28, '31/14']], '73/14'],
    ['2026-01-31T00:00:00Z', 2, '31.00', [['2026-01', 1, 31, '1'], ['2026-02', 1, 28, '31/28']], '59/28'],
    ['2026-01-31T23:59:59Z', 2, '31.00', [['2026-01', 1, 31, '1'], ['2026-02', 1, 28, '31/28']], '59/28'],
    ['2026-02-01T00:00:00Z', 28, '29.99', [['2026-02', 28, 28, '29.99']], '29.99'],
    ['2028-02-01T00:00:00Z', 29, '29.99', [['2028-02', 29, 29, '29.99']], '29.99'],
    ['2028-02-28T00:00:00Z', 3, '29', [['2028-02', 2, 29, '2'], ['2028-03', 1, 31, '29/31']], '91/31'],
    ['2100-02-28T00:00:00Z', 2, '28', [['2100-02', 1, 28, '1'], ['2100-03', 1, 31, '28/31']], '59/31'],
    ['2026-12-30T06:00:00Z', 4, '31', [['2026-12', 2, 31, '2'], ['2027-01', 2, 31, '2']], '4'],
    ['2026-04-16T00:00:00Z', 15, '30', [['2026-04', 15, 30, '15']], '15'],
  ] as const)('from %s for %i days at %s', (from, days, price, months, exact) => {
    const b = after(from, days * DAY_MS, price);
    expect(b.billableDays).toBe(days);
    expect(b.months.map((x) => [x.month, x.days, x.daysInMonth, x.amountExact])).toEqual(months);
    expect(b.amountExact).toBe(exact);
  });

  test('a partial last day counts whole, in the month where it starts', () => {
    const b = after('2026-01-30T22:00:00Z', 2 * DAY_MS + 1, '31');
    // days start Jan 30 22:00, Jan 31 22:00, Feb 1 22:00
    expect(b.months.map((x) => [x.month, x.days])).toEqual([['2026-01', 2], ['2026-02', 1]]);
  });

  test('Feb 2028 has 29 days, Feb 2026 and 2100 28, Feb 2000 29', () => {
    expect(daysInMonth(2028, 1)).toBe(29);
    expect(daysInMonth(2026, 1)).toBe(28);
    expect(daysInMonth(2100, 1)).toBe(28);
    expect(daysInMonth(2000, 1)).toBe(29);
    expect([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((m) => daysInMonth(2026, m))).toEqual([31, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]);
  });
});

describe('long migrations', () => {
  test('a year: 365 days from mid-January cost exactly 12 monthly prices', () => {
    const assignedAt = utc('2027-01-01T00:00:00Z');
    const b = billing({ assignedAt, now: utc('2028-01-15T00:00:00Z'), freeDays: FREE, monthlyPrice: '29.99' });
    expect(b.freeUntil).toBe(utc('2027-01-15T00:00:00Z'));
    expect(b.billableDays).toBe(365);
    expect(b.amountExact).toBe('359.88');
    expect(b.amount).toBe('359.88');
    expect(b.months).toHaveLength(13);
    expect(b.months[0]).toMatchObject({ month: '2027-01', days: 17, daysInMonth: 31 });
    expect(b.months[12]).toMatchObject({ month: '2028-01', days: 14, daysInMonth: 31 });
    expect(b.months.slice(1, 12).every((x) => x.days === x.daysInMonth && x.amount === '29.99')).toBe(true);
    expect(b.months.reduce((n, x) => n + x.days, 0)).toBe(365);
  });

  test('a leap year: 366 days across February 2028 also cost 12 prices', () => {
    const b = after('2028-01-15T00:00:00Z', 366 * DAY_MS, '49.90');
    expect(b.billableDays).toBe(366);
    expect(b.months.find((x) => x.month === '2028-02')).toMatchObject({ days: 29, daysInMonth: 29, amount: '49.90', amountExact: '49.9' });
    expect(b.amountExact).toBe('598.8');
    expect(b.amount).toBe('598.80');
  });

  test('ten years (2026–2035, two leap days) is 120 months, exact', () => {
    const b = after('2026-01-01T00:00:00Z', 3652 * DAY_MS, '0.01');
    expect(b.months).toHaveLength(120);
    expect(b.amountExact).toBe('1.2');
  });
});

describe('rounding', () => {
  test('the total is rounded once, half-up: 15 of 30 days of 0.05 is 0.025 → 0.03', () => {
    const b = after('2026-04-01T00:00:00Z', 15 * DAY_MS, '0.05');
    expect(b.amountExact).toBe('0.025');
    expect(b.amount).toBe('0.03');
  });

  test('month lines add up to the total (naive rounding per month would show 1.93 + 1.07 ≠ 3.01)', () => {
    const b = after('2026-01-30T00:00:00Z', 3 * DAY_MS, '29.99');
    expect(b.amount).toBe('3.01');
    expect(b.amountExact).toBe(formatExact(add(divide(multiply(money('29.99'), 2), 31), divide(money('29.99'), 28))));
    expect(b.months).toEqual([
      { month: '2026-01', days: 2, daysInMonth: 31, amount: '1.93', amountExact: '2999/1550' },
      { month: '2026-02', days: 1, daysInMonth: 28, amount: '1.08', amountExact: '2999/2800' },
    ]);
  });

  test.each(['29.99', '0.01', '10.00', '1.00', '49.90', '123.45', '7'])('lines add up to the total at %s for many spans', (price) => {
    for (const start of ['2026-01-17T09:00:00Z', '2028-02-20T00:00:00Z', '2026-11-29T23:00:00Z']) {
      for (const days of [1, 2, 3, 10, 31, 45, 70, 100]) {
        const b = after(start, days * DAY_MS, price);
        const cents = (s: string) => Number(s.replace('.', ''));
        expect(b.months.reduce((n, x) => n + cents(x.amount), 0)).toBe(cents(b.amount));
        expect(b.months.reduce((n, x) => n + x.days, 0)).toBe(days);
      }
    }
  });
});

describe('inputs', () => {
  const base = { assignedAt: 0, now: DAY_MS * 20, freeDays: 14, monthlyPrice: '29.99' };
  test.each([
    [{ monthlyPrice: '29,99' }, /use a dot/],
    [{ monthlyPrice: '1e3' }, /exponents/],
    [{ monthlyPrice: '-5' }, /negative/],
    [{ monthlyPrice: '' }, /empty/],
    [{ now: -1 }, /before assignedAt/],
    [{ now: Number.NaN }, /finite/],
    [{ freeDays: -1 }, /freeDays/],
    [{ freeDays: 1.5 }, /freeDays/],
    [{ timeZone: 'Europe/Berlin' }, /only UTC/],
  ])('%j is refused', (change, why) => {
    expect(() => billing({ ...base, ...change } as Parameters<typeof billing>[0])).toThrow(why);
  });

  test("timeZone 'UTC' is accepted, a zero price costs 0", () => {
    expect(billing({ ...base, timeZone: 'UTC' }).billableDays).toBe(6);
    expect(billing({ ...base, monthlyPrice: '0' })).toMatchObject({ billableDays: 6, amount: '0.00', amountExact: '0' });
  });
});

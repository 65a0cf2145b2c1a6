/**
 * What a transit costs the customer. Pure: times are ms since the epoch, passed in.
 *
 * The rule, precisely:
 * - The free period is `freeDays` × 24 h from the assignment: free until `freeUntil =
 *   assignedAt + freeDays × 86 400 000`. Up to and including that instant it costs nothing, so
 *   a migration shorter than the free period costs 0.
 * - After it, time is cut into consecutive 24-hour days starting at `freeUntil` (day k starts at
 *   `freeUntil + k × 24 h`, k = 0, 1, …). Every day that has started before `now` is billed
 *   whole: `billableDays = ceil((now − freeUntil) / 24 h)`. Exactly 14 days after assignment →
 *   0 days; 14 days + 1 ms → 1 day; 15 days → 1 day; 15 days + 1 ms → 2 days.
 *   Why 24-hour periods from the assignment rather than calendar days: the customer gets
 *   exactly `freeDays` × 24 h free whatever the hour of assignment, a day is never counted
 *   twice (a calendar reading would bill the partial day of assignment and of release as two
 *   days), and nothing depends on a time zone.
 * - Day k costs monthly_price / (number of days of the calendar month in which day k starts),
 *   months in UTC (the only time zone supported; it also has no DST, so a day is 24 h). The
 *   total is summed month by month: month amount = price × days / days_in_month, exactly.
 * - Money is exact (src/core/money.ts): the total is rounded once, half-up, to 2 decimals.
 *   Month lines are shown so that they add up to the total: each month's `amount` is the
 *   rounded running total minus the rounded running total before it (each line is within a cent
 *   of its exact value, which `amountExact` gives).
 */
import { add, format, formatExact, money, prorate, round, subtract, sum, ZERO, type Money } from './money.js';

export const DAY_MS = 86_400_000;

export interface BillingInput {
  /** When the transit was assigned (ms since epoch). */
  assignedAt: number;
  /** The end of the billed time: now for a running migration, the release time for a finished one. */
  now: number;
  /** Free days from the assignment (config `free_days`, 14). */
  freeDays: number;
  /** The server's monthly price, a decimal string ("29.99"). */
  monthlyPrice: string;
  /** Months are UTC calendar months; no other time zone is supported. */
  timeZone?: 'UTC';
}

export interface BillingMonth {
  /** 'YYYY-MM', UTC. */
  month: string;
  /** Billed days that start in this month. */
  days: number;
  daysInMonth: number;
  /** 2 decimals; the month lines add up to the total `amount`. */
  amount: string;
  /** price × days / daysInMonth, exact. */
  amountExact: string;
}

export interface Billing {
  /** The end of the free period (ms since epoch). */
  freeUntil: number;
  billableDays: number;
  /** The end of the last billed day (ms since epoch); `freeUntil` when nothing is billed. */
  billedUntil: number;
  /** The total, rounded half-up to 2 decimals. */
  amount: string;
  /** The exact total: a decimal when finite, else a reduced fraction ("16483/310"). */
  amountExact: string;
  /** Months with billed days, oldest first. */
  months: BillingMonth[];
}

/** Days in a month (month0 0 = January), UTC; February 2028 has 29. */
export function daysInMonth(year: number, month0: number): number {
  return new Date(Date.UTC(year, month0 + 1, 0)).getUTCDate();
}

function time(n: number, what: string): number {
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new RangeError(`${what} must be a finite number of ms, got ${n}`);
  return n;
}

/** The end of the free period. */
export function freeUntil(assignedAt: number, freeDays: number): number {
  if (!Number.isSafeInteger(freeDays) || freeDays < 0) throw new RangeError(`freeDays must be an integer ≥ 0, got ${freeDays}`);
  return time(assignedAt, 'assignedAt') + freeDays * DAY_MS;
}

/** Started 24-hour days after the free period, up to `now` (0 while free). */
export function billableDays(assignedAt: number, now: number, freeDays: number): number {
  const from = freeUntil(assignedAt, freeDays);
  time(now, 'now');
  if (now < assignedAt) throw new RangeError(`now (${now}) is before assignedAt (${assignedAt})`);
  return now <= from ? 0 : Math.ceil((now - from) / DAY_MS);
}

/** The bill for a transit from `assignedAt` to `now` (see the module comment for the rule). */
export function billing(input: BillingInput): Billing {
  if (input.timeZone !== undefined && input.timeZone !== 'UTC') {
    throw new RangeError(`only UTC calendar months are supported, got time zone ${JSON.stringify(input.timeZone)}`);
  }
  const price = money(input.monthlyPrice);
  const from = freeUntil(input.assignedAt, input.freeDays);
  const days = billableDays(input.assignedAt, input.now, input.freeDays);

  const parts: { month: string; days: number; daysInMonth: number; exact: Money }[] = [];
  const first = new Date(from);
  let year = first.getUTCFullYear();
  let month0 = first.getUTCMonth();
  let counted = 0;
  while (counted < days) {
    const start = Date.UTC(year, month0, 1);
    const end = Date.UTC(year, month0 + 1, 1);
    // Day k starts in [start, end) ⇔ ceil((start − from)/D) ≤ k < ceil((end − from)/D).
    const k0 = Math.max(0, Math.ceil((start - from) / DAY_MS));
    const k1 = Math.min(days, Math.ceil((end - from) / DAY_MS));
    if (k1 > k0) {
      const dim = daysInMonth(year, month0);
      parts.push({
        month: `${String(year).padStart(4, '0')}-${String(month0 + 1).padStart(2, '0')}`,
        days: k1 - k0,
        daysInMonth: dim,
        exact: prorate(price, k1 - k0, dim),
      });
      counted += k1 - k0;
    }
    month0 += 1;
    if (month0 === 12) { month0 = 0; year += 1; }
  }

  const total = sum(parts.map((p) => p.exact));
  let running: Money = ZERO;
  const months: BillingMonth[] = parts.map((p) => {
    const before = round(running);
    running = add(running, p.exact);
    const line = subtract(round(running), before);
    return { month: p.month, days: p.days, daysInMonth: p.daysInMonth, amount: format(line), amountExact: formatExact(p.exact) };
  });
  return {
    freeUntil: from,
    billableDays: days,
    billedUntil: from + days * DAY_MS,
    amount: format(total),
    amountExact: formatExact(total),
    months,
  };
}


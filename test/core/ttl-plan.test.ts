/** Lowering TTLs before a planned reinstall, and cache staleness after a cutover, with an injected clock. */
import { describe, expect, test } from '@jest/globals';
import { largestTtl, servedTtl, staleness, ttlPlan } from '../../src/core/ttl-plan.js';

const S = 1000;
const R = Date.parse('2026-06-10T02:00:00Z'); // reinstall_at

/** A fake clock: the plan is made at `now()`; cutovers happen later. */
function fakeClock(start: number) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

describe('ttlPlan', () => {
  test('lowers from reinstall_at − (largest TTL + margin); cache-safe from reinstall_at − margin − cutover_ttl', () => {
    const clock = fakeClock(R - 2 * 86_400 * S);
    const plan = ttlPlan({ reinstallAt: R, records: [{ ttl: 300 }, { ttl: 3600 }, { ttl: 86 }], cutoverTtl: 60, marginSeconds: 300, now: clock.now() });
    expect(plan).toEqual({
      reinstallAt: R, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, loweredTtl: 60,
      plannedLowerFrom: R - 3900 * S, lowerFrom: R - 3900 * S, cacheSafeAt: R - 360 * S, late: false,
    });
  });

  test('planned too late: lowering starts now and the plan says it is late', () => {
    const clock = fakeClock(R - 1800 * S);
    const plan = ttlPlan({ reinstallAt: R, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, now: clock.now() });
    expect(plan.plannedLowerFrom).toBe(R - 3900 * S);
    expect(plan.lowerFrom).toBe(R - 1800 * S);
    expect(plan.cacheSafeAt).toBe(R + 1740 * S);
    expect(plan.late).toBe(true);
  });

  test('nothing to lower when every TTL is at most cutover_ttl: any cutover is cache-safe', () => {
    const plan = ttlPlan({ reinstallAt: R, maxTtl: 30, cutoverTtl: 60, marginSeconds: 300, now: R - 86_400 * S });
    expect(plan).toMatchObject({ loweredTtl: 30, cacheSafeAt: R - 330 * S, late: false });
    expect(staleness(plan, R - 86_400 * S)).toEqual({ staleUntil: R - 86_370 * S, staleForMs: 30 * S, cacheSafe: true });
  });

  test('no records: maxTtl 0', () => {
    const plan = ttlPlan({ reinstallAt: R, records: [], cutoverTtl: 60, marginSeconds: 0, now: 0 });
    expect(plan).toMatchObject({ maxTtl: 0, lowerFrom: R, cacheSafeAt: R, late: false });
    expect(staleness(plan, 5)).toEqual({ staleUntil: 5, staleForMs: 0, cacheSafe: true });
  });

  test.each([
    [{ maxTtl: -1 }, /maxTtl/],
    [{ maxTtl: 1.5 }, /maxTtl/],
    [{ cutoverTtl: Number.NaN }, /cutoverTtl/],
    [{ marginSeconds: -5 }, /marginSeconds/],
    [{ reinstallAt: Number.POSITIVE_INFINITY }, /reinstallAt/],
    [{ records: [{ ttl: 60 }] }, /maxTtl or records, not both/],
  ])('%j is refused', (change, why) => {
    expect(() => ttlPlan({ reinstallAt: R, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, now: 0, ...change })).toThrow(why);
  });

  test('largestTtl', () => {
    expect(largestTtl([])).toBe(0);
    expect(largestTtl([{ ttl: 5 }, { ttl: 86400 }, { ttl: 0 }])).toBe(86400);
    expect(() => largestTtl([{ ttl: -1 }])).toThrow(RangeError);
  });
});

describe('staleness of a cutover at t', () => {
  const plan = ttlPlan({ reinstallAt: R, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, now: R - 86_400 * S });
  const lowerFrom = R - 3900 * S;
  test.each([
    // label, cutover at, staleUntil, cacheSafe
    ['a day early, before lowering', R - 86_400 * S, R - 82_800 * S, false],
    ['at lowerFrom', lowerFrom, lowerFrom + 3600 * S, false],
    ['1 s after lowerFrom', lowerFrom + S, lowerFrom + 3600 * S, false],
    ['half-way', lowerFrom + 1800 * S, lowerFrom + 3600 * S, false],
    ['1 ms before cacheSafeAt', R - 360 * S - 1, lowerFrom + 3600 * S, false],
    ['at cacheSafeAt', R - 360 * S, R - 300 * S, true],
    ['at reinstall_at', R, R + 60 * S, true],
    ['an hour after reinstall_at', R + 3600 * S, R + 3660 * S, true],
  ])('%s', (_n, at, staleUntil, cacheSafe) => {
    expect(staleness(plan, at)).toEqual({ staleUntil, staleForMs: staleUntil - at, cacheSafe });
  });

  test('driven by a clock: the cutover reports less staleness as time passes', () => {
    const clock = fakeClock(R - 7200 * S);
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      seen.push(staleness(plan, clock.now()).staleForMs / S);
      clock.advance(1800 * S);
    }
    expect(seen).toEqual([3600, 3600, 3300, 1500, 60]);
  });

  test('without a plan (no reinstall_at) a cutover is stale for the largest TTL', () => {
    expect(staleness({ maxTtl: 3600, cutoverTtl: 60 }, R)).toEqual({ staleUntil: R + 3600 * S, staleForMs: 3600 * S, cacheSafe: false });
    expect(staleness({ maxTtl: 60, cutoverTtl: 60 }, R)).toEqual({ staleUntil: R + 60 * S, staleForMs: 60 * S, cacheSafe: true });
  });
});

describe('servedTtl', () => {
  const plan = ttlPlan({ reinstallAt: R, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, now: 0 });
  test.each([
    ['before lowerFrom: the original', 3600, plan.lowerFrom - 1, 3600],
    ['from lowerFrom: capped', 3600, plan.lowerFrom, 60],
    ['a TTL already below the cap stays', 30, plan.lowerFrom + S, 30],
  ])('%s', (_n, original, at, served) => {
    expect(servedTtl(plan, original, at)).toBe(served);
  });
  test('no plan: the original', () => {
    expect(servedTtl(null, 3600, R)).toBe(3600);
  });
});

/**
 * Lowering TTLs ahead of a planned reinstall, and how long caches may stay stale after a
 * cutover. Pure: times are ms since the epoch, passed in; TTLs and the margin are in seconds
 * (as in DNS and in the config).
 *
 * Model: a resolver that received an answer at time s keeps it until s + TTL. Before
 * `lowerFrom`, records carrying the server's addresses are served with their original TTLs (at
 * most `maxTtl`); from `lowerFrom`, with min(original, cutoverTtl) (at most `loweredTtl`). A
 * cutover at t therefore leaves stale answers in caches until
 *   t + maxTtl                                     when nothing was lowered before t,
 *   max(lowerFrom + maxTtl, t + loweredTtl)        when the lowering started before t.
 * Staleness never drops below `loweredTtl`: answers served just before the switch are cached
 * for that long. A cutover is **cache-safe** when its staleness is that minimum
 * (min(maxTtl, cutoverTtl)), which holds from `cacheSafeAt = lowerFrom + (maxTtl − loweredTtl)`.
 * With the planned start `reinstallAt − (maxTtl + margin)` that is
 * `reinstallAt − margin − loweredTtl`: a cutover at the planned reinstall time is cache-safe
 * with `margin` to spare. When maxTtl ≤ cutoverTtl nothing needs lowering: every cutover is
 * cache-safe and `cacheSafeAt` is `plannedLowerFrom`.
 */

export interface TtlPlanInput {
  /** When the reinstall (and so the cutover) is planned, ms since epoch. */
  reinstallAt: number;
  /** The largest original TTL (s) of the records carrying the server's addresses… */
  maxTtl?: number;
  /** …or those records, from which it is taken (none: 0). Give one of the two. */
  records?: readonly { ttl: number }[];
  /** TTL (s) served from `lowerFrom` (dns.cutover_ttl). */
  cutoverTtl: number;
  /** Extra time (s) before the reinstall, for clock skew and resolvers that stretch TTLs. */
  marginSeconds: number;
  /**
   * When the plan is made (the migration's request). The lowering cannot start in the past: when
   * the planned start has gone by, it starts now and the plan may be `late`. Store the plan: a
   * plan recomputed later would start later.
   */
  now: number;
}

export interface TtlPlan {
  reinstallAt: number;
  maxTtl: number;
  cutoverTtl: number;
  marginSeconds: number;
  /** The largest TTL served from `lowerFrom`: min(maxTtl, cutoverTtl). */
  loweredTtl: number;
  /** reinstallAt − (maxTtl + margin). */
  plannedLowerFrom: number;
  /** When TTLs are actually lowered: max(plannedLowerFrom, now). */
  lowerFrom: number;
  /** The first moment a cutover is cache-safe (stale for at most `loweredTtl`). */
  cacheSafeAt: number;
  /** cacheSafeAt > reinstallAt: a cutover at the planned time would not be cache-safe. */
  late: boolean;
}

/** How long caches may serve the old addresses after a cutover at `cutoverAt`. */
export interface Staleness {
  /** Until when a cache may still answer with the server's own addresses. */
  staleUntil: number;
  staleForMs: number;
  /** staleForMs is the minimum possible (the lowered TTL). */
  cacheSafe: boolean;
}

function seconds(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be an integer number of seconds ≥ 0, got ${n}`);
  return n;
}

function instant(n: number, what: string): number {
  if (typeof n !== 'number' || !Number.isFinite(n)) throw new RangeError(`${what} must be a finite number of ms, got ${n}`);
  return n;
}

/** The largest TTL of some records (0 for none). */
export function largestTtl(records: readonly { ttl: number }[]): number {
  return records.reduce((max, r) => Math.max(max, seconds(r.ttl, 'a record TTL')), 0);
}

/** The plan for lowering TTLs ahead of `reinstallAt`. */
export function ttlPlan(input: TtlPlanInput): TtlPlan {
  const reinstallAt = instant(input.reinstallAt, 'reinstallAt');
  const now = instant(input.now, 'now');
  if (input.maxTtl !== undefined && input.records !== undefined) throw new RangeError('give maxTtl or records, not both');
  const maxTtl = input.maxTtl !== undefined ? seconds(input.maxTtl, 'maxTtl') : largestTtl(input.records ?? []);
  const cutoverTtl = seconds(input.cutoverTtl, 'cutoverTtl');
  const marginSeconds = seconds(input.marginSeconds, 'marginSeconds');
  const loweredTtl = Math.min(maxTtl, cutoverTtl);
  const plannedLowerFrom = reinstallAt - (maxTtl + marginSeconds) * 1000;
  const lowerFrom = Math.max(plannedLowerFrom, now);
  const cacheSafeAt = maxTtl > cutoverTtl ? lowerFrom + (maxTtl - loweredTtl) * 1000 : plannedLowerFrom;
  return {
    reinstallAt, maxTtl, cutoverTtl, marginSeconds, loweredTtl, plannedLowerFrom, lowerFrom, cacheSafeAt,
    late: cacheSafeAt > reinstallAt,
  };
}

/** The TTL (s) to serve at `at` for a record whose original TTL is `originalTtl`, under `plan` (null: none). */
export function servedTtl(plan: TtlPlan | null, originalTtl: number, at: number): number {
  seconds(originalTtl, 'originalTtl');
  return plan !== null && at >= plan.lowerFrom ? Math.min(originalTtl, plan.cutoverTtl) : originalTtl;
}

/**
 * Staleness after a cutover at `cutoverAt`: under a plan, or with nothing lowered
 * (`{ maxTtl, cutoverTtl }`: a migration without reinstall_at, whose cutover is stale for maxTtl).
 */
export function staleness(ttls: TtlPlan | { maxTtl: number; cutoverTtl: number }, cutoverAt: number): Staleness {
  instant(cutoverAt, 'cutoverAt');
  const maxMs = seconds(ttls.maxTtl, 'maxTtl') * 1000;
  const minimumMs = Math.min(ttls.maxTtl, seconds(ttls.cutoverTtl, 'cutoverTtl')) * 1000;
  const staleUntil = !('lowerFrom' in ttls) || cutoverAt <= ttls.lowerFrom
    ? cutoverAt + maxMs
    : Math.max(ttls.lowerFrom + maxMs, cutoverAt + minimumMs);
  const staleForMs = staleUntil - cutoverAt;
  return { staleUntil, staleForMs, cacheSafe: staleForMs <= minimumMs };
}

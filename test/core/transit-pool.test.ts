/** The transit pool and the per-profile FIFO queue. */
import { describe, expect, test } from '@jest/globals';
import {
  assign, fill, queuePosition, queuePositions, release, summary, transitOf, withdraw,
  type AssignResult, type Pool, type Queue, type ReleaseResult,
} from '../../src/core/transit-pool.js';

const POOL: Pool = [
  { name: 't1', profile: 'ax41', assignedTo: null, assignedAt: null },
  { name: 't2', profile: 'ax41', assignedTo: null, assignedAt: null },
  { name: 't3', profile: 'ex44', assignedTo: null, assignedAt: null },
];

function ok<T extends AssignResult | ReleaseResult>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
  return r as Extract<T, { ok: true }>;
}

/** Requests in order, at t = 1, 2, 3…; returns the state and each outcome. */
function requests(list: [string, string][], pool: Pool = POOL, queue: Queue = []) {
  const outcomes: string[] = [];
  list.forEach(([server, profile], i) => {
    const r = ok(assign(pool, queue, { server, profile, at: i + 1 }));
    pool = r.pool;
    queue = r.queue;
    outcomes.push(r.outcome.kind === 'assigned' ? `${server}→${r.outcome.transit}` : `${server} waits #${r.outcome.position}`);
  });
  return { pool, queue, outcomes };
}

const SCENARIO: [string, string][] = [
  ['s1', 'ax41'], ['s2', 'ax41'], ['s3', 'ax41'], ['s4', 'ex44'], ['s5', 'ax41'], ['s6', 'ex44'], ['s7', 'ex44'],
];

describe('assign', () => {
  test('first free transit of the profile, else the end of the profile queue', () => {
    const { pool, queue, outcomes } = requests(SCENARIO);
    expect(outcomes).toEqual(['s1→t1', 's2→t2', 's3 waits #1', 's4→t3', 's5 waits #2', 's6 waits #1', 's7 waits #2']);
    expect(transitOf(pool, 's2')).toEqual({ name: 't2', profile: 'ax41', assignedTo: 's2', assignedAt: 2 });
    expect(queue.map((e) => e.server)).toEqual(['s3', 's5', 's6', 's7']);
    expect(queuePosition(queue, 's5')).toEqual({ server: 's5', profile: 'ax41', position: 2, requestedAt: 5 });
    expect(queuePosition(queue, 's6')).toEqual({ server: 's6', profile: 'ex44', position: 1, requestedAt: 6 });
    expect(queuePosition(queue, 's1')).toBeNull();
    expect(queuePositions(queue).map((p) => `${p.server}#${p.position}`)).toEqual(['s3#1', 's5#2', 's6#1', 's7#2']);
    expect(queuePositions(queue, 'ex44').map((p) => p.server)).toEqual(['s6', 's7']);
    expect(summary(pool, queue)).toEqual([
      { profile: 'ax41', transits: 2, free: 0, waiting: 2 },
      { profile: 'ex44', transits: 1, free: 0, waiting: 2 },
    ]);
  });

  test.each([
    ['a server that has a transit', 's1', 'ax41', 'ALREADY_ASSIGNED', 's1 already has transit t1'],
    ['a server already waiting', 's5', 'ax41', 'ALREADY_QUEUED', 's5 is already waiting for a ax41 transit (position 2)'],
    ['a profile no transit has', 's9', 'px93', 'NO_TRANSIT_FOR_PROFILE', 'no transit has profile "px93": s9 would wait forever'],
  ])('%s is refused', (_n, server, profile, code, message) => {
    const { pool, queue } = requests(SCENARIO);
    expect(assign(pool, queue, { server, profile, at: 99 })).toEqual({ ok: false, code, message });
  });

  test('first come, first served: a free transit never jumps the queue of its profile', () => {
    const pool: Pool = [{ name: 't1', profile: 'ax41', assignedTo: null, assignedAt: null }];
    const queue: Queue = [{ server: 'early', profile: 'ax41', requestedAt: 1 }];
    const r = ok(assign(pool, queue, { server: 'late', profile: 'ax41', at: 2 }));
    expect(r.outcome).toEqual({ kind: 'queued', position: 2 });
    expect(fill(r.pool, r.queue, 3).assigned).toEqual([{ server: 'early', transit: 't1', at: 3 }]);
  });

  test('inputs are not changed', () => {
    const pool = structuredClone(POOL);
    const queue: Queue = [];
    assign(pool, queue, { server: 's1', profile: 'ax41', at: 1 });
    expect(pool).toEqual(POOL);
    expect(queue).toEqual([]);
  });
});

describe('release', () => {
  test('a freed transit goes to the first server waiting for its profile; positions move up', () => {
    let { pool, queue } = requests(SCENARIO);
    const steps: string[] = [];
    for (const [transit, at] of [['t1', 10], ['t3', 11], ['t2', 12], ['t3', 13], ['t1', 14], ['t3', 15], ['t2', 16]] as const) {
      const r = ok(release(pool, queue, transit, at));
      pool = r.pool;
      queue = r.queue;
      steps.push(`${transit}→${r.next ? r.next.server : 'free'}`);
      if (transit === 't1' && at === 10) {
        expect(r.next).toEqual({ server: 's3', transit: 't1', at: 10 });
        expect(transitOf(pool, 's1')).toBeUndefined();
        expect(transitOf(pool, 's3')).toMatchObject({ name: 't1', assignedAt: 10 });
        expect(queuePosition(queue, 's5')?.position).toBe(1);
      }
    }
    expect(steps).toEqual(['t1→s3', 't3→s6', 't2→s5', 't3→s7', 't1→free', 't3→free', 't2→free']);
    expect(queue).toEqual([]);
    expect(pool).toEqual(POOL);
  });

  test.each([
    ['t9', 'TRANSIT_NOT_FOUND', 'no transit is named t9'],
    ['t2', 'TRANSIT_NOT_ASSIGNED', 'transit t2 is not assigned'],
  ])('releasing %s is %s', (transit, code, message) => {
    const { pool, queue } = requests([['s1', 'ax41']]);
    expect(release(pool, queue, transit, 5)).toEqual({ ok: false, code, message });
  });
});

describe('withdraw and fill', () => {
  test('a cancelled waiting server leaves the queue; those behind move up', () => {
    const { queue } = requests(SCENARIO);
    const w = withdraw(queue, 's3');
    expect(w.removed).toBe(true);
    expect(queuePosition(w.queue, 's5')?.position).toBe(1);
    expect(withdraw(w.queue, 's3')).toEqual({ queue: w.queue, removed: false });
  });

  test('a transit added to the pool goes to the head of its profile queue', () => {
    const { pool, queue } = requests(SCENARIO);
    const bigger: Pool = [...pool, { name: 't4', profile: 'ex44', assignedTo: null, assignedAt: null }, { name: 't5', profile: 'zz', assignedTo: null, assignedAt: null }];
    const r = fill(bigger, queue, 20);
    expect(r.assigned).toEqual([{ server: 's6', transit: 't4', at: 20 }]);
    expect(queuePositions(r.queue).map((p) => `${p.server}#${p.position}`)).toEqual(['s3#1', 's5#2', 's7#1']);
    expect(summary(r.pool, r.queue)).toContainEqual({ profile: 'zz', transits: 1, free: 1, waiting: 0 });
  });
});

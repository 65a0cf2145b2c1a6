/** The migration state machine: every state × every event, then the paths through it. */
import { describe, expect, test } from '@jest/globals';
import {
  allowedEvents, cancelBlockers, heldTransit, MIGRATION_EVENTS, MIGRATION_STATES, newMigration, transition,
  type Migration, type MigrationEvent, type MigrationEventType, type MigrationState, type TransitionResult,
} from '../../src/core/migration.js';
import { ttlPlan } from '../../src/core/ttl-plan.js';

const T0 = Date.parse('2026-05-01T08:00:00Z');
const MIN = 60_000;

function create(accounts: string[] = ['a', 'b'], extra: Partial<Parameters<typeof newMigration>[0]> = {}): Migration {
  const m = newMigration({ server: 'srv-42', profile: 'ax41', accounts, now: T0, ...extra });
  if (typeof m === 'string') throw new Error(m);
  return m;
}

let clock = T0;
/** Applies events in order, each a minute later; throws on a refusal. */
function run(m: Migration, ...events: MigrationEvent[]): Migration {
  for (const e of events) {
    clock += MIN;
    const r = transition(m, e, clock);
    if (!r.ok) throw new Error(`${e.type} refused: ${r.code} ${r.message}`);
    m = r.migration;
  }
  return m;
}

const assigned: MigrationEvent = { type: 'transit_assigned', transit: 'transit-3' };
const start = (account: string, to: 'transit' | 'home'): MigrationEvent => ({ type: 'move_started', account, to });
const finish = (account: string, to: 'transit' | 'home', downtimeMs?: number): MigrationEvent => ({ type: 'move_completed', account, to, downtimeMs });
const fail = (account: string, to: 'transit' | 'home'): MigrationEvent => ({ type: 'move_failed', account, to, error: 'rsync exited 23' });

/** One migration in each state, accounts a and b. */
function inState(state: MigrationState): Migration {
  const waiting = create();
  switch (state) {
    case 'waiting_for_transit': return waiting;
    case 'transit_assigned': return run(waiting, assigned);
    case 'accounts_to_transit': return run(waiting, assigned, start('a', 'transit')); // a moving, b home
    case 'ready_for_reinstall': return run(inState('accounts_to_transit'), finish('a', 'transit'), start('b', 'transit'), finish('b', 'transit'));
    case 'reinstalling': return run(inState('ready_for_reinstall'), { type: 'cutover' });
    case 'accounts_back': return run(inState('reinstalling'), { type: 'reinstalled' }, { type: 'cutback_succeeded' });
    case 'completed': return run(inState('accounts_back'), start('a', 'home'), finish('a', 'home'), start('b', 'home'), finish('b', 'home'));
    case 'cancelled': return run(waiting, { type: 'cancel' });
  }
}

/** The canonical events of the table. */
const EVENTS: Record<string, MigrationEvent> = {
  'transit_assigned': assigned,
  'move_started b→transit': start('b', 'transit'),
  'move_started a→home': start('a', 'home'),
  'move_completed a→transit': finish('a', 'transit', 1200),
  'move_completed a→home': finish('a', 'home', 800),
  'move_failed a→transit': fail('a', 'transit'),
  'cutover': { type: 'cutover' },
  'cutover force': { type: 'cutover', force: true },
  'reinstalled': { type: 'reinstalled' },
  'cutback_succeeded': { type: 'cutback_succeeded' },
  'cancel': { type: 'cancel' },
};

const I = 'INVALID_TRANSITION';
/** state → [allowed events, outcome per canonical event: a state (accepted) or a refusal code]. */
const TABLE: Record<MigrationState, [MigrationEventType[], Record<keyof typeof EVENTS, string>]> = {
  waiting_for_transit: [['transit_assigned', 'cancel'], {
    'transit_assigned': '→transit_assigned', 'move_started b→transit': I, 'move_started a→home': I,
    'move_completed a→transit': I, 'move_completed a→home': I, 'move_failed a→transit': I,
    'cutover': I, 'cutover force': I, 'reinstalled': I, 'cutback_succeeded': I, 'cancel': '→cancelled',
  }],
  transit_assigned: [['move_started', 'cutover', 'cancel'], {
    'transit_assigned': I, 'move_started b→transit': '→accounts_to_transit', 'move_started a→home': 'MOVE_NOT_ALLOWED',
    'move_completed a→transit': I, 'move_completed a→home': I, 'move_failed a→transit': I,
    'cutover': 'ACCOUNTS_NOT_ON_TRANSIT', 'cutover force': '→reinstalling', 'reinstalled': I, 'cutback_succeeded': I, 'cancel': '→cancelled',
  }],
  accounts_to_transit: [['move_started', 'move_completed', 'move_failed', 'cutover'], {
    'transit_assigned': I, 'move_started b→transit': '→accounts_to_transit', 'move_started a→home': 'ACCOUNT_NOT_MOVABLE',
    'move_completed a→transit': '→accounts_to_transit', 'move_completed a→home': 'ACCOUNT_NOT_MOVING', 'move_failed a→transit': '→accounts_to_transit',
    'cutover': 'ACCOUNTS_NOT_ON_TRANSIT', 'cutover force': '→reinstalling', 'reinstalled': I, 'cutback_succeeded': I, 'cancel': 'CANCEL_BLOCKED',
  }],
  ready_for_reinstall: [['move_started', 'cutover'], {
    'transit_assigned': I, 'move_started b→transit': 'MOVE_NOT_ALLOWED', 'move_started a→home': '→accounts_to_transit',
    'move_completed a→transit': I, 'move_completed a→home': I, 'move_failed a→transit': I,
    'cutover': '→reinstalling', 'cutover force': '→reinstalling', 'reinstalled': I, 'cutback_succeeded': I, 'cancel': 'CANCEL_BLOCKED',
  }],
  reinstalling: [['reinstalled', 'cutback_succeeded'], {
    'transit_assigned': I, 'move_started b→transit': I, 'move_started a→home': I,
    'move_completed a→transit': 'ACCOUNT_NOT_MOVING', 'move_completed a→home': 'ACCOUNT_NOT_MOVING', 'move_failed a→transit': 'ACCOUNT_NOT_MOVING',
    'cutover': I, 'cutover force': I, 'reinstalled': '→reinstalling', 'cutback_succeeded': '→accounts_back', 'cancel': 'CANCEL_BLOCKED',
  }],
  accounts_back: [['move_started'], {
    'transit_assigned': I, 'move_started b→transit': 'MOVE_NOT_ALLOWED', 'move_started a→home': '→accounts_back',
    'move_completed a→transit': 'ACCOUNT_NOT_MOVING', 'move_completed a→home': 'ACCOUNT_NOT_MOVING', 'move_failed a→transit': 'ACCOUNT_NOT_MOVING',
    'cutover': I, 'cutover force': I, 'reinstalled': I, 'cutback_succeeded': I, 'cancel': 'CANCEL_BLOCKED',
  }],
  completed: [[], Object.fromEntries(Object.keys(EVENTS).map((k) => [k, I]))],
  cancelled: [[], Object.fromEntries(Object.keys(EVENTS).map((k) => [k, I]))],
};

describe('every state × every event', () => {
  test('the table covers every state and every event type', () => {
    expect(Object.keys(TABLE).sort()).toEqual([...MIGRATION_STATES].sort());
    expect(new Set(Object.values(EVENTS).map((e) => e.type))).toEqual(new Set(MIGRATION_EVENTS));
  });

  describe.each(MIGRATION_STATES)('%s', (state) => {
    const [allowed, outcomes] = TABLE[state];

    test('is reached by the fixture, and allowedEvents lists exactly the accepted types', () => {
      const m = inState(state);
      expect(m.state).toBe(state);
      expect(allowedEvents(m)).toEqual(allowed);
    });

    test.each(Object.keys(EVENTS))(`${state} + %s`, (name) => {
      const m = inState(state);
      const frozen = JSON.stringify(m);
      const r = transition(m, EVENTS[name], T0 + 365 * 24 * 60 * MIN);
      const expected = outcomes[name];
      expect(JSON.stringify(m)).toBe(frozen); // never changes its input
      if (expected.startsWith('→')) {
        if (!r.ok) throw new Error(`expected ${expected}, refused ${r.code}: ${r.message}`);
        expect(r.migration.state).toBe(expected.slice(1));
        expect(r.migration.history.at(-1)).toMatchObject({ event: EVENTS[name].type, from: state, to: expected.slice(1) });
        expect(allowed).toContain(EVENTS[name].type);
      } else {
        if (r.ok) throw new Error(`expected ${expected}, accepted → ${r.migration.state}`);
        expect(r).toMatchObject({ ok: false, code: expected, state, allowed });
        expect(r.message.length).toBeGreaterThan(10);
      }
    });
  });
});

describe('refusals say what is in the way', () => {
  test('a cutover with accounts not on the transit lists them', () => {
    const m = run(inState('accounts_to_transit'), finish('a', 'transit'), start('b', 'transit'));
    const r = transition(m, { type: 'cutover' }, clock);
    expect(r).toEqual({
      ok: false,
      code: 'ACCOUNTS_NOT_ON_TRANSIT',
      message: '1 account is not on the transit: b (moving_to_transit); finish the moves or force the cutover',
      state: 'accounts_to_transit',
      allowed: ['move_started', 'move_completed', 'move_failed', 'cutover'],
      details: { accounts: [{ name: 'b', location: 'moving_to_transit' }] },
    });
  });

  test('cancel with accounts on the transit names them', () => {
    const r = transition(inState('ready_for_reinstall'), { type: 'cancel' }, clock) as Extract<TransitionResult, { ok: false }>;
    expect(r.code).toBe('CANCEL_BLOCKED');
    expect(r.message).toBe('cannot cancel: accounts are not home: a (transit), b (transit)');
    expect(r.details).toEqual({ accounts: [{ name: 'a', location: 'transit' }, { name: 'b', location: 'transit' }], cutoverActive: false });
  });

  test('cancel during a cutover says the cutover is active', () => {
    const m = run(create(), assigned, { type: 'cutover', force: true });
    const r = transition(m, { type: 'cancel' }, clock) as Extract<TransitionResult, { ok: false }>;
    expect(r.code).toBe('CANCEL_BLOCKED');
    expect(r.message).toMatch(/^cannot cancel: a cutover is active since 2026-/);
    expect(r.details).toEqual({ accounts: [], cutoverActive: true });
    expect(cancelBlockers(m)).toEqual({ accounts: [], cutoverActive: true });
  });

  test.each([
    [{ type: 'warp' }, /unknown event "warp"/],
    [{ type: 'transit_assigned', transit: '' }, /needs a transit name/],
    [{ type: 'move_started', account: 'a', to: 'moon' }, /"to": "transit" or "home"/],
    [{ type: 'move_started', to: 'transit' }, /needs an account name/],
    [{ type: 'move_completed', account: 'a', to: 'transit', downtimeMs: -5 }, /downtimeMs/],
    [{ type: 'cutover', force: 'yes' }, /force must be true or false/],
  ])('a malformed event %j is INVALID_EVENT', (event, why) => {
    const r = transition(inState('accounts_to_transit'), event as unknown as MigrationEvent, clock);
    expect(r).toMatchObject({ ok: false, code: 'INVALID_EVENT', state: 'accounts_to_transit' });
    expect((r as { message: string }).message).toMatch(why);
  });

  test('an unknown account is UNKNOWN_ACCOUNT', () => {
    expect(transition(inState('transit_assigned'), start('zz', 'transit'), clock)).toMatchObject({ ok: false, code: 'UNKNOWN_ACCOUNT' });
    expect(transition(inState('accounts_to_transit'), finish('zz', 'transit'), clock)).toMatchObject({ ok: false, code: 'UNKNOWN_ACCOUNT' });
  });

  test('reinstalled twice is refused and no longer allowed', () => {
    const m = run(inState('reinstalling'), { type: 'reinstalled' });
    expect(allowedEvents(m)).toEqual(['cutback_succeeded']);
    expect(transition(m, { type: 'reinstalled' }, clock)).toMatchObject({
      ok: false, code: 'INVALID_TRANSITION', allowed: ['cutback_succeeded'], message: expect.stringMatching(/already reported/),
    });
  });

  test('a non-finite clock is a programming error', () => {
    expect(() => transition(create(), assigned, Number.NaN)).toThrow(RangeError);
  });
});

describe('paths', () => {
  test('the whole migration: history, timestamps, downtime, release on completion', () => {
    clock = T0;
    let m = create(['a', 'b']);
    m = run(m, assigned);
    expect(m).toMatchObject({ state: 'transit_assigned', transit: 'transit-3', assignedAt: T0 + MIN });
    m = run(m, start('a', 'transit'), finish('a', 'transit', 1500), start('b', 'transit'));
    expect(m.state).toBe('accounts_to_transit');
    m = run(m, finish('b', 'transit', 900));
    expect(m.state).toBe('ready_for_reinstall');
    m = run(m, { type: 'cutover' }, { type: 'reinstalled' });
    expect(m).toMatchObject({ state: 'reinstalling', reinstalledAt: T0 + 7 * MIN });
    expect(m.cutover).toEqual({ at: T0 + 6 * MIN, forced: false, accountsNotOnTransit: [], staleUntil: null, staleForMs: null, cacheSafe: null });
    m = run(m, { type: 'cutback_succeeded' }, start('b', 'home'), finish('b', 'home', 700), start('a', 'home'));
    expect(m.state).toBe('accounts_back');
    expect(heldTransit(m)).toBe('transit-3');
    clock += MIN;
    const r = transition(m, finish('a', 'home', 600), clock);
    if (!r.ok) throw new Error(r.message);
    expect(r.effects).toEqual({ releaseTransit: 'transit-3', leaveQueue: false });
    m = r.migration;
    expect(m).toMatchObject({ state: 'completed', finishedAt: clock, cutbackAt: T0 + 8 * MIN, transit: 'transit-3' });
    expect(heldTransit(m)).toBeNull();
    expect(m.accounts.find((x) => x.name === 'a')!.moves).toEqual([
      { direction: 'transit', startedAt: T0 + 2 * MIN, completedAt: T0 + 3 * MIN, downtimeMs: 1500, failedAt: null, error: null },
      { direction: 'home', startedAt: T0 + 11 * MIN, completedAt: clock, downtimeMs: 600, failedAt: null, error: null },
    ]);
    expect(m.history.map((h) => `${h.event}:${h.from ?? '-'}→${h.to}${h.account ? `:${h.account}` : ''}`)).toEqual([
      'request:-→waiting_for_transit',
      'transit_assigned:waiting_for_transit→transit_assigned',
      'move_started:transit_assigned→accounts_to_transit:a',
      'move_completed:accounts_to_transit→accounts_to_transit:a',
      'move_started:accounts_to_transit→accounts_to_transit:b',
      'move_completed:accounts_to_transit→ready_for_reinstall:b',
      'cutover:ready_for_reinstall→reinstalling',
      'reinstalled:reinstalling→reinstalling',
      'cutback_succeeded:reinstalling→accounts_back',
      'move_started:accounts_back→accounts_back:b',
      'move_completed:accounts_back→accounts_back:b',
      'move_started:accounts_back→accounts_back:a',
      'move_completed:accounts_back→completed:a',
    ]);
  });

  test('a failed move leaves the account where it was', () => {
    let m = run(inState('transit_assigned'), start('a', 'transit'), fail('a', 'transit'));
    expect(m.accounts[0]).toMatchObject({ location: 'home' });
    expect(m.accounts[0].moves[0]).toMatchObject({ completedAt: null, failedAt: clock, error: 'rsync exited 23' });
    m = run(inState('accounts_back'), start('a', 'home'), { type: 'move_failed', account: 'a', to: 'home' });
    expect(m.state).toBe('accounts_back');
    expect(m.accounts[0]).toMatchObject({ location: 'transit' });
    expect(m.accounts[0].moves.at(-1)).toMatchObject({ error: 'the move failed' });
  });

  test('before the cutover accounts can come home, and then the migration can be cancelled', () => {
    let m = run(inState('ready_for_reinstall'), start('a', 'home'));
    expect(m.state).toBe('accounts_to_transit');
    m = run(m, finish('a', 'home'), start('b', 'home'), finish('b', 'home'));
    expect(m.state).toBe('accounts_to_transit');
    expect(allowedEvents(m)).toContain('cancel');
    clock += MIN;
    const r = transition(m, { type: 'cancel' }, clock);
    expect(r).toMatchObject({ ok: true, effects: { releaseTransit: 'transit-3', leaveQueue: false } });
    if (r.ok) expect(r.migration).toMatchObject({ state: 'cancelled', finishedAt: clock });
  });

  test('cancelled while waiting: leave the queue, nothing to release', () => {
    expect(transition(create(), { type: 'cancel' }, T0 + 1)).toMatchObject({
      ok: true, effects: { releaseTransit: null, leaveQueue: true }, migration: { state: 'cancelled', transit: null },
    });
  });

  test('a forced cutover records the accounts it overrode; their moves may still finish', () => {
    let m = run(inState('accounts_to_transit'), { type: 'cutover', force: true });
    expect(m.state).toBe('reinstalling');
    expect(m.cutover).toMatchObject({ forced: true, accountsNotOnTransit: ['a', 'b'] });
    expect(m.history.at(-1)).toMatchObject({ event: 'cutover', forced: true });
    expect(allowedEvents(m)).toEqual(['move_completed', 'move_failed', 'reinstalled', 'cutback_succeeded']);
    m = run(m, finish('a', 'transit'));
    expect(m.state).toBe('reinstalling');
    m = run(m, { type: 'cutback_succeeded' });
    expect(m.state).toBe('accounts_back'); // a is on the transit
    m = run(m, start('a', 'home'), finish('a', 'home'));
    expect(m.state).toBe('completed');
  });

  test('cutback with every account home completes at once and releases', () => {
    const m = run(inState('transit_assigned'), { type: 'cutover', force: true });
    const r = transition(m, { type: 'cutback_succeeded' }, clock + 1);
    expect(r).toMatchObject({ ok: true, migration: { state: 'completed', cutbackAt: clock + 1, finishedAt: clock + 1 }, effects: { releaseTransit: 'transit-3' } });
  });

  test('a server without accounts is ready as soon as it has its transit', () => {
    let m = run(create([]), assigned);
    expect(m.state).toBe('ready_for_reinstall');
    expect(allowedEvents(m)).toEqual(['cutover', 'cancel']);
    m = run(m, { type: 'cutover' }, { type: 'cutback_succeeded' });
    expect(m.state).toBe('completed');
  });

  test('a cutover under a TTL plan records how long caches may stay stale', () => {
    const reinstallAt = T0 + 24 * 60 * MIN;
    const plan = ttlPlan({ reinstallAt, maxTtl: 3600, cutoverTtl: 60, marginSeconds: 300, now: T0 });
    const ready = run(create(['a'], { reinstallAt, ttlPlan: plan }), assigned, start('a', 'transit'), finish('a', 'transit'));
    expect(ready.ttlPlan?.cacheSafeAt).toBe(reinstallAt - 360_000);
    const early = transition(ready, { type: 'cutover' }, plan.lowerFrom + 10 * MIN);
    expect(early).toMatchObject({ ok: true, migration: { cutover: { cacheSafe: false, staleUntil: plan.lowerFrom + 3_600_000, staleForMs: 50 * MIN } } });
    const onTime = transition(ready, { type: 'cutover' }, reinstallAt);
    expect(onTime).toMatchObject({ ok: true, migration: { cutover: { cacheSafe: true, staleUntil: reinstallAt + 60_000, staleForMs: 60_000 } } });
  });
});

describe('newMigration', () => {
  test('starts waiting with a request entry', () => {
    expect(create(['a'], { reinstallAt: T0 + MIN })).toEqual({
      server: 'srv-42', profile: 'ax41', state: 'waiting_for_transit', transit: null, requestedAt: T0, assignedAt: null,
      reinstallAt: T0 + MIN, ttlPlan: null, accounts: [{ name: 'a', location: 'home', moves: [] }], cutover: null,
      reinstalledAt: null, cutbackAt: null, finishedAt: null, history: [{ at: T0, event: 'request', from: null, to: 'waiting_for_transit' }],
    });
  });

  test.each([
    [{ server: '' }, 'a server is required'],
    [{ profile: '' }, 'a profile is required'],
    [{ accounts: ['a', 'a'] }, 'account a is listed twice'],
    [{ accounts: ['a', ''] }, 'account names must be non-empty strings'],
    [{ reinstallAt: T0 - 1 }, /is in the past/],
    [{ reinstallAt: Number.NaN }, 'reinstall_at must be a time'],
  ])('%j is refused', (change, why) => {
    const r = newMigration({ server: 'srv-42', profile: 'ax41', accounts: ['a'], now: T0, ...change } as Parameters<typeof newMigration>[0]);
    expect(typeof r).toBe('string');
    expect(r).toMatch(why);
  });
});

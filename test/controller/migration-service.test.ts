/**
 * The migration service over the real SQLite store: the queue with several profiles, hand-over
 * of a freed transit, cancel guards, per-account overlays, TTL lowering driven by an injected
 * clock, and a restart.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { MigrationError, MigrationService } from '../../src/controller/migration-service.js';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Inventory } from '../../src/core/inventory.js';
import type { AccountOverlay, LoweredTtl } from '../../src/core/overlay.js';
import type { StateStore } from '../../src/core/ports.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const server = (name: string, profile: string, a: string) => [name, { name, profile, monthlyPrice: '30.00', addresses: [addr(a)] }] as const;
const inventory: Inventory = {
  servers: new Map([server('a1', 'small', '203.0.113.1'), server('a2', 'small', '203.0.113.2'), server('a3', 'small', '203.0.113.3'), server('b1', 'big', '203.0.113.4')]),
  transits: new Map([
    ['ts', { name: 'ts', profile: 'small', addresses: [addr('198.51.100.1')] }],
    ['tb', { name: 'tb', profile: 'big', addresses: [addr('198.51.100.2')] }],
  ]),
  accounts: new Map([['acme', { name: 'acme', server: 'a1', zones: ['acme.test.'] }]]),
};

const stores: StateStore[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(file?: string, start = Date.UTC(2026, 10, 28, 12)) {
  const path = file ?? join(mkdtempSync(join(tmpdir(), 'fc-mig-')), 'state.db');
  if (!file) dirs.push(join(path, '..'));
  const store = openSqliteStore(path);
  stores.push(store);
  const published = { accounts: [] as AccountOverlay[], lowered: [] as LoweredTtl[] };
  const clock = { t: start, now: () => clock.t, monotonic: () => clock.t };
  const svc = new MigrationService({
    inventory: () => inventory, store, clock, logger: pino({ level: 'silent' }),
    overlays: {
      stage: (next) => ({ change: {}, apply: () => Object.assign(published, next) }),
      restore: (next) => Object.assign(published, next),
    },
    cutoverTtl: 60, ttlMarginS: 300, freeDays: 14, currency: 'EUR', largestTtl: () => 3600,
  });
  return { svc, store, published, clock, path };
}

const code = async (fn: () => unknown) => {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    if (err instanceof MigrationError) return err.code;
    throw err;
  }
};

describe('migration service', () => {
  test('first come, first served per profile; a freed transit goes to the next of its profile at once', async () => {
    const { svc } = setup();
    const results = [];
    for (const s of ['a1', 'a2', 'b1', 'a3']) results.push((await svc.request(s, null)).migration);
    expect(results.map((m) => [m.server, m.state, m.transit])).toEqual([
      // b1 has no accounts: it is ready for its reinstall as soon as it has a transit
      ['a1', 'transit_assigned', 'ts'], ['a2', 'waiting_for_transit', null], ['b1', 'ready_for_reinstall', 'tb'], ['a3', 'waiting_for_transit', null],
    ]);
    expect(svc.view('a2').queuePosition).toBe(1);
    expect(svc.view('a3').queuePosition).toBe(2);
    expect(svc.transits().queue.map((q) => q.server)).toEqual(['a2', 'a3']);
    await svc.cancel('a1');
    expect(svc.get('a2')).toMatchObject({ state: 'ready_for_reinstall', transit: 'ts' });
    expect(svc.view('a3').queuePosition).toBe(1);
    expect(svc.get('b1')?.transit).toBe('tb');
  });

  test('cancel is refused while an account is on the transit, saying what is in the way', async () => {
    const { svc } = setup();
    await svc.request('a1', null);
    await svc.move('acme', 'transit', 'started');
    await svc.move('acme', 'transit', 'completed');
    try {
      await svc.cancel('a1');
      throw new Error('not refused');
    } catch (err) {
      expect(err).toBeInstanceOf(MigrationError);
      expect((err as MigrationError).code).toBe('CANCEL_BLOCKED');
      expect((err as MigrationError).details).toMatchObject({ state: 'ready_for_reinstall', accounts: [{ name: 'acme', location: 'transit' }] });
    }
  });

  test("an account's zones follow it at the completion of its move, and only its zones", async () => {
    const { svc, published } = setup();
    await svc.request('a1', null);
    await svc.move('acme', 'transit', 'started');
    expect(published.accounts).toEqual([]);
    await svc.move('acme', 'transit', 'completed');
    expect(published.accounts).toEqual([expect.objectContaining({ account: 'acme', zones: ['acme.test.'], transit: 'ts', pairs: [{ address: '203.0.113.1', transitAddress: '198.51.100.1', family: 4 }] })]);
    expect(await code(() => svc.move('acme', 'transit', 'started'))).toBe('MOVE_NOT_ALLOWED');
    expect(await code(() => svc.move('nobody', 'transit', 'started'))).toBe('ACCOUNT_NOT_FOUND');
  });

  test('TTLs are lowered from reinstall_at − (largest TTL + margin), driven by the clock', async () => {
    const { svc, published, clock } = setup();
    const reinstallAt = clock.t + 10 * 3600_000;
    const m = (await svc.request('a1', reinstallAt)).migration;
    expect(m.ttlPlan).toMatchObject({ lowerFrom: reinstallAt - (3600 + 300) * 1000, loweredTtl: 60 });
    await svc.tick();
    expect(published.lowered).toEqual([]);
    clock.t = m.ttlPlan!.lowerFrom - 1;
    await svc.tick();
    expect(published.lowered).toEqual([]);
    clock.t = m.ttlPlan!.lowerFrom;
    await svc.tick();
    expect(published.lowered).toEqual([{ server: 'a1', addresses: [{ address: '203.0.113.1', family: 4 }], ttl: 60 }]);
    // a cutover later than cacheSafeAt is cache-safe
    expect(svc.view('a1').migration.ttlPlan!.cacheSafeAt).toBe(m.ttlPlan!.lowerFrom + (3600 - 60) * 1000);
  });

  test('billing: free for 14 days from assignment, then prorated by the days of the month', async () => {
    const { svc, clock } = setup(undefined, Date.UTC(2026, 1, 1, 0)); // 1 Feb 2026 (28 days)
    await svc.request('a1', null);
    clock.t += 14 * 86_400_000;
    expect(svc.view('a1').billing).toMatchObject({ billableDays: 0, amount: '0.00' });
    clock.t += 1;
    expect(svc.view('a1').billing).toMatchObject({ billableDays: 1, amount: '1.07', currency: 'EUR' }); // 30.00 / 28
  });

  test('after a restart, migrations and account overlays come back', async () => {
    const first = setup();
    await first.svc.request('a1', null);
    await first.svc.move('acme', 'transit', 'started');
    await first.svc.move('acme', 'transit', 'completed');
    first.store.close();
    stores.length = 0;
    const second = setup(first.path);
    second.svc.resume();
    expect(second.svc.get('a1')?.state).toBe('ready_for_reinstall');
    expect(second.published.accounts.map((a) => a.account)).toEqual(['acme']);
  });
});

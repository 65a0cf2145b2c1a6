/**
 * A state store that cannot commit (storage full or failing) never splits what is stored, what
 * the services report and what DNS answers. The services are wired as in src/main.ts (cutover,
 * migration, overlay composer, hooks) over the real SQLite store, wrapped so that a test decides
 * when commits fail: as StateUnavailableError (a full disk), or for good (the process is killed
 * after its n-th commit, then restarted on the same file).
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { CutoverService } from '../../src/controller/cutover-service.js';
import { MigrationService } from '../../src/controller/migration-service.js';
import { OverlayComposer } from '../../src/controller/overlay-composer.js';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Inventory } from '../../src/core/inventory.js';
import type { Migration } from '../../src/core/migration.js';
import type { CompiledOverlay } from '../../src/core/overlay.js';
import { StateUnavailableError, type StateChange, type StateStore } from '../../src/core/ports.js';
import type { DesiredRoute, RouteBackend } from '../../src/routing/route-backend.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const inventory: Inventory = {
  servers: new Map([
    ['srv-42', { name: 'srv-42', profile: 'vps', monthlyPrice: '30.00', addresses: ['203.0.113.10', '2001:db8:42::10'].map(addr) }],
    ['srv-43', { name: 'srv-43', profile: 'vps', monthlyPrice: '30.00', addresses: ['203.0.113.30'].map(addr) }],
  ]),
  transits: new Map([['transit-3', { name: 'transit-3', profile: 'vps', addresses: ['198.51.100.20', '2001:db8:3::20'].map(addr) }]]),
  accounts: new Map([['acme', { name: 'acme', server: 'srv-42', zones: ['acme.test.'] }]]),
};

/** The real store; commits fail while `full` (StateUnavailableError), and for good once `killAfter` commits were made. */
class FlakyStore implements StateStore {
  full = false;
  killAfter = Infinity;
  commits: StateChange[] = [];
  /** Commits refused as StateUnavailableError. */
  refused = 0;
  constructor(readonly inner: StateStore) {}
  async commit(change: StateChange) {
    if (this.commits.length >= this.killAfter) throw new Error('test: the process is dead');
    if (this.full && ++this.refused) throw new StateUnavailableError('the state store cannot be written: database or disk is full (SQLITE_FULL)');
    await this.inner.commit(change);
    this.commits.push(change);
  }
  load() { return this.inner.load(); }
  getOperation(id: string) { return this.inner.getOperation(id); }
  listOperations(server: string, limit: number) { return this.inner.listOperations(server, limit); }
  routes() { return this.inner.routes(); }
  getMeta(key: string) { return this.inner.getMeta(key); }
  metaEntries(prefix: string) { return this.inner.metaEntries(prefix); }
  migrations() { return this.inner.migrations(); }
  inventoryEdits() { return this.inner.inventoryEdits(); }
  close() { this.inner.close(); }
}

/** Routes at once, or waits for release() when `hold` is set. */
class Backend implements RouteBackend {
  readonly name = 'scripted';
  hold = false;
  private waiting: (() => void)[] = [];
  async apply(desired: DesiredRoute[]) {
    if (this.hold) await new Promise<void>((r) => this.waiting.push(r));
    return { changed: desired.map((d) => d.address), unchanged: [] };
  }
  async current() {
    return [];
  }
  release() {
    this.hold = false;
    for (const r of this.waiting.splice(0)) r();
  }
}

const dirs: string[] = [];
const open: FlakyStore[] = [];
afterEach(() => {
  for (const s of open.splice(0)) {
    try {
      s.close();
    } catch {
      /* closed */
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The services of one controller process on `file`, wired as src/main.ts wires them. */
function controller(file?: string, start = Date.UTC(2026, 10, 28, 12)) {
  const path = file ?? join(mkdtempSync(join(tmpdir(), 'fc-commit-')), 'state.db');
  if (!file) dirs.push(join(path, '..'));
  const store = new FlakyStore(openSqliteStore(path));
  open.push(store);
  const served: (CompiledOverlay | null)[] = [];
  const clock = { t: start, now: () => clock.t, monotonic: () => clock.t };
  const composer = new OverlayComposer({ dns: { apply: (o) => served.push(o) }, store, ttlCap: 60 });
  const logger = pino({ level: 'silent' });
  const retry = { minMs: 5, maxMs: 20 };
  let cutover: CutoverService | undefined;
  const migrations = new MigrationService({
    inventory: () => inventory, store, overlays: composer, clock, logger,
    cutoverTtl: 60, ttlMarginS: 300, freeDays: 14, currency: 'EUR', largestTtl: () => 3600, commitRetry: retry,
    transitsInCutover: () => new Map(cutover?.statusAll().flatMap((s) => (s.overlay.active ? [[s.overlay.transit, s.name] as [string, string]] : [])) ?? []),
  });
  const backend = new Backend();
  cutover = new CutoverService({
    inventory, store, backend, overlays: composer, ttlCap: 60, clock, logger, commitRetry: retry,
    hooks: {
      beforeCutover: (server, transit, force) => migrations.checkCutover(server, transit, force),
      cutoverAccepted: (server, force) => migrations.cutoverAccepted(server, force),
      cutbackSucceeded: (server) => migrations.cutbackSucceeded(server),
    },
  });
  cutover.resume();
  migrations.resume();
  /** What DNS answers for an address in a zone (the transit's address, or the address itself). */
  const dns = (a: string, zone = 'other.test.') => {
    const o = served.at(-1);
    const ip = addr(a);
    const bytes = ip.family === 4 ? Buffer.from(ip.address.split('.').map(Number)) : null;
    const r = bytes && o ? o.replacement(bytes, zone) : undefined;
    return r ? [...r].join('.') : a;
  };
  return { path, store, served, clock, composer, migrations, cutover, backend, dns, serial: () => served.at(-1)?.serialBump('acme.test.') ?? 0 };
}
type Ctl = ReturnType<typeof controller>;

/** Everything observable: stored, reported by the services, answered by DNS. */
function observe(c: Ctl) {
  const stored = {
    overlays: c.store.load().overlays.map((o) => `${o.server}>${o.transit}`),
    migration: ((c.store.migrations() as Migration[]).find((m) => m.server === 'srv-42')?.state) ?? null,
    latest: c.store.listOperations('srv-42', 1).map((o) => `${o.direction}:${o.state}:${o.phase}`)[0] ?? null,
    bump: c.store.getMeta('soa_serial_bump') ?? '0',
  };
  const reported = {
    overlay: c.cutover.status('srv-42').overlay.active,
    migration: c.migrations.get('srv-42')?.state ?? null,
    account: c.migrations.accountStatus('acme').location,
  };
  const answered = { server: c.dns('203.0.113.10'), account: c.dns('203.0.113.10', 'acme.test.'), serial: c.serial() };
  return { stored, reported, answered };
}

/** The invariants: store, services and DNS agree; overlay active ⇔ migration reinstalling (while it has one). */
function expectAgreement(c: Ctl) {
  const o = observe(c);
  const active = o.stored.overlays.includes('srv-42>transit-3');
  expect(o.reported.overlay).toBe(active);
  expect(o.reported.migration).toBe(o.stored.migration);
  expect(o.answered.server).toBe(active ? '198.51.100.20' : '203.0.113.10');
  const onTransit = ['transit', 'moving_home'].includes(o.reported.account) && !['completed', 'cancelled', null].includes(o.reported.migration);
  expect(o.answered.account).toBe(active || onTransit ? '198.51.100.20' : '203.0.113.10');
  expect(String(o.answered.serial)).toBe(o.stored.bump);
  if (o.stored.migration === 'reinstalling') expect(active).toBe(true);
  if (active && o.stored.migration && !['completed', 'cancelled'].includes(o.stored.migration)) expect(o.stored.migration).toBe('reinstalling');
  return o;
}

/** A migration of srv-42 with acme on the transit: ready for its reinstall. */
async function readyForReinstall(c: Ctl) {
  await c.migrations.request('srv-42', null);
  await c.migrations.move('acme', 'transit', 'started');
  await c.migrations.move('acme', 'transit', 'completed');
  expect(c.migrations.get('srv-42')?.state).toBe('ready_for_reinstall');
}

const unavailable = (fn: () => Promise<unknown>) => expect(fn()).rejects.toThrow(StateUnavailableError);

describe('a failed commit leaves nothing behind', () => {
  test('cutover with a migration: refused as a whole while the store is full; the same call then succeeds, overlay and reinstalling together', async () => {
    const c = controller();
    await readyForReinstall(c);
    const before = expectAgreement(c);
    const published = c.served.length;
    c.store.full = true;
    await unavailable(() => c.cutover.cutover('srv-42', 'transit-3'));
    expect(expectAgreement(c)).toEqual(before);
    expect(c.served.length).toBe(published); // DNS was not touched
    expect(c.store.listOperations('srv-42', 5)).toEqual([]);
    c.store.full = false;
    const { operation, created } = await c.cutover.cutover('srv-42', 'transit-3');
    expect(created).toBe(true);
    const after = expectAgreement(c);
    expect(after.stored).toMatchObject({ overlays: ['srv-42>transit-3'], migration: 'reinstalling' });
    expect(Number(after.stored.bump)).toBe(Number(before.stored.bump) + 1);
    // operation, overlay, serial bump and migration went into one commit
    const commit = c.store.commits.find((ch) => ch.overlay?.value);
    expect(commit).toMatchObject({ operation: { id: operation.id }, overlay: { server: 'srv-42' }, meta: { soa_serial_bump: after.stored.bump } });
    expect(commit?.migrations?.map((m) => (m.value as Migration).state)).toEqual(['reinstalling']);
    await c.cutover.idle();
    expect(c.cutover.getOperation(operation.id).state).toBe('succeeded');
  });

  test('cutback, retry, migration requests, moves, reinstalled, cancel: each refused while full, nothing changes, then succeeds', async () => {
    const c = controller();
    const attempt = async <T>(fn: () => Promise<T>): Promise<T> => {
      const before = expectAgreement(c);
      const published = c.served.length;
      c.store.full = true;
      await unavailable(fn);
      c.store.full = false;
      expect(expectAgreement(c)).toEqual(before);
      expect(c.served.length).toBe(published);
      const r = await fn();
      expectAgreement(c);
      return r;
    };
    await attempt(() => c.migrations.request('srv-43', null));
    await attempt(() => c.migrations.cancel('srv-43'));
    await attempt(() => c.migrations.request('srv-42', null));
    await attempt(() => c.migrations.move('acme', 'transit', 'started'));
    await attempt(() => c.migrations.move('acme', 'transit', 'completed'));
    await attempt(() => c.cutover.cutover('srv-42', 'transit-3'));
    await c.cutover.idle();
    await attempt(() => c.migrations.reinstalled('srv-42'));
    const { operation } = await attempt(() => c.cutover.cutback('srv-42'));
    await c.cutover.idle();
    expect(c.cutover.getOperation(operation.id).state).toBe('succeeded');
    expect(c.migrations.get('srv-42')?.state).toBe('accounts_back');
    await attempt(() => c.migrations.move('acme', 'home', 'started'));
    await attempt(() => c.migrations.move('acme', 'home', 'completed'));
    expect(c.migrations.get('srv-42')?.state).toBe('completed');
    // retry of a failed operation
    const op = (await c.cutover.cutover('srv-43', 'transit-3')).operation;
    await c.cutover.idle();
    await c.store.inner.commit({ operation: { ...c.store.getOperation(op.id)!, state: 'failed', error: { code: 'ROUTING_FAILED', message: 'scripted' } } });
    const again = await attempt(() => c.cutover.retry(op.id));
    expect(again.state).toBe('running');
    await c.cutover.idle();
    expect(c.cutover.getOperation(op.id).state).toBe('succeeded');
  });

  test('background routing that cannot store its progress neither applies nor reports it, and goes on once the store is back', async () => {
    const c = controller();
    await readyForReinstall(c);
    await c.cutover.cutover('srv-42', 'transit-3');
    await c.cutover.idle();
    c.backend.hold = true;
    const { operation } = await c.cutover.cutback('srv-42');
    c.store.full = true;
    c.backend.release(); // routes are back; the commit that lifts the overlay fails, and is tried again
    while (c.store.refused < 2) await new Promise((r) => setTimeout(r, 5));
    const stuck = expectAgreement(c);
    expect(stuck.stored).toMatchObject({ overlays: ['srv-42>transit-3'], migration: 'reinstalling', latest: 'cutback:running:routing' });
    expect(c.cutover.getOperation(operation.id).state).toBe('running');
    c.store.full = false;
    await c.cutover.idle();
    const done = expectAgreement(c);
    expect(done.stored).toMatchObject({ overlays: [], migration: 'accounts_back', latest: 'cutback:succeeded:done' });
    expect(Number(done.stored.bump)).toBe(Number(stuck.stored.bump) + 1);
  });

  test('a cutover whose "routing started" cannot be stored stays dns_switched, then completes', async () => {
    const c = controller();
    let n = 0;
    const commit = c.store.commit.bind(c.store);
    c.store.commit = async (ch) => {
      // the request's commit goes through; the next few (background) do not
      if (ch.operation?.phase === 'routing' && n++ < 3) throw new StateUnavailableError('full');
      await commit(ch);
    };
    const { operation } = await c.cutover.cutover('srv-42', 'transit-3');
    expect(c.store.getOperation(operation.id)?.phase).toBe('dns_switched');
    expectAgreement(c);
    await c.cutover.idle();
    expect(c.store.getOperation(operation.id)).toMatchObject({ state: 'succeeded', attempts: 1 });
    expect(c.store.getOperation(operation.id)?.durationsMs.dnsSwitch).not.toBeNull();
    expectAgreement(c);
  });

  test('TTL lowering that cannot be stored is not served, and is served once the store takes it', async () => {
    const c = controller();
    const reinstallAt = c.clock.t + 10 * 3600_000;
    const m = (await c.migrations.request('srv-42', reinstallAt)).migration;
    const lowerFrom = m.ttlPlan!.lowerFrom;
    const bytes = Buffer.from([203, 0, 113, 10]);
    expect(c.served.at(-1)?.ttlCapFor(bytes)).toBeUndefined();
    c.clock.t = lowerFrom;
    c.store.full = true;
    const before = { served: c.served.length, bump: c.store.getMeta('soa_serial_bump') ?? '0' };
    await c.migrations.tick();
    expect(c.served.length).toBe(before.served);
    expect(c.served.at(-1)?.ttlCapFor(bytes)).toBeUndefined();
    c.store.full = false;
    // the retry timer (commitRetry.maxMs) lowers it
    for (let i = 0; i < 200 && c.served.length === before.served; i++) await new Promise((r) => setTimeout(r, 10));
    expect(c.served.at(-1)?.ttlCapFor(bytes)).toBe(60);
    expect(Number(c.store.getMeta('soa_serial_bump'))).toBe(Number(before.bump) + 1);
    expect(c.served.at(-1)?.serialBump('acme.test.')).toBe(Number(before.bump) + 1);
    c.migrations.stop();
  });
});

describe('a kill between commits (restart on the same file) never splits overlay and migration', () => {
  /** Runs `act` with the process dying after its k-th commit, restarts, checks; returns how many commits `act` made when not killed. */
  async function killAfterEachCommit(prepare: (c: Ctl) => Promise<void>, act: (c: Ctl) => Promise<void>, check: (c: Ctl) => void) {
    const full = controller();
    await prepare(full);
    const base = full.store.commits.length;
    await act(full);
    const total = full.store.commits.length - base;
    expect(total).toBeGreaterThan(0);
    for (let k = 0; k <= total; k++) {
      const c = controller();
      await prepare(c);
      c.store.killAfter = c.store.commits.length + k;
      await act(c).catch(() => undefined);
      await c.cutover.idle();
      c.migrations.stop();
      c.store.close();
      const restarted = controller(c.path);
      expectAgreement(restarted);
      check(restarted);
      await restarted.cutover.idle(); // resumed operations finish
      expectAgreement(restarted);
      restarted.migrations.stop();
    }
    return total;
  }

  test('cutover of a server ready for its reinstall', async () => {
    const commits = await killAfterEachCommit(
      (c) => readyForReinstall(c),
      async (c) => {
        await c.cutover.cutover('srv-42', 'transit-3');
        await c.cutover.idle();
      },
      (c) => {
        const o = observe(c).stored;
        expect([['srv-42>transit-3', 'reinstalling'], ['', 'ready_for_reinstall']]).toContainEqual([o.overlays.join(), o.migration]);
      },
    );
    expect(commits).toBeGreaterThanOrEqual(2);
  });

  test('cutback of a server being reinstalled', async () => {
    await killAfterEachCommit(
      async (c) => {
        await readyForReinstall(c);
        await c.cutover.cutover('srv-42', 'transit-3');
        await c.cutover.idle();
        await c.migrations.reinstalled('srv-42');
      },
      async (c) => {
        await c.cutover.cutback('srv-42');
        await c.cutover.idle();
      },
      (c) => {
        const o = observe(c).stored;
        expect([['srv-42>transit-3', 'reinstalling'], ['', 'accounts_back']]).toContainEqual([o.overlays.join(), o.migration]);
      },
    );
  });
});

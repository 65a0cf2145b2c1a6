/**
 * The reconcile loop over the real SQLite store and the real cutover service, with an in-memory
 * network standing in for the router (the real backends' reads are tested against real hosts in
 * test/routing, the loop end to end in test/e2e/reconcile-lab.test.ts).
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { CutoverService } from '../../src/controller/cutover-service.js';
import { OverlayComposer } from '../../src/controller/overlay-composer.js';
import { RouteReconciler, type ReconcileMode } from '../../src/controller/route-reconciler.js';
import { RoutingLane } from '../../src/controller/routing-lane.js';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Inventory } from '../../src/core/inventory.js';
import { RouteError, type CurrentRoute, type DesiredRoute, type RouteBackend, type StateStore } from '../../src/core/ports.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { waitFor } from '../support/wait-for.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const A = '203.0.113.10';
const B = '203.0.113.11';
const C = '203.0.113.20';
const inventory: Inventory = {
  servers: new Map([
    ['srv-42', { name: 'srv-42', addresses: [A, B].map(addr) }],
    ['srv-43', { name: 'srv-43', addresses: [C].map(addr) }],
  ]),
  transits: new Map([['transit-3', { name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21'].map(addr) }]]),
};

/** The network as a map address → where it is delivered, with faults the test sets. */
class Network implements RouteBackend {
  readonly name = 'memory';
  readonly at = new Map<string, string | null>();
  readonly problems = new Map<string, string[]>();
  readonly unreadable = new Set<string>();
  readonly applyFails = new Set<string>();
  readFails = false;
  reads: string[][] = [];
  applies: DesiredRoute[][] = [];
  /** Runs inside apply(), before anything changes (to interleave an operation). */
  duringApply?: () => Promise<void>;
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    this.reads.push(addresses);
    if (this.readFails) throw new RouteError('router: ssh: connect to host router port 22: No route to host', true);
    return addresses.map((a) => (this.unreadable.has(a)
      ? { address: a, to: null, unknown: 'transit-3 did not answer' }
      : { address: a, to: this.at.get(a) ?? null, problems: this.problems.get(a) ?? [] }));
  }
  async apply(desired: DesiredRoute[]) {
    this.applies.push(desired);
    await this.duringApply?.();
    const bad = desired.find((d) => this.applyFails.has(d.address));
    if (bad) throw new RouteError(`router: route replace ${bad.address}: RTNETLINK answers: Network is unreachable`, false, bad.address);
    for (const d of desired) {
      this.at.set(d.address, d.to);
      this.problems.delete(d.address);
    }
    return { changed: desired.map((d) => d.address), unchanged: [] };
  }
}

const dirs: string[] = [];
const stores: StateStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(opts: { mode?: ReconcileMode; intervalMs?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'fc-rec-'));
  dirs.push(dir);
  const store = openSqliteStore(join(dir, 'state.db'));
  stores.push(store);
  const net = new Network();
  for (const a of [A, B]) net.at.set(a, 'srv-42');
  net.at.set(C, 'srv-43');
  let t = 1_000_000;
  const clock = { now: () => t, monotonic: () => t };
  const lane = new RoutingLane();
  const logger = pino({ level: 'silent' });
  const cutover = new CutoverService({
    inventory, store, backend: net, lane, clock, logger, ttlCap: 60,
    overlays: new OverlayComposer({ dns: { apply: () => undefined }, store, ttlCap: 60 }),
  });
  cutover.resume();
  const events = { readFailed: 0, repaired: { ok: 0, failed: 0 }, drift: [] as number[], oldest: [] as number[] };
  const rec = new RouteReconciler({
    servers: () => inventory.servers.values(),
    transits: () => inventory.transits.keys(),
    overlays: () => cutover.activeOverlays(),
    store, reader: net, repairer: net, lane, clock, logger,
    intervalMs: opts.intervalMs ?? 30_000, mode: opts.mode ?? 'repair', maxBackoffMs: 600_000,
    observer: {
      readFailed: (_b, n) => (events.readFailed += n),
      repaired: (_b, result, n) => (events.repaired[result] += n),
      passEnded: (p, oldest) => {
        events.drift.push(p.drifted);
        events.oldest.push(oldest);
      },
    },
  });
  const advance = (ms: number) => (t += ms);
  const state = (a: string) => rec.view().find((x) => x.address === a)!;
  return { store, net, cutover, rec, events, advance, state };
}

async function cutOver(s: ReturnType<typeof setup>) {
  const { operation } = await s.cutover.cutover('srv-42', 'transit-3');
  await s.cutover.idle();
  expect(s.cutover.getOperation(operation.id).state).toBe('succeeded');
  expect(s.net.at.get(A)).toBe('transit-3');
}

describe('the reconcile loop', () => {
  test('a route deleted during a cutover hold is repaired, counted, and shown', async () => {
    const s = setup();
    await cutOver(s);
    s.net.at.set(A, null); // ip route del
    s.advance(5000);
    const pass = await s.rec.reconcile();
    expect(pass).toMatchObject({ checked: 3, drifted: 0, repaired: 1, repairsFailed: 0, inSync: 3, readError: null });
    expect(s.net.at.get(A)).toBe('transit-3');
    expect(s.net.applies.at(-1)).toEqual([{ address: A, family: 4, to: 'transit-3', from: 'srv-42', repair: true }]);
    expect(s.events.repaired).toEqual({ ok: 1, failed: 0 });
    expect(s.state(A)).toMatchObject({ desired: 'transit-3', state: 'in_sync', confirmed: 'transit-3', repairs: { ok: 1, failed: 0 } });
    expect(s.state(A).lastRepair).toMatchObject({ result: 'ok', error: null });
    // the other server was checked and left alone
    expect(s.net.applies.flat().some((d) => d.address === C)).toBe(false);
    expect(s.state(C)).toMatchObject({ desired: 'srv-43', state: 'in_sync', confirmed: 'srv-43' });
  });

  test('an incomplete delivery (the host lacks the address) is drift and is repaired', async () => {
    const s = setup();
    await cutOver(s);
    s.net.problems.set(B, ['transit-3 does not hold 203.0.113.11 on lo']);
    const pass = await s.rec.reconcile();
    expect(pass.repaired).toBe(1);
    expect(s.net.problems.has(B)).toBe(false);
  });

  test('report mode: drift is reported with its age, nothing is changed', async () => {
    const s = setup({ mode: 'report' });
    await cutOver(s);
    const applies = s.net.applies.length;
    s.net.at.set(A, 'srv-42'); // someone routed it back by hand
    const p1 = await s.rec.reconcile();
    s.advance(65_000);
    const p2 = await s.rec.reconcile();
    expect([p1.drifted, p2.drifted, p2.repaired]).toEqual([1, 1, 0]);
    expect(s.net.applies.length).toBe(applies);
    expect(s.net.at.get(A)).toBe('srv-42');
    expect(s.state(A)).toMatchObject({ state: 'drifted', reason: 'delivered to srv-42, not transit-3', observed: { host: 'srv-42' } });
    expect(s.state(A).driftSince).toBe(p1.startedAt);
    expect(s.events.oldest.at(-1)).toBe(65_000);
  });

  test('a read that fails is unknown: nothing is changed, it is counted, and repaired once readable', async () => {
    const s = setup();
    await cutOver(s);
    const applies = s.net.applies.length;
    s.net.at.set(A, null);
    s.net.readFails = true;
    const p1 = await s.rec.reconcile();
    expect(p1).toMatchObject({ unknown: 3, drifted: 0, repaired: 0 });
    expect(p1.readError).toContain('No route to host');
    expect(s.state(A).state).toBe('unknown');
    // one address unreadable (its host did not answer): only it is unknown
    s.net.readFails = false;
    s.net.unreadable.add(A);
    const p2 = await s.rec.reconcile();
    expect(p2).toMatchObject({ unknown: 1, inSync: 2, repaired: 0 });
    expect(s.net.applies.length).toBe(applies);
    expect(s.events.readFailed).toBe(2);
    s.net.unreadable.clear();
    expect((await s.rec.reconcile()).repaired).toBe(1);
    expect(s.net.at.get(A)).toBe('transit-3');
  });

  test('after a final read error (refused credentials) reads pause, doubling; a requested pass reads anyway', async () => {
    const s = setup({ intervalMs: 30_000 });
    s.net.current = async () => {
      s.net.reads.push([]);
      throw new RouteError('http: 401 Unauthorized: check credentials', false);
    };
    await s.rec.reconcile('interval');
    const reads = () => s.net.reads.length;
    expect(reads()).toBe(1);
    s.advance(10_000);
    const skipped = await s.rec.reconcile('interval');
    expect(reads()).toBe(1);
    expect(skipped.readError).toMatch(/^reads paused until .* after a final error: http: 401/);
    expect(skipped.unknown).toBe(3);
    await s.rec.reconcile('request');
    expect(reads()).toBe(2);
    s.advance(30_000);
    await s.rec.reconcile('interval'); // the pause doubled after the second failure
    expect(reads()).toBe(2);
    s.advance(60_000);
    s.net.current = Network.prototype.current.bind(s.net);
    expect((await s.rec.reconcile('interval')).readError).toBeNull();
  });

  test('a failed repair backs off (one interval, doubling), never a tight loop; other servers are still repaired', async () => {
    const s = setup({ intervalMs: 30_000 });
    await cutOver(s);
    s.net.at.set(A, null);
    s.net.at.set(C, null);
    s.net.applyFails.add(A);
    const p1 = await s.rec.reconcile();
    // one apply for both servers failed; then server by server: srv-43 repaired, srv-42 failed
    expect(p1).toMatchObject({ repaired: 1, repairsFailed: 1, drifted: 1 });
    expect(s.net.at.get(C)).toBe('srv-43');
    const first = s.state(A).nextRepairAt!;
    expect(first).toBeGreaterThan(p1.startedAt);
    const tries = () => s.net.applies.filter((l) => l.some((d) => d.address === A)).length;
    const before = tries();
    await s.rec.reconcile(); // too early: not tried
    expect(tries()).toBe(before);
    s.advance(30_000);
    await s.rec.reconcile();
    expect(tries()).toBe(before + 1);
    expect(s.state(A).nextRepairAt! - first).toBeGreaterThan(30_000); // the wait doubled
    expect(s.state(A).repairs).toEqual({ ok: 0, failed: 2 });
    s.net.applyFails.clear();
    s.advance(120_000);
    await s.rec.reconcile();
    expect(s.state(A)).toMatchObject({ state: 'in_sync', repairs: { ok: 1, failed: 2 }, nextRepairAt: null });
  });

  test('addresses of a running operation are left to it; after a failed one they are held', async () => {
    const s = setup();
    let release!: () => void;
    s.net.duringApply = () => new Promise<void>((r) => (release = r));
    const { operation } = await s.cutover.cutover('srv-42', 'transit-3');
    await waitFor('the cutover applying', () => s.net.applies.length === 1);
    const pass = await s.rec.reconcile();
    expect(pass).toMatchObject({ leftToOperations: 2, repaired: 0 });
    expect(s.state(A)).toMatchObject({ state: 'left_to_operation', desired: 'transit-3' });
    s.net.applyFails.add(A);
    s.net.duringApply = undefined;
    release();
    await s.cutover.idle();
    expect(s.cutover.getOperation(operation.id).state).toBe('failed');
    s.net.applyFails.clear();
    const after = s.net.applies.length;
    const held = await s.rec.reconcile();
    expect(held).toMatchObject({ held: 2, repaired: 0 });
    expect(s.state(A).reason).toContain('failed: retry it or cut back');
    expect(s.net.applies.length).toBe(after);
  });

  test('a repair never undoes a cutover accepted while the pass was deciding', async () => {
    const s = setup();
    s.net.at.set(A, null); // srv-42's address lost its route while not cut over
    let accepted = false;
    s.net.duringApply = async () => {
      if (accepted) return;
      accepted = true;
      s.net.duringApply = undefined;
      await s.cutover.cutover('srv-42', 'transit-3'); // its routing waits for the lane
    };
    await s.rec.reconcile();
    await s.cutover.idle();
    // the repair (to srv-42) ran first, the operation's routes (to transit-3) after it
    expect(s.net.applies.map((l) => l.map((d) => `${d.address}>${d.to}`))).toEqual([
      [`${A}>srv-42`],
      [`${A}>transit-3`, `${B}>transit-3`],
    ]);
    expect(s.net.at.get(A)).toBe('transit-3');
  });

  test('a repair decided before a cutover was accepted is dropped when the lane frees', async () => {
    const s = setup();
    await cutOver(s);
    await s.cutover.cutback('srv-42');
    await s.cutover.idle();
    s.net.at.set(A, null);
    // the pass reads, then waits for the lane while an operation holds it
    let release!: () => void;
    s.net.duringApply = () => new Promise<void>((r) => (release = r));
    await s.cutover.cutover('srv-42', 'transit-3');
    await waitFor('the second cutover applying', () => s.net.applies.length === 3);
    s.net.duringApply = undefined;
    const pass = s.rec.reconcile();
    release();
    await Promise.all([pass, s.cutover.idle()]);
    expect((await pass).repaired).toBe(0);
    expect(s.net.at.get(A)).toBe('transit-3');
  });

  test('only server addresses are read; passes never overlap and requests share the next one', async () => {
    const s = setup();
    s.net.at.set('198.51.100.99', 'transit-3'); // claimed by no server
    let release!: () => void;
    let slow = true;
    const read = s.net.current.bind(s.net);
    s.net.current = async (a) => {
      if (slow) await new Promise<void>((r) => (release = r));
      return read(a);
    };
    const p1 = s.rec.reconcile();
    await waitFor('the first pass reading', () => release !== undefined);
    const p2 = s.rec.reconcile();
    const p3 = s.rec.reconcile();
    expect(p2).toBe(p3);
    slow = false;
    release();
    const [r1, r2] = await Promise.all([p1, p2]);
    expect(r2.id).toBe(r1.id + 1);
    expect(s.net.reads.length).toBe(2);
    expect(s.net.reads.flat().includes('198.51.100.99')).toBe(false);
    expect(new Set(s.net.reads[0])).toEqual(new Set([A, B, C]));
  });

  test('the loop survives a backend that throws anything', async () => {
    const s = setup();
    s.net.current = async () => {
      throw new TypeError('undefined is not a function');
    };
    const p = await s.rec.reconcile();
    expect(p.readError).toContain('undefined is not a function');
    expect(p.unknown).toBe(3);
    s.net.current = Network.prototype.current.bind(s.net);
    s.net.apply = async () => {
      throw 'a string';
    };
    s.net.at.set(C, null);
    const q = await s.rec.reconcile();
    expect(q).toMatchObject({ repaired: 0, repairsFailed: 1, drifted: 1 });
    expect(s.state(C).lastRepair?.error).toBe('a string');
  });

  test('start() runs a pass at once, then one per interval until stop()', async () => {
    const s = setup({ intervalMs: 20 });
    const first = await s.rec.start();
    expect(first.trigger).toBe('start');
    await waitFor('two interval passes', () => (s.rec.lastPass()?.id ?? 0) >= 3);
    expect(s.rec.lastPass()?.trigger).toBe('interval');
    await s.rec.stop();
    const n = s.net.reads.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(s.net.reads.length).toBe(n);
  });
});

/** A network driven through a daemon that can lose its state (bgp: gobgpd restarted). */
class Daemon extends Network {
  reset: string | undefined;
  resumes: DesiredRoute[][] = [];
  override async current(addresses: string[]): Promise<CurrentRoute[]> {
    const list = await super.current(addresses);
    return this.reset === undefined ? list : list.map((c) => ({ ...c, needsResume: this.reset }));
  }
  async resume(desired: DesiredRoute[]): Promise<void> {
    this.resumes.push(desired);
    for (const d of desired) this.at.set(d.address, d.to);
    this.reset = undefined;
  }
}

describe('a routing daemon that lost its state', () => {
  function withDaemon(mode: ReconcileMode = 'repair') {
    const s = setup({ mode });
    const d = new Daemon();
    for (const [a, h] of s.net.at) d.at.set(a, h);
    const resumed: string[] = [];
    const rec = new RouteReconciler({
      servers: () => inventory.servers.values(),
      transits: () => inventory.transits.keys(),
      overlays: () => s.cutover.activeOverlays(),
      store: s.store, reader: d, repairer: d, lane: new RoutingLane(), clock: { now: () => Date.now(), monotonic: () => performance.now() }, logger: pino({ level: 'silent' }),
      intervalMs: 30_000, mode, maxBackoffMs: 600_000,
      observer: { resumed: (b, trigger, result) => resumed.push(`${b} ${trigger} ${result}`) },
    });
    return { s, d, rec, resumed };
  }

  test('at start and when a read finds it reset: given the whole desired state (resume), counted; nothing repaired from the stale read', async () => {
    const { s, d, rec, resumed } = withDaemon();
    await cutOver(s);
    await rec.resume('start');
    const whole = [
      { address: A, family: 4, to: 'transit-3', from: 'srv-42' },
      { address: B, family: 4, to: 'transit-3', from: 'srv-42' },
      { address: C, family: 4, to: 'srv-43', from: 'transit-3' },
    ];
    expect(d.resumes).toEqual([whole]);
    d.reset = 'the neighbour is admin-down';
    d.at.clear();
    const pass = await rec.reconcile();
    expect(pass.readError).toMatch(/the routing daemon was reset \(the neighbour is admin-down\): the desired state was replayed/);
    expect(d.resumes).toEqual([whole, whole]);
    expect(d.applies).toEqual([]);
    expect(resumed).toEqual(['memory start ok', 'memory reset ok']);
    expect((await rec.reconcile()).inSync).toBe(3);
  });

  test('an address left to a running operation is replayed where it was confirmed, not where the operation takes it', async () => {
    const { s, d, rec } = withDaemon();
    let release!: () => void;
    s.net.duringApply = () => new Promise<void>((r) => (release = r));
    const accepted = s.cutover.cutover('srv-42', 'transit-3');
    await waitFor('the cutover routing', () => s.net.applies.length === 1);
    await rec.resume('start');
    expect(d.resumes[0].filter((r) => r.address !== C)).toEqual([
      { address: A, family: 4, to: 'srv-42', from: 'transit-3' },
      { address: B, family: 4, to: 'srv-42', from: 'transit-3' },
    ]);
    release();
    await accepted;
    await s.cutover.idle();
  });

  test('report mode: not replayed', async () => {
    const { d, rec, resumed } = withDaemon('report');
    d.reset = 'restarted';
    await rec.reconcile();
    expect(d.resumes).toEqual([]);
    expect(resumed).toEqual([]);
  });
});

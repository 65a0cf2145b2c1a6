/**
 * The cutover service's use cases over the real SQLite store, with a scripted backend standing in
 * for the network (the real backends are tested against real hosts in test/routing and test/e2e).
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ServiceError, CutoverService } from '../../src/controller/cutover-service.js';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Inventory } from '../../src/core/inventory.js';
import type { CompiledOverlay } from '../../src/core/overlay.js';
import type { AddressDowntime } from '../../src/core/operation.js';
import type { DowntimeMeter, StateStore } from '../../src/core/ports.js';
import { RouteError, type DesiredRoute, type RouteBackend } from '../../src/routing/route-backend.js';
import { openSqliteStore, StateLockedError } from '../../src/store/sqlite-store.js';
import { OverlayComposer } from '../../src/controller/overlay-composer.js';
import { waitFor } from '../support/wait-for.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const inventory: Inventory = {
  servers: new Map([
    ['srv-42', { name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'].map(addr) }],
    ['srv-43', { name: 'srv-43', addresses: ['203.0.113.20'].map(addr) }],
  ]),
  transits: new Map([
    ['transit-3', { name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'].map(addr) }],
    ['transit-4', { name: 'transit-4', addresses: ['198.51.100.40', '198.51.100.41', '2001:db8:4::40'].map(addr) }],
    ['transit-s', { name: 'transit-s', addresses: ['198.51.100.50'].map(addr) }],
  ]),
};

/** A backend whose outcome the test scripts: each apply() takes the next step (default ok). */
class ScriptedBackend implements RouteBackend {
  readonly name = 'scripted';
  calls: DesiredRoute[][] = [];
  steps: ('ok' | 'retryable' | 'final' | 'hang')[] = [];
  private release?: () => void;
  async apply(desired: DesiredRoute[]) {
    this.calls.push(desired);
    const step = this.steps.shift() ?? 'ok';
    if (step === 'hang') await new Promise<void>((r) => (this.release = r));
    if (step === 'retryable' || step === 'final') throw new RouteError(`scripted ${step} failure`, step === 'retryable', desired[1]?.address);
    return { changed: desired.map((d) => d.address), unchanged: [] };
  }
  async current() {
    return [];
  }
  unblock() {
    this.release?.();
  }
}

const dirs: string[] = [];
const stores: StateStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) {
    try {
      s.close();
    } catch {
      /* already closed */
    }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** `commitDelayMs`: every commit resolves that much later (a store across the network, as etcd). */
function setup(path?: string, opts: { commitDelayMs?: number; meter?: DowntimeMeter } = {}) {
  const file = path ?? join(mkdtempSync(join(tmpdir(), 'fc-svc-')), 'state.db');
  if (!path) dirs.push(join(file, '..'));
  const sqlite = openSqliteStore(file);
  stores.push(sqlite);
  const delay = opts.commitDelayMs;
  const store: StateStore = delay === undefined ? sqlite : {
    ...sqlite,
    async commit(change) {
      await new Promise((r) => setTimeout(r, delay));
      await sqlite.commit(change);
    },
  };
  const backend = new ScriptedBackend();
  const overlays: (CompiledOverlay | null)[] = [];
  let t = 1_000_000;
  const composer = new OverlayComposer({ dns: { apply: (o) => overlays.push(o) }, store, ttlCap: 60 });
  const svc = new CutoverService({
    inventory, store, backend,
    overlays: composer,
    ttlCap: 60,
    meter: opts.meter,
    clock: { now: () => (t += 10), monotonic: () => t },
    logger: pino({ level: 'silent' }),
  });
  const dnsAnswer = (a: string) => {
    const o = overlays[overlays.length - 1];
    const ip = addr(a);
    const bytes = ip.family === 4 ? Buffer.from(ip.address.split('.').map(Number)) : null;
    return bytes && o ? o.replacement(bytes, 'any.zone.') ?? null : null;
  };
  return { file, store, backend, svc, overlays, dnsAnswer };
}

const codeOf = async (fn: () => unknown) => {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ServiceError) return err.code;
    throw err;
  }
  return 'no error';
};

describe('cutover service', () => {
  test('cutover: the overlay is durable and active before the call returns; routing follows', async () => {
    const { svc, store, backend, dnsAnswer } = setup();
    const { operation, created } = await svc.cutover('srv-42', 'transit-3');
    expect(created).toBe(true);
    expect(operation.state).toBe('running');
    expect(operation.times.dnsSwitched).not.toBeNull();
    // before any routing happened: DNS already rewritten, and the store already has it
    expect(dnsAnswer('203.0.113.10')?.toString('hex')).toBe('c6336414');
    expect(store.load().overlays.map((o) => o.server)).toEqual(['srv-42']);
    await svc.idle();
    expect(backend.calls[0].map((d) => [d.address, d.to, d.from])).toEqual([
      ['203.0.113.10', 'transit-3', 'srv-42'], ['203.0.113.11', 'transit-3', 'srv-42'], ['2001:db8:42::10', 'transit-3', 'srv-42'],
    ]);
    const done = svc.getOperation(operation.id);
    expect(done.state).toBe('succeeded');
    expect(done.addresses.every((a) => a.routedTo === 'transit-3' && a.result === 'ok')).toBe(true);
    expect(svc.status('srv-42').addresses.map((a) => a.routedTo)).toEqual(['transit-3', 'transit-3', 'transit-3']);
  });

  test.each([
    ['the same cutover again returns the same operation', async (s: CutoverService) => (await s.cutover('srv-42', 'transit-3')).created, false],
    ['a cutover to another transit', (s: CutoverService) => codeOf(() => s.cutover('srv-42', 'transit-4')), 'ALREADY_CUT_OVER'],
    ['another server onto the same transit', (s: CutoverService) => codeOf(() => s.cutover('srv-43', 'transit-3')), 'TRANSIT_IN_USE'],
    ['an unknown server', (s: CutoverService) => codeOf(() => s.cutover('srv-99', 'transit-3')), 'SERVER_NOT_FOUND'],
    ['an unknown transit', (s: CutoverService) => codeOf(() => s.cutover('srv-43', 'transit-9')), 'TRANSIT_NOT_FOUND'],
    ['a transit with too few addresses', (s: CutoverService) => codeOf(() => s.cutover('srv-42', 'transit-s')), 'ALREADY_CUT_OVER'],
    ['a cutback of a server that is not cut over', (s: CutoverService) => codeOf(() => s.cutback('srv-43')), 'NOT_CUT_OVER'],
    ['an unknown operation', (s: CutoverService) => codeOf(() => s.getOperation('op-nope')), 'OPERATION_NOT_FOUND'],
  ])('after a cutover of srv-42 to transit-3: %s', async (_n, act, expected) => {
    const { svc } = setup();
    await svc.cutover('srv-42', 'transit-3');
    await svc.idle();
    expect(await act(svc)).toBe(expected);
  });

  test('a transit that cannot take all addresses is refused before anything changes', async () => {
    const { svc, overlays } = setup();
    expect(await codeOf(() => svc.cutover('srv-42', 'transit-s'))).toBe('TRANSIT_TOO_SMALL');
    expect(overlays).toEqual([]);
  });

  test('every overlay change bumps the served SOA serial, durably; a restart restores it without a bump', async () => {
    const first = setup();
    await first.svc.cutover('srv-42', 'transit-3');
    await first.svc.idle();
    await first.svc.cutback('srv-42');
    await first.svc.idle();
    const bumps = first.overlays.map((o) => o?.serialBump('example.test.') ?? 0);
    expect(bumps).toEqual([1, 2]);
    // lifted, but the serial stays ahead of what secondaries saw during the cutover
    expect(first.overlays[1]).not.toBeNull();
    first.store.close();
    const second = setup(first.file);
    second.svc.resume();
    expect(second.overlays.map((o) => o?.serialBump('example.test.'))).toEqual([2]);
  });

  test('routing that fails for good: operation failed with the reason, overlay stays; retry succeeds', async () => {
    const { svc, backend, dnsAnswer } = setup();
    backend.steps = ['final'];
    const { operation } = await svc.cutover('srv-42', 'transit-3');
    await svc.idle();
    const failed = svc.getOperation(operation.id);
    expect(failed.state).toBe('failed');
    expect(failed.error).toEqual({ code: 'ROUTING_FAILED', message: 'scripted final failure' });
    expect(failed.addresses.find((a) => a.address === '203.0.113.11')?.result).toBe('failed');
    expect(dnsAnswer('203.0.113.10')).not.toBeNull();
    const again = await svc.retry(operation.id);
    expect(again.state).toBe('running');
    await svc.idle();
    expect(svc.getOperation(operation.id).state).toBe('succeeded');
    expect(svc.getOperation(operation.id).attempts).toBe(2);
    expect(await codeOf(() => svc.retry(operation.id))).toBe('NOT_RETRYABLE');
  });

  test('cutback: routes go back first, the overlay is lifted only when they are', async () => {
    const { svc, backend, dnsAnswer, store } = setup();
    await svc.cutover('srv-42', 'transit-3');
    await svc.idle();
    backend.steps = ['hang'];
    const { operation } = await svc.cutback('srv-42');
    await waitFor('the cutback to reach the backend', () => backend.calls.length === 2);
    expect(dnsAnswer('203.0.113.10')).not.toBeNull(); // still on the transit while routing runs
    expect(await svc.cutback('srv-42')).toEqual({ operation: expect.objectContaining({ id: operation.id }), created: false });
    expect(await codeOf(() => svc.cutover('srv-42', 'transit-3'))).toBe('OPERATION_IN_PROGRESS');
    backend.unblock();
    await svc.idle();
    expect(svc.getOperation(operation.id).state).toBe('succeeded');
    expect(dnsAnswer('203.0.113.10')).toBeNull();
    expect(store.load().overlays).toEqual([]);
    expect(backend.calls[1].every((d) => d.to === 'srv-42' && d.from === 'transit-3')).toBe(true);
    expect(svc.status('srv-42').overlay).toEqual({ active: false });
  });

  test('a cutback still measuring the way back (overlay lifted): a cutover is refused until it ends', async () => {
    /** A meter whose measurements end when released (each run waits for the next release). */
    let release = (): void => undefined;
    const meter: DowntimeMeter = {
      description: 'held', intervalMs: 10,
      start: ({ addresses }) => {
        const result: AddressDowntime[] = addresses.map((a) => ({ address: a.address, downtimeMs: 0, recovered: true, waitedMs: 0, probesSent: 1, probesFailed: 0 }));
        const ended = new Promise<void>((r) => (release = r));
        return { routed: () => undefined, done: () => ended.then(() => result), stop: async () => result };
      },
    };
    const { svc, dnsAnswer } = setup(undefined, { meter });
    const first = (await svc.cutover('srv-42', 'transit-3')).operation;
    await waitFor('the cutover to measure', () => svc.getOperation(first.id).phase === 'measuring');
    release();
    await svc.idle();
    expect(svc.getOperation(first.id).state).toBe('succeeded');
    const { operation } = await svc.cutback('srv-42');
    await waitFor('the cutback to lift the overlay and measure', () => dnsAnswer('203.0.113.10') === null && svc.getOperation(operation.id).phase === 'measuring');
    expect(await codeOf(() => svc.cutover('srv-42', 'transit-3'))).toBe('OPERATION_IN_PROGRESS');
    release();
    await svc.idle();
    expect(svc.getOperation(operation.id).state).toBe('succeeded');
    const again = await svc.cutover('srv-42', 'transit-3');
    expect(again.created).toBe(true);
    await waitFor('the second cutover to measure', () => svc.getOperation(again.operation.id).phase === 'measuring');
    release();
    await svc.idle();
  });

  test('a failed cutback keeps the overlay; cutback again retries it', async () => {
    const { svc, backend, dnsAnswer } = setup();
    await svc.cutover('srv-42', 'transit-3');
    await svc.idle();
    backend.steps = ['final'];
    const first = (await svc.cutback('srv-42')).operation;
    await svc.idle();
    expect(svc.getOperation(first.id).state).toBe('failed');
    expect(dnsAnswer('203.0.113.10')).not.toBeNull();
    const second = await svc.cutback('srv-42');
    expect(second.operation.id).toBe(first.id);
    await svc.idle();
    expect(svc.getOperation(first.id).state).toBe('succeeded');
    expect(dnsAnswer('203.0.113.10')).toBeNull();
  });

  test('waitFor resolves when the operation finishes, or returns it as it is at the deadline', async () => {
    const { svc, backend } = setup();
    backend.steps = ['hang'];
    const { operation } = await svc.cutover('srv-42', 'transit-3');
    expect((await svc.waitFor(operation.id, 30)).state).toBe('running');
    const waiting = svc.waitFor(operation.id, 5000);
    backend.unblock();
    expect((await waiting).state).toBe('succeeded');
  });

  test('after a restart the overlay is active again and an unfinished operation is resumed', async () => {
    const first = setup();
    first.backend.steps = ['hang'];
    const { operation } = await first.svc.cutover('srv-42', 'transit-3');
    first.store.close(); // the process dies here: routing never finished
    const second = setup(first.file);
    second.svc.resume();
    expect(second.dnsAnswer('203.0.113.10')?.toString('hex')).toBe('c6336414');
    await second.svc.idle();
    const op = second.svc.getOperation(operation.id);
    expect(op.state).toBe('succeeded');
    expect(second.backend.calls).toHaveLength(1);
    expect(second.backend.calls[0].every((d) => d.to === 'transit-3')).toBe(true);
  });

  test('a second store on the same file is refused', () => {
    const { file } = setup();
    expect(() => openSqliteStore(file)).toThrow(StateLockedError);
  });
});

describe('a store whose commits take time (across the network, as etcd)', () => {
  test('requests asked at the same time are taken one after the other: one operation per server, one server per transit', async () => {
    const { svc, store } = setup(undefined, { commitDelayMs: 5 });
    const [a, b] = await Promise.all([svc.cutover('srv-42', 'transit-3'), svc.cutover('srv-42', 'transit-3')]);
    expect([a.created, b.created]).toEqual([true, false]);
    expect(b.operation.id).toBe(a.operation.id);
    await svc.idle();
    const other = await Promise.allSettled([svc.cutover('srv-43', 'transit-3'), svc.cutback('srv-42')]);
    expect(other[0]).toMatchObject({ status: 'rejected', reason: { code: 'TRANSIT_IN_USE' } });
    expect(other[1]).toMatchObject({ status: 'fulfilled', value: { created: true } });
    await svc.idle();
    expect(store.listOperations('srv-42', 10).map((o) => [o.direction, o.state])).toEqual([['cutback', 'succeeded'], ['cutover', 'succeeded']]);
    expect(store.listOperations('srv-43', 10)).toEqual([]);
    expect(store.load().overlays).toEqual([]);
  });
});

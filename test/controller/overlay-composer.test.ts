/**
 * The overlay composer's serial bumps: a change bumps the serials of the zones whose answers it
 * changes (as DNS tells, from its address indexes), durably; other zones keep theirs; when DNS
 * cannot tell, every zone is bumped. Real SQLite store, real fixture zones.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OverlayComposer } from '../../src/controller/overlay-composer.js';
import type { CompiledOverlay, ServerOverlay } from '../../src/core/overlay.js';
import type { DnsOverlayPort, StateStore } from '../../src/core/ports.js';
import { snapshotZone, zonesChangedBy } from '../../src/dns/engine/snapshot.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { fixtureZones } from '../dns/xfr/fixture.js';

const ZONES = ['example.test.', 'second.test.', 'child.example.test.'];
const dirs: string[] = [];
const stores: StateStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A composer over a store at `file`, publishing to fixture zones (indexed unless `indexed` is false). */
function composer(file: string, opts: { indexed?: boolean } = {}) {
  const store = openSqliteStore(file);
  stores.push(store);
  const f = fixtureZones();
  if (opts.indexed !== false) for (const z of [f.example, f.second, f.child]) snapshotZone(z, null, { zones: f.zones, index: true });
  const published: (CompiledOverlay | null)[] = [];
  const dns: DnsOverlayPort = { apply: (o) => published.push(o), zonesChangedBy: (delta) => zonesChangedBy(f.zones, delta) };
  const c = new OverlayComposer({ dns, store, ttlCap: 60 });
  const serials = () => Object.fromEntries(ZONES.map((z) => [z, c.serialBump(z)]));
  const change = async (servers: ServerOverlay[]) => {
    const staged = c.stageServers(servers);
    await store.commit(staged.change);
    staged.apply();
    return staged.change;
  };
  return { c, store, published, serials, change };
}

const newFile = () => {
  const dir = mkdtempSync(join(tmpdir(), 'fc-composer-'));
  dirs.push(dir);
  return join(dir, 'state.db');
};
const cutover = (address: string, family: 4 | 6 = 4): ServerOverlay => ({
  server: `srv-${address}`, transit: 't', operationId: `op-${address}`, since: 0, pairs: [{ address, transitAddress: family === 4 ? '198.51.100.200' : '2001:db8:ffff::200', family }],
});

describe('serial bumps per zone', () => {
  test.each<[string, ServerOverlay[], Record<string, number>]>([
    ['an address only example.test. serves', [cutover('192.0.2.25')], { 'example.test.': 1, 'second.test.': 0, 'child.example.test.': 0 }],
    ['an address served by example.test. and second.test.', [cutover('192.0.2.80')], { 'example.test.': 1, 'second.test.': 1, 'child.example.test.': 0 }],
    ['an address served by example.test. and its child zone', [cutover('192.0.2.60')], { 'example.test.': 1, 'second.test.': 0, 'child.example.test.': 1 }],
    ['an address no zone serves', [cutover('192.0.2.222')], { 'example.test.': 0, 'second.test.': 0, 'child.example.test.': 0 }],
  ])('a cutover of %s bumps exactly the zones serving it', async (_name, servers, expected) => {
    const t = composer(newFile());
    await t.change(servers);
    expect(t.serials()).toEqual(expected);
    // what DNS was given carries the same bumps
    expect(Object.fromEntries(ZONES.map((z) => [z, t.published.at(-1)?.serialBump(z) ?? 0]))).toEqual(expected);
  });

  test('bumps are stored: a restart serves them again, without a bump; the next change goes on from them', async () => {
    const file = newFile();
    const first = composer(file);
    await first.change([cutover('192.0.2.25')]);
    await first.change([]);
    await first.change([cutover('192.0.2.80')]);
    expect(first.serials()).toEqual({ 'example.test.': 3, 'second.test.': 1, 'child.example.test.': 0 });
    first.store.close();
    stores.splice(stores.indexOf(first.store), 1);

    const second = composer(file);
    second.c.restoreServers([cutover('192.0.2.80')]);
    expect(second.serials()).toEqual({ 'example.test.': 3, 'second.test.': 1, 'child.example.test.': 0 });
    await second.change([]);
    expect(second.serials()).toEqual({ 'example.test.': 4, 'second.test.': 2, 'child.example.test.': 0 });
  });

  test('the same overlay again: no bump, nothing stored', async () => {
    const t = composer(newFile());
    await t.change([cutover('192.0.2.25')]);
    expect(await t.change([cutover('192.0.2.25')])).toEqual({});
    expect(t.serials()['example.test.']).toBe(1);
  });

  test('DNS cannot tell (a zone without an address index): every zone is bumped, through the shared bump', async () => {
    const t = composer(newFile(), { indexed: false });
    expect((await t.change([cutover('192.0.2.25')])).meta).toEqual({ soa_serial_bump: '1' });
    expect(t.serials()).toEqual({ 'example.test.': 1, 'second.test.': 1, 'child.example.test.': 1 });
  });

  test('a state stored before per-zone bumps (one shared bump) keeps every serial, then goes on per zone', async () => {
    const file = newFile();
    const old = openSqliteStore(file);
    await old.commit({ meta: { soa_serial_bump: '41' } });
    old.close();
    const t = composer(file);
    t.c.restoreServers([]);
    expect(t.serials()).toEqual({ 'example.test.': 41, 'second.test.': 41, 'child.example.test.': 41 });
    await t.change([cutover('192.0.2.25')]);
    expect(t.serials()).toEqual({ 'example.test.': 42, 'second.test.': 41, 'child.example.test.': 41 });
  });
});

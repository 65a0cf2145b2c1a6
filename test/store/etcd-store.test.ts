/**
 * The etcd store beyond the StateStore contract, against one real etcd member: changes made by
 * other writers reach the copy through the watch, the fence, optimistic conflicts on the routes
 * document, a frozen member, and writes by another process (etcdctl).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { Etcd3 } from 'etcd3';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Operation } from '../../src/core/operation.js';
import { StateFencedError, StateUnavailableError, type StateChange } from '../../src/core/ports.js';
import { openEtcdStore, StateConflictError, type EtcdStateStore, type EtcdStoreOptions } from '../../src/store/etcd-store.js';
import { freePort } from '../support/controller.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { rejection } from '../support/rejection.js';
import { waitFor } from '../support/wait-for.js';

let cluster: EtcdCluster;
let raw: Etcd3;
const opened: EtcdStateStore[] = [];
let n = 0;
/** A new key prefix for one test. */
const newPrefix = () => `/fc-etcd-${process.pid}-${++n}/`;

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 1 });
  raw = new Etcd3({ hosts: cluster.endpoints });
});
afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});
afterAll(async () => {
  raw?.close();
  await cluster?.stop();
});

async function open(prefix: string, extra: Partial<EtcdStoreOptions> = {}): Promise<EtcdStateStore> {
  const s = await openEtcdStore({ endpoints: cluster.endpoints, prefix, ...extra });
  opened.push(s);
  return s;
}

function operation(id: string, server: string, accepted: number, state: Operation['state'] = 'running'): Operation {
  return {
    id, server, transit: 'transit-1', direction: 'cutover', state, phase: 'routing', backend: 'dry-run',
    times: { accepted, dnsSwitched: null, routesApplied: null, finished: null },
    durationsMs: { dnsSwitch: null, routing: null, recovery: null },
    addresses: [], measurement: { probe: 'http:80/', intervalMs: 50, restarted: false, maxDowntimeMs: null },
    dnsPropagated: {}, attempts: 0, error: null,
  };
}

/** Keys stored under a prefix, read from etcd directly. */
async function storedKeys(prefix: string): Promise<string[]> {
  return (await raw.getAll().prefix(prefix).keys()).map((k) => k.slice(prefix.length)).sort();
}

describe('another store on the same prefix sees a commit through the watch', () => {
  const overlay = { server: 'srv-1', transit: 'transit-1', operationId: 'op-1', since: 1, pairs: [] };
  test.each<{ what: string; change: StateChange; seen: (s: EtcdStateStore) => boolean; keys: string[] }>([
    { what: 'an operation', change: { operation: operation('op-1', 'srv-1', 10) }, seen: (s) => s.getOperation('op-1')?.times.accepted === 10, keys: ['op/op-1'] },
    { what: 'an overlay', change: { overlay: { server: 'srv-1', value: overlay } }, seen: (s) => s.load().overlays.length === 1, keys: ['overlay/srv-1'] },
    { what: 'routes', change: { routes: [{ address: '192.0.2.10', host: 'transit-1' }] }, seen: (s) => s.routes().get('192.0.2.10') === 'transit-1', keys: ['routes'] },
    { what: 'meta', change: { meta: { soa_serial_bump: '7' } }, seen: (s) => s.getMeta('soa_serial_bump') === '7', keys: ['meta'] },
    { what: 'a migration', change: { migrations: [{ server: 'srv-1', value: { n: 1 } }] }, seen: (s) => s.migrations().length === 1, keys: ['migration/srv-1'] },
    { what: 'an inventory edit (names encoded)', change: { inventory: { kind: 'servers', name: 'a/b c', value: { x: 1 } } }, seen: (s) => s.inventoryEdits()[0]?.name === 'a/b c', keys: ['inventory/servers/a%2Fb%20c'] },
  ])('$what', async ({ change, seen, keys }) => {
    const prefix = newPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const heard: string[][] = [];
    b.onChange((k) => heard.push(k));
    await a.commit(change);
    expect(seen(a)).toBe(true);
    await waitFor('the second store to see the commit', () => seen(b));
    expect(heard.flat()).toEqual(keys);
    expect(b.revision()).toBe(a.revision());
  });

  test('the echo of a store\'s own commit changes nothing and is not reported', async () => {
    const prefix = newPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const heard: string[][] = [];
    a.onChange((k) => heard.push(k));
    await a.commit({ operation: operation('op-a', 'srv-1', 1), routes: [{ address: '192.0.2.1', host: 'srv-1' }] });
    const own = a.revision();
    // b commits on top of what it has seen (or its commit would conflict)
    await waitFor('b to see a\'s commit', () => b.getOperation('op-a'));
    await b.commit({ operation: operation('op-b', 'srv-1', 2) });
    // once a has seen b's later commit, it has had the echo of its own too
    await waitFor('a to see b\'s commit', () => a.getOperation('op-b'));
    expect(heard).toEqual([['op/op-b']]);
    expect(a.revision()).toBeGreaterThan(own);
    expect(a.listOperations('srv-1', 10).map((o) => o.id)).toEqual(['op-b', 'op-a']);
  });

  test('an unsubscribed listener is not called', async () => {
    const prefix = newPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const heard: string[][] = [];
    b.onChange((k) => heard.push(k))();
    const still: string[][] = [];
    b.onChange((k) => still.push(k));
    await a.commit({ meta: { x: '1' } });
    await waitFor('b to see the commit', () => b.getMeta('x'));
    expect(heard).toEqual([]);
    expect(still).toEqual([['meta']]);
  });
});

describe('fence: a commit is written only while the fence key has the fenced create revision', () => {
  const fenceKey = (prefix: string) => `/fc-lead-${prefix.replace(/\//g, '')}/leader`;
  const createRevision = async (key: string) => (await raw.get(key).exec()).kvs[0]?.create_revision;

  test.each<{ what: string; after: (key: string) => Promise<void>; fenced: boolean }>([
    { what: 'the key as it was when fenced: commits', after: async () => {}, fenced: false },
    { what: 'the key written again (same create revision): commits', after: async (key) => void (await raw.put(key).value('again')), fenced: false },
    { what: 'the key deleted and created again: StateFencedError', after: async (key) => {
      await raw.delete().key(key);
      await raw.put(key).value('new leader');
    }, fenced: true },
    { what: 'the key deleted: StateFencedError', after: async (key) => void (await raw.delete().key(key)), fenced: true },
  ])('$what', async ({ after, fenced }) => {
    const prefix = newPrefix();
    const key = fenceKey(prefix);
    await raw.put(key).value('leader');
    const s = await open(prefix);
    await s.commit({ meta: { before: '1' } });
    s.setFence({ key, createRevision: (await createRevision(key))! });
    await after(key);
    const keysBefore = await storedKeys(prefix);
    const change: StateChange = { operation: operation('op-1', 'srv-1', 1), meta: { after: '1' }, routes: [{ address: '192.0.2.1', host: 'srv-1' }] };
    if (fenced) {
      const err = await rejection(s.commit(change));
      expect(err).toBeInstanceOf(StateFencedError);
      expect(err.message).toMatch(/no longer the leader/);
      expect(await storedKeys(prefix)).toEqual(keysBefore);
      expect(s.getOperation('op-1')).toBeUndefined();
      expect(s.getMeta('after')).toBeUndefined();
      // without the fence the store writes again
      s.setFence(null);
      await s.commit(change);
    } else {
      await s.commit(change);
    }
    expect(s.getOperation('op-1')).toBeDefined();
    expect(await storedKeys(prefix)).toEqual(['commit', 'meta', 'op/op-1', 'routes']);
  });
});

test('optimistic concurrency: of two stores committing routes at once, one loses with StateConflictError; nothing is lost and its next commit succeeds', async () => {
  const prefix = newPrefix();
  const a = await open(prefix);
  const b = await open(prefix);
  await a.commit({ routes: [{ address: '192.0.2.1', host: 'srv-1' }] });
  await waitFor('b to see the first route', () => b.routes().size === 1);
  // both read the same routes document (same mod revision) from their copies: etcd takes one transaction
  const results = await Promise.allSettled([
    a.commit({ routes: [{ address: '192.0.2.2', host: 'from-a' }] }),
    b.commit({ routes: [{ address: '192.0.2.3', host: 'from-b' }] }),
  ]);
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  expect(lost).toHaveLength(1);
  expect(lost[0].reason).toBeInstanceOf(StateConflictError);
  const [winner, loser, loserRoute] = results[0].status === 'fulfilled' ? [a, b, '192.0.2.3'] : [b, a, '192.0.2.2'];
  const won = new Map([...winner.routes()]);
  expect(won.size).toBe(2);
  // the loser's copy was refreshed before it threw: it has the winner's routes already
  expect(loser.routes()).toEqual(won);
  await loser.commit({ routes: [{ address: loserRoute, host: 'again' }] });
  const all = new Map([...won, [loserRoute, 'again']]);
  expect(loser.routes()).toEqual(all);
  await waitFor('the winner to see the loser\'s retry', () => winner.routes().size === 3);
  expect(winner.routes()).toEqual(all);
});

describe('etcd unavailable', () => {
  test('the only member frozen (SIGSTOP): a commit rejects with StateUnavailableError, reads answer from the copy; after SIGCONT commits work', async () => {
    const prefix = newPrefix();
    const s = await open(prefix, { callTimeoutMs: 500 });
    await s.commit({ operation: operation('op-1', 'srv-1', 1), routes: [{ address: '192.0.2.1', host: 'srv-1' }] });
    let err: Error;
    let tookMs: number;
    try {
      await cluster.sigstop(0);
      const t0 = performance.now();
      err = await rejection(s.commit({ operation: operation('op-2', 'srv-1', 2) }));
      tookMs = performance.now() - t0;
      expect(s.getOperation('op-1')).toEqual(operation('op-1', 'srv-1', 1));
      expect(s.getOperation('op-2')).toBeUndefined();
      expect(s.routes()).toEqual(new Map([['192.0.2.1', 'srv-1']]));
    } finally {
      cluster.sigcont(0);
    }
    expect(err).toBeInstanceOf(StateUnavailableError);
    expect(err.message).toMatch(/deadline/i);
    // a bound that only catches a hang: the deadline is 500 ms
    expect(tookMs).toBeLessThan(10_000);
    // the timed-out commit sat in the member's socket: etcd may apply it once resumed. If it lands
    // before the next commit, that one conflicts (and the copy shows what landed); if after, it is refused.
    const op3 = { operation: operation('op-3', 'srv-1', 3) };
    const next = await s.commit(op3).then(() => null, (e: unknown) => e);
    if (next !== null) {
      expect(next).toBeInstanceOf(StateConflictError);
      await s.commit(op3);
    }
    const inEtcd = async () => (await storedKeys(prefix)).filter((k) => k.startsWith('op/')).map((k) => k.slice(3));
    const stored = await inEtcd();
    expect(stored).toEqual(expect.arrayContaining(['op-1', 'op-3']));
    await waitFor('the copy to hold what etcd holds', () => JSON.stringify(s.listOperations('srv-1', 10).map((o) => o.id).sort()) === JSON.stringify(stored));
    expect(await inEtcd()).toEqual(stored);
  });

  test('no etcd listening: open rejects with StateUnavailableError', async () => {
    const port = await freePort();
    const err = await rejection(openEtcdStore({ endpoints: [`http://127.0.0.1:${port}`], prefix: '/x/', callTimeoutMs: 500 }));
    expect(err).toBeInstanceOf(StateUnavailableError);
  });

  test('a prefix without a trailing "/" is refused', async () => {
    await expect(openEtcdStore({ endpoints: cluster.endpoints, prefix: '/x' })).rejects.toThrow(/must end with/);
  });
});

test('the watch lost (the member restarted): the store reads the prefix again, watches on, and misses nothing', async () => {
  const prefix = newPrefix();
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => void (lines.push(String(chunk)), done()) }));
  const a = await open(prefix);
  const b = await open(prefix, { logger });
  const heard: string[] = [];
  b.onChange((k) => heard.push(...k));
  await a.commit({ operation: operation('op-1', 'srv-1', 1) });
  await waitFor('b to see op-1', () => b.getOperation('op-1'));
  await cluster.restart(0);
  // the first calls after the restart may find the connection not yet back: StateUnavailableError, then it works
  await waitFor('a commit after the restart', () => a.commit({ operation: operation('op-2', 'srv-1', 2) }).then(() => true, () => false), { pollMs: 100 });
  await waitFor('b to see op-2', () => b.getOperation('op-2'));
  expect(lines.join('')).toMatch(/watch lost; reading the prefix again/);
  expect(heard).toEqual(['op/op-1', 'op/op-2']);
  expect(b.revision()).toBe(a.revision());
});

describe('changes written by another process (etcdctl) reach the copy', () => {
  test.each<{ what: string; args: (prefix: string) => string[]; seen: (s: EtcdStateStore) => boolean; key: string }>([
    { what: 'the routes document replaced', args: (p) => ['put', `${p}routes`, JSON.stringify({ '192.0.2.50': { host: 'srv-7', at: 1 } })], seen: (s) => s.routes().get('192.0.2.50') === 'srv-7' && s.routes().size === 1, key: 'routes' },
    { what: 'an overlay deleted', args: (p) => ['del', `${p}overlay/srv-1`], seen: (s) => s.load().overlays.length === 0, key: 'overlay/srv-1' },
    { what: 'a meta value set', args: (p) => ['put', `${p}meta`, JSON.stringify({ soa_serial_bump: '9' })], seen: (s) => s.getMeta('soa_serial_bump') === '9', key: 'meta' },
    { what: 'a value that is not JSON (ignored by reads)', args: (p) => ['put', `${p}op/op-1`, 'not json{'], seen: (s) => s.getOperation('op-1') === undefined, key: 'op/op-1' },
  ])('$what', async ({ args, seen, key }) => {
    const prefix = newPrefix();
    const s = await open(prefix);
    await s.commit({
      operation: operation('op-1', 'srv-1', 1),
      overlay: { server: 'srv-1', value: { server: 'srv-1', transit: 't', operationId: 'op-1', since: 1, pairs: [] } },
      routes: [{ address: '192.0.2.1', host: 'srv-1' }],
    });
    const heard: string[] = [];
    s.onChange((k) => heard.push(...k));
    await cluster.etcdctl(args(prefix));
    await waitFor('the copy to reflect the etcdctl change', () => seen(s));
    expect(heard).toEqual([key]);
    // and the store commits on top of it
    await s.commit({ routes: [{ address: '192.0.2.60', host: 'srv-8' }], meta: { after: '1' } });
    expect(s.routes().get('192.0.2.60')).toBe('srv-8');
  });
});

describe('three members', () => {
  let three: EtcdCluster | undefined;
  afterAll(async () => {
    await three?.stop();
  });

  test('with one member killed, the store commits and another store sees it (calls go to the members left)', async () => {
    three = await startEtcdCluster({ members: 3 });
    const prefix = newPrefix();
    const a = await openEtcdStore({ endpoints: three.endpoints, prefix, callTimeoutMs: 1000 });
    opened.push(a);
    const b = await openEtcdStore({ endpoints: three.endpoints, prefix, callTimeoutMs: 1000 });
    opened.push(b);
    await a.commit({ operation: operation('op-1', 'srv-1', 1) });
    await waitFor('b to see op-1', () => b.getOperation('op-1'));
    await three.kill(0);
    // the killed member may have been the leader: commits fail until another one is elected
    await waitFor('a commit with a member gone', () => a.commit({ operation: operation('op-2', 'srv-1', 2) }).then(() => true, () => false), { pollMs: 100 });
    await waitFor('b to see op-2', () => b.getOperation('op-2'));
    expect(b.listOperations('srv-1', 10).map((o) => o.id)).toEqual(['op-2', 'op-1']);
  });
});

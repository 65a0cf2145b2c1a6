/**
 * The StateStore contract: what every implementation of the port does, whatever keeps the state.
 * `describeStateStoreContract` defines the tests; a store's own test file runs them with a harness
 * that opens a store on new, empty storage and reopens that storage after close (durability).
 * Only port-level behaviour is here: which files or clusters a store accepts and how its storage
 * fails are each store's own tests.
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import type { Operation, OperationState } from '../../src/core/operation.js';
import type { ServerOverlay } from '../../src/core/overlay.js';
import { mergeStaged, StateUnavailableError, type StagedChange, type StateChange, type StateStore } from '../../src/core/ports.js';

/** How the contract reaches one kind of store. */
export interface StateStoreHarness {
  /** A store on new, empty storage. */
  open(): Promise<StateStore> | StateStore;
  /** The storage of the store opened last, opened again (that store was closed before). */
  reopen(): Promise<StateStore> | StateStore;
  /** Removes everything open() made; called once, after the suite. */
  cleanup(): Promise<void> | void;
  /** Changes this store refuses beyond the port's rules (a key it reserves...): each must be refused as a whole. */
  refused?: { name: string; change: StateChange }[];
}

const pairs = [
  { address: '192.0.2.10', transitAddress: '198.51.100.10', family: 4 as const },
  { address: '2001:db8::10', transitAddress: '2001:db8:1::10', family: 6 as const },
];

/** An operation with every field set (optional ones included). */
function operation(id: string, server: string, accepted: number, state: OperationState = 'running', n = 0): Operation {
  return {
    id, server, transit: 'transit-3', direction: 'cutover', state, phase: state === 'running' ? 'routing' : 'done', backend: 'dry-run',
    times: { accepted, dnsSwitched: accepted + 1, routesApplied: state === 'pending' ? null : accepted + 2, finished: state === 'succeeded' || state === 'failed' ? accepted + 3 : null },
    durationsMs: { dnsSwitch: 1.25, routing: null, recovery: n },
    addresses: pairs.map((p) => ({ ...p, routedTo: 'transit-3', result: 'ok', error: null, downtimeMs: 120, recovered: true, probesSent: 40 + n, probesFailed: 3 })),
    measurement: { probe: 'http:80/', intervalMs: 50, restarted: false, maxDowntimeMs: null },
    dnsPropagated: { 'ns1.example.test': accepted + 5, 'ns2.example.test': null },
    attempts: n,
    error: state === 'failed' ? { code: 'ROUTING_FAILED', message: 'no route to 203.0.113.9 — «quoted» ✓' } : null,
  };
}

function overlay(server: string, transit: string, since: number): ServerOverlay {
  return { server, transit, operationId: `op-${server}-${since}`, since, pairs };
}

/** A migration record as the migration service keeps them (JSON of any shape, naming its server). */
const migration = (server: string, n: number) => ({ server, n, state: n > 1 ? 'completed' : 'running', accounts: [{ name: 'acme', zones: ['acme.test.'], done: n > 1 }], note: null });

const byJson = (a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b));
const sorted = <T>(xs: T[]) => [...xs].sort(byJson);

/** Everything a store holds, read through the port (parts whose order the port leaves open sorted). */
function snapshot(s: StateStore) {
  const { overlays, operations } = s.load();
  return {
    overlays: sorted(overlays),
    operations,
    listed: ['srv-1', 'srv-2'].map((server) => s.listOperations(server, 100)),
    byId: ['op-1', 'op-2'].map((id) => s.getOperation(id)),
    routes: [...s.routes()].sort(byJson),
    meta: [...s.metaEntries('')].sort(byJson),
    migrations: sorted(s.migrations()),
    inventory: s.inventoryEdits(),
  };
}

/** A change touching every field. */
function everything(n: number): StateChange {
  return {
    operation: operation('op-1', 'srv-1', 1000, 'running', n),
    overlay: { server: 'srv-1', value: overlay('srv-1', `transit-${n}`, 1000 + n) },
    routes: [{ address: '192.0.2.10', host: `transit-${n}` }],
    meta: { soa_serial_bump: String(n), [`k${n}`]: 'v' },
    migrations: [{ server: 'srv-1', value: migration('srv-1', n) }],
    inventory: { kind: 'servers', name: 'srv-9', value: { addresses: [`192.0.2.${n}`] } },
  };
}

const staged = (change: StateChange): StagedChange => ({ change, apply() {} });

/** Defines the contract's tests for one kind of store. */
export function describeStateStoreContract(name: string, harness: StateStoreHarness): void {
  describe(`StateStore contract: ${name}`, () => {
    let store: StateStore | undefined;
    /** The store under test (opened fresh for every test). */
    const s = () => store!;
    const close = () => {
      const open = store;
      store = undefined;
      open?.close();
    };
    const reopen = async () => {
      close();
      store = await harness.reopen();
    };
    beforeEach(async () => {
      store = await harness.open();
    });
    afterEach(close);
    afterAll(() => harness.cleanup());

    test('a new store is empty; an empty change leaves it so', async () => {
      await s().commit({});
      await s().commit({ routes: [], meta: {}, migrations: [] });
      expect(s().load()).toEqual({ overlays: [], operations: [] });
      expect(s().getOperation('op-1')).toBeUndefined();
      expect(s().listOperations('srv-1', 10)).toEqual([]);
      expect(s().routes()).toEqual(new Map());
      expect(s().getMeta('soa_serial_bump')).toBeUndefined();
      expect(s().metaEntries('')).toEqual(new Map());
      expect(s().migrations()).toEqual([]);
      expect(s().inventoryEdits()).toEqual([]);
    });

    /** What is committed, and what it reads as: at once and after reopening the storage. */
    const roundTrips: { what: string; write: (s: StateStore) => Promise<void>; read: (s: StateStore, t: { before: number; after: number }) => void }[] = [
      {
        what: 'an operation, every field',
        write: async (st) => st.commit({ operation: operation('op-1', 'srv-1', 1000) }),
        read: (st) => {
          expect(st.getOperation('op-1')).toEqual(operation('op-1', 'srv-1', 1000));
          expect(st.listOperations('srv-1', 10)).toEqual([operation('op-1', 'srv-1', 1000)]);
        },
      },
      {
        what: 'an operation committed again under its id replaces it',
        write: async (st) => {
          await st.commit({ operation: operation('op-1', 'srv-1', 1000, 'running') });
          await st.commit({ operation: operation('op-1', 'srv-1', 1000, 'failed', 1) });
          await st.commit({ operation: operation('op-1', 'srv-1', 1000, 'succeeded', 2) });
        },
        read: (st) => {
          expect(st.getOperation('op-1')).toEqual(operation('op-1', 'srv-1', 1000, 'succeeded', 2));
          expect(st.listOperations('srv-1', 10)).toEqual([operation('op-1', 'srv-1', 1000, 'succeeded', 2)]);
        },
      },
      {
        what: 'overlays, set and cleared per server (clearing an absent one is no error)',
        write: async (st) => {
          await st.commit({ overlay: { server: 'srv-1', value: overlay('srv-1', 'transit-1', 1) } });
          await st.commit({ overlay: { server: 'srv-2', value: overlay('srv-2', 'transit-2', 2) } });
          await st.commit({ overlay: { server: 'srv-3', value: overlay('srv-3', 'transit-3', 3) } });
          await st.commit({ overlay: { server: 'srv-2', value: overlay('srv-2', 'transit-4', 4) } });
          await st.commit({ overlay: { server: 'srv-1', value: null } });
          await st.commit({ overlay: { server: 'srv-5', value: null } });
        },
        read: (st) => expect(sorted(st.load().overlays)).toEqual([overlay('srv-2', 'transit-4', 4), overlay('srv-3', 'transit-3', 3)]),
      },
      {
        what: 'routes, a later entry for an address winning (also within one commit)',
        write: async (st) => {
          await st.commit({ routes: [{ address: '192.0.2.10', host: 'srv-1' }, { address: '2001:db8::10', host: 'srv-1' }] });
          await st.commit({ routes: [{ address: '192.0.2.10', host: 'transit-3' }, { address: '192.0.2.11', host: 'srv-1' }, { address: '192.0.2.11', host: 'srv-2' }] });
          await st.commit({ routes: [] });
        },
        read: (st) => expect(st.routes()).toEqual(new Map([['192.0.2.10', 'transit-3'], ['2001:db8::10', 'srv-1'], ['192.0.2.11', 'srv-2']])),
      },
      {
        what: 'meta, set, replaced and deleted with null (deleting an absent key is no error; "" is a value)',
        write: async (st) => {
          await st.commit({ meta: { soa_serial_bump: '1', a: 'x', empty: '' } });
          await st.commit({ meta: { soa_serial_bump: '4294967295', a: null, never: null } });
        },
        read: (st) => {
          expect(st.getMeta('soa_serial_bump')).toBe('4294967295');
          expect(st.getMeta('a')).toBeUndefined();
          expect(st.getMeta('never')).toBeUndefined();
          expect(st.getMeta('empty')).toBe('');
          expect(st.metaEntries('')).toEqual(new Map([['soa_serial_bump', '4294967295'], ['empty', '']]));
        },
      },
      {
        what: 'migrations, a later entry for the same server winning (also within one commit)',
        write: async (st) => {
          await st.commit({ migrations: [{ server: 'srv-1', value: migration('srv-1', 1) }, { server: 'srv-2', value: migration('srv-2', 1) }] });
          await st.commit({ migrations: [{ server: 'srv-1', value: migration('srv-1', 2) }, { server: 'srv-1', value: migration('srv-1', 3) }] });
        },
        read: (st) => expect(sorted(st.migrations())).toEqual(sorted([migration('srv-1', 3), migration('srv-2', 1)])),
      },
      {
        what: 'inventory edits by kind and name, oldest first (an edit again moves it last), with when each was stored',
        write: async (st) => {
          await st.commit({ inventory: { kind: 'servers', name: 'a', value: { addresses: ['192.0.2.1'] } } });
          await st.commit({ inventory: { kind: 'transits', name: 'a', value: { addresses: ['198.51.100.1'] } } });
          await st.commit({ inventory: { kind: 'servers', name: 'b', value: { addresses: ['192.0.2.2'], nested: { list: [1, 'two', null, true] } } } });
          await st.commit({ inventory: { kind: 'servers', name: 'a', value: null } });
        },
        read: (st, { before, after }) => {
          const edits = st.inventoryEdits();
          expect(edits.map(({ at: _at, ...e }) => e)).toEqual([
            { kind: 'transits', name: 'a', value: { addresses: ['198.51.100.1'] } },
            { kind: 'servers', name: 'b', value: { addresses: ['192.0.2.2'], nested: { list: [1, 'two', null, true] } } },
            { kind: 'servers', name: 'a', value: null },
          ]);
          for (const { at } of edits) {
            expect(Number.isInteger(at)).toBe(true);
            expect(at).toBeGreaterThanOrEqual(before);
            expect(at).toBeLessThanOrEqual(after);
          }
          expect(edits.map((e) => e.at)).toEqual([...edits.map((e) => e.at)].sort((x, y) => x - y));
        },
      },
      {
        what: 'every field in one commit',
        write: async (st) => st.commit(everything(1)),
        read: (st) => {
          const e = everything(1);
          expect(st.getOperation('op-1')).toEqual(e.operation);
          expect(st.load()).toEqual({ overlays: [e.overlay!.value], operations: [e.operation] });
          expect(st.routes()).toEqual(new Map([['192.0.2.10', 'transit-1']]));
          expect(st.metaEntries('')).toEqual(new Map([['soa_serial_bump', '1'], ['k1', 'v']]));
          expect(st.migrations()).toEqual([migration('srv-1', 1)]);
          expect(st.inventoryEdits().map(({ at: _at, ...i }) => i)).toEqual([e.inventory]);
        },
      },
      {
        what: 'a merged change: what its parts would store, in the order given (a later part wins)',
        write: async (st) => st.commit(mergeStaged(
          staged({ operation: operation('op-1', 'srv-1', 1000), routes: [{ address: '192.0.2.10', host: 'srv-1' }], migrations: [{ server: 'srv-1', value: migration('srv-1', 1) }], meta: { a: '1' } }),
          null,
          staged({ routes: [{ address: '192.0.2.10', host: 'transit-3' }], migrations: [{ server: 'srv-1', value: migration('srv-1', 2) }], meta: { b: '2' } }),
        ).change),
        read: (st) => {
          expect(st.getOperation('op-1')).toEqual(operation('op-1', 'srv-1', 1000));
          expect(st.routes()).toEqual(new Map([['192.0.2.10', 'transit-3']]));
          expect(st.migrations()).toEqual([migration('srv-1', 2)]);
          expect(st.metaEntries('')).toEqual(new Map([['a', '1'], ['b', '2']]));
        },
      },
    ];

    test.each(roundTrips)('round trip, also after reopening: $what', async ({ write, read }) => {
      const before = Date.now();
      await write(s());
      const after = Date.now();
      read(s(), { before, after });
      await reopen();
      read(s(), { before, after });
    });

    describe('metaEntries: the keys starting with the prefix, and only those', () => {
      const keys = ['acc', 'acct', 'acct/', 'acct/a', 'acct/b/c', 'acct0', 'Acct/a', 'acct/é', 'acct/😀', 'a%b', 'a_b', 'axb',
        'é/x', 'ê', '😀/x', '\u{1F7FF}a', '\u{1F7FF}', '\u{1F800}', '\u{10FFFF}z', '\uFFFF', 'zz'];
      beforeEach(() => s().commit({ meta: Object.fromEntries(keys.map((k) => [k, `v:${k}`])) }));

      test.each([
        ['', keys],
        ['acct/', ['acct/', 'acct/a', 'acct/b/c', 'acct/é', 'acct/😀']],
        ['acct', ['acct', 'acct/', 'acct/a', 'acct/b/c', 'acct0', 'acct/é', 'acct/😀']],
        ['acct/a', ['acct/a']],
        ['acct/a/', []],
        ['a%', ['a%b']],
        ['a_', ['a_b']],
        ['é', ['é/x']],
        ['😀', ['😀/x']],
        ['\u{1F7FF}', ['\u{1F7FF}a', '\u{1F7FF}']],
        ['\u{10FFFF}', ['\u{10FFFF}z']],
        ['\uFFFF', ['\uFFFF']],
        ['nothing', []],
      ])('prefix %j', async (prefix, expected) => {
        const want = new Map(sorted(expected).map((k) => [k, `v:${k}`]));
        expect(new Map(sorted([...s().metaEntries(prefix)]))).toEqual(want);
        await reopen();
        expect(new Map(sorted([...s().metaEntries(prefix)]))).toEqual(want);
      });
    });

    describe('listOperations: a server\'s operations, newest accepted first, equal times by when first stored (latest first)', () => {
      beforeEach(async () => {
        await s().commit({ operation: operation('op-a', 'srv-1', 100) });
        await s().commit({ operation: operation('op-b', 'srv-1', 300) });
        await s().commit({ operation: operation('op-x', 'srv-2', 400) });
        await s().commit({ operation: operation('op-c', 'srv-1', 200) });
        await s().commit({ operation: operation('op-d', 'srv-1', 300) });
        // stored again: its place does not change
        await s().commit({ operation: operation('op-b', 'srv-1', 300, 'succeeded') });
      });

      test.each([
        ['srv-1', 10, ['op-d', 'op-b', 'op-c', 'op-a']],
        ['srv-1', 4, ['op-d', 'op-b', 'op-c', 'op-a']],
        ['srv-1', 2, ['op-d', 'op-b']],
        ['srv-1', 1, ['op-d']],
        ['srv-1', 0, []],
        ['srv-2', 10, ['op-x']],
        ['srv-3', 10, []],
      ])('%s, at most %i', async (server, limit, ids) => {
        expect(s().listOperations(server, limit).map((o) => o.id)).toEqual(ids);
        await reopen();
        expect(s().listOperations(server, limit).map((o) => o.id)).toEqual(ids);
        expect(s().listOperations('srv-1', 10)[1]).toEqual(operation('op-b', 'srv-1', 300, 'succeeded'));
      });
    });

    test('load: every active overlay and the operations not finished (pending or running), oldest accepted first', async () => {
      await s().commit({ operation: operation('op-late', 'srv-1', 300, 'pending'), overlay: { server: 'srv-1', value: overlay('srv-1', 'transit-1', 300) } });
      await s().commit({ operation: operation('op-early', 'srv-2', 100, 'running'), overlay: { server: 'srv-2', value: overlay('srv-2', 'transit-2', 100) } });
      await s().commit({ operation: operation('op-mid', 'srv-3', 200, 'running') });
      await s().commit({ operation: operation('op-ok', 'srv-4', 150, 'succeeded') });
      await s().commit({ operation: operation('op-failed', 'srv-5', 160, 'failed') });
      await s().commit({ operation: operation('op-mid', 'srv-3', 200, 'succeeded') }); // finished since
      await s().commit({ operation: operation('op-ok', 'srv-4', 150, 'running', 1) }); // retried
      const want = {
        overlays: [overlay('srv-1', 'transit-1', 300), overlay('srv-2', 'transit-2', 100)],
        operations: [operation('op-early', 'srv-2', 100, 'running'), operation('op-ok', 'srv-4', 150, 'running', 1), operation('op-late', 'srv-1', 300, 'pending')],
      };
      const read = () => ({ ...s().load(), overlays: sorted(s().load().overlays) });
      expect(read()).toEqual(want);
      await reopen();
      expect(read()).toEqual(want);
    });

    describe('a commit is all or nothing: a change with a part that cannot be stored throws (not StateUnavailableError) and changes nothing', () => {
      const bigint = { big: BigInt(1) } as Record<string, unknown>;
      const cycle: Record<string, unknown> = { server: 'srv-1' };
      cycle.self = cycle;
      const invalid: { name: string; change: StateChange }[] = [
        { name: 'an operation that is not JSON', change: { ...everything(2), operation: { ...everything(2).operation!, attempts: BigInt(2) } as unknown as Operation } },
        { name: 'an overlay that is not JSON', change: { ...everything(2), overlay: { server: 'srv-2', value: { ...overlay('srv-2', 't', 1), since: BigInt(1) } as unknown as ServerOverlay } } },
        { name: 'a migration that is not JSON (the last of several)', change: { ...everything(2), migrations: [{ server: 'srv-2', value: migration('srv-2', 2) }, { server: 'srv-3', value: cycle }] } },
        { name: 'an inventory value that is not JSON', change: { ...everything(2), inventory: { kind: 'servers', name: 'srv-9', value: bigint } } },
        ...(harness.refused ?? []),
      ];

      test.each(invalid)('$name', async ({ change }) => {
        await s().commit(everything(1));
        await s().commit({ operation: operation('op-2', 'srv-2', 2000), overlay: { server: 'srv-2', value: overlay('srv-2', 'transit-2', 2) } });
        const before = snapshot(s());
        let err: unknown;
        try {
          await s().commit(change);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(Error);
        expect(err).not.toBeInstanceOf(StateUnavailableError);
        expect(snapshot(s())).toEqual(before);
        await reopen();
        expect(snapshot(s())).toEqual(before);
        // and the store takes the next change
        await s().commit(everything(3));
        expect(s().getMeta('soa_serial_bump')).toBe('3');
      });

      test.each([
        ['operation', { operation: operation('op-1', 'srv-1', 1) }, { operation: operation('op-1', 'srv-1', 2) }],
        ['overlay', { overlay: { server: 'srv-1', value: null } }, { overlay: { server: 'srv-1', value: overlay('srv-1', 't', 1) } }],
        ['inventory', { inventory: { kind: 'servers', name: 'a', value: null } }, { inventory: { kind: 'servers', name: 'b', value: null } }],
        ['a meta key', { meta: { a: '1' } }, { meta: { a: '2' } }],
      ] as [string, StateChange, StateChange][])('parts carrying two values for %s cannot be merged: nothing reaches the store', async (_field, a, b) => {
        await s().commit(everything(1));
        const before = snapshot(s());
        expect(() => s().commit(mergeStaged(staged({ routes: [{ address: '192.0.2.99', host: 'x' }] }), staged(a), staged(b)).change)).toThrow(/two different values/);
        expect(snapshot(s())).toEqual(before);
      });
    });

    describe('values are the caller\'s own', () => {
      test('changing what a read returned changes nothing stored', async () => {
        await s().commit(everything(1));
        const before = snapshot(s());
        const op = s().getOperation('op-1')!;
        op.state = 'failed';
        op.addresses[0].result = 'failed';
        op.times.finished = 1;
        s().listOperations('srv-1', 1)[0].dnsPropagated!['ns2.example.test'] = 7;
        const loaded = s().load();
        loaded.overlays[0].pairs.pop();
        loaded.operations[0].id = 'op-x';
        loaded.overlays.length = 0;
        s().routes().set('192.0.2.10', 'elsewhere');
        s().metaEntries('').set('soa_serial_bump', '99');
        (s().migrations()[0] as { n: number }).n = 99;
        const edits = s().inventoryEdits();
        edits[0].value!.addresses = [];
        edits[0].at = 0;
        expect(snapshot(s())).toEqual(before);
      });

      test('changing a change after its commit changes nothing stored', async () => {
        const change = everything(1);
        await s().commit(change);
        const before = snapshot(s());
        change.operation!.state = 'failed';
        change.operation!.addresses[0].routedTo = 'elsewhere';
        change.overlay!.value!.pairs.length = 0;
        change.routes![0].host = 'elsewhere';
        change.meta!.soa_serial_bump = '99';
        (change.migrations![0].value as { n: number }).n = 99;
        change.inventory!.value!.addresses = [];
        expect(snapshot(s())).toEqual(before);
      });
    });

    test.each([
      ['load', (st: StateStore) => st.load()],
      ['getOperation', (st: StateStore) => st.getOperation('op-1')],
      ['listOperations', (st: StateStore) => st.listOperations('srv-1', 1)],
      ['routes', (st: StateStore) => st.routes()],
      ['commit', (st: StateStore) => st.commit({ meta: { a: '1' } })],
      ['getMeta', (st: StateStore) => st.getMeta('a')],
      ['metaEntries', (st: StateStore) => st.metaEntries('')],
      ['migrations', (st: StateStore) => st.migrations()],
      ['inventoryEdits', (st: StateStore) => st.inventoryEdits()],
    ])('after close, %s throws (or rejects)', async (_method, use) => {
      const st = s();
      close();
      await expect((async () => use(st))()).rejects.toThrow();
    });
  });
}

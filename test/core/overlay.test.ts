/**
 * overlayDelta: which addresses a change of the overlay can affect (so that only the zones serving
 * them get a new serial), and per-zone serial bumps.
 */
import { describe, expect, test } from '@jest/globals';
import { addressBytes } from '../../src/core/addresses.js';
import { compileOverlay, overlayDelta, type CompiledOverlay, type OverlayInput } from '../../src/core/overlay.js';

const k = (address: string) => addressBytes({ address, family: address.includes(':') ? 6 : 4 }).toString('latin1');
const server = (pairs: [string, string][]) => ({ server: 'srv-42', transit: 't', operationId: 'op', since: 0, pairs: pairs.map(([address, transitAddress]) => ({ address, transitAddress, family: (address.includes(':') ? 6 : 4) as 4 | 6 })) });
const account = (zones: string[], pairs: [string, string][]) => ({ account: 'acme', server: 'srv-42', transit: 't', since: 0, zones, pairs: server(pairs).pairs });
const lowered = (ttl: number, addresses: string[]) => ({ server: 'srv-42', ttl, addresses: addresses.map((address) => ({ address, family: 4 as const })) });
const compile = (input: Partial<OverlayInput>): CompiledOverlay | null => compileOverlay({ servers: [], ttlCap: 60, ...input });
const shown = (d: { anyZone: ReadonlySet<string>; byZone: ReadonlyMap<string, ReadonlySet<string>> }) => ({
  anyZone: [...d.anyZone].sort(),
  byZone: Object.fromEntries([...d.byZone].map(([z, keys]) => [z, [...keys].sort()])),
});

describe('overlayDelta', () => {
  const cut = server([['192.0.2.10', '198.51.100.20'], ['2001:db8:42::10', '2001:db8:3::20']]);
  test.each<[string, Partial<OverlayInput> | null, Partial<OverlayInput> | null, { anyZone: string[]; byZone: Record<string, string[]> }]>([
    ['nothing to nothing', null, null, { anyZone: [], byZone: {} }],
    ['a cutover: its addresses, in every zone', null, { servers: [cut] }, { anyZone: [k('192.0.2.10'), k('2001:db8:42::10')].sort(), byZone: {} }],
    ['the cutback: the same addresses', { servers: [cut] }, { servers: [] }, { anyZone: [k('192.0.2.10'), k('2001:db8:42::10')].sort(), byZone: {} }],
    ['the same overlay compiled again: nothing', { servers: [cut] }, { servers: [cut] }, { anyZone: [], byZone: {} }],
    ['another transit address for one address only', { servers: [cut] }, { servers: [server([['192.0.2.10', '198.51.100.21'], ['2001:db8:42::10', '2001:db8:3::20']])] }, { anyZone: [k('192.0.2.10')], byZone: {} }],
    ['an account move: only in its zones', null, { accounts: [account(['acme.test.', 'acme.example.'], [['192.0.2.10', '198.51.100.20']])] },
      { anyZone: [], byZone: { 'acme.test.': [k('192.0.2.10')], 'acme.example.': [k('192.0.2.10')] } }],
    ['an account move gaining a zone: that zone only', { accounts: [account(['acme.test.'], [['192.0.2.10', '198.51.100.20']])] }, { accounts: [account(['acme.test.', 'acme.example.'], [['192.0.2.10', '198.51.100.20']])] },
      { anyZone: [], byZone: { 'acme.example.': [k('192.0.2.10')] } }],
    ['TTLs lowered', null, { lowered: [lowered(300, ['192.0.2.10'])] }, { anyZone: [k('192.0.2.10')], byZone: {} }],
    ['TTLs lowered further', { lowered: [lowered(300, ['192.0.2.10', '192.0.2.11'])] }, { lowered: [lowered(60, ['192.0.2.10']), lowered(300, ['192.0.2.11'])] }, { anyZone: [k('192.0.2.10')], byZone: {} }],
    ['another TTL cap: every rewritten address', { servers: [cut], accounts: [account(['acme.test.'], [['192.0.2.99', '198.51.100.99']])] }, { servers: [cut], accounts: [account(['acme.test.'], [['192.0.2.99', '198.51.100.99']])], ttlCap: 30 },
      { anyZone: [k('192.0.2.10'), k('192.0.2.99'), k('2001:db8:42::10')].sort(), byZone: {} }],
    ['serial bumps alone: nothing', { servers: [cut], serialBump: 1 }, { servers: [cut], serialBump: 2, zoneSerialBumps: new Map([['acme.test.', 4]]) }, { anyZone: [], byZone: {} }],
  ])('%s', (_name, before, after, expected) => {
    const a = before && compile(before);
    const b = after && compile(after);
    expect(shown(overlayDelta(a, b))).toEqual(expected);
    // changedSince: every address of the delta, whichever zone
    const all = [...expected.anyZone, ...Object.values(expected.byZone).flat()];
    if (b) expect([...b.changedSince(a)].sort()).toEqual([...new Set(all)].sort());
  });

  test('an overlay not compiled here counts as changing everything it touches', () => {
    const foreign = { ...compile({ servers: [cut] })! }; // a copy: not known to overlayDelta
    expect(shown(overlayDelta(compile({ servers: [cut] }), foreign))).toEqual({ anyZone: [k('192.0.2.10'), k('2001:db8:42::10')].sort(), byZone: {} });
  });
});

describe('serial bumps', () => {
  test.each<[string, Partial<OverlayInput>, Record<string, number>]>([
    ['shared only', { serialBump: 7 }, { 'a.test.': 7, 'b.test.': 7 }],
    ['shared plus a zone\'s own', { serialBump: 7, zoneSerialBumps: new Map([['a.test.', 3]]) }, { 'a.test.': 10, 'b.test.': 7 }],
    ['wrapping (RFC 1982)', { serialBump: 0xffffffff, zoneSerialBumps: new Map([['a.test.', 2]]) }, { 'a.test.': 1, 'b.test.': 0xffffffff }],
  ])('%s', (_name, input, expected) => {
    const o = compile(input)!;
    expect(Object.fromEntries(Object.keys(expected).map((z) => [z, o.serialBump(z)]))).toEqual(expected);
  });

  test('no overlay at all when nothing is rewritten and no zone is bumped', () => {
    expect(compile({ serialBump: 0, zoneSerialBumps: new Map([['a.test.', 0]]) })).toBeNull();
    expect(compile({ zoneSerialBumps: new Map([['a.test.', 1]]) })).not.toBeNull();
  });
});

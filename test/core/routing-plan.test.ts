/** The reconcile decisions: desired delivery from overlays and operations, verdicts, repair routes, backoff. */
import { describe, expect, test } from '@jest/globals';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Server } from '../../src/core/inventory.js';
import { newOperation, type Operation } from '../../src/core/operation.js';
import type { ServerOverlay } from '../../src/core/overlay.js';
import { afterFailedRepair, desiredRouting, judge, repairRoute, type DesiredAddress } from '../../src/core/routing-plan.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const servers: Server[] = [
  { name: 'srv-42', addresses: [addr('203.0.113.10'), addr('2001:db8:42::10')] },
  { name: 'srv-43', addresses: [addr('203.0.113.20')] },
];
const pairs = [
  { address: '203.0.113.10', transitAddress: '198.51.100.20', family: 4 as const },
  { address: '2001:db8:42:0:0:0:0:10', transitAddress: '2001:db8:3::20', family: 6 as const },
];
const overlay: ServerOverlay = { server: 'srv-42', transit: 'transit-3', operationId: 'op-1', since: 1, pairs };
const op = (direction: 'cutover' | 'cutback', state: Operation['state']): Operation => ({
  ...newOperation({ id: `op-${direction}`, server: 'srv-42', transit: 'transit-3', direction, backend: 'x', pairs, now: 1 }),
  state,
});

describe('desiredRouting', () => {
  test.each([
    // name, overlay?, latest op of srv-42, desired, other, leftTo
    ['never moved', false, undefined, 'srv-42', null, null],
    ['cut over, done', true, op('cutover', 'succeeded'), 'transit-3', 'srv-42', null],
    ['cut back, done', false, op('cutback', 'succeeded'), 'srv-42', 'transit-3', null],
    ['cutover running', true, op('cutover', 'running'), 'transit-3', 'srv-42', 'operation'],
    ['cutback running', true, op('cutback', 'running'), 'srv-42', 'transit-3', 'operation'],
    ['cutover failed', true, op('cutover', 'failed'), 'transit-3', 'srv-42', 'failed_operation'],
    ['cutback failed', true, op('cutback', 'failed'), 'srv-42', 'transit-3', 'failed_operation'],
  ] as const)('%s', (_name, cut, latest, desired, other, leftTo) => {
    const out = desiredRouting({
      servers,
      overlays: new Map(cut ? [['srv-42', overlay]] : []),
      latest: (s) => (s === 'srv-42' ? latest : undefined),
    });
    const mine = out.filter((d) => d.server === 'srv-42');
    expect(mine.map((d) => d.address)).toEqual(['203.0.113.10', '2001:db8:42:0:0:0:0:10'].map((a) => addr(a).address));
    for (const d of mine) {
      expect(d.desired).toBe(desired);
      expect(d.other).toBe(other);
      expect(d.leftTo?.kind ?? null).toBe(leftTo);
    }
    // the other server is untouched by srv-42's state
    expect(out.filter((d) => d.server === 'srv-43')).toEqual([
      { address: '203.0.113.20', family: 4, server: 'srv-43', desired: 'srv-43', other: null, leftTo: null },
    ]);
  });
});

describe('judge', () => {
  const want: DesiredAddress = { address: '203.0.113.10', family: 4, server: 'srv-42', desired: 'transit-3', other: 'srv-42', leftTo: null };
  test.each([
    ['delivered where wanted', { address: want.address, to: 'transit-3' }, 'in_sync'],
    ['empty problem list', { address: want.address, to: 'transit-3', problems: [] }, 'in_sync'],
    ['route gone', { address: want.address, to: null }, 'drifted'],
    ['back on the server', { address: want.address, to: 'srv-42' }, 'drifted'],
    ['delivered but the host lacks it', { address: want.address, to: 'transit-3', problems: ['transit-3 does not hold it'] }, 'drifted'],
    ['unreadable', { address: want.address, to: null, unknown: 'transit-3 did not answer' }, 'unknown'],
    ['not read at all', undefined, 'unknown'],
  ] as const)('%s', (_n, seen, state) => {
    expect(judge(want, seen as never).state).toBe(state);
  });
  test('an address of a running operation or after a failed one is never drifted', () => {
    const seen = { address: want.address, to: null };
    expect(judge({ ...want, leftTo: { kind: 'operation', operation: 'op-1', reason: 'r' } }, seen).state).toBe('left_to_operation');
    expect(judge({ ...want, leftTo: { kind: 'failed_operation', operation: 'op-1', reason: 'r' } }, seen).state).toBe('held');
  });
});

describe('repairRoute', () => {
  const want: DesiredAddress = { address: '203.0.113.20', family: 4, server: 'srv-43', desired: 'srv-43', other: null, leftTo: null };
  test.each([
    ['from where it was seen', { address: want.address, to: 'transit-4' }, 'transit-4'],
    ['from the pair when seen nowhere', { address: want.address, to: null }, 'transit-9'],
    ['from the pair when seen in place but incomplete', { address: want.address, to: 'srv-43', problems: ['x'] }, 'transit-9'],
  ] as const)('%s', (_n, seen, from) => {
    expect(repairRoute({ ...want, other: 'transit-9' }, seen as never, () => 'fallback')).toEqual({ address: want.address, family: 4, to: 'srv-43', from, repair: true });
  });
  test('no pair and seen nowhere: the fallback; no other host: no route', () => {
    expect(repairRoute(want, { address: want.address, to: null }, (not) => (not === 'srv-43' ? 'transit-1' : null))?.from).toBe('transit-1');
    expect(repairRoute(want, { address: want.address, to: null }, () => null)).toBeNull();
  });
});

describe('afterFailedRepair', () => {
  test('one interval, doubling, capped; never sooner than most of an interval', () => {
    let b = afterFailedRepair(undefined, 0, 30_000, 600_000);
    const waits = [b.nextAttemptAt];
    for (let i = 0; i < 7; i++) {
      b = afterFailedRepair(b, 0, 30_000, 600_000);
      waits.push(b.nextAttemptAt);
    }
    expect(waits).toEqual([29_000, 59_000, 119_000, 239_000, 479_000, 599_000, 599_000, 599_000]);
    expect(b.failures).toBe(8);
    expect(afterFailedRepair(undefined, 0, 1000, 600_000).nextAttemptAt).toBe(900);
  });
});

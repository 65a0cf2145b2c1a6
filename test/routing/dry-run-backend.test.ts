/** The dry-run backend: records and logs, touches nothing, reads back what it applied. */
import { describe, expect, test } from '@jest/globals';
import pino from 'pino';
import { DryRunBackend } from '../../src/routing/dry-run-backend.js';
import { RouteError, type DesiredRoute } from '../../src/routing/route-backend.js';

const A = '203.0.113.10';
const NET6 = '2a01:4f8:fff0::10';
const out = (address: string, family: 4 | 6 = 4): DesiredRoute => ({ address, family, to: 'transit-3', from: 'srv-42' });
const back = (address: string, family: 4 | 6 = 4): DesiredRoute => ({ address, family, to: 'srv-42', from: 'transit-3' });

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { lines, logger };
}

describe('DryRunBackend', () => {
  test('name, and current() is null before anything was applied', async () => {
    const b = new DryRunBackend();
    expect(b.name).toBe('dry-run');
    expect(await b.current([A, NET6])).toEqual([
      { address: A, to: null },
      { address: NET6, to: null },
    ]);
    expect(b.history).toEqual([]);
  });

  test('apply records, current() reads back, the same state again is unchanged', async () => {
    const b = new DryRunBackend();
    expect(await b.apply([out(A), out(NET6, 6)])).toEqual({ changed: [A, NET6], unchanged: [] });
    expect(await b.current([A, NET6, '203.0.113.11'])).toEqual([
      { address: A, to: 'transit-3' },
      { address: NET6, to: 'transit-3' },
      { address: '203.0.113.11', to: null },
    ]);
    expect(await b.apply([out(A), back(NET6, 6)])).toEqual({ changed: [NET6], unchanged: [A] });
    expect(b.history).toHaveLength(2);
    expect(b.history[0]).toMatchObject({ desired: [out(A), out(NET6, 6)], changed: [A, NET6], unchanged: [] });
    expect(b.history[1]).toMatchObject({ changed: [NET6], unchanged: [A] });
    expect(b.history[0].at).toBeInstanceOf(Date);
  });

  test('addresses are compared normalised (ip-address correctForm)', async () => {
    const b = new DryRunBackend();
    await b.apply([out('2a01:04f8:fff0:0000:0000:0000:0000:0010', 6)]);
    expect(await b.current([NET6])).toEqual([{ address: NET6, to: 'transit-3' }]);
    expect(await b.apply([out(NET6, 6)])).toEqual({ changed: [], unchanged: [NET6] });
  });

  test('history holds copies: later changes to the caller objects do not rewrite it', async () => {
    const b = new DryRunBackend();
    const desired = [out(A)];
    await b.apply(desired);
    desired[0].to = 'elsewhere';
    expect(b.history[0].desired[0].to).toBe('transit-3');
  });

  test('logs what it would do through the given pino logger', async () => {
    const { lines, logger } = capture();
    const b = new DryRunBackend({ logger });
    await b.apply([out(A)]);
    await b.apply([out(A)]);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 30, backend: 'dry-run', address: A, from: 'srv-42', to: 'transit-3', was: null, msg: `dry-run: would route ${A} to transit-3 (from srv-42)` });
    expect(lines[1]).toMatchObject({ level: 20, address: A, to: 'transit-3', msg: `dry-run: ${A} already routed to transit-3` });
  });

  test.each([
    ['not an address', { ...out('srv-42.example') }],
    ['the wrong family', { ...out(A), family: 6 as const }],
    ['a zone id', { ...out('fe80::1%eth0', 6) }],
  ])('refuses %s like a real backend, recording nothing', async (_name, d) => {
    const b = new DryRunBackend();
    await expect(b.apply([out(A), d])).rejects.toBeInstanceOf(RouteError);
    await expect(b.apply([d])).rejects.toMatchObject({ retryable: false });
    expect(b.history).toEqual([]);
    expect(await b.current([A])).toEqual([{ address: A, to: null }]);
  });
});

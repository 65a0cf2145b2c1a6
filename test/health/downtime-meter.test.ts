/**
 * The downtime meter (the cutover's DowntimeMeter port) on a controller that keeps stalling: the
 * addresses answer throughout, so the measurement must end recovered, without downtime, although
 * probe slots are skipped and probes are in flight across the stalls.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createDowntimeMeter } from '../../src/health/downtime-meter.js';
import type { ProbeConfig } from '../../src/config/config.js';
import { blockEventLoop, startChildHttpServer, type ChildHttpServer } from './stall-support.js';

let child: ChildHttpServer;
beforeAll(async () => {
  child = await startChildHttpServer('::', 'transit-3'); // both loopbacks; answers while this process is blocked
});
afterAll(async () => {
  await child?.stop();
});

describe('createDowntimeMeter', () => {
  test('a controller stalling longer than the timeout every few probes: recovered, no downtime', async () => {
    let results = 0;
    const meter = createDowntimeMeter({
      probe: { type: 'http', port: child.port, path: '/', identityHeader: 'x-served-by' } as ProbeConfig,
      intervalMs: 10,
      // generous: the child must answer within it even on a loaded machine; the stalls below are longer
      timeoutMs: 300,
      deadlineMs: 20_000,
      // 50 in a row: at least 5 stalls fall inside any streak (one every 5 probes per address)
      recoveryProbes: 50,
      onProbe: () => {
        if (++results % 10 === 0) process.nextTick(() => blockEventLoop(450));
      },
    });
    const run = meter.start({
      addresses: [
        { address: '127.0.0.1', family: 4 },
        { address: '::1', family: 6 },
      ],
      origin: 'srv-42',
      target: 'transit-3',
      server: 'srv-42',
    });
    const addresses = await run.done();
    console.log(`stalling controller: ${addresses.map((a) => `${a.address} ${a.downtimeMs} ms, ${a.probesFailed}/${a.probesSent} failed, recovered ${a.recovered}`).join('; ')}`);
    for (const a of addresses) expect(a).toMatchObject({ recovered: true, downtimeMs: 0, probesFailed: 0 });
    expect(results).toBeGreaterThanOrEqual(100);
  });
});

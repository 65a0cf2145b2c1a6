/**
 * Downtime measurement in the namespace lab, through the API. The controller runs inside the
 * client namespace, so its probes see what a customer sees. During a cutover the test makes one
 * address unreachable for a known time (a blackhole route on the router, once the route has
 * flipped); the controller's measured downtime for it must be within 2 probe intervals of that time.
 * The operation's per-address downtime and the histogram in /metrics must agree.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, labSections, LAN, type Lab } from '../support/netns-lab.js';

const INTERVAL_MS = 10;
let lab: Lab;
let ctl: ControllerHandle;
beforeAll(async () => {
  lab = await createLab();
  ctl = await startController({
    netns: lab.ns.client,
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
    sections: {
      ...labSections(lab),
      health: {
        interval_ms: INTERVAL_MS, timeout_ms: 200, deadline_s: 60,
        // a long recovery streak keeps the measurement open while the test plays its outage
        recovery_probes: 250,
        probe: { type: 'http', port: 80, path: '/', identity_header: 'x-served-by' },
      },
    },
  });
}, 90_000);
afterAll(async () => {
  await ctl?.stop();
  await lab?.destroy();
});

const router = (argv: string[]) => lab.exec(lab.ns.router, argv);

function metric(body: string, name: string, labels: string): number {
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}}`) || l.startsWith(`${name}{${labels},`));
  return line ? Number(line.split(' ').pop()) : NaN;
}

describe('measured downtime', () => {
  test('a known outage during a cutover is measured within 2 probe intervals; metrics agree', async () => {
    const r = await ctl.post('/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(r.status).toBe(202);
    const id = JSON.parse(r.body).id as string;
    // wait until the router sends 203.0.113.10 to the transit, then black-hole it for 2 s
    for (let i = 0; ; i++) {
      const out = (await router(['ip', '-j', 'route', 'show', '203.0.113.10/32'])).stdout;
      if (out.includes(LAN.transit[0])) break;
      if (i > 500) throw new Error('route never flipped');
      await new Promise((res) => setTimeout(res, 5));
    }
    const t1a = performance.now();
    expect((await router(['ip', 'route', 'replace', 'blackhole', '203.0.113.10/32'])).code).toBe(0);
    const t1b = performance.now();
    await new Promise((res) => setTimeout(res, 2000));
    const t2a = performance.now();
    expect((await router(['ip', 'route', 'replace', '203.0.113.10/32', 'via', LAN.transit[0]])).code).toBe(0);
    const t2b = performance.now();
    const actual = (t2a + t2b) / 2 - (t1a + t1b) / 2;
    const slack = (t1b - t1a) / 2 + (t2b - t2a) / 2;

    const op = await ctl.waitOperation(id);
    expect(op.state).toBe('succeeded');
    const by = Object.fromEntries(op.addresses.map((a: any) => [a.address, a]));
    const measured = by['203.0.113.10'].downtime_ms as number;
    console.log(`blackhole ${actual.toFixed(1)} ms (±${slack.toFixed(1)} ms for the ip commands); measured ${measured} ms at a ${INTERVAL_MS} ms interval; other addresses: ${op.addresses.filter((a: any) => a.address !== '203.0.113.10').map((a: any) => `${a.address} ${a.downtime_ms} ms (${a.probes_failed}/${a.probes_sent} failed)`).join(', ')}`);
    expect(Math.abs(measured - actual)).toBeLessThanOrEqual(2 * INTERVAL_MS + slack);
    expect(op.measurement).toMatchObject({ probe: 'http:80/', interval_ms: INTERVAL_MS, restarted: false });
    expect(op.measurement.max_downtime_ms).toBe(measured);
    for (const a of op.addresses) expect(a.recovered).toBe(true);

    const body = (await ctl.get('/metrics', false)).body;
    const sum = op.addresses.reduce((s: number, a: any) => s + a.downtime_ms, 0) / 1000;
    expect(metric(body, 'failover_ip_downtime_seconds_count', 'direction="cutover",backend="linux-route"')).toBe(3);
    expect(metric(body, 'failover_ip_downtime_seconds_sum', 'direction="cutover",backend="linux-route"')).toBeCloseTo(sum, 5);
    expect(metric(body, 'failover_ip_last_downtime_seconds', 'server="srv-42",address="203.0.113.10",direction="cutover"')).toBeCloseTo(measured / 1000, 5);
    expect(metric(body, 'failover_ip_recovered', 'server="srv-42",address="203.0.113.10",direction="cutover"')).toBe(1);

    const back = await ctl.post('/v1/servers/srv-42/cutback');
    const cb = await ctl.waitOperation(JSON.parse(back.body).id);
    expect(cb.state).toBe('succeeded');
    console.log(`cutback downtime: ${cb.addresses.map((a: any) => `${a.address} ${a.downtime_ms} ms (${a.probes_failed}/${a.probes_sent} failed)`).join(', ')}`);
    const after = (await ctl.get('/metrics', false)).body;
    expect(metric(after, 'failover_ip_downtime_seconds_count', 'direction="cutback",backend="linux-route"')).toBe(3);
    for (const a of cb.addresses) expect(a.recovered).toBe(true);
  }, 120_000);
});

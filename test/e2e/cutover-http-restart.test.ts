/**
 * End to end through the API, with the http backend against the fake provider API: DNS flips
 * before the 202, the controller is killed with SIGKILL (right after the DNS switch, and during
 * routing), restarted on the same state, and the outcome checked; then a cutback.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import type { FakeRobot } from '../support/fake-robot.js';
import { SRV, startLabRobot, TRANSIT } from '../support/replica-lab.js';
import { waitFor } from '../support/wait-for.js';
import { buildQuery, decode, ipOf, T, udpExchange } from '../dns/tiny-dns.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');

let robot: FakeRobot;
const dirs: string[] = [];
beforeAll(async () => {
  robot = await startLabRobot();
});
afterAll(async () => {
  await robot?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sections = () => ({
  servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
  transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
  state: { path: './state.db' },
  routing: {
    backend: 'http',
    retry: { deadline_s: 30, min_delay_ms: 100, max_delay_ms: 500 },
    http: {
      base_url: robot.url, username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 5000,
      server_ips: { 'srv-42': SRV.ip, 'transit-3': TRANSIT.ip },
      server_ipv6_nets: { 'srv-42': SRV.v6, 'transit-3': TRANSIT.v6 },
    },
  },
});

async function start(dir: string): Promise<ControllerHandle> {
  return startController({
    zonesDir: ZONES, dir, sections: sections(),
    extra: { dns: { cutover_ttl: 30 } },
    env: { ROBOT_USER: 'robot-user', ROBOT_PASSWORD: 'robot-secret-pw' },
  });
}

async function answers(ctl: ControllerHandle, name: string, type: number = T.A): Promise<{ ips: string[]; ttl: number[] }> {
  const r = decode((await udpExchange(ctl.dnsPort, buildQuery(name, { type })))!);
  const rrs = r.answers.filter((a) => a.type === type);
  return { ips: rrs.map(ipOf).sort(), ttl: rrs.map((a) => a.ttl) };
}

async function post(ctl: ControllerHandle, path: string, body: unknown = {}) {
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any>, ms: performance.now() - t0 };
}

describe.each([
  ['right after the DNS switch', false],
  ['during routing', true],
])('cutover with the http backend, SIGKILL %s', (_when, duringRouting) => {
  test('DNS flips before the 202, survives the kill, routing resumes and completes; cutback restores', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-'));
    dirs.push(dir);
    for (const ip of ['203.0.113.10', '203.0.113.11']) robot.setActive(ip, SRV.ip);
    robot.setActive('2001:db8:42::', SRV.v6);
    robot.fault('203.0.113.11', { routeDelayMs: 4000 }); // a slow switch, as the real one (40-60 s)
    let ctl = await start(dir);
    const slowPosts = () => robot.requestsFor({ method: 'POST', ip: '203.0.113.11' }).length;
    const slowPostsBefore = slowPosts();
    try {
      expect(await answers(ctl, 'hosted.test')).toEqual({ ips: ['203.0.113.10'], ttl: [3600] });
      const r = await post(ctl, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
      expect(r.status).toBe(202);
      // the first query after the 202: already the transit, TTL capped
      expect(await answers(ctl, 'hosted.test')).toEqual({ ips: ['198.51.100.20'], ttl: [30] });
      expect((await answers(ctl, 'www.hosted.test')).ips).toEqual(['198.51.100.20']);
      expect((await answers(ctl, 'shop.hosted.test')).ips).toEqual(['192.0.2.99', '198.51.100.21']);
      expect((await answers(ctl, 'hosted.test', T.AAAA)).ips).toEqual(['2001:db8:3:0:0:0:0:20']);
      expect(r.body.timestamps.dns_switched).not.toBeNull();
      console.log(`http backend: request -> DNS switch ${r.body.durations_ms.dns_switch} ms (202 after ${r.ms.toFixed(1)} ms)`);
      const id = r.body.id as string;

      // During routing: once the provider has the (4 s) switch of 203.0.113.11 under way.
      if (duringRouting) await waitFor('the switch of 203.0.113.11 to be requested', () => slowPosts() > slowPostsBefore);
      await ctl.kill();
      ctl = await start(dir);
      // DNS answers exactly as before the kill, from the first query on
      expect(await answers(ctl, 'hosted.test')).toEqual({ ips: ['198.51.100.20'], ttl: [30] });
      const op = await ctl.waitOperation(id);
      expect(op.state).toBe('succeeded');
      expect(op.addresses.map((a: any) => a.routed_to)).toEqual(['transit-3', 'transit-3', 'transit-3']);
      expect(robot.activeServerIp('203.0.113.10')).toBe(TRANSIT.ip);
      expect(robot.activeServerIp('203.0.113.11')).toBe(TRANSIT.ip);
      expect(robot.activeServerIp('2001:db8:42::')).toBe(TRANSIT.v6);
      expect(ctl.output()).toContain('resuming an unfinished operation');

      const back = await post(ctl, '/v1/servers/srv-42/cutback?wait=30');
      expect(back.status).toBe(200);
      expect(back.body.state).toBe('succeeded');
      console.log(`http backend: cutback request -> routes applied ${back.body.durations_ms.routing} ms`);
      expect(robot.activeServerIp('203.0.113.11')).toBe(SRV.ip);
      expect(await answers(ctl, 'hosted.test')).toEqual({ ips: ['203.0.113.10'], ttl: [3600] });
      const m = (await ctl.get('/metrics', false)).body;
      expect(m).toMatch(/^failover_dns_overlay_active\{server="srv-42"\} 0$/m);
      expect(m).toMatch(/^failover_operations_total\{direction="cutback",result="succeeded"\} 1$/m);
      expect(ctl.output()).not.toContain('robot-secret-pw');
    } finally {
      await ctl.stop();
    }
  });
});

describe('two controllers on one state file', () => {
  test('the second refuses to start and says why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-'));
    dirs.push(dir);
    const first = await start(dir);
    try {
      await expect(start(dir)).rejects.toThrow(/exited with 1 before it was ready:[\s\S]*state\.db is in use by another controller process/);
    } finally {
      await first.stop();
    }
  });
});

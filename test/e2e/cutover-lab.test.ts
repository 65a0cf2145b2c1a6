/**
 * End to end in a lab of network namespaces (client, router, origin srv-42, transit transit-3):
 * cutover and cutback through the API with the linux-route backend (make-before-break) and the
 * linux-address backend (on-link move with gratuitous ARP / unsolicited NA), seen from the client.
 * DNS answers flip before the 202 arrives; traffic follows the routes.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, urlOf, type Lab } from '../support/netns-lab.js';
import { buildQuery, decode, ipOf, T, udpExchange } from '../dns/tiny-dns.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
let lab: Lab;
const dirs: string[] = [];
beforeAll(async () => {
  lab = await createLab();
  console.log(`lab built in ${lab.buildMs.toFixed(0)} ms`);
}, 60_000);
afterAll(async () => {
  await lab?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function dnsA(ctl: ControllerHandle, name: string, type: number = T.A) {
  const r = decode((await udpExchange(ctl.dnsPort, buildQuery(name, { type })))!);
  return r.answers.filter((a) => a.type === type).map(ipOf).sort();
}

async function post(ctl: ControllerHandle, path: string, body: unknown = {}) {
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any>, ms: performance.now() - t0 };
}

const servedBy = async (addresses: string[]) => Promise.all(addresses.map((a) => lab.httpFrom(lab.ns.client, urlOf(a), 1000)));

function start(dir: string, routing: Record<string, unknown>, server: string[], transit: string[]) {
  return startController({
    zonesDir: ZONES, dir,
    sections: {
      servers: [{ name: 'srv-42', addresses: server }],
      transits: [{ name: 'transit-3', addresses: transit }],
      state: { path: './state.db' },
      routing: { retry: { deadline_s: 20, min_delay_ms: 100, max_delay_ms: 1000 }, ...routing },
    },
  });
}

describe('cutover in the namespace lab', () => {
  test('linux-route (make-before-break): DNS first, traffic moves, survives SIGKILL, cutback restores', async () => {
    const server = ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'];
    const dir = mkdtempSync(join(tmpdir(), 'fc-lab-'));
    dirs.push(dir);
    const lr = lab.linuxRoute;
    const routing = {
      backend: 'linux-route',
      linux_route: { router: lr.router, next_hops: lr.nextHops, hosts: lr.hosts, device: 'lo', pin_connections: true },
    };
    let ctl = await start(dir, routing, server, ['198.51.100.20', '198.51.100.21', '2001:db8:3::20']);
    try {
      expect(await servedBy(server)).toEqual(['srv-42', 'srv-42', 'srv-42']);
      expect(await dnsA(ctl, 'hosted.test')).toEqual(['203.0.113.10']);
      const r = await post(ctl, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
      expect(r.status).toBe(202);
      expect(await dnsA(ctl, 'hosted.test')).toEqual(['198.51.100.20']);
      expect(await dnsA(ctl, 'hosted.test', T.AAAA)).toEqual(['2001:db8:3:0:0:0:0:20']);
      const op = await ctl.waitOperation(r.body.id);
      expect(op.state).toBe('succeeded');
      console.log(`linux-route cutover: request -> DNS switch ${op.durations_ms.dns_switch} ms, request -> routes applied ${op.durations_ms.routing} ms`);
      expect(await servedBy(server)).toEqual(['transit-3', 'transit-3', 'transit-3']);
      // what customers on provider DNS now reach
      expect(await servedBy(['198.51.100.20', '2001:db8:3::20'])).toEqual(['transit-3', 'transit-3']);

      // SIGKILL and restart on the same state: DNS unchanged, routes untouched, cutback works
      await ctl.kill();
      ctl = await start(dir, routing, server, ['198.51.100.20', '198.51.100.21', '2001:db8:3::20']);
      expect(await dnsA(ctl, 'hosted.test')).toEqual(['198.51.100.20']);
      expect(await servedBy(server)).toEqual(['transit-3', 'transit-3', 'transit-3']);
      const back = await post(ctl, '/v1/servers/srv-42/cutback?wait=30');
      expect(back.body.state).toBe('succeeded');
      console.log(`linux-route cutback: request -> routes applied ${back.body.durations_ms.routing} ms`);
      expect(await servedBy(server)).toEqual(['srv-42', 'srv-42', 'srv-42']);
      expect(await dnsA(ctl, 'hosted.test')).toEqual(['203.0.113.10']);
    } finally {
      await ctl.stop();
    }
  }, 120_000);

  test('linux-address (on-link, gratuitous ARP / unsolicited NA): DNS first, traffic moves, cutback restores', async () => {
    const server = ['192.0.2.50', '2001:db8:ffff::50'];
    const dir = mkdtempSync(join(tmpdir(), 'fc-lab-'));
    dirs.push(dir);
    const la = lab.linuxAddress;
    const routing = {
      backend: 'linux-address',
      linux_address: {
        hosts: Object.fromEntries(Object.entries(la.hosts).map(([k, v]) => [k, { exec: v.exec, device: v.device }])),
        prefix_length_v4: la.prefixLength![4], prefix_length_v6: la.prefixLength![6],
      },
    };
    const ctl = await start(dir, routing, server, ['198.51.100.20', '2001:db8:3::20']);
    try {
      expect(await servedBy(server)).toEqual(['srv-42', 'srv-42']);
      const r = await post(ctl, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
      expect(r.status).toBe(202);
      expect(await dnsA(ctl, 'onlink.hosted.test')).toEqual(['198.51.100.20']);
      const op = await ctl.waitOperation(r.body.id);
      expect(op.state).toBe('succeeded');
      console.log(`linux-address cutover: request -> DNS switch ${op.durations_ms.dns_switch} ms, request -> routes applied ${op.durations_ms.routing} ms`);
      expect(await servedBy(server)).toEqual(['transit-3', 'transit-3']);
      const back = await post(ctl, '/v1/servers/srv-42/cutback?wait=30');
      expect(back.body.state).toBe('succeeded');
      console.log(`linux-address cutback: request -> routes applied ${back.body.durations_ms.routing} ms`);
      expect(await servedBy(server)).toEqual(['srv-42', 'srv-42']);
      expect(await dnsA(ctl, 'onlink.hosted.test')).toEqual(['192.0.2.50']);
    } finally {
      await ctl.stop();
    }
  }, 120_000);
});

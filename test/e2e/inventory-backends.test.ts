/**
 * Inventory edits with real routing backends: servers and transits are added, edited and removed
 * through the API with their own routing settings (next hops and host prefixes for linux-route,
 * on-link hosts for linux-address, main IPs for http), then cut over and back for real; a file
 * written in the older per-backend form keeps starting, also after the edits.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, LAN, labSections, ORIGIN, TRANSIT, urlOf, type Lab } from '../support/netns-lab.js';
import { FakeRobot } from '../support/fake-robot.js';
import { buildQuery, decode, ipOf, udpExchange } from '../dns/tiny-dns.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
let lab: Lab;
const dirs: string[] = [];
beforeAll(async () => {
  lab = await createLab();
}, 60_000);
afterAll(async () => {
  await lab?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'fc-inv-lab-'));
  dirs.push(d);
  return d;
};

async function call(ctl: ControllerHandle, method: string, path: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method, headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function dnsA(ctl: ControllerHandle, name: string): Promise<string[]> {
  const r = decode((await udpExchange(ctl.dnsPort, buildQuery(name)))!);
  return r.answers.filter((a) => a.type === 1).map(ipOf).sort();
}

const servedBy = (address: string) => lab.httpFrom(lab.ns.client, urlOf(address), 1000);
/** Second LAN addresses of the origin and transit machines, for a second host living on each (one next hop per host). */
const SECOND_LAN = { origin: ['192.0.2.60', '2001:db8:ffff::60'], transit: ['192.0.2.61', '2001:db8:ffff::61'] } as const;
const lanAddresses = (role: 'origin' | 'transit', op: 'add' | 'del') => Promise.all(SECOND_LAN[role].map((a) =>
  lab.exec(lab.ns[role], ['ip', 'addr', op, `${a}/${a.includes(':') ? 64 : 25}`, 'dev', 'eth0', ...(op === 'add' && a.includes(':') ? ['nodad'] : [])])));
const RETRY = { deadline_s: 20, min_delay_ms: 100, max_delay_ms: 1000 };

describe('inventory edits with real routing backends', () => {
  test('linux-route: a file in the per-backend form; servers and transits added, edited, cut over, removed; restart', async () => {
    const dir = tempDir();
    const sections = labSections(lab);
    (sections.routing as Record<string, unknown>).retry = RETRY;
    const start = () => startController({ zonesDir: ZONES, dir, sections });
    await lanAddresses('origin', 'add');
    await lanAddresses('transit', 'add');
    let ctl = await start();
    try {
      const hostOf = (role: 'origin' | 'transit') => ({ next_hops: [...SECOND_LAN[role]], exec: ['ip', 'netns', 'exec', lab.ns[role]] });
      // srv-42 gives up 203.0.113.11 to a new server on the same machine
      expect((await call(ctl, 'PUT', `/v1/servers/${ORIGIN}`, { addresses: ['203.0.113.10', '2001:db8:42::10'] })).status).toBe(200);
      const refused = await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.11'] });
      expect(refused.status).toBe(400);
      expect(refused.body.error.problems).toEqual(['servers[1]: no next hop for srv-44: set next_hops in its routing settings']);
      const both = await call(ctl, 'PUT', `/v1/servers/${ORIGIN}`, { addresses: ['203.0.113.10', '2001:db8:42::10'], routing: { next_hops: [...LAN.origin] } });
      expect(both.body.error.problems).toEqual([`routing.linux_route.next_hops.${ORIGIN}: ${ORIGIN}'s next_hops is also set at servers[0].routing.next_hops; keep one`]);
      // one next hop per host: srv-44 lives on the origin machine behind a second LAN address
      const shared = await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.11'], routing: { next_hops: [LAN.origin[0]] } });
      expect(shared.body.error.problems).toEqual([`servers[1].routing.next_hops: ${LAN.origin[0]} is already the next hop of ${ORIGIN}`]);
      const added = await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.11'], routing: { next_hops: [SECOND_LAN.origin[0]], exec: hostOf('origin').exec } });
      expect(added.status).toBe(201);

      // the new server moves for real, the old one stays where it is
      const cut = await call(ctl, 'POST', '/v1/servers/srv-44/cutover?wait=30', { transit: TRANSIT });
      expect(cut.body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.11')).toBe(TRANSIT);
      expect(await servedBy('203.0.113.10')).toBe(ORIGIN);
      expect(await dnsA(ctl, 'shop.hosted.test')).toEqual(['192.0.2.99', '198.51.100.20']);
      expect((await call(ctl, 'POST', '/v1/servers/srv-44/cutback?wait=30')).body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.11')).toBe(ORIGIN);

      // a transit added through the API, on the transit machine, with its own settings
      expect((await call(ctl, 'PUT', `/v1/transits/${TRANSIT}`, { addresses: ['198.51.100.20', '2001:db8:3::20'] })).status).toBe(200);
      expect((await call(ctl, 'PUT', '/v1/transits/transit-5', { addresses: ['198.51.100.21', '2001:db8:3::21'], routing: { next_hops: [SECOND_LAN.transit[0]] } })).body.error.problems)
        .toEqual(['transits[1].routing.next_hops: transit-5 has IPv6 addresses but no IPv6 next hop']);
      expect((await call(ctl, 'PUT', '/v1/transits/transit-5', { addresses: ['198.51.100.21', '2001:db8:3::21'], routing: hostOf('transit') })).status).toBe(201);
      const cut5 = await call(ctl, 'POST', '/v1/servers/srv-44/cutover?wait=30', { transit: 'transit-5' });
      expect(cut5.body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.11')).toBe(TRANSIT);
      expect(await dnsA(ctl, 'shop.hosted.test')).toEqual(['192.0.2.99', '198.51.100.21']);
      expect((await call(ctl, 'PUT', '/v1/transits/transit-5', { addresses: ['198.51.100.21'] })).body.error.code).toBe('IN_USE');
      expect((await call(ctl, 'POST', '/v1/servers/srv-44/cutback?wait=30')).body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.11')).toBe(ORIGIN);

      // removal: also of the file's srv-42, whose next hop the file's map still names
      expect((await call(ctl, 'DELETE', '/v1/transits/transit-5')).status).toBe(204);
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-44')).status).toBe(204);
      expect((await call(ctl, 'DELETE', `/v1/servers/${ORIGIN}`)).status).toBe(204);

      // the same file starts with the stored edits; srv-42 comes back with the file's next hop
      await ctl.kill();
      ctl = await start();
      const inv = await call(ctl, 'GET', '/v1/inventory');
      expect(inv.body.servers).toEqual([]);
      expect(inv.body.transits.map((t: { name: string }) => t.name)).toEqual([TRANSIT]);
      expect((await call(ctl, 'PUT', `/v1/servers/${ORIGIN}`, { addresses: ['203.0.113.10', '2001:db8:42::10'] })).status).toBe(201);
      const again = await call(ctl, 'POST', `/v1/servers/${ORIGIN}/cutover?wait=30`, { transit: TRANSIT });
      expect(again.body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.10')).toBe(TRANSIT);
      expect((await call(ctl, 'POST', `/v1/servers/${ORIGIN}/cutback?wait=30`)).body.state).toBe('succeeded');
      expect(await servedBy('203.0.113.10')).toBe(ORIGIN);
    } finally {
      await ctl.stop();
      await lanAddresses('origin', 'del');
      await lanAddresses('transit', 'del');
    }
  }, 240_000);

  test('linux-address: on-link hosts in the entries; a server added, refused without its device, cut over, removed', async () => {
    const la = lab.linuxAddress;
    const own = (role: 'origin' | 'transit') => ({ exec: la.hosts[role === 'origin' ? ORIGIN : TRANSIT].exec, device: 'eth0' });
    const ctl = await startController({
      zonesDir: ZONES, dir: tempDir(),
      sections: {
        servers: [{ name: ORIGIN, addresses: ['192.0.2.50', '2001:db8:ffff::50'], routing: own('origin') }],
        transits: [{ name: TRANSIT, addresses: ['198.51.100.20', '2001:db8:3::20'], routing: own('transit') }],
        state: { path: './state.db' },
        routing: { backend: 'linux-address', retry: RETRY, linux_address: { prefix_length_v4: la.prefixLength![4], prefix_length_v6: la.prefixLength![6] } },
      },
    });
    try {
      expect((await call(ctl, 'PUT', `/v1/servers/${ORIGIN}`, { addresses: ['2001:db8:ffff::50'], routing: own('origin') })).status).toBe(200);
      const refused = await call(ctl, 'PUT', '/v1/servers/srv-45', { addresses: ['192.0.2.50'], routing: { exec: own('origin').exec } });
      expect(refused.body.error.problems).toEqual(['servers[1]: no device for srv-45: set exec and device in its routing settings']);
      expect((await call(ctl, 'PUT', '/v1/servers/srv-45', { addresses: ['192.0.2.50'], routing: own('origin') })).status).toBe(201);
      const cut = await call(ctl, 'POST', '/v1/servers/srv-45/cutover?wait=30', { transit: TRANSIT });
      expect(cut.body.state).toBe('succeeded');
      expect(await servedBy('192.0.2.50')).toBe(TRANSIT);
      expect(await servedBy('2001:db8:ffff::50')).toBe(ORIGIN);
      expect((await call(ctl, 'POST', '/v1/servers/srv-45/cutback?wait=30')).body.state).toBe('succeeded');
      expect(await servedBy('192.0.2.50')).toBe(ORIGIN);
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-45')).status).toBe(204);
      expect((await call(ctl, 'GET', '/v1/servers/srv-45')).status).toBe(404);
    } finally {
      await ctl.stop();
    }
  }, 120_000);

  test('http: main IPs in the entries; a server added through the API is switched at the provider, then removed', async () => {
    const robot = await FakeRobot.start({
      username: 'robot-user', password: 'robot-secret-pw',
      servers: [{ ip: '192.0.2.42' }, { ip: '192.0.2.43' }, { ip: '192.0.2.44' }, { ip: '192.0.2.45' }],
      failovers: [
        { ip: '203.0.113.10', serverIp: '192.0.2.42', activeServerIp: '192.0.2.42' },
        { ip: '203.0.113.12', serverIp: '192.0.2.44', activeServerIp: '192.0.2.44' },
      ],
    });
    const ctl = await startController({
      zonesDir: ZONES, dir: tempDir(),
      env: { ROBOT_USER: 'robot-user', ROBOT_PASSWORD: 'robot-secret-pw' },
      sections: {
        servers: [{ name: ORIGIN, addresses: ['203.0.113.10'], routing: { main_ip: '192.0.2.42' } }],
        transits: [{ name: TRANSIT, addresses: ['198.51.100.20'], routing: { main_ip: '192.0.2.43' } }],
        state: { path: './state.db' },
        routing: { backend: 'http', retry: RETRY, http: { base_url: robot.url, username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 5000 } },
      },
    });
    try {
      expect((await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.12'] })).body.error.problems)
        .toEqual(['servers[1]: no main IP for srv-44: set main_ip in its routing settings']);
      expect((await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.12'], routing: { main_ip: '192.0.2.444' } })).body.error.problems)
        .toEqual(['servers[1].routing.main_ip: "192.0.2.444" is not an IPv4 address']);
      expect((await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.12'], routing: { main_ip: '192.0.2.44' } })).status).toBe(201);
      expect((await call(ctl, 'POST', '/v1/servers/srv-44/cutover?wait=30', { transit: TRANSIT })).body.state).toBe('succeeded');
      expect(robot.activeServerIp('203.0.113.12')).toBe('192.0.2.43');
      expect(robot.activeServerIp('203.0.113.10')).toBe('192.0.2.42');
      expect((await call(ctl, 'POST', '/v1/servers/srv-44/cutback?wait=30')).body.state).toBe('succeeded');
      expect(robot.activeServerIp('203.0.113.12')).toBe('192.0.2.44');
      // the transit's main IP edited: refused when another host has it; the next cutover goes to the new one
      expect((await call(ctl, 'PUT', `/v1/transits/${TRANSIT}`, { addresses: ['198.51.100.20'], routing: { main_ip: '192.0.2.44' } })).body.error.problems)
        .toEqual(['transits[0].routing.main_ip: 192.0.2.44 is already the main IP of srv-44']);
      expect((await call(ctl, 'PUT', `/v1/transits/${TRANSIT}`, { addresses: ['198.51.100.20'], routing: { main_ip: '192.0.2.45' } })).status).toBe(200);
      const moved = await call(ctl, 'POST', '/v1/servers/srv-44/cutover?wait=30', { transit: TRANSIT });
      expect([moved.body.state, moved.body.error]).toEqual(['succeeded', null]);
      expect(robot.activeServerIp('203.0.113.12')).toBe('192.0.2.45');
      expect((await call(ctl, 'POST', '/v1/servers/srv-44/cutback?wait=30')).body.state).toBe('succeeded');
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-44')).status).toBe(204);
      expect((await call(ctl, 'GET', '/v1/servers/srv-44')).status).toBe(404);
    } finally {
      await ctl.stop();
      await robot.close();
    }
  }, 120_000);
});

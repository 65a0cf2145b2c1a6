/**
 * The whole migration through the API, in the namespace lab with the linux-route backend:
 * migration requested (transit assigned; a second server of the same profile queued), the cutover
 * refused while accounts are home, two accounts moved (the DNS of each switches at its own move,
 * checked with real queries), cutover, reinstalled, cutback, accounts back, migration completed and
 * the transit handed to the waiting server. `failoverctl status` shows it as a person reads it.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, urlOf, type Lab } from '../support/netns-lab.js';
import { buildQuery, decode, ipOf, T, udpExchange } from '../dns/tiny-dns.js';

let lab: Lab;
let ctl: ControllerHandle;
beforeAll(async () => {
  lab = await createLab();
  const lr = lab.linuxRoute;
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
    sections: {
      servers: [
        { name: 'srv-42', profile: 'vps-4c-8g', monthly_price: '29.99', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] },
        { name: 'srv-43', profile: 'vps-4c-8g', monthly_price: '31.00', addresses: ['203.0.113.30'] },
      ],
      transits: [{ name: 'transit-3', profile: 'vps-4c-8g', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
      accounts: [
        { name: 'acme', server: 'srv-42', zones: ['acme.test'] },
        { name: 'shop', server: 'srv-42', zones: ['shop.test'] },
        { name: 'other', server: 'srv-43', zones: ['other.test'] },
      ],
      billing: { free_days: 14, currency: 'EUR' },
      state: { path: './state.db' },
      routing: {
        backend: 'linux-route',
        linux_route: { router: lr.router, next_hops: { ...lr.nextHops, 'srv-43': ['192.0.2.4'] }, hosts: lr.hosts },
      },
    },
  });
}, 90_000);
afterAll(async () => {
  await ctl?.stop();
  await lab?.destroy();
});

async function dns(name: string, type: number = T.A) {
  const r = decode((await udpExchange(ctl.dnsPort, buildQuery(name, { type })))!);
  return r.answers.filter((a) => a.type === type).map((a) => `${ipOf(a)}/${a.ttl}`).sort().join(' ');
}
async function serial(zone: string) {
  const r = decode((await udpExchange(ctl.dnsPort, buildQuery(zone, { type: T.SOA })))!);
  return r.answers[0].rdata.readUInt32BE(r.answers[0].rdata.length - 20);
}
const json = (r: { status: number; body: string }) => ({ status: r.status, body: JSON.parse(r.body) });
const post = async (path: string, body: unknown = {}) => json(await ctl.post(path, body));
const get = async (path: string) => json(await ctl.get(path));
const move = (account: string, to: string, phase: string) => post(`/v1/accounts/${account}/move`, { to, phase });

describe('migration lifecycle', () => {
  test('request → accounts to transit (DNS per move) → cutover → reinstalled → cutback → accounts home → transit to the next server', async () => {
    const reinstallAt = new Date(Date.now() + 6 * 3600_000).toISOString();
    const req = await post('/v1/servers/srv-42/migration', { reinstall_at: reinstallAt });
    expect(req.status).toBe(201);
    expect(req.body).toMatchObject({ state: 'transit_assigned', transit: 'transit-3', queue_position: null });
    expect(req.body.ttl_plan).toMatchObject({ max_ttl: 3600, lowered_ttl: 60 });
    const waiting = await post('/v1/servers/srv-43/migration');
    expect(waiting.body).toMatchObject({ state: 'waiting_for_transit', transit: null, queue_position: 1 });
    expect((await post('/v1/servers/srv-42/migration')).status).toBe(200);

    // the cutover is guarded while accounts are home
    const refused = await post('/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('ACCOUNTS_NOT_ON_TRANSIT');
    expect(refused.body.error.accounts.map((a: { name: string }) => a.name).sort()).toEqual(['acme', 'shop']);
    expect(await dns('acme.test')).toBe('203.0.113.10/3600');

    // accounts move one by one; each one's zones switch at its own move
    const s0 = await serial('acme.test');
    expect((await move('acme', 'transit', 'started')).body.location).toBe('moving_to_transit');
    expect(await dns('acme.test')).toBe('203.0.113.10/3600');
    const done = await move('acme', 'transit', 'completed');
    expect(done.body).toMatchObject({ location: 'transit', migration_state: 'accounts_to_transit' });
    expect(await dns('acme.test')).toBe('198.51.100.20/60');
    expect(await dns('www.acme.test')).toBe('198.51.100.20/60');
    expect(await dns('shop.test')).toBe('203.0.113.11/1800');
    expect(await serial('acme.test')).toBeGreaterThan(s0);
    await move('shop', 'transit', 'started');
    expect((await move('shop', 'transit', 'completed')).body.migration_state).toBe('ready_for_reinstall');
    expect(await dns('shop.test')).toBe('198.51.100.21/60');
    expect(await dns('shop.test', T.AAAA)).toBe('2001:db8:3:0:0:0:0:20/60');
    expect(await dns('other.test')).toBe('203.0.113.30/3600');

    // cutover: traffic to the server's own addresses reaches the transit
    const cut = await post('/v1/servers/srv-42/cutover?wait=30', { transit: 'transit-3' });
    expect(cut.body.state).toBe('succeeded');
    expect((await get('/v1/servers/srv-42/migration')).body.state).toBe('reinstalling');
    expect(await lab.httpFrom(lab.ns.client, urlOf('203.0.113.10'), 1000)).toBe('transit-3');
    expect((await post('/v1/servers/srv-42/reinstalled')).body.reinstalled_at).not.toBeNull();
    // a second report is refused with the state and what is allowed
    const again = await post('/v1/servers/srv-42/reinstalled');
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'INVALID_TRANSITION', state: 'reinstalling' });

    // cutback: routes home; accounts still on the transit keep their DNS until they move back
    const back = await post('/v1/servers/srv-42/cutback?wait=30');
    expect(back.body.state).toBe('succeeded');
    expect(await lab.httpFrom(lab.ns.client, urlOf('203.0.113.10'), 1000)).toBe('srv-42');
    expect((await get('/v1/servers/srv-42/migration')).body.state).toBe('accounts_back');
    expect(await dns('acme.test')).toBe('198.51.100.20/60');
    await move('acme', 'home', 'started');
    await move('acme', 'home', 'completed');
    expect(await dns('acme.test')).toMatch(/^203\.0\.113\.10\/(60|3600)$/);
    expect(await dns('shop.test')).toBe('198.51.100.21/60');
    await move('shop', 'home', 'started');
    const last = await move('shop', 'home', 'completed');
    expect(last.body.migration_state).toBe('completed');

    // the transit goes to the server that waited
    const m = await get('/v1/servers/srv-42/migration');
    expect(m.body).toMatchObject({ state: 'completed', billing: { billable_days: 0, amount: '0.00', currency: 'EUR' } });
    expect(m.body.accounts.map((a: { location: string }) => a.location)).toEqual(['home', 'home']);
    expect(m.body.accounts[0].moves).toHaveLength(2);
    expect((await get('/v1/servers/srv-43/migration')).body).toMatchObject({ state: 'transit_assigned', transit: 'transit-3' });
    const pool = await get('/v1/transits');
    expect(pool.body.transits).toEqual([expect.objectContaining({ name: 'transit-3', profile: 'vps-4c-8g', held_by: 'srv-43' })]);
    expect(pool.body.queue).toEqual([]);

    const metrics = (await ctl.get('/metrics', false)).body;
    expect(metrics).toMatch(/^failover_migrations\{state="completed"\} 1$/m);
    expect(metrics).toMatch(/^failover_transits_free\{profile="vps-4c-8g"\} 0$/m);
    expect(metrics).toMatch(/^failover_account_move_downtime_seconds_count\{direction="transit"\} 2$/m);

    // failoverctl status shows the migration as a person reads it
    const out = await promisify(execFile)(process.execPath, [CLI, 'status', 'srv-43', '--api', `http://127.0.0.1:${ctl.apiPort}`], { env: { ...process.env, FAILOVER_API_TOKEN: ctl.token } });
    expect(out.stdout).toContain('migration: transit assigned, transit transit-3');
    expect(out.stdout).toMatch(/free until \d{4}-/);
    expect(out.stdout).toContain('billed so far: 0.00 EUR (0 billable days)');
    expect(out.stdout).toMatch(/other\s+home/);
    console.log(out.stdout);
  }, 120_000);
});

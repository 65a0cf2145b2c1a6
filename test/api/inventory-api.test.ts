/** Inventory edits through the API: validated as the config file is, persisted across restarts, guarded while in use. */
import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { buildQuery, decode, ipOf, udpExchange } from '../dns/tiny-dns.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-inv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const start = () => startController({
  zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
  dir,
  sections: {
    servers: [{ name: 'srv-42', profile: 'vps', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
    transits: [{ name: 'transit-3', profile: 'vps', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
    accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }],
    state: { path: './state.db' },
    routing: { backend: 'dry-run' },
  },
});

async function call(ctl: ControllerHandle, method: string, path: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method, headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

describe('inventory API', () => {
  test('add, validate, guard, persist', async () => {
    let ctl = await start();
    try {
      const added = await call(ctl, 'PUT', '/v1/servers/srv-43', { profile: 'vps', monthly_price: '19.90', addresses: ['203.0.113.30'] });
      expect(added.status).toBe(201);
      expect(added.body).toEqual({ name: 'srv-43', profile: 'vps', monthly_price: '19.90', addresses: ['203.0.113.30'] });
      expect((await call(ctl, 'PUT', '/v1/accounts/other', { server: 'srv-43', zones: ['other.test'] })).status).toBe(201);

      const bad = await call(ctl, 'PUT', '/v1/servers/srv-44', { addresses: ['203.0.113.300', '203.0.113.10'] });
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe('INVALID_INVENTORY');
      expect(bad.body.error.problems).toEqual([
        'servers[2].addresses[0]: "203.0.113.300" is not an IPv4 address',
        'servers[2].addresses[1]: 203.0.113.10 is already listed at servers[0].addresses[0] (srv-42)',
      ]);
      expect((await call(ctl, 'PUT', '/v1/accounts/ghost', { server: 'srv-99', zones: ['ghost.test'] })).body.error.problems).toEqual(['accounts[2].server: no server named "srv-99"']);
      expect((await call(ctl, 'PUT', '/v1/servers/srv-45', { addresses: ['203.0.113.31'], colour: 'red' })).body.error.message).toBe('colour: unknown field (allowed: name, addresses, pairs, profile, monthly_price, routing)');
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-42')).body.error).toMatchObject({ code: 'IN_USE', message: 'srv-42 is the home of account(s) acme; move or remove them first' });
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-99')).status).toBe(404);

      // a server added through the API cuts over like any other; it cannot change while cut over
      const cut = await call(ctl, 'POST', '/v1/servers/srv-43/cutover?wait=10', { transit: 'transit-3' });
      expect(cut.body.state).toBe('succeeded');
      const a = decode((await udpExchange(ctl.dnsPort, buildQuery('other.test')))!);
      expect(ipOf(a.answers[0])).toBe('198.51.100.20');
      expect((await call(ctl, 'PUT', '/v1/servers/srv-43', { profile: 'vps', addresses: ['203.0.113.32'] })).body.error).toMatchObject({ code: 'IN_USE', message: 'srv-43 cannot change now: it is cut over' });
      expect((await call(ctl, 'POST', '/v1/servers/srv-43/cutback?wait=10')).body.state).toBe('succeeded');

      // edits survive a restart
      await ctl.kill();
      ctl = await start();
      const inv = await call(ctl, 'GET', '/v1/inventory');
      expect(inv.body.servers.map((s: { name: string }) => s.name)).toEqual(['srv-42', 'srv-43']);
      expect(inv.body.accounts.map((s: { name: string }) => s.name)).toEqual(['acme', 'other']);
      expect((await call(ctl, 'DELETE', '/v1/accounts/other')).status).toBe(204);
      expect((await call(ctl, 'DELETE', '/v1/servers/srv-43')).status).toBe(204);
      expect((await call(ctl, 'GET', '/v1/servers/srv-43')).status).toBe(404);
    } finally {
      await ctl.stop();
    }
  });

  test('a stored edit that no longer fits the file is named at start, not given a line the file does not have', async () => {
    const editDir = mkdtempSync(join(dir, 'edit-'));
    const sections = (extra: object[]) => ({
      servers: [{ name: 'srv-42', profile: 'vps', addresses: ['203.0.113.10'] }, ...extra],
      transits: [{ name: 'transit-3', profile: 'vps', addresses: ['198.51.100.20', '2001:db8:3::20'] }],
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    });
    const ctl = await startController({ zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'), dir: editDir, sections: sections([]) });
    try {
      expect((await call(ctl, 'PUT', '/v1/servers/srv-43', { profile: 'vps', addresses: ['203.0.113.30'] })).status).toBe(201);
    } finally {
      await ctl.stop();
    }
    // the file now gives that address to another server
    const failed = await startController({
      zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'), dir: editDir,
      sections: sections([{ name: 'srv-50', profile: 'vps', addresses: ['203.0.113.30'] }]),
    }).then(async (c) => {
      await c.stop();
      return '';
    }, (err: Error) => err.message);
    expect(failed).toMatch(/^controller exited with 2 /);
    expect(failed).toMatch(/config\.yaml: stored edit of server "srv-43" \(made 20\d\d-\d\d-\d\dT[0-9:.]+Z\): servers\[2\]\.addresses\[0\]: 203\.0\.113\.30 is already listed at servers\[1\]\.addresses\[0\] \(srv-50\)/);
  });
});

/** Tokens with roles on a running controller: config, roles, `requested_by`, log lines. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { buildQuery, decode, ipOf, udpExchange } from '../dns/tiny-dns.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-roles-'));
const READ = 'support-token-0123456789';
const JOBS = 'jobs-token-from-a-file-0123';
let ctl: ControllerHandle;
beforeAll(async () => {
  writeFileSync(join(dir, 'jobs.token'), `${JOBS}\n`);
  chmodSync(join(dir, 'jobs.token'), 0o600);
  const apiPort = await freePort();
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
    dir,
    apiPort,
    env: { FC_READ_TOKEN: READ },
    sections: {
      api: {
        listen: `127.0.0.1:${apiPort}`,
        tokens: [
          { name: 'ops', role: 'admin', token_env: 'FC_TEST_TOKEN' },
          { name: 'support', role: 'read', token_env: 'FC_READ_TOKEN' },
          { name: 'jobs', role: 'operate', token_file: 'jobs.token' },
        ],
      },
      servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
      transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
});
afterAll(async () => {
  await ctl?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, token: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}
const apex = async () => ipOf(decode((await udpExchange(ctl.dnsPort, buildQuery('hosted.test')))!).answers[0]);

describe('roles on a controller', () => {
  test('a read token reads and cannot cut over; operate cuts over and back, recorded by name; only admin edits the inventory', async () => {
    expect((await call('GET', '/v1/servers/srv-42', READ)).status).toBe(200);
    const forged = await call('POST', '/v1/servers/srv-42/cutover', READ, { transit: 'transit-3' });
    expect(forged).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN', role_needed: 'operate' } } });
    expect(await apex()).toBe('203.0.113.10');

    const op = await call('POST', '/v1/servers/srv-42/cutover?wait=30', JOBS, { transit: 'transit-3' });
    expect(op).toMatchObject({ status: 200, body: { state: 'succeeded', requested_by: 'jobs' } });
    expect((await call('GET', `/v1/operations/${op.body.id}`, READ)).body.requested_by).toBe('jobs');
    const back = await call('POST', '/v1/servers/srv-42/cutback?wait=30', ctl.token, {});
    expect(back).toMatchObject({ status: 200, body: { state: 'succeeded', requested_by: 'ops' } });

    expect((await call('PUT', '/v1/servers/srv-43', JOBS, { addresses: ['203.0.113.30'] })).body.error).toMatchObject({ code: 'FORBIDDEN', role_needed: 'admin' });
    expect((await call('PUT', '/v1/servers/srv-43', ctl.token, { addresses: ['203.0.113.30'] })).status).toBe(201);
  });

  test('log lines name the token, never show it', () => {
    const lines = ctl.output().split('\n').filter((l) => l.includes('"api request"')).map((l) => JSON.parse(l));
    expect(lines).toContainEqual(expect.objectContaining({ level: 40, method: 'POST', path: '/v1/servers/srv-42/cutover', status: 403, token: 'support' }));
    expect(lines).toContainEqual(expect.objectContaining({ level: 30, method: 'POST', path: '/v1/servers/srv-42/cutover', status: 200, token: 'jobs' }));
    expect(ctl.output()).toContain('"tokens":["ops (admin)","support (read)","jobs (operate)"]');
    for (const t of [READ, JOBS, ctl.token]) expect(ctl.output()).not.toContain(t);
  });
});

/** The cutover API's contract: status codes, stable error codes, validation, auth, idempotency. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { buildQuery, decode, ipOf, udpExchange } from '../dns/tiny-dns.js';

let ctl: ControllerHandle;
beforeAll(async () => {
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
    sections: {
      servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }, { name: 'srv-43', addresses: ['203.0.113.30'] }],
      transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }, { name: 'transit-4', addresses: ['198.51.100.40', '198.51.100.41', '2001:db8:4::40'] }],
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
});
afterAll(async () => {
  await ctl?.stop();
});

async function call(method: string, path: string, body?: string, auth: string | null = `Bearer ${ctl?.token}`) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method,
    headers: { ...(auth ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}
const apex = async () => ipOf(decode((await udpExchange(ctl.dnsPort, buildQuery('hosted.test')))!).answers[0]);

describe('cutover API', () => {
  test.each([
    ['no token', 'POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-3"}', null, 401, 'UNAUTHORIZED'],
    ['a wrong token', 'POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-3"}', 'Bearer wrong', 401, 'UNAUTHORIZED'],
    ['a path-traversal name', 'POST', '/v1/servers/..%2Fx/cutover', '{"transit":"transit-3"}', undefined, 400, 'BAD_REQUEST'],
    ['a name with a shell metacharacter', 'POST', '/v1/servers/srv%3Breboot/cutover', '{"transit":"transit-3"}', undefined, 400, 'BAD_REQUEST'],
    ['a transit with a shell metacharacter', 'POST', '/v1/servers/srv-42/cutover', '{"transit":"t;reboot"}', undefined, 400, 'BAD_REQUEST'],
    ['an unknown server', 'POST', '/v1/servers/srv-99/cutover', '{"transit":"transit-3"}', undefined, 404, 'SERVER_NOT_FOUND'],
    ['an unknown transit', 'POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-9"}', undefined, 404, 'TRANSIT_NOT_FOUND'],
    ['a body that is not JSON', 'POST', '/v1/servers/srv-42/cutover', '{"transit":', undefined, 400, 'BAD_REQUEST'],
    ['a body that is a list', 'POST', '/v1/servers/srv-42/cutover', '["transit-3"]', undefined, 400, 'BAD_REQUEST'],
    ['an oversized body', 'POST', '/v1/servers/srv-42/cutover', JSON.stringify({ transit: 'x'.repeat(2 << 20) }), undefined, 413, 'PAYLOAD_TOO_LARGE'],
    ['a bad wait', 'POST', '/v1/servers/srv-42/cutover?wait=soon', '{"transit":"transit-3"}', undefined, 400, 'BAD_REQUEST'],
    ['a cutback with nothing cut over', 'POST', '/v1/servers/srv-42/cutback', '{}', undefined, 409, 'NOT_CUT_OVER'],
    ['an unknown operation', 'GET', '/v1/operations/op-nope', undefined, undefined, 404, 'OPERATION_NOT_FOUND'],
  ])('%s: %s %s → nothing changes', async (_n, method, path, body, auth, status, code) => {
    const r = await call(method, path, body, auth === undefined ? `Bearer ${ctl.token}` : auth);
    expect(r.status).toBe(status);
    expect(r.body.error.code).toBe(code);
    expect(typeof r.body.error.message).toBe('string');
    expect(await apex()).toBe('203.0.113.10');
  });

  test('a malformed body is 400 listing every problem', async () => {
    const r = await call('POST', '/v1/servers/srv-42/cutover', '{"transit":3,"colour":"red"}');
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe('transit: must be a string, not 3; colour: unknown field (allowed: transit, force)');
  });

  test('cutover 202 → same again 200 (same operation) → other transit 409 → cutback → 409 when nothing is cut over', async () => {
    const first = await call('POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-3"}');
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ server: 'srv-42', transit: 'transit-3', direction: 'cutover', backend: 'dry-run' });
    expect(await apex()).toBe('198.51.100.20');
    const again = await call('POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-3"}');
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const other = await call('POST', '/v1/servers/srv-42/cutover', '{"transit":"transit-4"}');
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('ALREADY_CUT_OVER');
    const inUse = await call('POST', '/v1/servers/srv-43/cutover', '{"transit":"transit-3"}');
    expect(inUse.status).toBe(409);
    expect(inUse.body.error.code).toBe('TRANSIT_IN_USE');
    const op = await call('GET', `/v1/operations/${first.body.id}`);
    expect(op.body.state).toBe('succeeded');
    expect(Object.keys(op.body.timestamps)).toEqual(['accepted', 'dns_switched', 'routes_applied', 'finished']);
    const status = await call('GET', '/v1/servers/srv-42');
    expect(status.body.overlay).toMatchObject({ active: true, transit: 'transit-3', ttl_cap: 60 });
    expect(status.body.addresses.map((a: any) => a.routed_to)).toEqual(['transit-3', 'transit-3', 'transit-3']);
    const back = await call('POST', '/v1/servers/srv-42/cutback?wait=10', '{}');
    expect(back.status).toBe(200);
    expect(back.body.state).toBe('succeeded');
    expect(await apex()).toBe('203.0.113.10');
    const none = await call('POST', '/v1/servers/srv-42/cutback', '{}');
    expect(none.status).toBe(409);
  });
});

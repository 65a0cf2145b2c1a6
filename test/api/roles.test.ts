/**
 * Tokens with roles, in process: each route's role, 401 for unknown tokens, 403 FORBIDDEN naming
 * the role for a known one without it, the token's name (never the token) in the log line, and
 * a follower that checks the role before handing a call to the leader (which checks it again).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createApiApp, type ApiDeps } from '../../src/api/app.js';
import { roleAllows } from '../../src/api/auth.js';
import type { ApiToken } from '../../src/api/config-schema.js';
import { roleFor, ROUTES } from '../../src/api/route-catalog.js';
import type { ClusterView } from '../../src/api/routes/cluster-routes.js';
import type { ReplicaInfo } from '../../src/core/ports.js';

const TOKENS: ApiToken[] = [
  { name: 'support', role: 'read', token: 'read-token-0123456789' },
  { name: 'jobs', role: 'operate', token: 'operate-token-0123456789' },
  { name: 'ops', role: 'admin', token: 'admin-token-0123456789' },
];
const bearer = (name: string) => `Bearer ${TOKENS.find((t) => t.name === name)!.token}`;

interface App { url: string; logs: string[]; server: Server }

async function start(extra: Partial<ApiDeps> & { tokens?: ApiToken[] } = {}): Promise<App> {
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } });
  const app = createApiApp({
    registry: new Registry(), logger: pino({ level: 'debug' }, sink), tokens: TOKENS,
    ready: () => true, zones: () => [], zoneErrors: () => [], ...extra,
  });
  const server = await new Promise<Server>((res) => { const s = app.listen(0, '127.0.0.1', () => res(s)); });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, logs, server };
}
const stop = (a: App | undefined) => new Promise<void>((res) => (a ? a.server.close(() => res()) : res()));

async function call(a: App, method: string, path: string, auth?: string, body?: unknown) {
  const r = await fetch(a.url + path, {
    method, headers: { ...(auth ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, servedBy: r.headers.get('x-failover-served-by') };
}

describe('roles', () => {
  test('read < operate < admin', () => {
    expect([['read', 'read'], ['operate', 'read'], ['admin', 'operate'], ['admin', 'admin']].every(([h, n]) => roleAllows(h as never, n as never))).toBe(true);
    expect([['read', 'operate'], ['operate', 'admin'], ['read', 'admin']].some(([h, n]) => roleAllows(h as never, n as never))).toBe(false);
  });

  test.each([
    ['GET', '/servers/srv-42', 'read'],
    ['HEAD', '/servers', 'read'],
    ['POST', '/mx-audit', 'read'],
    ['GET', '/mx-audit/example.com', 'read'],
    ['POST', '/servers/srv-42/cutover', 'operate'],
    ['POST', '/SERVERS/srv-42/CUTOVER/', 'operate'],
    ['POST', '/servers/srv-42/cutback', 'operate'],
    ['POST', '/operations/op-1/retry', 'operate'],
    ['POST', '/accounts/acme/move', 'operate'],
    ['POST', '/servers/srv-42/migration', 'operate'],
    ['DELETE', '/servers/srv-42/migration', 'operate'],
    ['POST', '/servers/srv-42/reinstalled', 'operate'],
    ['POST', '/routing/reconcile', 'operate'],
    ['PUT', '/servers/srv-42', 'admin'],
    ['DELETE', '/accounts/acme', 'admin'],
    ['PUT', '/transits/transit-3', 'admin'],
    // no route: reading needs read, anything else admin (never less than a route express might still match)
    ['GET', '/nothing', 'read'],
    ['POST', '/servers/srv-42/whatever', 'admin'],
    ['PATCH', '/servers/srv-42', 'admin'],
  ])('%s %s needs %s', (method, path, role) => {
    expect(roleFor(method, path)).toBe(role);
  });

  test('every mutating route needs more than read; every GET read', () => {
    expect(ROUTES.filter((r) => (r.method === 'get') !== (r.role === 'read') && r.path !== '/mx-audit')).toEqual([]);
  });
});

describe('tokens on a replica', () => {
  let a: App;
  beforeAll(async () => {
    a = await start();
  });
  afterAll(() => stop(a));

  test.each(['support', 'jobs', 'ops'])('%s reads', async (name) => {
    expect((await call(a, 'GET', '/v1/zones', bearer(name))).status).toBe(200);
  });

  test.each([
    ['no token', undefined],
    ['an unknown token', 'Bearer not-a-known-token'],
    ['a known token with a suffix', `${bearer('ops')}x`],
    ['an empty bearer', 'Bearer '],
  ])('%s: 401', async (_n, auth) => {
    const r = await call(a, 'GET', '/v1/zones', auth);
    expect(r).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'a valid bearer token is required' } } });
  });

  test.each([
    ['support', 'POST', '/v1/servers/srv-42/cutover', 'operate'],
    ['support', 'PUT', '/v1/servers/srv-44', 'admin'],
    ['jobs', 'DELETE', '/v1/transits/transit-3', 'admin'],
    ['support', 'POST', '/v1/accounts/acme/move', 'operate'],
  ])('%s: %s %s is 403 naming the %s role', async (name, method, path, role) => {
    const r = await call(a, method, path, bearer(name), {});
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: { code: 'FORBIDDEN', message: `this call needs the ${role} role; token "${name}" has the ${TOKENS.find((t) => t.name === name)!.role} role`, role_needed: role } });
  });

  test('a role allowed goes through to the route (here none is mounted: 404)', async () => {
    expect((await call(a, 'POST', '/v1/servers/srv-42/cutover', bearer('jobs'), { transit: 'transit-3' })).status).toBe(404);
    expect((await call(a, 'PUT', '/v1/servers/srv-44', bearer('ops'), {})).status).toBe(404);
  });

  test('the log line names the token, never the token itself', async () => {
    await call(a, 'POST', '/v1/servers/srv-42/cutover', bearer('support'), {});
    const lines = a.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'api request');
    expect(lines).toContainEqual(expect.objectContaining({ method: 'POST', path: '/v1/servers/srv-42/cutover', status: 403, code: 'FORBIDDEN', token: 'support' }));
    expect(lines).toContainEqual(expect.objectContaining({ method: 'GET', path: '/v1/zones', status: 401, token: null }));
    for (const t of TOKENS) expect(a.logs.join('')).not.toContain(t.token);
  });
});

describe('a follower hands calls to the leader only after checking the role', () => {
  let leader: App;
  let follower: App;
  beforeAll(async () => {
    const cluster = (self: ReplicaInfo, lead: () => ReplicaInfo, leading: boolean): ClusterView => ({
      leadership: { self, isLeader: () => leading, leader: lead, replicas: () => [lead(), self], onChange: () => () => {}, stop: async () => {} },
      inSync: () => true, revision: () => 1,
    });
    // the leader knows "jobs" as a read token: it checks again and refuses what the follower let through
    const leaderTokens = TOKENS.map((t) => (t.name === 'jobs' ? { ...t, role: 'read' as const } : t));
    let leaderInfo: ReplicaInfo = { name: 'r1', api: 'http://127.0.0.1:1' };
    leader = await start({ tokens: leaderTokens, cluster: cluster({ name: 'r1', api: '' }, () => leaderInfo, true) });
    leaderInfo = { name: 'r1', api: leader.url };
    follower = await start({ cluster: cluster({ name: 'r2', api: 'http://127.0.0.1:2' }, () => leaderInfo, false) });
  });
  afterAll(async () => {
    await stop(follower);
    await stop(leader);
  });

  const leaderSaw = () => leader.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'api request' && l.method === 'POST');

  test('a read token is refused by the follower: nothing reaches the leader', async () => {
    const r = await call(follower, 'POST', '/v1/servers/srv-42/cutover', bearer('support'), { transit: 'transit-3' });
    expect(r).toMatchObject({ status: 403, servedBy: null, body: { error: { code: 'FORBIDDEN' } } });
    expect(leaderSaw()).toEqual([]);
  });

  test('an allowed call is taken by the leader, which checks the role again', async () => {
    const ops = await call(follower, 'POST', '/v1/servers/srv-42/cutover', bearer('ops'), { transit: 'transit-3' });
    expect(ops).toMatchObject({ status: 404, servedBy: 'r1' }); // the leader has no cutover route mounted
    const jobs = await call(follower, 'POST', '/v1/servers/srv-42/cutover', bearer('jobs'), { transit: 'transit-3' });
    expect(jobs).toMatchObject({ status: 403, servedBy: 'r1', body: { error: { code: 'FORBIDDEN', message: expect.stringContaining('"jobs" has the read role') } } });
    expect(leaderSaw().map((l) => [l.token, l.status])).toEqual([['ops', 404], ['jobs', 403]]);
  });
});

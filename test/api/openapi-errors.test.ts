/**
 * Every error code a route documents of its own (the route catalogue's `errors`, in the OpenAPI
 * document) is one it returns: a running controller is driven through a migration, cutover and
 * cutback, and through operations whose routing fails (a provider API that cannot be reached), each step asking
 * for one documented refusal. At the end each route has returned exactly its documented codes,
 * and every success answer of a route documented with a schema fits it.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { statusOf } from '../../src/api/openapi.js';
import { routeOf, ROUTES } from '../../src/api/route-catalog.js';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { waitFor } from '../support/wait-for.js';

/** The success answers of routes documented with a schema, and how each fits it. */
const answers: { route: string; problems: string[] }[] = [];
const seen = new Map<string, Set<string>>(ROUTES.map((r) => [`${r.method} ${r.path}`, new Set<string>()]));

async function call(ctl: ControllerHandle, method: string, path: string, body?: unknown) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method, headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  const route = routeOf(method, new URL(path, 'http://x').pathname.slice('/v1'.length));
  if (route && r.status >= 400 && json?.error?.code) seen.get(`${route.method} ${route.path}`)!.add(json.error.code);
  if (route?.answer && r.status < 300) {
    const parsed = route.answer.safeParse(json);
    answers.push({ route: `${route.method} ${route.path}`, problems: parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
  }
  return { status: r.status, body: json };
}

/** A step: the call and the code it must be refused with (null: accepted). */
type Step = [string, string, unknown, string | null];

async function run(ctl: ControllerHandle, steps: Step[]) {
  for (const [method, path, body, code] of steps) {
    const r = await call(ctl, method, path, body);
    const got = { step: `${method} ${path}`, status: r.status, code: r.body?.error?.code ?? null };
    expect(got).toEqual({ step: `${method} ${path}`, status: code ? statusOf(code) : r.status, code });
    if (!code) expect(r.status).toBeLessThan(300);
  }
}

const SRV42 = ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'];
const T3 = ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'];

describe('each route returns each error code it documents', () => {
  let ctl: ControllerHandle;
  let failing: ControllerHandle;
  beforeAll(async () => {
    ctl = await startController({
      zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
      sections: {
        servers: [
          { name: 'srv-42', profile: 'vps', addresses: SRV42 },
          { name: 'srv-43', profile: 'vps', addresses: ['203.0.113.30'] },
          { name: 'srv-44', profile: 'dedicated', addresses: ['203.0.113.40'] },
        ],
        transits: [
          { name: 'transit-3', profile: 'vps', addresses: T3 },
          { name: 'transit-4', profile: 'small', addresses: ['198.51.100.40'] },
          { name: 'transit-5', profile: 'spare', addresses: ['198.51.100.50', '198.51.100.51', '2001:db8:5::50'] },
        ],
        accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }, { name: 'shop', server: 'srv-43', zones: ['shop.test'] }],
        state: { path: './state.db' },
        routing: { backend: 'dry-run' },
      },
    });
    // a provider's failover API that cannot be reached: each operation runs while routing is tried, then fails
    failing = await startController({
      zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
      sections: {
        servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11'] }],
        transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21'] }],
        state: { path: './state.db' },
        routing: {
          backend: 'http',
          retry: { deadline_s: 2, min_delay_ms: 10, max_delay_ms: 100 },
          http: { base_url: 'http://127.0.0.1:9', username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 500, server_ips: { 'srv-42': '192.0.2.42', 'transit-3': '192.0.2.43' } },
        },
      },
      env: { ROBOT_USER: 'user', ROBOT_PASSWORD: 'password' },
    });
  });
  afterAll(async () => {
    await ctl?.stop();
    await failing?.stop();
  });

  test('refusals before anything exists, along a migration, a cutover and a cutback', async () => {
    await run(ctl, [
      ['GET', '/v1/whoami', undefined, null],
      ['GET', '/v1/servers/srv-99', undefined, 'SERVER_NOT_FOUND'],
      ['POST', '/v1/servers/srv-99/cutover', { transit: 'transit-3' }, 'SERVER_NOT_FOUND'],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-9' }, 'TRANSIT_NOT_FOUND'],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-4' }, 'TRANSIT_TOO_SMALL'],
      ['POST', '/v1/servers/srv-99/cutback', {}, 'SERVER_NOT_FOUND'],
      ['POST', '/v1/servers/srv-42/cutback', {}, 'NOT_CUT_OVER'],
      ['GET', '/v1/operations/op-nope', undefined, 'OPERATION_NOT_FOUND'],
      ['POST', '/v1/operations/op-nope/retry', {}, 'OPERATION_NOT_FOUND'],
      ['GET', '/v1/accounts/nobody', undefined, 'ACCOUNT_NOT_FOUND'],
      ['POST', '/v1/accounts/nobody/move', { to: 'transit', phase: 'started' }, 'ACCOUNT_NOT_FOUND'],
      ['POST', '/v1/accounts/acme/move', { to: 'transit', phase: 'started' }, 'NO_MIGRATION'],
      ['GET', '/v1/servers/srv-42/migration', undefined, 'MIGRATION_NOT_FOUND'],
      ['DELETE', '/v1/servers/srv-42/migration', undefined, 'NO_MIGRATION'],
      ['POST', '/v1/servers/srv-42/reinstalled', {}, 'NO_MIGRATION'],
      ['POST', '/v1/servers/srv-99/migration', {}, 'SERVER_NOT_FOUND'],
      ['POST', '/v1/servers/srv-44/migration', {}, 'NO_TRANSIT_FOR_PROFILE'],
      ['DELETE', '/v1/servers/srv-99', undefined, 'SERVER_NOT_FOUND'],
      ['DELETE', '/v1/transits/transit-9', undefined, 'TRANSIT_NOT_FOUND'],
      ['DELETE', '/v1/accounts/nobody', undefined, 'ACCOUNT_NOT_FOUND'],
      ['PUT', '/v1/servers/srv-46', { addresses: ['203.0.113.300'] }, 'INVALID_INVENTORY'],
      ['PUT', '/v1/transits/transit-6', { addresses: ['nope'] }, 'INVALID_INVENTORY'],
      ['PUT', '/v1/accounts/other', { server: 'srv-99', zones: ['other.test'] }, 'INVALID_INVENTORY'],
      ['DELETE', '/v1/servers/srv-42', undefined, 'IN_USE'],
      // a migration: transit-3 assigned
      ['POST', '/v1/servers/srv-42/migration', { reinstall_at: '2030-01-01T06:00:00Z' }, null],
      ['GET', '/v1/servers/srv-42/migration', undefined, null],
      // srv-43 waits for a transit of its profile, then gives up
      ['POST', '/v1/servers/srv-43/migration', {}, null],
      ['DELETE', '/v1/servers/srv-43/migration', undefined, null],
      ['POST', '/v1/servers/srv-42/reinstalled', {}, 'INVALID_TRANSITION'],
      ['POST', '/v1/accounts/acme/move', { to: 'home', phase: 'started' }, 'MOVE_NOT_ALLOWED'],
      ['POST', '/v1/accounts/acme/move', { to: 'transit', phase: 'completed' }, 'INVALID_TRANSITION'],
      // an account added to the server after its migration was requested is not part of it
      ['PUT', '/v1/accounts/late', { server: 'srv-42', zones: ['other.test'] }, null],
      ['POST', '/v1/accounts/late/move', { to: 'transit', phase: 'started' }, 'UNKNOWN_ACCOUNT'],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-5' }, 'TRANSIT_MISMATCH'],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' }, 'ACCOUNTS_NOT_ON_TRANSIT'],
      ['PUT', '/v1/servers/srv-42', { profile: 'vps', addresses: SRV42 }, 'IN_USE'],
      ['PUT', '/v1/transits/transit-3', { profile: 'vps', addresses: T3 }, 'IN_USE'],
      ['DELETE', '/v1/transits/transit-3', undefined, 'IN_USE'],
      ['POST', '/v1/accounts/acme/move', { to: 'transit', phase: 'started' }, null],
      ['POST', '/v1/accounts/acme/move', { to: 'home', phase: 'started' }, 'ACCOUNT_NOT_MOVABLE'],
      ['DELETE', '/v1/servers/srv-42/migration', undefined, 'CANCEL_BLOCKED'],
      ['PUT', '/v1/accounts/acme', { server: 'srv-42', zones: ['acme.test'] }, 'IN_USE'],
      ['DELETE', '/v1/accounts/acme', undefined, 'IN_USE'],
      ['POST', '/v1/accounts/acme/move', { to: 'transit', phase: 'completed' }, null],
      // the cutover
      ['POST', '/v1/servers/srv-42/cutover?wait=30', { transit: 'transit-3' }, null],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-5' }, 'ALREADY_CUT_OVER'],
      ['POST', '/v1/servers/srv-43/cutover', { transit: 'transit-3' }, 'TRANSIT_IN_USE'],
      ['POST', '/v1/accounts/acme/move', { to: 'transit', phase: 'completed' }, 'ACCOUNT_NOT_MOVING'],
      ['POST', '/v1/servers/srv-42/reinstalled', {}, null],
    ]);
    const done = (await call(ctl, 'GET', '/v1/servers/srv-42')).body.operations[0];
    await run(ctl, [
      ['POST', `/v1/operations/${done.id}/retry`, {}, 'NOT_RETRYABLE'],
      ['POST', '/v1/servers/srv-42/cutback?wait=30', {}, null],
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' }, 'INVALID_TRANSITION'],
    ]);
  });

  test('refusals while an operation runs, and after one failed', async () => {
    const cutover = await call(failing, 'POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(cutover.body.state).toBe('running');
    await run(failing, [['POST', '/v1/servers/srv-42/cutback', {}, 'OPERATION_IN_PROGRESS']]);
    const failed = (id: string) => waitFor(`operation ${id} to fail`, async () => (await call(failing, 'GET', `/v1/operations/${id}`)).body.state === 'failed', { pollMs: 100 });
    await failed(cutover.body.id);
    const cutback = await call(failing, 'POST', '/v1/servers/srv-42/cutback', {});
    expect(cutback.body).toMatchObject({ direction: 'cutback', state: 'running' });
    await failed(cutback.body.id);
    await run(failing, [
      ['POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' }, 'OPERATION_IN_PROGRESS'],
      ['POST', `/v1/operations/${cutover.body.id}/retry`, {}, 'NOT_RETRYABLE'],
      ['POST', `/v1/operations/${cutback.body.id}/retry`, {}, null],
    ]);
  });

  test('each route returned exactly the codes it documents of its own', () => {
    const wrong = ROUTES.flatMap((r) => {
      const got = [...seen.get(`${r.method} ${r.path}`)!].sort();
      const want = [...r.errors].sort();
      return JSON.stringify(got) === JSON.stringify(want) ? [] : [`${r.method} ${r.path}: documented ${want.join(', ') || 'none'}; returned ${got.join(', ') || 'none'}`];
    });
    expect(wrong).toEqual([]);
  });

  test('every success answer fits the schema it is documented with, for each such route', () => {
    expect(answers.filter((a) => a.problems.length > 0)).toEqual([]);
    expect([...new Set(answers.map((a) => a.route))].sort()).toEqual(ROUTES.filter((r) => r.answer).map((r) => `${r.method} ${r.path}`).sort());
  });
});

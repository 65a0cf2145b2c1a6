/**
 * The OpenAPI document against the express router, in process (every capability mounted, the
 * services stubbed): every /v1 route the router serves is documented and every documented one is
 * served; /openapi.json needs no token; each route returns each error code every route documents
 * (401, 403 where a role above read is needed, 400/413/415 for bodies, 503 where only the leader
 * answers) and not those it does not document. The codes of each route's own are proven against
 * a running controller (openapi-errors.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { Router } from 'express';
import { createApiApp, type ApiDeps } from '../../src/api/app.js';
import type { ApiToken } from '../../src/api/config-schema.js';
import { openApiPath } from '../../src/api/openapi.js';
import { commonErrors, ROUTES, type RouteSpec } from '../../src/api/route-catalog.js';
import type { ClusterView } from '../../src/api/routes/cluster-routes.js';
import type { ReplicaInfo } from '../../src/core/ports.js';

const TOKENS: ApiToken[] = [
  { name: 'support', role: 'read', token: 'read-token-0123456789' },
  { name: 'ops', role: 'admin', token: 'admin-token-0123456789' },
];
const READ = `Bearer ${TOKENS[0].token}`;
const ADMIN = `Bearer ${TOKENS[1].token}`;

/** A service whose every method throws: the route is reached, its answer is 500. */
const stub = <T>() => new Proxy({}, { get: (_t, k) => (k === 'then' ? undefined : () => { throw new Error(`stub: ${String(k)}`); }) }) as T;

function cluster(leading: boolean): ClusterView {
  const self: ReplicaInfo = { name: 'r1', api: 'http://127.0.0.1:1' };
  return {
    leadership: { self, isLeader: () => leading, leader: () => (leading ? self : null), replicas: () => [self], onChange: () => () => {}, stop: async () => {} },
    inSync: () => true, revision: () => 1,
  };
}

function deps(leading: boolean): ApiDeps {
  return {
    registry: new Registry(), logger: pino({ level: 'silent' }), tokens: TOKENS,
    ready: () => true, zones: () => [], zoneErrors: () => [],
    cutover: stub(), mxAuditor: stub(), migrations: stub(), inventory: stub(), routing: stub(), cluster: cluster(leading),
  };
}

interface Running { url: string; server: Server }
async function listen(app: ReturnType<typeof createApiApp>): Promise<Running> {
  const server = await new Promise<Server>((res) => { const s = app.listen(0, '127.0.0.1', () => res(s)); });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Every route layer of a router: method and full path (`_all`: a catch-all route). */
interface Layer { route?: { path: string; methods: Record<string, boolean> }; handle: Router & { stack?: Layer[] }; rawPath?: string; path?: string }
function walk(stack: Layer[], prefix: string): string[] {
  return stack.flatMap((l) => {
    if (l.route) return Object.keys(l.route.methods).map((m) => `${m} ${prefix}${l.route!.path}`);
    if (Array.isArray(l.handle?.stack)) {
      const mount = typeof l.rawPath === 'string' && l.rawPath !== '/' ? l.rawPath : '';
      return walk(l.handle.stack, prefix + mount);
    }
    return [];
  });
}

const SAMPLE: Record<string, string> = { server: 'srv-42', account: 'acme', name: 'x-1', id: 'op-1', domain: 'example.com' };
const urlOf = (r: RouteSpec) => `/v1${r.path.replace(/:([A-Za-z_]+)/g, (_m, p: string) => SAMPLE[p])}`;

/** One call with node:http (fetch refuses a body on GET, which the API parses all the same). */
function call(base: Running, r: RouteSpec, auth: string | null, body?: string, contentType = 'application/json') {
  return new Promise<{ status: number; code: string | null; message: string }>((resolve, reject) => {
    const req = request(base.url + urlOf(r), {
      method: r.method.toUpperCase(),
      headers: { ...(auth ? { authorization: auth } : {}), ...(body !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json: { error?: { code: string; message: string } } | null = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, code: json?.error?.code ?? null, message: json?.error?.message ?? '' });
      });
    });
    // the server may answer (413) and close before it has read all of a large body
    req.on('error', (err) => reject(err));
    req.end(body);
  });
}

/** The parts of an OpenAPI operation the test reads. */
interface DocOperation {
  operationId: string;
  'x-role': string;
  parameters?: { name: string; in: string; required: boolean }[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
}

let leader: Running;
let follower: Running;
let app: ReturnType<typeof createApiApp>;
beforeAll(async () => {
  app = createApiApp(deps(true));
  leader = await listen(app);
  follower = await listen(createApiApp(deps(false)));
});
afterAll(async () => {
  for (const r of [leader, follower]) await new Promise((res) => r?.server.close(res));
});

describe('OpenAPI document', () => {
  test('the router serves exactly the documented /v1 routes', () => {
    const served = walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '').filter((x) => x.includes(' /v1/'));
    // the catch-all answers 405 for the methods /v1/mx-audit does not take: no route of its own
    expect(served.filter((x) => x.startsWith('_all '))).toEqual(['_all /v1/mx-audit']);
    const documented = ROUTES.map((r) => `${r.method} /v1${r.path}`);
    expect(served.filter((x) => !x.startsWith('_all ')).sort()).toEqual([...documented].sort());
  });

  test('/openapi.json needs no token and lists every route with its role, body and errors', async () => {
    const res = await fetch(`${leader.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = await res.json() as { openapi: string; paths: Record<string, Record<string, DocOperation>> };
    expect(doc.openapi).toBe('3.1.0');
    const listed = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
    expect(listed.sort()).toEqual(ROUTES.map((r) => `${r.method} ${openApiPath(r.path)}`).sort());
    const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
    for (const r of ROUTES) {
      const op = doc.paths[openApiPath(r.path)][r.method];
      // each {param} of the path is a required path parameter
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path' && p.required).map((p) => p.name);
      expect(declared).toEqual([...openApiPath(r.path).matchAll(/\{([^}]+)\}/g)].map((m) => m[1]));
      expect(op['x-role']).toBe(r.role);
      expect(op.requestBody !== undefined).toBe(r.body !== undefined);
      expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['401', '500', ...Object.keys(r.ok)]));
    }
  });
});

describe.each(ROUTES.map((r) => [`${r.method.toUpperCase()} /v1${r.path}`, r] as const))('%s', (_n, r) => {
  const documented = new Set([...commonErrors(r), ...r.errors]);

  test('answers (reaches its handler: a stubbed service is a 500, never a 404)', async () => {
    const res = await call(leader, r, ADMIN, r.method === 'get' ? undefined : '{}');
    expect(res.message).not.toMatch(/^no route for/);
    expect(res.status).not.toBe(404);
  });

  test('UNAUTHORIZED without a valid token', async () => {
    expect(documented.has('UNAUTHORIZED')).toBe(true);
    expect(await call(leader, r, null)).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    expect(await call(leader, r, 'Bearer nope')).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
  });

  test('FORBIDDEN for a read token exactly when documented', async () => {
    const res = await call(leader, r, READ, r.method === 'get' ? undefined : '{}');
    if (documented.has('FORBIDDEN')) expect(res).toMatchObject({ status: 403, code: 'FORBIDDEN' });
    else expect(res.status).not.toBe(403);
  });

  test('BAD_REQUEST, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE for bodies', async () => {
    expect(['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'].every((c) => documented.has(c))).toBe(true);
    expect(await call(leader, r, ADMIN, '{"a":')).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect(await call(leader, r, ADMIN, JSON.stringify({ x: 'y'.repeat(5 << 20) }))).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    expect(await call(leader, r, ADMIN, '{}', 'application/json; charset=iso-8859-1')).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
  });

  test('STATE_UNAVAILABLE with no leader exactly when documented', async () => {
    const res = await call(follower, r, ADMIN, r.method === 'get' ? undefined : '{}');
    if (documented.has('STATE_UNAVAILABLE')) expect(res).toMatchObject({ status: 503, code: 'STATE_UNAVAILABLE' });
    else expect(res.code).not.toBe('STATE_UNAVAILABLE');
  });
});

/**
 * Deeply nested JSON never reaches a 500: every /v1 route that takes a body (and the parser in
 * front of all of them) answers 400 with the error shape for arrays/objects nested 33, 5,000 and
 * 100,000 levels deep, at the top and inside each field; nothing changes, and the controller still
 * answers (API and DNS) afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { request } from 'node:http';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { buildQuery, decode, ipOf, udpExchange } from '../dns/tiny-dns.js';

let ctl: ControllerHandle;
beforeAll(async () => {
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
    sections: {
      servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
      transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
      accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }, { name: 'shop', server: 'srv-42', zones: ['shop.test'] }],
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
});
afterAll(async () => {
  await ctl?.stop();
});

const LIMIT = 1 << 20;

/** `depth` nested arrays or objects around `inner`, as JSON text. */
function nested(kind: 'array' | 'object', depth: number, inner = '1'): string {
  return kind === 'array' ? '['.repeat(depth) + inner + ']'.repeat(depth) : '{"a":'.repeat(depth) + inner + '}'.repeat(depth);
}

/** Every route that reads a body: method, path, and the fields its schema knows. */
const ROUTES: [string, string, string[]][] = [
  ['POST', '/v1/servers/srv-42/cutover', ['transit', 'force']],
  ['POST', '/v1/servers/srv-42/cutback', []],
  ['POST', '/v1/operations/op-none/retry', []],
  ['POST', '/v1/servers/srv-42/migration', ['reinstall_at']],
  ['POST', '/v1/servers/srv-42/reinstalled', []],
  ['POST', '/v1/accounts/acme/move', ['to', 'phase', 'downtime_ms', 'error']],
  ['PUT', '/v1/servers/srv-77', ['addresses', 'pairs', 'profile', 'name']],
  ['PUT', '/v1/transits/transit-9', ['addresses', 'profile']],
  ['PUT', '/v1/accounts/acct-9', ['server', 'zones', 'probe']],
  ['POST', '/v1/mx-audit', ['domains']],
  // routes without a body schema still parse what is sent
  ['GET', '/v1/servers/srv-42', []],
  ['DELETE', '/v1/servers/srv-42/migration', []],
  ['POST', '/v1/nothing-here', []],
];

/** The bodies: the nesting at the top, and inside each known field (and an unknown one). */
function bodies(fields: string[], depth: number): [string, string][] {
  const out: [string, string][] = [];
  for (const kind of ['array', 'object'] as const) {
    out.push([`top-level ${kind}`, nested(kind, depth)]);
    for (const f of [...fields, 'unknown_field']) out.push([`${f}: ${kind}`, `{${JSON.stringify(f)}:${nested(kind, depth)}}`]);
  }
  // the shape of the reported fault: a list whose one item is deep
  out.push(['one deep item in a list', `{"${fields[0] ?? 'x'}":[${nested('array', depth, '"a.test"')}]}`]);
  return out;
}

/** One request with node:http (fetch refuses a body on GET). */
function send(method: string, path: string, body: string | Buffer, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port: ctl.apiPort, method, path,
      headers: { authorization: `Bearer ${ctl.token}`, 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any = text;
        try {
          json = JSON.parse(text);
        } catch {
          /* not JSON: kept as text */
        }
        resolve({ status: res.statusCode ?? 0, body: json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const apex = async (name: string) => ipOf(decode((await udpExchange(ctl.dnsPort, buildQuery(name)))!).answers[0]);

describe('deep JSON bodies', () => {
  const cases = ROUTES.flatMap(([method, path, fields]) => [33, 5_000, 100_000].flatMap((depth) =>
    bodies(fields, depth).map(([shape, body]) => ({ method, path, depth, shape, body }))));

  test(`${cases.length} deep bodies over ${ROUTES.length} routes: each is 400 with the error shape, never 500`, async () => {
    const seen: string[] = [];
    for (const c of cases) {
      expect(c.body.length).toBeLessThan(LIMIT);
      const r = await send(c.method, c.path, c.body);
      const what = `${c.method} ${c.path} depth ${c.depth} (${c.shape}) -> ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
      seen.push(what);
      if (r.status !== 400 || r.body?.error?.code !== 'BAD_REQUEST') throw new Error(what);
      expect(r.body).toEqual({ error: { code: 'BAD_REQUEST', message: expect.any(String) } });
      expect(r.body.error.message.length).toBeLessThan(400);
    }
    expect(seen).toHaveLength(cases.length);
  });

  test('the message names the field that nests too deep', async () => {
    const r = await send('POST', '/v1/mx-audit', `{"domains":${nested('array', 5_000, '"a.test"')}}`);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/^domains: the body nests arrays\/objects deeper than 32 levels/);
  });

  test('shallow but wrong shapes are 400 as well, described without echoing them', async () => {
    const wide = `[${Array.from({ length: 20_000 }, () => '"x"').join(',')}]`;
    for (const [path, body] of [
      ['/v1/servers/srv-42/cutover', `{"transit":${nested('array', 30)}}`],
      ['/v1/servers/srv-42/cutover', `{"transit":${wide}}`],
      ['/v1/servers/srv-42/migration', `{"reinstall_at":${nested('object', 30)}}`],
      ['/v1/accounts/acme/move', `{"to":${nested('object', 30)},"phase":"started"}`],
      ['/v1/accounts/acme/move', '{"to":"transit","phase":"failed","downtime_ms":1e999}'],
    ]) {
      const r = await send('POST', path, body);
      expect({ path, status: r.status, code: r.body.error?.code }).toEqual({ path, status: 400, code: 'BAD_REQUEST' });
      expect(r.body.error.message.length).toBeLessThan(400);
    }
    const put = await send('PUT', '/v1/servers/srv-77', `{"addresses":${nested('object', 30, '"203.0.113.77"')}}`);
    expect(put.status).toBe(400);
    expect(put.body.error.code).toBe('INVALID_INVENTORY');
    const name = await send('PUT', '/v1/servers/srv-77', `{"name":${nested('array', 30)}}`);
    expect(name.status).toBe(400);
  });

  test('a non-string item of an MX audit is INVALID, described by its kind, not echoed', async () => {
    const r = await send('POST', '/v1/mx-audit', `{"domains":[${nested('array', 30, '"a.test"')}, 42, {"x":1}]}`);
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: { domain: string; verdict: string }) => [x.domain, x.verdict])).toEqual([
      ['an array (1 item)', 'INVALID'], ['42', 'INVALID'], ['an object (1 key)', 'INVALID'],
    ]);
  });

  test('a body in another charset than UTF-8 is 415', async () => {
    const r = await send('POST', '/v1/servers/srv-42/cutover', Buffer.from('{"transit":"transit-3"}', 'utf16le'), 'application/json; charset=utf-16le');
    expect(r.status).toBe(415);
    expect(r.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  test('afterwards: nothing changed, the API and DNS answer, no internal error was logged', async () => {
    expect((await ctl.get('/healthz', false)).status).toBe(200);
    const status = await ctl.get('/v1/servers/srv-42');
    expect(status.status).toBe(200);
    const s = JSON.parse(status.body);
    expect(s.overlay).toEqual({ active: false });
    expect(s.operations).toEqual([]);
    expect((await ctl.get('/v1/servers/srv-42/migration')).status).toBe(404);
    expect(JSON.parse((await ctl.get('/v1/inventory')).body).servers.map((x: { name: string }) => x.name)).toEqual(['srv-42']);
    expect(await apex('acme.test')).toBe('203.0.113.10');
    expect(ctl.output()).not.toMatch(/api internal error|Maximum call stack/);
  });
});

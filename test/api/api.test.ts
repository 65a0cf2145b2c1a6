/** The HTTP API of a running controller: probes, metrics, bearer auth, error bodies. */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';

let ctl: ControllerHandle;
beforeAll(async () => {
  ctl = await startController({ zonesDir: join(REPO_ROOT, 'config', 'zones') });
});
afterAll(async () => {
  await ctl?.stop();
});

const url = (p: string) => `http://127.0.0.1:${ctl.apiPort}${p}`;

describe('api', () => {
  test('healthz and readyz answer without a token', async () => {
    expect(await ctl.get('/healthz', false)).toEqual({ status: 200, body: '{"status":"ok"}' });
    expect(await ctl.get('/readyz', false)).toEqual({ status: 200, body: '{"status":"ready"}' });
  });

  test('metrics are Prometheus text with the DNS metrics', async () => {
    const r = await fetch(url('/metrics'));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await r.text();
    expect(body).toMatch(/^failover_dns_zones_loaded 1$/m);
    expect(body).toMatch(/^# TYPE failover_dns_queries_total counter$/m);
    expect(body).toMatch(/^failover_dns_zone_serial\{zone="example\.com\."\} 2026112801$/m);
  });

  // A trailing space after the token is optional whitespace that HTTP itself strips (RFC 9110 5.5):
  // it never reaches the application. What follows the space is checked instead.
  test.each([
    ['no Authorization header', () => undefined],
    ['a wrong token', () => 'Bearer nope'],
    ['the right token with a prefix of it only', () => `Bearer ${ctl.token.slice(0, -1)}`],
    ['the right token followed by a space and more', () => `Bearer ${ctl.token} x`],
    ['the right token in another scheme', () => `Basic ${ctl.token}`],
    ['the right token without a scheme', () => ctl.token],
  ])('/v1 with %s is 401 with a JSON error', async (_n, header) => {
    const h = header();
    const r = await fetch(url('/v1/zones'), { headers: h ? { authorization: h } : {} });
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual({ error: { code: 'UNAUTHORIZED', message: 'a valid bearer token is required' } });
  });

  test('/v1/zones with the token lists the served zones', async () => {
    const r = await ctl.get('/v1/zones');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ zones: [{ zone: 'example.com.', serial: 2026112801, records: 18 }], errors: [] });
  });

  test('unknown routes are 404 with a stable code; bad JSON 400; oversized bodies 413', async () => {
    const auth = { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' };
    const nf = await fetch(url('/v1/nothing'), { headers: auth });
    expect(nf.status).toBe(404);
    expect((await nf.json()).error.code).toBe('NOT_FOUND');
    const bad = await fetch(url('/v1/zones'), { method: 'POST', headers: auth, body: '{"a":' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe('BAD_REQUEST');
    const big = await fetch(url('/v1/zones'), { method: 'POST', headers: auth, body: JSON.stringify({ x: 'y'.repeat(2 << 20) }) });
    expect(big.status).toBe(413);
    expect((await big.json()).error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  test('the token never appears in the logs', () => {
    expect(ctl.output()).not.toContain(ctl.token);
  });
});

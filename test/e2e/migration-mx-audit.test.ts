/**
 * The MX audit of a migration, end to end: the controller (the built CLI) audits the mail domains
 * of the server's accounts through the DNS lab's resolver (test/support/dns-lab.ts: NSD + unbound
 * on loopback) when the migration is requested, shows it on the migration and in the metrics, warns
 * the cutover about a domain still sending its mail to the server (the cutover goes on), audits
 * again after the cutover (a domain added through the inventory API included), and `failoverctl
 * cutover` / `status` / `mx-audit --server` show it. Debian packages: nsd, unbound, ldnsutils.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cutoverResponse, migrationResponse } from '../../src/api/schemas.js';
import { CLI, REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { loadLabCases, MX_LAB_FIXTURES, startDnsLab, type DnsLab } from '../support/dns-lab.js';
import { waitFor } from '../support/wait-for.js';

const DOMAINS = ['good.com', 'forbidden-mx.com', 'no-mx.com', 'nx-domain.com'];
let lab: DnsLab;
let ctl: ControllerHandle;
beforeAll(async () => {
  lab = await startDnsLab({ cases: loadLabCases(join(MX_LAB_FIXTURES, 'cases.yaml')).filter((c) => DOMAINS.includes(c.domain)), resolverThreads: 1 });
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
    sections: {
      servers: [{ name: 'srv-42', profile: 'vps', addresses: ['203.0.113.10'] }],
      transits: [{ name: 'transit-3', profile: 'vps', addresses: ['198.51.100.20'] }],
      accounts: [
        { name: 'acme', server: 'srv-42', zones: ['acme.test'], mail_domains: ['good.com', 'forbidden-mx.com'] },
        { name: 'shop', server: 'srv-42', zones: ['shop.test'] },
      ],
      mx_audit: { resolver: lab.resolver, timeout_ms: 1000, retries: 2 },
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
}, 120_000);
afterAll(async () => {
  await ctl?.stop();
  await lab?.stop();
});

const json = (r: { status: number; body: string }) => ({ status: r.status, body: JSON.parse(r.body) });
const get = async (path: string) => json(await ctl.get(path));
async function call(method: string, path: string, body: unknown) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method, headers: { authorization: `Bearer ${ctl.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() as Record<string, any> };
}
type Audit = { state: string; trigger: string; audited_at: string | null; domains: { account: string; domain: string; verdict: string; checks: { check: string; verdict: string; fix: string | null }[] }[] };
const audit = async () => (await get('/v1/servers/srv-42/migration')).body.mx_audit as Audit | null;
const verdicts = (a: Audit) => a.domains.map((d) => [d.account, d.domain, d.verdict]);
async function metric(line: RegExp) {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}/metrics`);
  return (await r.text()).split('\n').find((l) => line.test(l));
}
const run = (args: string[]) => promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, FAILOVER_API_TOKEN: ctl.token } })
  .then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }));

describe('the MX audit of a migration', () => {
  test('audited at the request, warned at the cutover, audited again after it', async () => {
    const reinstallAt = Date.now() + 12 * 3600_000;
    const req = await call('POST', '/v1/servers/srv-42/migration', { reinstall_at: new Date(reinstallAt).toISOString() });
    expect(req.status).toBe(201);
    // the answer does not wait for DNS: the audit runs after it
    expect(req.body.mx_audit).toMatchObject({ state: 'running', trigger: 'request', audited_at: null, domains: [] });

    const first = await waitFor('the audit at the request', async () => ((await audit())?.state === 'done' ? audit() : null));
    expect(verdicts(first!)).toEqual([['acme', 'good.com', 'OK'], ['acme', 'forbidden-mx.com', 'FAIL']]);
    expect(first!.domains[1].checks).toContainEqual({
      check: 'forbidden-mx', verdict: 'FAIL', evidence: expect.stringContaining('MX 5 srv-42.alwaysdata.net'), fix: 'delete `MX 5 srv-42.alwaysdata.net` at your DNS provider',
    });
    expect(await metric(/^failover_mx_audit_domains\{server="srv-42",verdict="FAIL"\}/)).toBe('failover_mx_audit_domains{server="srv-42",verdict="FAIL"} 1');
    expect(await metric(/^failover_mx_audit_domains\{server="srv-42",verdict="OK"\}/)).toBe('failover_mx_audit_domains{server="srv-42",verdict="OK"} 1');
    expect(await metric(/^failover_migration_reinstall_timestamp_seconds\{server="srv-42"\}/)).toBe(`failover_migration_reinstall_timestamp_seconds{server="srv-42"} ${reinstallAt / 1000}`);

    // mail domains are edited through the inventory API like the rest; a bad name is refused
    const bad = await call('PUT', '/v1/accounts/shop', { server: 'srv-42', zones: ['shop.test'], mail_domains: ['no-mx.com', 'not a domain'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.problems).toEqual([expect.stringMatching(/^accounts\[1\]\.mail_domains\[1\]: "not a domain" is not a domain name: /)]);
    const twice = await call('PUT', '/v1/accounts/shop', { server: 'srv-42', zones: ['shop.test'], mail_domains: ['no-mx.com', 'NO-MX.com.'] });
    expect(twice.body.error.problems).toEqual(['accounts[1].mail_domains: no-mx.com listed more than once']);
    expect((await call('PUT', '/v1/accounts/shop', { server: 'srv-42', zones: ['shop.test'], mail_domains: ['No-MX.com.', 'nx-domain.com'] })).status).toBe(200);

    for (const account of ['acme', 'shop']) {
      for (const phase of ['started', 'completed']) expect((await call('POST', `/v1/accounts/${account}/move`, { to: 'transit', phase })).status).toBe(200);
    }
    // the cutover is not refused for a customer's DNS: it is warned, from the last audit
    const api = ['--api', `http://127.0.0.1:${ctl.apiPort}`];
    const cut = await run(['cutover', 'srv-42', '--transit', 'transit-3', ...api]);
    expect(cut.code).toBe(0);
    expect(cut.stderr).toMatch(/^failoverctl: warning: forbidden-mx\.com \(account acme\) still sends its mail to srv-42, which is being reinstalled: delete `MX 5 srv-42\.alwaysdata\.net` at your DNS provider \(audited \S+\)\n$/);
    const again = await call('POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(again.status).toBe(200);
    expect(again.body.warnings).toEqual([{
      code: 'FORBIDDEN_MX', account: 'acme', domain: 'forbidden-mx.com', fixes: ['delete `MX 5 srv-42.alwaysdata.net` at your DNS provider'],
      audited_at: expect.any(String), message: expect.stringMatching(/^forbidden-mx\.com \(account acme\) still sends its mail to srv-42/),
    }]);

    const second = await waitFor('the audit at the cutover', async () => {
      const a = await audit();
      return a?.trigger === 'cutover' && a.state === 'done' ? a : null;
    });
    expect(Date.parse(second!.audited_at!)).toBeGreaterThan(Date.parse(first!.audited_at!));
    expect(verdicts(second!)).toEqual([['acme', 'good.com', 'OK'], ['acme', 'forbidden-mx.com', 'FAIL'], ['shop', 'no-mx.com', 'FAIL'], ['shop', 'nx-domain.com', 'FAIL']]);
    // the answers fit the schemas the API document is generated from
    expect(cutoverResponse.safeParse(again.body).error?.issues).toBeUndefined();
    expect(migrationResponse.safeParse((await get('/v1/servers/srv-42/migration')).body).error?.issues).toBeUndefined();
    expect(await metric(/^failover_mx_audit_domains\{server="srv-42",verdict="FAIL"\}/)).toBe('failover_mx_audit_domains{server="srv-42",verdict="FAIL"} 3');

    const status = await run(['status', 'srv-42', ...api]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/ {4}MX audit of the mail domains: audited \S+: 1 OK, 3 FAIL; at the cutover request\n/);
    expect(status.stdout).toContain('      forbidden-mx.com (acme)                  FAIL\n        FAIL    forbidden-mx: fix: delete `MX 5 srv-42.alwaysdata.net` at your DNS provider\n');

    // support's bulk report: the controller's inventory (--api, the edit included), or the config file's
    const fromApi = await run(['mx-audit', '--config', ctl.configPath, ...api, '--server', 'srv-42', '--json']);
    expect(fromApi.code).toBe(1);
    const lines = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l)).map((l) => [l.account, l.domain, l.verdict]);
    expect(lines(fromApi.stdout)).toEqual(verdicts(second!));
    const fromFile = await run(['mx-audit', '--config', ctl.configPath, '--all-accounts', '--json']);
    expect(fromFile.code).toBe(1);
    expect(lines(fromFile.stdout)).toEqual([['acme', 'good.com', 'OK'], ['acme', 'forbidden-mx.com', 'FAIL']]);
  }, 120_000);
});

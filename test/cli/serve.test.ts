/**
 * `failoverctl` as a process: exit codes, config errors, the generated token file, zone reload
 * on SIGHUP (a broken new version keeps the old one served), broken zones reported with file and line.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, REPO_ROOT, startController } from '../support/controller.js';
import { buildQuery, decode, udpExchange } from '../dns/tiny-dns.js';

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'fc-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 20_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const ZONE = (serial: number, www: string) => `$ORIGIN reload.test.
$TTL 300
@ SOA ns host ${serial} 3600 600 86400 60
@ NS ns
ns A 192.0.2.1
www A ${www}
`;

describe('failoverctl', () => {
  test.each([
    [['--help'], 0, /Usage:\n  failoverctl serve --config FILE/],
    [['serve', '--help'], 0, /Usage: failoverctl serve --config FILE/],
    [['help', 'serve'], 0, /Usage: failoverctl serve --config FILE/],
    [[], 2, /Usage:/],
  ])('%j exits %d with usage', async (args, code, pattern) => {
    const r = await cli(args);
    expect(r.code).toBe(code);
    expect(r.stdout).toMatch(pattern);
  });

  test.each([
    [['frobnicate'], /unknown command "frobnicate"/],
    [['serve'], /--config FILE is required/],
    [['serve', '--config'], /argument missing|--config/],
    [['serve', '--bogus'], /Unknown option '--bogus'/],
  ])('%j is a usage error: exit 2', async (args, pattern) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
  });

  test('an invalid config exits 2 naming file, line, path and reason, and starts nothing', async () => {
    const file = join(tmp, 'bad.yaml');
    writeFileSync(file, 'dns:\n  listen: ["127.0.0.1:5300", "1.2.3.4"]\n  zones: ./zones\napi:\n  listen: "127.0.0.1:1"\n');
    const r = await cli(['serve', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:2: dns.listen[1]: "1.2.3.4" is not host:port`);
  });

  test('a missing config file exits 2', async () => {
    const r = await cli(['serve', '--config', join(tmp, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nope\.yaml: cannot read: ENOENT/);
  });

  test('serve --check reports each broken zone with file and line, exit 1', async () => {
    const zones = join(tmp, 'check-zones');
    mkdirSync(zones);
    writeFileSync(join(zones, 'ok.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'ok'));
    writeFileSync(join(zones, 'broken.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'broken').replace('www A 192.0.2.2', 'www A 192.0.2'));
    writeFileSync(join(zones, 'nosoa.test.zone'), '$ORIGIN nosoa.test.\n@ 300 NS ns\nns 300 A 192.0.2.1\n');
    const cfg = join(tmp, 'check.yaml');
    writeFileSync(cfg, `dns:\n  listen: ["127.0.0.1:5399"]\n  zones: ${zones}\napi:\n  listen: "127.0.0.1:1"\n`);
    const r = await cli(['serve', '--config', cfg, '--check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('ok    ok.test. serial 1, 4 records');
    expect(r.stdout).toMatch(new RegExp(`error ${zones}/broken\\.test\\.zone:6: .*192\\.0\\.2`));
    expect(r.stdout).toContain(`error ${zones}/nosoa.test.zone: no SOA record at the zone apex nosoa.test.`);
  });

  test('mx-audit --config needs no TSIG secret (it uses none); serve with the same file does', async () => {
    const zones = join(tmp, 'mx-zones');
    mkdirSync(zones);
    writeFileSync(join(zones, 'a.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'a'));
    const cfg = join(tmp, 'mx-tsig.yaml');
    writeFileSync(cfg, [
      'dns:', '  listen: ["127.0.0.1:5398"]', `  zones: ${zones}`,
      '  tsig_keys: [{name: xfr-key, algorithm: hmac-sha256, secret_env: FC_TEST_UNSET_TSIG_SECRET}]',
      '  secondaries: [{name: ns1, address: "127.0.0.1:5397", tsig: xfr-key}]',
      'api:', '  listen: "127.0.0.1:1"', '',
    ].join('\n'));
    const env = { FC_TEST_UNSET_TSIG_SECRET: '' };
    // no domain: the usage error is about the domains, not about the configuration
    const audit = await cli(['mx-audit', '--config', cfg], env);
    expect(audit.stderr).not.toMatch(/cannot load the configuration|FC_TEST_UNSET_TSIG_SECRET/);
    const serve = await cli(['serve', '--config', cfg], env);
    expect(serve.code).not.toBe(0);
    expect(serve.stderr).toMatch(/environment variable FC_TEST_UNSET_TSIG_SECRET is not set/);
  });

  test('secondaries-config nsd prints a zone: entry per served zone; another kind is a usage error', async () => {
    const zones = join(tmp, 'sec-zones');
    mkdirSync(zones);
    writeFileSync(join(zones, 'b.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'b'));
    writeFileSync(join(zones, 'a.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'a'));
    const cfg = join(tmp, 'sec.yaml');
    writeFileSync(cfg, `dns:\n  listen: ["127.0.0.1:5399"]\n  zones: ${zones}\n  catalog: catalog.invalid.\napi:\n  listen: "127.0.0.1:1"\n`);
    const r = await cli(['secondaries-config', 'nsd', '--config', cfg]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').slice(1).join('\n')).toBe('zone:\n  name: "a.test"\n  include-pattern: "hidden-primary"\nzone:\n  name: "b.test"\n  include-pattern: "hidden-primary"\n');
    expect((await cli(['secondaries-config', 'nsd', '--config', cfg, '--pattern', 'mine'])).stdout).toContain('include-pattern: "mine"');
    const knot = await cli(['secondaries-config', 'knot', '--config', cfg]);
    expect(knot.code).toBe(2);
    expect(knot.stderr).toContain('must be "nsd" (Knot and BIND use the catalog zone)');
  });

  describe('TSIG secrets: secondaries-config needs none, serve and serve --check need every one', () => {
    const SECRET_ENV = 'FC_CLI_TEST_XFR_SECRET';
    const SECRET = Buffer.alloc(32, 7).toString('base64');
    let zones = '';
    const config = (name: string, dns: string) => {
      const file = join(tmp, name);
      writeFileSync(file, `dns:\n  listen: ["127.0.0.1:5399"]\n  zones: ${zones}\n${dns}api:\n  listen: "127.0.0.1:1"\n`);
      return file;
    };
    const KEYED = `  tsig_keys: [{name: xfr-key, algorithm: hmac-sha256, secret_env: ${SECRET_ENV}}]\n  secondaries: [{name: ns1, address: "192.0.2.53:53", tsig: xfr-key}]\n`;
    const ENTRY = 'zone:\n  name: "keyed.test"\n  include-pattern: "hidden-primary"\n';

    beforeAll(() => {
      zones = join(tmp, 'keyed-zones');
      mkdirSync(zones);
      writeFileSync(join(zones, 'keyed.test.zone'), ZONE(1, '192.0.2.2').replace(/reload/g, 'keyed'));
    });

    test.each([
      ['secret unset', ''],
      ['secret not base64', 'not base64!'],
    ])('secondaries-config nsd, %s: the zone entries, exit 0', async (_what, value) => {
      const r = await cli(['secondaries-config', 'nsd', '--config', config('keyed.yaml', KEYED)], { [SECRET_ENV]: value });
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout.split('\n').slice(1).join('\n')).toBe(ENTRY);
    });

    test.each([
      [['serve', '--check'], ''],
      [['serve', '--check'], 'c2hvcnQ='],
      [['serve'], ''],
    ])('%j with the secret %j: a config error naming the variable, exit 2', async (args, value) => {
      const file = config('keyed.yaml', KEYED);
      const r = await cli([...args, '--config', file], { [SECRET_ENV]: value });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`dns.tsig_keys[0].secret_env: environment variable ${SECRET_ENV} is ${value === '' ? 'not set' : 'not base64 of at least 16 bytes'}`);
    });

    test('serve --check with the secret set passes', async () => {
      const r = await cli(['serve', '--check', '--config', config('keyed.yaml', KEYED)], { [SECRET_ENV]: SECRET });
      expect([r.code, r.stdout]).toEqual([0, 'ok    keyed.test. serial 1, 4 records\n']);
    });

    test.each([
      ['a secondary naming a key that is not defined', KEYED.replace('tsig: xfr-key', 'tsig: nokey'), 'dns.secondaries[0].tsig'],
      ['a secret_env that is not a variable name', KEYED.replace(SECRET_ENV, 'not-a-name'), 'dns.tsig_keys[0].secret_env'],
      ['an unknown TSIG algorithm', KEYED.replace('hmac-sha256', 'hmac-md5'), 'dns.tsig_keys[0].algorithm'],
    ])('secondaries-config nsd still validates the rest: %s is a config error, exit 2', async (_what, dns, path) => {
      const r = await cli(['secondaries-config', 'nsd', '--config', config('broken-keyed.yaml', dns)], { [SECRET_ENV]: '' });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain(path);
      expect(r.stderr).not.toContain(SECRET_ENV + ' is not set');
    });
  });

  test('without the token env var a token is generated into a 0600 file, never logged', async () => {
    const ctl = await startController({
      zonesDir: join(REPO_ROOT, 'config', 'zones'),
      env: { FC_TEST_TOKEN: '' },
    });
    try {
      const file = join(ctl.dir, 'api-token');
      const token = readFileSync(file, 'utf8').trim();
      expect(token.length).toBeGreaterThanOrEqual(32);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(ctl.output()).toContain(file);
      expect(ctl.output()).not.toContain(token);
      const ok = await fetch(`http://127.0.0.1:${ctl.apiPort}/v1/zones`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
    } finally {
      await ctl.stop();
    }
  });

  test('SIGHUP reloads changed zones; a broken new version keeps the old one served and says why', async () => {
    const zones = join(tmp, 'reload-zones');
    mkdirSync(zones);
    const file = join(zones, 'reload.test.zone');
    writeFileSync(file, ZONE(1, '192.0.2.10'));
    copyFileSync(file, join(zones, 'second.zone.bak')); // not a .zone file: ignored
    const ctl = await startController({ zonesDir: zones });
    const ask = async () => decode((await udpExchange(ctl.dnsPort, buildQuery('www.reload.test')))!);
    // Polls until the reload shows (a generous deadline: the controller may be slow on a loaded machine).
    const waitFor = async (pred: () => boolean | Promise<boolean>) => {
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline) {
        if (await pred()) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('condition not met within 30 s:\n' + ctl.output());
    };
    try {
      expect((await ask()).answers[0].rdata.toString('hex')).toBe('c000020a');
      // a good new version is served after SIGHUP
      writeFileSync(file, ZONE(2, '192.0.2.20'));
      ctl.reload();
      await waitFor(async () => (await ask()).answers[0]?.rdata.toString('hex') === 'c0000214');
      // a broken new version: old one stays, the log says file, line and reason, the counter moves
      writeFileSync(file, ZONE(3, '192.0.2.30').replace('ns A 192.0.2.1', 'ns A 192.0.2.300'));
      ctl.reload();
      await waitFor(() => ctl.output().includes('the previous version stays served'));
      expect((await ask()).answers[0].rdata.toString('hex')).toBe('c0000214');
      const line = ctl.output().split('\n').find((l) => l.includes('the previous version stays served'))!;
      expect(JSON.parse(line)).toMatchObject({ file, line: 5, keptPrevious: true });
      const m = await ctl.get('/metrics', false);
      expect(m.body).toMatch(/^failover_dns_zone_load_errors_total\{zone="reload\.test"\} 1$/m);
      expect(m.body).toMatch(/^failover_dns_zone_serial\{zone="reload\.test\."\} 2$/m);
    } finally {
      await ctl.stop();
    }
  });
});

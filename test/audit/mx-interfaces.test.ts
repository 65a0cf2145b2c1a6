/** The CLI command and the API routes of the MX audit, over an auditor with canned lookups (no DNS). */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import express, { type NextFunction, type Request, type Response } from 'express';
import { mxAuditSettings, type MxAuditSettings } from '../../src/audit/audit-settings.js';
import { createMxAuditor, type AuditVerdict } from '../../src/audit/mx-audit.js';
import type { AuditInput, MxRecord } from '../../src/audit/mx-rules.js';
import { ApiError, errorBody } from '../../src/api/errors.js';
import { mxAuditRoutes } from '../../src/api/routes/mx-audit-routes.js';
import { mailInventoryOf, runMxAuditCommand } from '../../src/cli/mx-audit-command.js';

const GOOD: MxRecord[] = [{ priority: 10, host: 'mx1.alwaysdata.com' }, { priority: 20, host: 'mx2.alwaysdata.com' }];
/** good.* OK, bad.* FAIL (forbidden MX), down.* UNKNOWN, warn.* WARN (no SPF). */
async function gather(domain: string): Promise<AuditInput> {
  const mx = domain.startsWith('bad.') ? [{ priority: 5, host: 'srv-1.alwaysdata.net' }, ...GOOD] : GOOD;
  return {
    domain,
    ns: domain.startsWith('down.') ? { status: 'failed', values: [], error: 'timeout' } : { status: 'ok', values: ['ns1.ext.example'] },
    mx: domain.startsWith('down.') ? { status: 'failed', values: [], error: 'timeout' } : { status: 'ok', values: mx },
    targets: mx.map((m) => ({ host: m.host, addresses: { status: 'ok', values: ['192.0.2.1'] } })),
    txt: { status: 'ok', values: domain.startsWith('warn.') ? [] : ['v=spf1 include:_spf.alwaysdata.com ~all'] },
  };
}
const auditorFor = (s: MxAuditSettings) => createMxAuditor(s, { gather });

function sink(tty = false) {
  let text = '';
  return { write: (s: string) => ((text += s), true), isTTY: tty, columns: 100, get text() { return text; } };
}

async function cli(argv: string[], opts: { stdin?: string; tty?: boolean } = {}) {
  const stdout = sink();
  const stderr = sink(opts.tty);
  let seen: MxAuditSettings | undefined;
  const code = await runMxAuditCommand(argv, (file) => {
    if (file === 'broken.yaml') throw new Error('mx_audit.timeout_ms: must be a number');
    return mxAuditSettings();
  }, {
    stdout, stderr, readStdin: async () => opts.stdin ?? '',
    createAuditor: (s) => ((seen = s), auditorFor(s)),
    loadInventory: async ({ configFile, api }) => {
      if (api) return mailInventoryOf({ servers: [{ name: 'srv-1' }], accounts: [{ name: 'erin', server: 'srv-1', zones: ['erin.test'], mail_domains: ['good.erin.com'] }, { name: 'x' }] });
      if (configFile !== 'inventory.yaml') throw new Error('--server and --all-accounts read the accounts of the controller (--api URL) or of its config file (--config FILE)');
      return { servers: ['srv-1', 'srv-2', 'srv-3'], accounts: INVENTORY };
    },
  });
  return { code, out: stdout.text, err: stderr.text, settings: seen };
}

const INVENTORY = [
  { name: 'acme', server: 'srv-1', mailDomains: ['bad.acme.com', 'good.acme.com'] },
  { name: 'bob', server: 'srv-1', mailDomains: ['down.bob.com'] },
  { name: 'carol', server: 'srv-2', mailDomains: ['good.carol.com', 'warn.carol.com'] },
  { name: 'dave', server: 'srv-3' },
];

describe('failoverctl mx-audit', () => {
  test.each([
    [['--config', 'inventory.yaml', '--server', 'srv-1'], 1],
    [['--config', 'inventory.yaml', '--server', 'srv-2'], 0],
    [['--config', 'inventory.yaml', '--server', 'srv-3'], 0],
    [['--config', 'inventory.yaml', '--all-accounts'], 1],
    [['--config', 'inventory.yaml', '--server', 'srv-9'], 2],
    [['--config', 'inventory.yaml', '--server', 'srv-1', '--all-accounts'], 2],
    [['--server', 'srv-1'], 2],
    [['--config', 'inventory.yaml', '--csv', '/nonexistent-dir/x.csv', '--server', 'srv-2'], 2],
    [['good.com', 'warn.com'], 0],
    [['good.com', 'bad.com', 'down.com'], 1],
    [['good.com', 'down.com'], 3],
    [['bad..name'], 1],
    [[], 2],
    [['--nope', 'good.com'], 2],
    [['--resolver', 'not-an-ip:53', 'good.com'], 2],
    [['--config', 'broken.yaml', 'good.com'], 2],
  ] as [string[], number][])('%j -> exit %d', async (argv, want) => {
    expect((await cli(argv)).code).toBe(want);
  });

  test('--json: one object per line and domain, in input order', async () => {
    const r = await cli(['--json', 'bad.com', 'good.com', 'x_y.com']);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.domain, l.verdict])).toEqual([['bad.com', 'FAIL'], ['good.com', 'OK'], ['x_y.com', 'INVALID']]);
    expect(lines[0].checks).toContainEqual({ check: 'forbidden-mx', verdict: 'FAIL', evidence: expect.any(String), fix: 'delete `MX 5 srv-1.alwaysdata.net` at your DNS provider' });
    expect(lines[2].error.code).toBe('INVALID_DOMAIN');
  });

  test('--server: the mail domains of its accounts, each with its account (table, --json)', async () => {
    const table = await cli(['--config', 'inventory.yaml', '--server', 'srv-1']);
    expect(table.out).toMatch(/^DOMAIN\s+VERDICT\nbad\.acme\.com \(acme\)\s+FAIL\n/);
    expect(table.out).toMatch(/\ngood\.acme\.com \(acme\)\s+OK\ndown\.bob\.com \(bob\)\s+UNKNOWN\n/);
    const json = await cli(['--config', 'inventory.yaml', '--all-accounts', '--json', 'good.com']);
    expect(json.out.trim().split('\n').map((l) => JSON.parse(l)).map((l) => [l.account, l.domain, l.verdict])).toEqual([
      [undefined, 'good.com', 'OK'],
      ['acme', 'bad.acme.com', 'FAIL'], ['acme', 'good.acme.com', 'OK'], ['bob', 'down.bob.com', 'UNKNOWN'],
      ['carol', 'good.carol.com', 'OK'], ['carol', 'warn.carol.com', 'WARN'],
    ]);
    const api = await cli(['--api', 'http://127.0.0.1:1', '--server', 'srv-1', '--json']);
    expect(api.out.trim().split('\n').map((l) => JSON.parse(l)).map((l) => [l.account, l.domain, l.verdict])).toEqual([['erin', 'good.erin.com', 'OK']]);
    const none = await cli(['--config', 'inventory.yaml', '--server', 'srv-3']);
    expect(none.err).toBe('failoverctl mx-audit: no account of srv-3 has mail domains (accounts[].mail_domains)\n');
  });

  test('--csv FILE: a header, one row per domain and check that is not OK, quoted as RFC 4180 says', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-mxcsv-'));
    try {
      const file = join(dir, 'audit.csv');
      const r = await cli(['--config', 'inventory.yaml', '--server', 'srv-1', '--csv', file, 'x_y.com']);
      expect(r.code).toBe(1);
      const rows = readFileSync(file, 'utf8').split('\r\n');
      expect(rows[0]).toBe('account,domain,verdict,check,check_verdict,evidence,fix');
      expect(rows).toContain(',x_y.com,INVALID,,,"label ""x_y"" has characters other than letters, digits and hyphens",');
      expect(rows).toContain('acme,bad.acme.com,FAIL,forbidden-mx,FAIL,MX 5 srv-1.alwaysdata.net is a per-server MX record (matches *.alwaysdata.net): that server is being reinstalled,delete `MX 5 srv-1.alwaysdata.net` at your DNS provider');
      expect(rows).toContain('acme,good.acme.com,OK,,,,');
      expect(rows.filter((l) => l.startsWith('bob,down.bob.com,UNKNOWN,')).map((l) => l.split(',')[3])).toEqual(['ns-lookup', 'mx-lookup']);
      expect(rows.at(-1)).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('table by default, with the fixes', async () => {
    const r = await cli(['bad.com', 'good.com']);
    expect(r.out).toMatch(/^DOMAIN\s+VERDICT\n/);
    expect(r.out).toMatch(/bad\.com\s+FAIL\n\s+FAIL\s+forbidden-mx: .*\n\s+fix: delete `MX 5 srv-1\.alwaysdata\.net` at your DNS provider/);
    expect(r.out).toMatch(/good\.com\s+OK\n/);
  });

  test('--file - reads stdin; --resolver overrides the config; no progress bar in pipes', async () => {
    const r = await cli(['--file', '-', '--resolver', '127.0.0.1:5353', '--json'], { stdin: '# list\ngood.com\n\nwarn.com  # comment\n' });
    expect(r.code).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(2);
    expect(r.settings!.resolver).toBe('127.0.0.1:5353');
    expect(r.err).not.toMatch(/\[#/);
  });

  test('progress bar on a TTY', async () => {
    const r = await cli(['good.com', 'warn.com', 'bad.com'], { tty: true });
    expect(r.err).toMatch(/\[#+\] 3\/3/);
  });
});

describe('API /v1/mx-audit', () => {
  let base = '';
  let close: () => void = () => {};
  const verdicts: AuditVerdict[] = [];
  beforeAll(async () => {
    const app = express();
    app.use(express.json({ type: () => true, limit: '5mb' }));
    app.use('/v1', mxAuditRoutes(auditorFor(mxAuditSettings()), (v) => verdicts.push(v)));
    app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
      if (err instanceof ApiError) res.status(err.status).json(errorBody(err.code, err.message));
      else res.status(500).json(errorBody('INTERNAL', String(err)));
    });
    const srv = app.listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`;
    close = () => srv.close();
  });
  afterAll(() => close());

  test('GET one domain', async () => {
    const res = await fetch(`${base}/mx-audit/bad.com`);
    expect(res.status).toBe(200);
    const body = await res.json() as { domain: string; verdict: string };
    expect(body).toMatchObject({ domain: 'bad.com', verdict: 'FAIL' });
    expect(verdicts).toContain('FAIL');
  });

  test('GET an invalid name: 400 with the error shape', async () => {
    const res = await fetch(`${base}/mx-audit/bad..name`);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringMatching(/invalid domain name/) } });
  });

  test('POST many, bad names per item', async () => {
    const res = await fetch(`${base}/mx-audit`, { method: 'POST', body: JSON.stringify({ domains: ['good.com', 42, 'down.com', '-bad.com'] }) });
    expect(res.status).toBe(200);
    const body = await res.json() as { results: { domain: string; verdict: string }[]; counts: Record<string, number> };
    expect(body.results.map((r) => r.verdict)).toEqual(['OK', 'INVALID', 'UNKNOWN', 'INVALID']);
    expect(body.counts).toEqual({ OK: 1, INVALID: 2, UNKNOWN: 1 });
  });

  test.each([
    [{ domains: 'good.com' }, 400], [{}, 400], [{ domains: [] }, 400], [[1], 400],
    [{ domains: Array.from({ length: 10_001 }, (_, i) => `d${i}.com`) }, 413],
  ] as [unknown, number][])('POST body #%#: status %p', async (body, status) => {
    const res = await fetch(`${base}/mx-audit`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST');
  });
});

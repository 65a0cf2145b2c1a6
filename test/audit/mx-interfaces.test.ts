/** The CLI command and the API routes of the MX audit, over an auditor with canned lookups (no DNS). */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import express, { type NextFunction, type Request, type Response } from 'express';
import { mxAuditSettings, type MxAuditSettings } from '../../src/audit/audit-settings.js';
import { createMxAuditor, type AuditVerdict } from '../../src/audit/mx-audit.js';
import type { AuditInput, MxRecord } from '../../src/audit/mx-rules.js';
import { ApiError, errorBody } from '../../src/api/errors.js';
import { mxAuditRoutes } from '../../src/api/routes/mx-audit-routes.js';
import { runMxAuditCommand } from '../../src/cli/mx-audit-command.js';

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
  });
  return { code, out: stdout.text, err: stderr.text, settings: seen };
}

describe('failoverctl mx-audit', () => {
  test.each([
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

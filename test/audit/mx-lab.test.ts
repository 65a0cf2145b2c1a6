/**
 * The MX audit against real servers on loopback (test/support/dns-lab.ts): NSD as the fake root,
 * com./net., the provider's and an external provider's DNS, unbound as the recursive resolver.
 * One zone per case (test/fixtures/mx-lab/cases.yaml; `copies` repeats a case whose answers depend
 * on which server unbound picks, `resolver_data` makes unbound's empty answer happen on purpose);
 * each verdict and fix is asserted. Debian packages: nsd, unbound, ldnsutils.
 */
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createMxAuditor, type AuditResult, type MxAuditor } from '../../src/audit/mx-audit.js';
import { assertLabCase, loadLabCases, startDnsLab, type DnsLab, type LabCase } from '../support/dns-lab.js';

const cases = loadLabCases();
let lab: DnsLab;
let auditor: MxAuditor;
const results = new Map<string, AuditResult>();

beforeAll(async () => {
  lab = await startDnsLab({ cases });
  // Let unbound find out about the dead name server first (its own retries take seconds and would
  // race our client's timeout): afterwards it answers SERVFAIL at once, as a warm resolver does.
  await createMxAuditor(lab.settings({ timeout_ms: 15_000, retries: 0 })).audit('dead-ns.com');
  auditor = createMxAuditor(lab.settings({ timeout_ms: 1000, retries: 2 }));
  const all = await auditor.auditMany(cases.map((c) => c.domain), { concurrency: 8 });
  for (const r of all) results.set(r.domain, r);
}, 180_000);

afterAll(async () => {
  await lab?.stop();
});

describe('MX audit in the DNS lab', () => {
  test.each(cases.map((c) => [c.domain, c] as [string, LabCase]))('%s', (domain, c) => {
    assertLabCase(c, results.get(domain));
  });

  test('the verdict OK comes with no WARN/FAIL/UNKNOWN check', () => {
    const r = results.get('good.com')!;
    expect(r.checks.filter((c) => c.verdict !== 'OK' && c.verdict !== 'INFO')).toEqual([]);
    expect(r.checks.map((c) => c.check)).toEqual(expect.arrayContaining(['dns-host', 'mx-present', 'forbidden-mx', 'required-mx', 'mx-target', 'auth-servers', 'spf']));
  });

  test('a DNSSEC-bogus zone is told apart from a plain SERVFAIL', () => {
    const bogus = results.get('bogus-dnssec.com')!;
    const dead = results.get('dead-ns.com')!;
    expect(bogus.checks.find((c) => c.check === 'mx-lookup')!.evidence).toMatch(/bogus/);
    expect(dead.checks.find((c) => c.check === 'mx-lookup')!.evidence).toMatch(/SERVFAIL .* \(not a DNSSEC failure: SERVFAIL with CD=1 too\)$/);
  });

  test('a dead resolver gives UNKNOWN, never OK', async () => {
    const a = createMxAuditor(lab.settings({ resolver: `${lab.ip('deadResolver')}:53`, timeout_ms: 200, retries: 1 }));
    const r = await a.audit('good.com');
    expect(r.verdict).toBe('UNKNOWN');
    expect(r.checks.find((c) => c.check === 'mx-lookup')!.evidence).toMatch(/timeout from .*:53 after 2 attempts/);
  });

  test('a resolver that never answers gives UNKNOWN (timeout after retries)', async () => {
    const hole = createSocket('udp4');
    await new Promise<void>((res) => hole.bind(0, '127.0.0.1', () => res()));
    try {
      const a = createMxAuditor(lab.settings({ resolver: `127.0.0.1:${hole.address().port}`, timeout_ms: 150, retries: 2 }));
      const r = await a.audit('good.com');
      expect(r.verdict).toBe('UNKNOWN');
      expect(r.checks.map((c) => [c.check, c.verdict])).toEqual([['ns-lookup', 'UNKNOWN'], ['mx-lookup', 'UNKNOWN']]);
      expect(r.checks[1].evidence).toMatch(/^MX lookup failed: timeout from 127\.0\.0\.1:\d+ after 3 attempts$/);
    } finally {
      hole.close();
    }
  });

  test('invalid names are reported, not looked up', async () => {
    const r = await auditor.auditMany(['bad..name', 'good.com', '192.0.2.1', '-x.com']);
    expect(r.map((x) => x.verdict)).toEqual(['INVALID', 'OK', 'INVALID', 'INVALID']);
    expect(r[0].error!.code).toBe('INVALID_DOMAIN');
  });
});

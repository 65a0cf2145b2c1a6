/**
 * Negative answers need proof: the MX audit through a filtering resolver (test/support/dns-lab.ts,
 * unbound at .54 answering NXDOMAIN or NODATA without SOA for the cases of
 * test/fixtures/mx-lab/filtering.yaml) in front of real zones. A negative answer without an SOA is
 * checked with the parent zone's servers: domains that exist are UNKNOWN with both answers in the
 * evidence, never FAIL; FAIL only when the parent's servers confirm. Debian packages: nsd, unbound, ldnsutils.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createMxAuditor, type AuditResult } from '../../src/audit/mx-audit.js';
import { assertLabCase, loadLabCases, MX_LAB_FIXTURES, startDnsLab, type DnsLab, type LabCase } from '../support/dns-lab.js';

const cases = loadLabCases(join(MX_LAB_FIXTURES, 'filtering.yaml'));
let lab: DnsLab;
const filtered = new Map<string, AuditResult>();
const plain = new Map<string, AuditResult>();

beforeAll(async () => {
  lab = await startDnsLab({ cases, resolverThreads: 1 });
  const through = (resolver: string) => createMxAuditor(lab.settings({ resolver, timeout_ms: 1000, retries: 2 }))
    .auditMany(cases.map((c) => c.domain), { concurrency: 8 });
  const [f, p] = await Promise.all([through(lab.filteringResolver!), through(lab.resolver)]);
  for (const r of f) filtered.set(r.domain, r);
  for (const r of p) plain.set(r.domain, r);
}, 180_000);

afterAll(async () => {
  await lab?.stop();
});

describe('negative answers without proof (filtering resolver)', () => {
  test.each(cases.map((c) => [c.domain, c] as [string, LabCase]))('%s', (domain, c) => {
    assertLabCase(c, filtered.get(domain));
  });

  test('behind the plain resolver, the domains that exist are not UNKNOWN, and those that do not are FAIL', () => {
    const verdicts = Object.fromEntries([...plain].map(([d, r]) => [d, r.verdict]));
    expect(verdicts).toEqual({
      'filtered-exists.com': 'OK',
      'filtered-gone.com': 'FAIL',
      'plain-gone.com': 'FAIL',
      'filtered-nodata.com': 'OK',
      'filtered-nodata-no-mx.com': 'FAIL',
      'filtered-target.com': 'WARN', // its own mail host mixed with the provider's
      'filtered-target-gone.com': 'FAIL',
      'filtered-spf.com': 'OK',
    });
  });

  test('a filtered answer whose parent zone cannot be asked is UNKNOWN, never FAIL', async () => {
    // nothing listens on port 9 of the lab's servers: every direct question fails
    const a = createMxAuditor(lab.settings({ resolver: lab.filteringResolver!, authoritative_port: 9, timeout_ms: 300, retries: 1 }));
    const r = await a.audit('filtered-gone.com');
    expect(r.verdict).toBe('UNKNOWN');
    expect(r.checks.find((c) => c.check === 'mx-lookup')!.evidence).toMatch(
      /^MX lookup failed: the resolver \([0-9.]+:53\) answered NXDOMAIN for MX of filtered-gone\.com without an SOA .*, and the authoritative servers \(from the parent zone down\) could not be asked: a\.gtld-servers\.net \([0-9.]+\): /);
  });
});

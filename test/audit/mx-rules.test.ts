/** Table-driven tests of the pure MX rules (no DNS): one row per rule and edge. */
import { describe, expect, test } from '@jest/globals';
import { mxAuditSettings } from '../../src/audit/audit-settings.js';
import {
  insertInclude, isIpLiteral, judgedMx, judgedTxt, matchesPattern, mxTargetHosts, overallVerdict, runMxRules,
  type AuditInput, type Check, type MxRecord,
} from '../../src/audit/mx-rules.js';

const S = mxAuditSettings();
const EXT = ['ns1.extdns.net', 'ns2.extdns.net'];
const GOOD_MX: MxRecord[] = [{ priority: 10, host: 'mx1.alwaysdata.com' }, { priority: 20, host: 'mx2.alwaysdata.com' }];
const SPF = 'v=spf1 include:_spf.alwaysdata.com ~all';

/** A good external domain, with overrides. */
function input(over: Partial<AuditInput> & { mxList?: MxRecord[] } = {}): AuditInput {
  const mx = over.mxList ?? GOOD_MX;
  const base: AuditInput = {
    domain: 'example.com',
    zone: 'example.com',
    ns: { status: 'ok', values: EXT },
    mx: mx.length ? { status: 'ok', values: mx } : { status: 'nodata', values: [] },
    targets: [...new Set(mx.map((m) => m.host))].filter((h) => h !== '.' && !isIpLiteral(h))
      .map((host) => ({ host, addresses: { status: 'ok', values: ['192.0.2.1'] } })),
    txt: { status: 'ok', values: [SPF] },
    auth: EXT.map((ns, i) => ({ ns, address: `192.0.2.${i + 10}`, status: 'answered', rcode: 'NOERROR', aa: true, mx })),
  };
  const { mxList: _m, ...rest } = over;
  return { ...base, ...rest };
}

const failed = { status: 'failed' as const, values: [], error: 'SERVFAIL from 127.0.0.1:53 after 3 attempts' };

type Row = [string, AuditInput, string, Partial<Check>[]];
const rows: Row[] = [
  ['all good', input(), 'OK', []],
  ['NXDOMAIN', input({ ns: { status: 'nxdomain', values: [] }, mx: { status: 'nxdomain', values: [] } }), 'FAIL',
    [{ check: 'domain-exists', verdict: 'FAIL' }]],
  ['NS lookup SERVFAIL', input({ ns: failed, auth: undefined }), 'UNKNOWN', [{ check: 'ns-lookup', verdict: 'UNKNOWN', evidence: `NS lookup failed: ${failed.error}` }]],
  ['MX lookup timeout', input({ mx: { status: 'failed', values: [], error: 'timeout from 127.0.0.1:53 after 3 attempts' } }), 'UNKNOWN',
    [{ check: 'mx-lookup', verdict: 'UNKNOWN' }]],
  ['DNSSEC bogus', input({ mx: { ...failed, dnssecBogus: true, bogusReason: 'the resolver answers NOERROR when asked again with CD=1 (checking disabled)' } }), 'UNKNOWN',
    [{ check: 'mx-lookup', verdict: 'UNKNOWN', evidence: `MX lookup failed DNSSEC validation (bogus): ${failed.error}; the resolver answers NOERROR when asked again with CD=1 (checking disabled)` }]],
  ['provider DNS skips the external rules', input({ ns: { status: 'ok', values: ['dns1.alwaysdata.com', 'DNS2.alwaysdata.com.'] }, mxList: [{ priority: 5, host: 'srv-1.alwaysdata.net' }], txt: { status: 'ok', values: [] } }), 'INFO',
    [{ check: 'dns-host', verdict: 'INFO' }]],
  ['forbidden MX', input({ mxList: [{ priority: 5, host: 'srv-42.alwaysdata.net' }, ...GOOD_MX] }), 'FAIL',
    [{ check: 'forbidden-mx', verdict: 'FAIL', fix: 'delete `MX 5 srv-42.alwaysdata.net` at your DNS provider' }]],
  ['required MX missing', input({ mxList: [GOOD_MX[0]] }), 'FAIL',
    [{ check: 'required-mx', verdict: 'FAIL', fix: 'add `MX 20 mx2.alwaysdata.com` at your DNS provider' }]],
  ['required MX with another priority', input({ mxList: [GOOD_MX[0], { priority: 15, host: 'mx2.alwaysdata.com' }] }), 'FAIL',
    [{ check: 'required-mx', verdict: 'FAIL', fix: 'change `MX 15 mx2.alwaysdata.com` to `MX 20 mx2.alwaysdata.com` at your DNS provider' }]],
  ['foreign MX mixed', input({ mxList: [...GOOD_MX, { priority: 30, host: 'mx.other.example' }] }), 'WARN',
    [{ check: 'foreign-mx', verdict: 'WARN', fix: 'delete `MX 30 mx.other.example` at your DNS provider' }]],
  ['no MX', input({ mxList: [] }), 'FAIL',
    [{ check: 'mx-present', verdict: 'FAIL', fix: 'add `MX 10 mx1.alwaysdata.com` and `MX 20 mx2.alwaysdata.com` at your DNS provider' }]],
  ['null MX', input({ mxList: [{ priority: 0, host: '.' }] }), 'FAIL',
    [{ check: 'mx-present', verdict: 'FAIL', fix: 'delete `MX 0 .`, then add `MX 10 mx1.alwaysdata.com` and `MX 20 mx2.alwaysdata.com` at your DNS provider' }]],
  ['CNAME target', (() => {
    const i = input({ mxList: [...GOOD_MX, { priority: 30, host: 'mail.example.com' }] });
    i.targets.find((t) => t.host === 'mail.example.com')!.cname = 'mx2.alwaysdata.com';
    return i;
  })(), 'WARN', [{ check: 'mx-target', verdict: 'WARN', fix: 'change `MX 30 mail.example.com` to `MX 30 mx2.alwaysdata.com` at your DNS provider' }]],
  ['IP literal target', input({ mxList: [...GOOD_MX, { priority: 30, host: '192.0.2.7' }] }), 'FAIL',
    [{ check: 'mx-target', verdict: 'FAIL' }]],
  ['target without address', (() => {
    const i = input({ mxList: [...GOOD_MX, { priority: 30, host: 'gone.example.com' }] });
    i.targets.find((t) => t.host === 'gone.example.com')!.addresses = { status: 'nxdomain', values: [] };
    return i;
  })(), 'FAIL', [{ check: 'mx-target', verdict: 'FAIL', fix: 'delete `MX 30 gone.example.com` at your DNS provider' }]],
  ['target lookup failed is UNKNOWN, not FAIL', (() => {
    const i = input();
    i.targets[0].addresses = failed;
    return i;
  })(), 'UNKNOWN', [{ check: 'mx-target', verdict: 'UNKNOWN' }]],
  ['same host twice', input({ mxList: [...GOOD_MX, { priority: 5, host: 'mx1.alwaysdata.com' }] }), 'WARN',
    [{ check: 'duplicate-mx', verdict: 'WARN', fix: 'delete `MX 5 mx1.alwaysdata.com` at your DNS provider' }]],
  ['same priority', input({ ns: { status: 'ok', values: ['dns1.alwaysdata.com'] }, mxList: [{ priority: 10, host: 'mx1.alwaysdata.com' }, { priority: 10, host: 'mx2.alwaysdata.com' }] }), 'INFO',
    [{ check: 'same-priority', verdict: 'INFO' }]],
  ['lame: REFUSED', input({ auth: [{ ns: 'ns1.extdns.net', address: '192.0.2.10', status: 'answered', rcode: 'REFUSED', aa: false }] }), 'WARN',
    [{ check: 'lame-server', verdict: 'WARN', fix: 'delete `example.com. NS ns1.extdns.net` at your registrar and DNS provider, or make ns1.extdns.net serve example.com' }]],
  ['lame: no AA', input({ auth: [{ ns: 'ns1.extdns.net', address: '192.0.2.10', status: 'answered', rcode: 'NOERROR', aa: false }] }), 'WARN',
    [{ check: 'lame-server', verdict: 'WARN' }]],
  ['dead server', input({ auth: [{ ns: 'ns1.extdns.net', address: '192.0.2.10', status: 'timeout', aa: false, detail: 'timeout' }] }), 'WARN',
    [{ check: 'lame-server', verdict: 'WARN' }]],
  ['stale secondary', input({ auth: [
    { ns: 'ns1.extdns.net', address: '192.0.2.10', status: 'answered', rcode: 'NOERROR', aa: true, mx: GOOD_MX },
    { ns: 'ns3.extdns.net', address: '192.0.2.12', status: 'answered', rcode: 'NOERROR', aa: true, mx: GOOD_MX },
    { ns: 'ns2.extdns.net', address: '192.0.2.11', status: 'answered', rcode: 'NOERROR', aa: true, mx: [{ priority: 5, host: 'srv-1.alwaysdata.net' }, ...GOOD_MX] },
  ] }), 'WARN', [{ check: 'stale-secondary', verdict: 'WARN', fix: 'on ns2.extdns.net: delete `MX 5 srv-1.alwaysdata.net` (a stale secondary: make it transfer example.com again and compare SOA serials)' }]],
  ['no SPF', input({ txt: { status: 'ok', values: ['google-site-verification=x'] } }), 'WARN',
    [{ check: 'spf', verdict: 'WARN', fix: 'add `TXT "v=spf1 include:_spf.alwaysdata.com ~all"` at your DNS provider' }]],
  ['two SPF', input({ txt: { status: 'ok', values: [SPF, 'v=spf1 a -all'] } }), 'WARN', [{ check: 'spf', verdict: 'WARN' }]],
  ['SPF without the include', input({ txt: { status: 'ok', values: ['v=spf1 a mx -all'] } }), 'WARN',
    [{ check: 'spf', verdict: 'WARN', fix: 'change `TXT "v=spf1 a mx -all"` to `TXT "v=spf1 a mx include:_spf.alwaysdata.com -all"` at your DNS provider' }]],
  ['SPF via redirect', input({ txt: { status: 'ok', values: ['v=spf1 redirect=_spf.alwaysdata.com'] } }), 'OK', []],
  ['TXT lookup failed', input({ txt: failed }), 'UNKNOWN', [{ check: 'spf', verdict: 'UNKNOWN' }]],
];

describe('MX rules', () => {
  test.each(rows)('%s', (_name, inp, verdict, want) => {
    const checks = runMxRules(inp, S);
    expect(overallVerdict(checks)).toBe(verdict);
    for (const w of want) expect(checks).toContainEqual(expect.objectContaining(w));
    for (const c of checks) if (c.verdict === 'FAIL' || c.verdict === 'WARN') expect(typeof c.fix).toBe('string');
  });

  test('provider DNS: no forbidden/required/foreign/SPF checks', () => {
    const checks = runMxRules(input({ ns: { status: 'ok', values: ['dns1.alwaysdata.com', 'dns2.alwaysdata.com'] }, mxList: [{ priority: 5, host: 'srv-1.alwaysdata.net' }] }), S);
    expect(checks.map((c) => c.check)).not.toEqual(expect.arrayContaining(['forbidden-mx']));
    expect(checks.some((c) => ['required-mx', 'foreign-mx', 'spf'].includes(c.check))).toBe(false);
  });

  test('verdict order OK < INFO < WARN < UNKNOWN < FAIL', () => {
    const c = (verdict: Check['verdict']): Check => ({ check: 'x', verdict, evidence: '', fix: null });
    expect(overallVerdict([])).toBe('OK');
    expect(overallVerdict([c('INFO'), c('OK')])).toBe('INFO');
    expect(overallVerdict([c('WARN'), c('UNKNOWN'), c('INFO')])).toBe('UNKNOWN');
    expect(overallVerdict([c('UNKNOWN'), c('FAIL')])).toBe('FAIL');
  });

  test.each([
    ['srv-42.alwaysdata.net', '*.alwaysdata.net', true], ['alwaysdata.net', '*.alwaysdata.net', false],
    ['SRV.AlwaysData.NET.', '*.alwaysdata.net', true], ['xalwaysdata.net', '*.alwaysdata.net', false],
    ['mx1.alwaysdata.com', 'mx1.alwaysdata.com', true],
  ] as [string, string, boolean][])('matchesPattern(%s, %s) = %s', (h, p, want) => expect(matchesPattern(h, p)).toBe(want));

  test('insertInclude puts the include before all/redirect', () => {
    expect(insertInclude('v=spf1 mx -all', 'x.com')).toBe('v=spf1 mx include:x.com -all');
    expect(insertInclude('v=spf1 mx', 'x.com')).toBe('v=spf1 mx include:x.com');
    expect(insertInclude('v=spf1 redirect=y.com', 'x.com')).toBe('v=spf1 include:x.com redirect=y.com');
  });
});

describe('a lame server answering the resolver', () => {
  test("an empty MX answer from the resolver is judged by the authoritative servers' MX, with a note", () => {
    const mx = [{ priority: 10, host: 'mx1.alwaysdata.com' }, { priority: 20, host: 'mx2.alwaysdata.com' }];
    const checks = runMxRules({
      domain: 'lame.example',
      ns: { status: 'ok', values: ['ns1.ext.example', 'lame.ext.example'] },
      mx: { status: 'ok', values: [] },
      targets: [],
      txt: { status: 'ok', values: ['v=spf1 include:_spf.alwaysdata.com ~all'] },
      auth: [
        { ns: 'ns1.ext.example', address: '192.0.2.1', status: 'answered', rcode: 'NOERROR', aa: true, mx },
        { ns: 'lame.ext.example', address: '192.0.2.2', status: 'answered', rcode: 'NOERROR', aa: false },
      ],
    } as unknown as AuditInput, S);
    const present = checks.find((c: Check) => c.check === 'mx-present')!;
    expect(present.verdict).toBe('OK');
    expect(present.evidence).toContain('a lame server answered the resolver');
    expect(checks.find((c: Check) => c.check === 'lame-server')?.verdict).toBe('WARN');
  });
});

describe('what the rules judge when the resolver answered no records', () => {
  const lame = { ns: 'lame.ext.example', address: '192.0.2.2', status: 'answered' as const, rcode: 'NOERROR', aa: false };
  const good = { ns: 'ns1.ext.example', address: '192.0.2.1', status: 'answered' as const, rcode: 'NOERROR', aa: true, mx: GOOD_MX, txt: [SPF] };
  const empty = { status: 'nodata' as const, values: [] };

  test("judgedMx / judgedTxt: the resolver's records, or an AA server's when the resolver has none", () => {
    expect(judgedMx({ mx: { status: 'ok', values: [GOOD_MX[0]] }, auth: [good] })).toEqual({ values: [GOOD_MX[0]] });
    expect(judgedMx({ mx: empty, auth: [lame, good] })).toEqual({ values: GOOD_MX, from: good });
    expect(judgedMx({ mx: empty, auth: [lame] })).toEqual({ values: [] });
    expect(judgedMx({ mx: empty, auth: [{ ...good, rcode: 'REFUSED' }] })).toEqual({ values: [] });
    // a failed lookup stays failed (UNKNOWN), never replaced
    expect(judgedMx({ mx: failed, auth: [good] })).toEqual({ values: [] });
    expect(judgedTxt({ txt: empty, auth: [lame, good] })).toEqual({ values: [SPF], from: good });
    expect(judgedTxt({ txt: empty, auth: undefined })).toEqual({ values: [] });
  });

  test('mxTargetHosts: host names to look up, once each, lower case; not the null MX nor IP literals', () => {
    expect(mxTargetHosts([
      { priority: 10, host: 'MX1.alwaysdata.com.' }, { priority: 30, host: 'mx1.alwaysdata.com' },
      { priority: 0, host: '.' }, { priority: 40, host: '192.0.2.25' }, { priority: 50, host: '[2001:db8::25]' },
    ])).toEqual(['mx1.alwaysdata.com']);
  });

  test("the authoritative server's MX are judged with their targets: OK when looked up, UNKNOWN (never OK) when not", () => {
    const base = {
      domain: 'lame.example', zone: 'lame.example', ns: { status: 'ok' as const, values: ['ns1.ext.example', 'lame.ext.example'] },
      mx: empty, txt: { status: 'ok' as const, values: [SPF] }, auth: [good, lame],
    };
    const looked = runMxRules({ ...base, targets: GOOD_MX.map((m) => ({ host: m.host, addresses: { status: 'ok', values: ['192.0.2.25'] } })) }, S);
    expect(looked.filter((c) => c.check === 'mx-target')).toEqual([expect.objectContaining({ verdict: 'OK' })]);
    expect(overallVerdict(looked)).toBe('WARN'); // the lame server
    const notLooked = runMxRules({ ...base, targets: [] }, S);
    expect(notLooked.filter((c) => c.check === 'mx-target').map((c) => c.verdict)).toEqual(['UNKNOWN', 'UNKNOWN']);
    expect(overallVerdict(notLooked)).toBe('UNKNOWN');
  });

  test("an empty TXT answer from the resolver is judged by an authoritative server's TXT, with a note", () => {
    const checks = runMxRules(input({ txt: empty, auth: [good, lame] }), S);
    const spf = checks.find((c) => c.check === 'spf')!;
    expect(spf.verdict).toBe('OK');
    expect(spf.evidence).toContain('the resolver answered no TXT; this comes from the authoritative server ns1.ext.example');
    // with no authoritative TXT either, "no SPF record" stands
    expect(runMxRules(input({ txt: empty, auth: [{ ...good, txt: undefined }] }), S).find((c) => c.check === 'spf')!.verdict).toBe('WARN');
  });

  test('NS taken from the parent zone are named in the evidence', () => {
    const checks = runMxRules(input({ ns: { status: 'ok', values: EXT, source: 'the delegation given by a.gtld-servers.net' } }), S);
    expect(checks.find((c) => c.check === 'dns-host')!.evidence).toContain('(the delegation given by a.gtld-servers.net)');
  });
});

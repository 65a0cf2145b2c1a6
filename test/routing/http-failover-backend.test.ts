/** The http backend against the fake Robot webservice (loopback), alone and through withRetry. */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import { HttpFailoverBackend, credentialForms, credentialRedactor, failoverNetOf, type HttpFailoverBackendOptions } from '../../src/routing/http-failover-backend.js';
import { RetryGaveUpError, withRetry, type RetryOptions } from '../../src/routing/retrying-backend.js';
import { RouteError, type DesiredRoute } from '../../src/routing/route-backend.js';
import { FakeRobot, credentialEchoes, credentialTexts, type FakeFaults, type FakeListFaults } from '../support/fake-robot.js';
import { rejection as rejectionOf } from '../support/rejection.js';

const USER = 'robot-user';
const PASSWORD = 'pw-S3cr3t-do-not-leak';

const SRV42 = '198.51.100.42';
const TRANSIT3 = '198.51.100.3';
const SRV42_NET = '2a01:4f8:a:42::';
const TRANSIT3_NET = '2a01:4f8:a:3::';
const IP_A = '203.0.113.10';
const IP_B = '203.0.113.11';
const IP_UNKNOWN = '203.0.113.99';
const NET6 = '2a01:4f8:fff0::';

let fake: FakeRobot;

beforeEach(async () => {
  fake = await FakeRobot.start({
    username: USER,
    password: PASSWORD,
    servers: [
      { ip: SRV42, ipv6Net: `${SRV42_NET}/64` },
      { ip: TRANSIT3, ipv6Net: `${TRANSIT3_NET}/64` },
    ],
    failovers: [
      { ip: IP_A, serverIp: SRV42, activeServerIp: SRV42 },
      { ip: IP_B, serverIp: SRV42, activeServerIp: SRV42 },
      { ip: NET6, serverIp: SRV42, serverIpv6Net: SRV42_NET, activeServerIp: SRV42_NET },
    ],
  });
});
afterEach(async () => {
  await fake.close();
});

function backend(over: Partial<HttpFailoverBackendOptions> = {}): HttpFailoverBackend {
  return new HttpFailoverBackend({
    baseUrl: fake.url,
    username: USER,
    password: PASSWORD,
    serverIps: { 'srv-42': SRV42, 'transit-3': TRANSIT3 },
    serverIpv6Nets: { 'srv-42': `${SRV42_NET}/64`, 'transit-3': `${TRANSIT3_NET}/64` },
    timeoutMs: 2000,
    ...over,
  });
}

const FAST: RetryOptions = { deadlineMs: 3000, minTimeoutMs: 10, maxTimeoutMs: 50 };

const toTransit = (address: string, family: 4 | 6 = 4): DesiredRoute => ({ address, family, to: 'transit-3', from: 'srv-42' });

const rejection = (p: Promise<unknown>) => rejectionOf<RetryGaveUpError>(p);

describe('http backend: apply through withRetry', () => {
  const cases: {
    name: string;
    faults?: FakeFaults;
    startAt?: string;
    /** Per-call timeout: 1 s where a hang is scripted (a hang costs that long), 2 s elsewhere; both far above an answer's time on a loaded machine. */
    timeoutMs?: number;
    expected: 'changed' | 'unchanged';
    posts: number;
    retries: number;
  }[] = [
    { name: 'routed', expected: 'changed', posts: 1, retries: 0 },
    { name: 'already routed: GET shows the target, no POST', startAt: TRANSIT3, expected: 'unchanged', posts: 0, retries: 0 },
    { name: '409 FAILOVER_LOCKED twice, then ok', faults: { locked: 2 }, expected: 'changed', posts: 3, retries: 2 },
    { name: '500 FAILOVER_FAILED once, then ok', faults: { serverErrors: 1 }, expected: 'changed', posts: 2, retries: 1 },
    { name: '500 on the GET once, then ok', faults: { serverErrors: 1, serverErrorMethod: 'GET' }, expected: 'changed', posts: 1, retries: 1 },
    { name: 'the POST hangs: timeout, retried, ok', faults: { hangs: 1, hangMethod: 'POST' }, timeoutMs: 1000, expected: 'changed', posts: 2, retries: 1 },
    { name: 'the GET hangs: timeout, retried, ok', faults: { hangs: 1, hangMethod: 'GET' }, timeoutMs: 1000, expected: 'changed', posts: 1, retries: 1 },
  ];

  test.each(cases)('$name', async ({ faults, startAt, timeoutMs, expected, posts, retries }) => {
    if (faults) fake.fault(IP_A, faults);
    if (startAt) fake.setActive(IP_A, startAt);
    const seen: { attempt: number; error: RouteError }[] = [];
    const b = withRetry(backend(timeoutMs ? { timeoutMs } : {}), { ...FAST, onRetry: (i) => seen.push(i) });

    const result = await b.apply([toTransit(IP_A)]);

    expect(result).toEqual(expected === 'changed' ? { changed: [IP_A], unchanged: [] } : { changed: [], unchanged: [IP_A] });
    expect(fake.activeServerIp(IP_A)).toBe(TRANSIT3);
    expect(fake.requestsFor({ method: 'POST', ip: IP_A })).toHaveLength(posts);
    expect(seen.map((s) => s.attempt)).toEqual(Array.from({ length: retries }, (_, i) => i + 1));
    expect(seen.every((s) => s.error.retryable)).toBe(true);
    for (const p of fake.requestsFor({ method: 'POST' })) {
      expect(p.contentType).toMatch(/^application\/x-www-form-urlencoded/);
      expect(p.body).toEqual({ active_server_ip: TRANSIT3 });
    }
    expect(fake.requests.every((r) => r.authOk)).toBe(true);
  });

  test('a timed-out call names the timeout as its reason', async () => {
    fake.fault(IP_A, { hangs: 1, hangMethod: 'POST' });
    const seen: RouteError[] = [];
    await withRetry(backend({ timeoutMs: 1000 }), { ...FAST, onRetry: (i) => seen.push(i.error) }).apply([toTransit(IP_A)]);
    expect(seen[0].message).toMatch(/POST \/failover\/203\.0\.113\.10 -> transit-3 \(198\.51\.100\.3\): no answer within 1000 ms/);
    expect(fake.requestsFor({ method: 'POST' })[0].status).toBeNull();
  });

  test('409 FAILOVER_ALREADY_ROUTED on the POST (someone routed it after our GET) counts as unchanged', async () => {
    const racing: typeof fetch = async (input, init) => {
      if (init?.method === 'POST') fake.setActive(IP_A, TRANSIT3);
      return fetch(input, init);
    };
    const result = await backend({ fetch: racing }).apply([toTransit(IP_A)]);
    expect(result).toEqual({ changed: [], unchanged: [IP_A] });
    expect(fake.requestsFor({ method: 'POST' }).map((r) => r.status)).toEqual([409]);
  });

  test('a switch slower than the call timeout: timeout, FAILOVER_LOCKED meanwhile, then seen done', async () => {
    // The switch takes 3 s; each call gives up after 1 s (an answer takes ms, even on a loaded machine).
    fake.fault(IP_A, { routeDelayMs: 3000 });
    const seen: RouteError[] = [];
    const result = await withRetry(backend({ timeoutMs: 1000 }), { ...FAST, deadlineMs: 20_000, minTimeoutMs: 20, onRetry: (i) => seen.push(i.error) }).apply([toTransit(IP_A)]);
    // The switch we started finished server-side; the retry only finds it done.
    expect(result).toEqual({ changed: [], unchanged: [IP_A] });
    expect(fake.activeServerIp(IP_A)).toBe(TRANSIT3);
    expect(seen[0].message).toMatch(/no answer within 1000 ms/);
    const posts = fake.requestsFor({ method: 'POST' });
    expect(posts.filter((p) => p.status === 200)).toHaveLength(1);
    expect(posts.slice(1).every((p) => p.status === 409)).toBe(true);
  });

  test('unchanged addresses are not POSTed again', async () => {
    const b = withRetry(backend(), FAST);
    expect(await b.apply([toTransit(IP_A), toTransit(IP_B)])).toEqual({ changed: [IP_A, IP_B], unchanged: [] });
    expect(fake.requestsFor({ method: 'POST' })).toHaveLength(2);
    fake.setActive(IP_B, SRV42); // only B was moved back meanwhile
    expect(await b.apply([toTransit(IP_A), toTransit(IP_B)])).toEqual({ changed: [IP_B], unchanged: [IP_A] });
    expect(fake.requestsFor({ method: 'POST', ip: IP_A })).toHaveLength(1);
    expect(fake.requestsFor({ method: 'POST', ip: IP_B })).toHaveLength(2);
  });

  test('IPv6 failover net: addressed by its net address, routed to the target main IPv6 net', async () => {
    const b = withRetry(backend(), FAST);
    for (const address of [NET6, `${NET6}/64`, '2a01:4f8:fff0:0:0:0:0:10']) {
      fake.setActive(NET6, SRV42_NET);
      expect(await b.apply([toTransit(address, 6)])).toEqual({ changed: [address], unchanged: [] });
    }
    const posts = fake.requestsFor({ method: 'POST' });
    expect(posts.map((p) => p.path)).toEqual(Array(3).fill(`/failover/${NET6}`));
    expect(posts.map((p) => p.body.active_server_ip)).toEqual(Array(3).fill(TRANSIT3_NET));
    expect(await b.current([NET6])).toEqual([{ address: NET6, to: 'transit-3' }]);
    expect(await b.apply([toTransit(NET6, 6)])).toEqual({ changed: [], unchanged: [NET6] });
  });

  test('two addresses of one IPv6 failover net: one switch, both reported', async () => {
    const a1 = '2a01:4f8:fff0::10';
    const a2 = '2a01:4f8:fff0::20';
    expect(await backend().apply([toTransit(a1, 6), toTransit(a2, 6)])).toEqual({ changed: [a1, a2], unchanged: [] });
    expect(fake.requestsFor({ method: 'POST' })).toHaveLength(1);
    const err = await rejection(backend().apply([toTransit(a1, 6), { address: a2, family: 6, to: 'srv-42', from: 'transit-3' }]));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/two different hosts/);
  });

  test('back and forth: srv-42 -> transit-3 -> srv-42', async () => {
    const b = withRetry(backend(), FAST);
    await b.apply([toTransit(IP_A)]);
    expect(await b.current([IP_A])).toEqual([{ address: IP_A, to: 'transit-3' }]);
    await b.apply([{ address: IP_A, family: 4, to: 'srv-42', from: 'transit-3' }]);
    expect(await b.current([IP_A])).toEqual([{ address: IP_A, to: 'srv-42' }]);
    expect(fake.activeServerIp(IP_A)).toBe(SRV42);
  });
});

describe('http backend: final errors and the deadline', () => {
  test('wrong password: final at once, mentions credentials, never the password', async () => {
    const wrong = 'Wr0ng-pa55word';
    const err = await rejection(withRetry(backend({ password: wrong }), FAST).apply([toTransit(IP_A), toTransit(IP_B)]));
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(false);
    expect(err.reason).toBe('final');
    expect(err.attempts).toBe(1);
    expect(err.message).toMatch(/401/);
    expect(err.message).toMatch(/check credentials/);
    expect(err.message).not.toContain(wrong);
    expect(err.message).not.toContain(PASSWORD);
    expect(JSON.stringify(err)).not.toContain(wrong);
    expect(err.stack ?? '').not.toContain(wrong);
    // One request only: the provider blocks the client after 3 failed logins.
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0].authOk).toBe(false);
  });

  test('404 for a failover IP not in the account: final, one request', async () => {
    const err = await rejection(withRetry(backend(), FAST).apply([toTransit(IP_UNKNOWN)]));
    expect(err.retryable).toBe(false);
    expect(err.reason).toBe('final');
    expect(err.address).toBe(IP_UNKNOWN);
    expect(err.message).toMatch(/404 NOT_FOUND/);
    expect(fake.requests).toHaveLength(1);
  });

  test('a deadline that expires: fails with the last reason and the attempt count', async () => {
    fake.fault(IP_A, { locked: 1_000 });
    const t0 = performance.now();
    const err = await rejection(withRetry(backend(), { deadlineMs: 2000, minTimeoutMs: 20, maxTimeoutMs: 40 }).apply([toTransit(IP_A)]));
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(RetryGaveUpError);
    expect(err.reason).toBe('deadline');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/409 FAILOVER_LOCKED/);
    expect(err.message).toMatch(/2000 ms deadline/);
    expect(err.attempts).toBeGreaterThanOrEqual(2);
    expect(err.message).toContain(`${err.attempts} attempts`);
    expect(fake.requestsFor({ method: 'POST' })).toHaveLength(err.attempts);
    expect(took).toBeGreaterThanOrEqual(2000 - 2);
    // The deadline plus at most one attempt in flight (each bounded by the 2 s call timeout), plus
    // seconds of slack for a loaded machine: it stops, it does not retry on.
    expect(took).toBeLessThan(2000 + 2000 + 3000);
  });

  test('a deadline while every call hangs: each call is bounded by its timeout', async () => {
    fake.fault(IP_A, { hangs: 1_000 });
    const t0 = performance.now();
    const err = await rejection(withRetry(backend({ timeoutMs: 100 }), { deadlineMs: 2000, minTimeoutMs: 10, maxTimeoutMs: 20 }).apply([toTransit(IP_A)]));
    const took = performance.now() - t0;
    expect(err.reason).toBe('deadline');
    expect(err.message).toMatch(/GET \/failover\/203\.0\.113\.10: no answer within 100 ms/);
    expect(err.attempts).toBeGreaterThanOrEqual(2);
    expect(fake.requests).toHaveLength(err.attempts);
    expect(fake.requests.every((r) => r.status === null)).toBe(true);
    // Deadline + one call timeout, plus seconds of slack for a loaded machine (a call that were not
    // bounded would never end: the fake never answers).
    expect(took).toBeLessThan(2000 + 100 + 3000);
  });

  test('a destination the provider does not know: 404 FAILOVER_NEW_SERVER_NOT_FOUND is final', async () => {
    const b = backend({ serverIps: { 'srv-42': SRV42, 'transit-3': '198.51.100.77' } });
    const err = await rejection(withRetry(b, FAST).apply([toTransit(IP_A)]));
    expect(err.reason).toBe('final');
    expect(err.message).toMatch(/FAILOVER_NEW_SERVER_NOT_FOUND/);
  });

  test('one address fails for good, the others are still routed; the error is final', async () => {
    const err = await rejection(withRetry(backend(), FAST).apply([toTransit(IP_UNKNOWN), toTransit(IP_A)]));
    expect(err.reason).toBe('final');
    expect(err.address).toBe(IP_UNKNOWN);
    expect(fake.activeServerIp(IP_A)).toBe(TRANSIT3);
  });

  test.each([
    ['not an address', 'srv-42.example', 4],
    ['a path', '203.0.113.10/../../server', 4],
    ['a zone id', 'fe80::1%eth0', 6],
    ['the wrong family', IP_A, 6],
  ] as const)('%s is refused before any request: %s', async (_n, address, family) => {
    const err = await rejection(backend().apply([{ address, family, to: 'transit-3', from: 'srv-42' }]));
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(false);
    expect(fake.requests).toHaveLength(0);
  });

  test('a host without a configured main IP is refused before any request', async () => {
    const err = await rejection(backend().apply([toTransit(IP_A), { address: IP_B, family: 4, to: 'transit-9', from: 'srv-42' }]));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/transit-9/);
    expect(fake.requests).toHaveLength(0);
  });

  test('a provider message echoing the password is redacted', async () => {
    const echo: typeof fetch = async () =>
      new Response(JSON.stringify({ error: { status: 500, code: 'INTERNAL_ERROR', message: `bad ${PASSWORD}` } }), { status: 500 });
    const err = await rejection(backend({ fetch: echo }).apply([toTransit(IP_A)]));
    expect(err.retryable).toBe(true);
    expect(err.message).not.toContain(PASSWORD);
    expect(err.message).toContain('***');
  });

  test('connection refused is retryable', async () => {
    const url = fake.url;
    await fake.close();
    const err = await rejection(backend({ baseUrl: url }).current([IP_A]));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/connection failed/);
    fake = await FakeRobot.start({ username: USER, password: PASSWORD, servers: [], failovers: [] });
  });

  test('the constructor refuses credentials in baseUrl without echoing them', () => {
    expect(() => backend({ baseUrl: `http://u:${PASSWORD}@127.0.0.1:1` })).toThrow(/must not carry credentials/);
    try {
      backend({ baseUrl: `http://u:${PASSWORD}@127.0.0.1:1` });
    } catch (err) {
      expect(String((err as Error).message)).not.toContain(PASSWORD);
    }
  });
});

describe('http backend: credentials echoed by the provider', () => {
  // characters that every encoding treats differently: space, / + = & " \ and a non-ASCII letter
  const ECHO_USER = 'ws+u7Xq';
  const ECHO_PASSWORD = 'pw S3cr3t/+="\\&é:x';
  const texts = credentialTexts(ECHO_USER, ECHO_PASSWORD);
  const leaks = (text: string) => texts.filter((t) => text.includes(t));

  test('every echo form of the fake provider is redacted whole by the redactor', () => {
    const redact = credentialRedactor(ECHO_USER, ECHO_PASSWORD);
    const header = `Basic ${Buffer.from(`${ECHO_USER}:${ECHO_PASSWORD}`).toString('base64')}`;
    for (const echo of credentialEchoes(header)) {
      const out = redact(`before ${echo} after`);
      expect({ echo, leaks: leaks(out) }).toEqual({ echo, leaks: [] });
      expect(out).toContain('***');
    }
    // inside a longer base64 text, at every alignment
    const login = `${ECHO_USER}:${ECHO_PASSWORD}`;
    for (const prefix of ['', 'a', 'ab', 'abc', 'abcd']) {
      const blob = Buffer.from(`${prefix}${login}tail`).toString('base64');
      const out = redact(blob);
      const core = credentialForms(ECHO_USER, ECHO_PASSWORD).filter((f) => blob.includes(f));
      expect({ prefix, matched: core.length > 0, out: out.includes('***') }).toEqual({ prefix, matched: true, out: true });
      // what is left of the blob is at most the edges: never 8 characters of the credentials' base64 in a row
      expect(out.replace(/\*\*\*/g, ' ').split(' ').every((part) => !blob.includes(part) || part.length <= 12)).toBe(true);
    }
  });

  test('credentials echoed past the 300-character cut are not cut in half first', async () => {
    const header = `Basic ${Buffer.from(`${ECHO_USER}:${ECHO_PASSWORD}`).toString('base64')}`;
    const echo: typeof fetch = async () =>
      new Response(JSON.stringify({ error: { status: 500, code: 'INTERNAL_ERROR', message: `${'x'.repeat(285)} got ${header}` } }), { status: 500 });
    const err = await rejection(backend({ username: ECHO_USER, password: ECHO_PASSWORD, fetch: echo }).apply([toTransit(IP_A)]));
    const b64 = header.slice(6);
    // no 8 characters in a row of the base64 survive (a half-cut header would leave ~10)
    for (let i = 0; i + 8 <= b64.length; i++) expect(err.message).not.toContain(b64.slice(i, i + 8));
    expect(err.message).toContain('***');
  });

  test('a provider echoing the credentials in every form: the errors, retries included, carry none of them', async () => {
    await fake.close();
    fake = await FakeRobot.start({
      username: ECHO_USER, password: ECHO_PASSWORD, servers: [{ ip: SRV42 }, { ip: TRANSIT3 }],
      failovers: [{ ip: IP_A, serverIp: SRV42, activeServerIp: SRV42 }],
    });
    fake.fault(IP_A, { serverErrors: 1_000, serverErrorMethod: 'ANY', echoCredentials: true });
    const seen: string[] = [];
    // Retry until every form has been echoed twice: a count, not a time (a loaded machine makes
    // fewer attempts per second); the deadline only bounds a test that would hang.
    const enough = 2 * credentialEchoes('Basic x').length;
    const stop = new AbortController();
    const b = withRetry(backend({ username: ECHO_USER, password: ECHO_PASSWORD }), {
      deadlineMs: 60_000, minTimeoutMs: 1, maxTimeoutMs: 5, signal: stop.signal,
      onRetry: (i) => {
        seen.push(i.error.message, i.error.stack ?? '');
        if (fake.echoed.length >= enough) stop.abort();
      },
    });
    const final = await rejection(b.apply([toTransit(IP_A)]));
    seen.push(final.message, final.stack ?? '');
    // every form was echoed at least once, and each reached an error
    expect(fake.echoed.length).toBeGreaterThanOrEqual(2 * credentialEchoes('Basic x').length);
    expect(seen.filter((m) => m.includes('***')).length).toBeGreaterThanOrEqual(fake.echoed.length - 1);
    expect(leaks(seen.join('\n'))).toEqual([]);
    fake.faultList({ serverErrors: 1, echoCredentials: true });
    const direct = await rejection(backend({ username: ECHO_USER, password: ECHO_PASSWORD }).current([IP_A]));
    expect(leaks(`${direct.message}\n${direct.stack}`)).toEqual([]);
  });
});

describe('http backend: current()', () => {
  const SUBNET = '203.0.113.16';
  const NET6_B = '2a01:4f8:fff1::';
  const MANY = Array.from({ length: 60 }, (_, i) => `203.0.113.${100 + i}`);
  /** Restarts the fake with these failover IPs/nets (srv-42 and transit-3 as servers). */
  const restart = async (failovers: Parameters<typeof FakeRobot.start>[0]['failovers']) => {
    await fake.close();
    fake = await FakeRobot.start({
      username: USER, password: PASSWORD, failovers,
      servers: [{ ip: SRV42, ipv6Net: `${SRV42_NET}/64` }, { ip: TRANSIT3, ipv6Net: `${TRANSIT3_NET}/64` }],
    });
  };
  const calls = () => fake.requests.map((r) => `${r.method} ${r.path}`);
  const leaked = (text: string) => credentialTexts(USER, PASSWORD).filter((t) => text.includes(t));

  test.each([1, 2, 3, 60])('one GET /failover per call, whatever the number of addresses (%i)', async (n) => {
    await restart(MANY.map((ip, i) => ({ ip, serverIp: SRV42, activeServerIp: i % 2 ? TRANSIT3 : SRV42 })));
    const b = backend();
    const asked = MANY.slice(0, n);
    for (let pass = 1; pass <= 3; pass++) {
      expect(await b.current(asked)).toEqual(asked.map((address, i) => ({ address, to: i % 2 ? 'transit-3' : 'srv-42' })));
      expect(calls()).toEqual(Array(pass).fill('GET /failover'));
    }
    expect(fake.requests.every((r) => r.authOk && r.status === 200)).toBe(true);
  });

  test('no address: no request', async () => {
    expect(await backend().current([])).toEqual([]);
    expect(fake.requests).toHaveLength(0);
  });

  test('each address is looked up as apply() addresses it: IPv4 /32, subnet by net address, IPv6 /64 net', async () => {
    await restart([
      { ip: IP_A, serverIp: SRV42, activeServerIp: SRV42 },
      { ip: IP_B, serverIp: SRV42, activeServerIp: null },
      { ip: '203.0.113.12', serverIp: SRV42, activeServerIp: '192.0.2.200' },
      { ip: SUBNET, netmask: '255.255.255.248', serverIp: SRV42, activeServerIp: TRANSIT3 },
      { ip: NET6, serverIp: SRV42, serverIpv6Net: SRV42_NET, activeServerIp: SRV42_NET },
      { ip: NET6_B, serverIp: SRV42, serverIpv6Net: SRV42_NET, activeServerIp: TRANSIT3_NET },
    ]);
    const rows: { name: string; address: string; to: string | null; unknown?: RegExp }[] = [
      { name: 'failover IPv4 (/32)', address: IP_A, to: 'srv-42' },
      { name: 'unrouted', address: IP_B, to: null },
      { name: 'routed to an IP of no configured host', address: '203.0.113.12', to: null },
      { name: 'failover subnet by net address and prefix', address: `${SUBNET}/29`, to: 'transit-3' },
      { name: 'failover subnet by its net address', address: SUBNET, to: 'transit-3' },
      { name: 'an address inside a subnet, no prefix: its own /32, not listed (as apply() would ask for it)', address: '203.0.113.17', to: null, unknown: /^http: 203\.0\.113\.17: not a failover IP\/net of this account \(GET \/failover does not list 203\.0\.113\.17\)/ },
      { name: 'IPv6 net address', address: NET6, to: 'srv-42' },
      { name: 'IPv6 net with /64', address: `${NET6}/64`, to: 'srv-42' },
      { name: 'IPv6 address inside the /64', address: '2a01:4f8:fff0::10', to: 'srv-42' },
      { name: 'IPv6 net, not in canonical form', address: '2a01:04f8:fff0:0000::/64', to: 'srv-42' },
      { name: 'second IPv6 net, routed to transit-3', address: '2a01:4f8:fff1:0:1::1', to: 'transit-3' },
      { name: 'not a failover IP of the account', address: IP_UNKNOWN, to: null, unknown: /^http: 203\.0\.113\.99: not a failover IP\/net of this account \(GET \/failover does not list 203\.0\.113\.99\): check the address/ },
    ];
    const got = await backend().current(rows.map((r) => r.address));
    expect(got.map((c, i) => ({ name: rows[i].name, ...c }))).toEqual(rows.map(({ name, address, to, unknown }) => ({
      name, address, to, ...(unknown ? { unknown: expect.stringMatching(unknown) } : {}),
    })));
    expect(calls()).toEqual(['GET /failover']);
  });

  test('a failover IP/net switched by someone else (Robot panel) is read as it is now', async () => {
    const b = backend();
    const asked = [IP_A, IP_B, '2a01:4f8:fff0::10'];
    expect((await b.current(asked)).map((c) => c.to)).toEqual(['srv-42', 'srv-42', 'srv-42']);
    fake.setActive(IP_A, TRANSIT3);
    fake.setActive(NET6, TRANSIT3_NET);
    expect(await b.current(asked)).toEqual([
      { address: IP_A, to: 'transit-3' },
      { address: IP_B, to: 'srv-42' },
      { address: '2a01:4f8:fff0::10', to: 'transit-3' },
    ]);
    fake.setActive(IP_A, null);
    expect((await b.current(asked)).map((c) => c.to)).toEqual([null, 'srv-42', 'transit-3']);
    expect(calls()).toEqual(Array(3).fill('GET /failover'));
  });

  test('an address the list does not hold is unknown (a configuration error), the others are read', async () => {
    const got = await backend().current([IP_A, IP_UNKNOWN, NET6]);
    expect(got).toEqual([
      { address: IP_A, to: 'srv-42' },
      { address: IP_UNKNOWN, to: null, unknown: expect.stringMatching(/not a failover IP\/net of this account/) },
      { address: NET6, to: 'srv-42' },
    ]);
    // alone too: the list was read, so it does not throw
    expect(await backend().current([IP_UNKNOWN])).toEqual([{ address: IP_UNKNOWN, to: null, unknown: expect.stringMatching(/does not list 203\.0\.113\.99/) }]);
  });

  test('an account without failover IPs (404 NOT_FOUND on the list): every address unknown', async () => {
    await restart([]);
    expect(await backend().current([IP_A, NET6])).toEqual([IP_A, NET6].map((address) => ({
      address, to: null, unknown: expect.stringMatching(/not a failover IP\/net of this account \(the provider says the account has none\)/),
    })));
    expect(fake.requests.map((r) => [r.path, r.status])).toEqual([['/failover', 404]]);
  });

  test('401: throws final, after one request, whatever the number of addresses; never the password', async () => {
    const wrong = 'Wr0ng-pa55word';
    const err = await rejection(backend({ password: wrong }).current([IP_A, ...MANY]));
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/^http: GET \/failover: 401 unauthorized: check credentials/);
    expect(`${err.message}\n${err.stack}`).not.toContain(wrong);
    expect(fake.requests).toHaveLength(1);
    const final = await rejection(withRetry(backend({ password: wrong }), FAST).current([IP_A, IP_B]));
    expect(final.reason).toBe('final');
    expect(fake.requests).toHaveLength(2);
  });

  /** The list cannot be read: nothing is known, current() throws retryable; withRetry reads it once it answers. */
  test.each<{ name: string; faults: FakeListFaults; timeoutMs?: number; message: RegExp }>([
    { name: '500', faults: { serverErrors: 1 }, message: /^http: GET \/failover: 500 INTERNAL_ERROR: Internal error \(provider error\)$/ },
    { name: '503 (maintenance)', faults: { unavailable: 1 }, message: /^http: GET \/failover: 503 MAINTENANCE: Maintenance \(provider error\)$/ },
    { name: '403 RATE_LIMIT_EXCEEDED', faults: { rateLimited: 1 }, message: /^http: GET \/failover: 403 RATE_LIMIT_EXCEEDED: Rate limit exceeded \(100 requests per 3600 s reached; retrying later may help\)$/ },
    { name: 'no answer (timeout)', faults: { hangs: 1 }, timeoutMs: 500, message: /^http: GET \/failover: no answer within 500 ms$/ },
    { name: '500 echoing the credentials', faults: { serverErrors: 1, echoCredentials: true }, message: /^http: GET \/failover: 500 INTERNAL_ERROR .*\*\*\*.*\(provider error\)$/ },
  ])('$name: throws retryable, after one request', async ({ faults, timeoutMs, message }) => {
    fake.faultList(faults);
    const b = backend(timeoutMs ? { timeoutMs } : {});
    const err = await rejection(b.current([IP_A, IP_B, NET6]));
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(message);
    expect(leaked(`${err.message}\n${err.stack}\n${JSON.stringify(err)}`)).toEqual([]);
    expect(calls()).toEqual(['GET /failover']);

    fake.faultList(faults);
    expect(await withRetry(b, FAST).current([IP_A, NET6])).toEqual([{ address: IP_A, to: 'srv-42' }, { address: NET6, to: 'srv-42' }]);
    expect(calls()).toEqual(Array(3).fill('GET /failover'));
  });

  /** Answers that are not the documented list: final errors, or entries it cannot read. */
  test.each<{ name: string; status: number; body: unknown; message: RegExp }>([
    { name: 'an object, not a list', status: 200, body: { failover: { ip: IP_A, active_server_ip: SRV42 } }, message: /^http: GET \/failover: the answer is not a list of failover IPs \(is baseUrl the failover API\?\)$/ },
    { name: 'not JSON', status: 200, body: '<html>', message: /the answer is not a list of failover IPs/ },
    { name: '404 without the provider\'s error (wrong baseUrl)', status: 404, body: '<html>not found</html>', message: /^http: GET \/failover: 404 \(no failover list there: check baseUrl\)$/ },
    { name: 'a redirect', status: 302, body: '', message: /^http: GET \/failover: 302 \(unexpected redirect: check baseUrl\)$/ },
    { name: '400 INVALID_INPUT', status: 400, body: { error: { status: 400, code: 'INVALID_INPUT', message: 'invalid input' } }, message: /^http: GET \/failover: 400 INVALID_INPUT: invalid input$/ },
  ])('$name: throws final', async ({ status, body, message }) => {
    const stub: typeof fetch = async () => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });
    const err = await rejection(backend({ fetch: stub }).current([IP_A, IP_B]));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(message);
  });

  test('entries it cannot read are skipped; an entry without active_server_ip makes its address unknown', async () => {
    const list = [
      null, 5, 'x', {}, { failover: null }, { failover: { ip: 'not-an-ip', active_server_ip: SRV42 } },
      { failover: { ip: IP_A, netmask: '255.255.255.255', active_server_ip: 7 } },
      { failover: { ip: IP_B, active_server_ip: SRV42 } }, // no netmask: the ip alone
      { failover: { ip: '203.0.113.12', netmask: '255.0.255.0', active_server_ip: TRANSIT3 } }, // not contiguous: the ip alone
      { failover: { ip: '2a01:04f8:fff0:0000::', netmask: 'ffff:ffff:ffff:ffff::', active_server_ip: 'garbage' } },
    ];
    const stub: typeof fetch = async () => new Response(JSON.stringify(list), { status: 200 });
    expect(await backend({ fetch: stub }).current([IP_A, IP_B, '203.0.113.12', NET6, IP_UNKNOWN])).toEqual([
      { address: IP_A, to: null, unknown: `http: ${IP_A}: GET /failover: the entry for ${IP_A} has no active_server_ip` },
      { address: IP_B, to: 'srv-42' },
      { address: '203.0.113.12', to: 'transit-3' },
      { address: NET6, to: null }, // an active_server_ip that is no address: routed to no known host (as GET /failover/{ip} reads it)
      { address: IP_UNKNOWN, to: null, unknown: expect.stringMatching(/does not list/) },
    ]);
  });

  test('invalid addresses are refused before any request', async () => {
    for (const bad of ['srv-42.example', 'fe80::1%eth0', '203.0.113.10/../x']) {
      const err = await rejection(backend().current([IP_A, bad]));
      expect(err.retryable).toBe(false);
    }
    expect(fake.requests).toHaveLength(0);
  });

  test('apply() still reads each failover IP by its own GET, never the list', async () => {
    await backend().apply([toTransit(IP_A), toTransit(IP_B)]);
    expect(calls()).toEqual([`GET /failover/${IP_A}`, `POST /failover/${IP_A}`, `GET /failover/${IP_B}`, `POST /failover/${IP_B}`]);
  });
});

describe('failoverNetOf', () => {
  test.each([
    ['203.0.113.10', { family: 4, net: '203.0.113.10' }],
    ['203.0.113.8/29', { family: 4, net: '203.0.113.8' }],
    ['2a01:4f8:fff0::', { family: 6, net: '2a01:4f8:fff0::' }],
    ['2a01:04f8:fff0:0000::/64', { family: 6, net: '2a01:4f8:fff0::' }],
    ['2a01:4f8:fff0::1234', { family: 6, net: '2a01:4f8:fff0::' }],
    ['203.0.113.256', null],
    ['fe80::1%eth0', null],
    [' 203.0.113.10', null],
  ])('%s', (text, expected) => {
    expect(failoverNetOf(text)).toEqual(expected);
  });
});

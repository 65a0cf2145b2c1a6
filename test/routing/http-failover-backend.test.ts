/** The http backend against the fake Robot webservice (loopback), alone and through withRetry. */
import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import { HttpFailoverBackend, credentialForms, credentialRedactor, failoverNetOf, type HttpFailoverBackendOptions } from '../../src/routing/http-failover-backend.js';
import { RetryGaveUpError, withRetry, type RetryOptions } from '../../src/routing/retrying-backend.js';
import { RouteError, type DesiredRoute } from '../../src/routing/route-backend.js';
import { FakeRobot, credentialEchoes, credentialTexts, type FakeFaults } from '../support/fake-robot.js';
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
    const direct = await rejection(backend({ username: ECHO_USER, password: ECHO_PASSWORD }).current([IP_A]));
    expect(leaks(`${direct.message}\n${direct.stack}`)).toEqual([]);
  });
});

describe('http backend: current()', () => {
  test('maps active_server_ip back to host names; unknown or unrouted is null', async () => {
    fake.setActive(IP_B, '192.0.2.200');
    fake.setActive(NET6, null);
    expect(await backend().current([IP_A, IP_B, NET6])).toEqual([
      { address: IP_A, to: 'srv-42' },
      { address: IP_B, to: null },
      { address: NET6, to: null },
    ]);
    expect(fake.requests.every((r) => r.method === 'GET')).toBe(true);
  });

  test('a 500 on the GET is a retryable RouteError', async () => {
    fake.fault(IP_A, { serverErrors: 1, serverErrorMethod: 'GET' });
    const err = await rejection(backend().current([IP_A]));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/500 INTERNAL_ERROR/);
    expect(await withRetry(backend(), FAST).current([IP_A])).toEqual([{ address: IP_A, to: 'srv-42' }]);
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

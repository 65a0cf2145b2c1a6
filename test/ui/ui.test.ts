/**
 * The page at /ui in a real browser: playwright-core driving Debian's chromium (headless;
 * `--no-sandbox` as root) against the built controller, with the MX lab's DNS (NSD + unbound on
 * loopback, test/support/dns-lab.ts) so that audit verdicts are real. The cutover from the server
 * page runs against a second controller in the namespace lab (test/support/netns-lab.ts: routes
 * really flip with linux-route, HTTP probes measure the downtime from the client namespace); its
 * API listens inside the client namespace, so a second chromium runs there too (`ip netns exec`
 * through a generated wrapper: playwright talks to it over a pipe). Tokens on both controllers:
 * ops (admin), jobs (operate), support (read). Every browser context lets only its controller's
 * origin through (the page works offline: no CDN). Screenshots of each view go to `.tmp/ui/`.
 * Debian packages: chromium, nsd, unbound, ldnsutils, iproute2, curl.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { freePort, REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { loadLabCases, MX_LAB_FIXTURES, startDnsLab, type DnsLab } from '../support/dns-lab.js';
import { createLab, labSections, ORIGIN, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab } from '../support/netns-lab.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(REPO_ROOT, '.tmp', 'ui');
const TOKENS = { ops: 'ops-token-0123456789abcdef', jobs: 'jobs-token-0123456789abcdef', support: 'support-token-0123456789abc' };
/** The lab's domains and what the page must show for each: verdict and the record to change. */
const AUDIT: [string, string, string | null][] = [
  ['good.com', 'OK', null],
  ['forbidden-mx.com', 'FAIL', 'delete `MX 5 srv-42.alwaysdata.net` at your DNS provider'],
  ['no-mx.com', 'FAIL', 'add `MX 10 mx1.alwaysdata.com` and `MX 20 mx2.alwaysdata.com` at your DNS provider'],
  ['foreign-mixed.com', 'WARN', 'delete `MX 30 mx.foreign-mail.net` at your DNS provider'],
  ['nx-domain.com', 'FAIL', 'register nx-domain.com or fix its delegation at the registrar'],
  // not a domain name: never looked up; in the CSV its cell must not start a formula
  ['=1+2', 'INVALID', null],
];
/** The api section of both controllers: the three tokens (from FC_TEST_TOKEN, FC_JOBS_TOKEN, FC_SUPPORT_TOKEN). */
const apiSection = (port: number) => ({
  listen: `127.0.0.1:${port}`,
  tokens: [
    { name: 'ops', role: 'admin', token_env: 'FC_TEST_TOKEN' },
    { name: 'jobs', role: 'operate', token_env: 'FC_JOBS_TOKEN' },
    { name: 'support', role: 'read', token_env: 'FC_SUPPORT_TOKEN' },
  ],
});
const launch = (executablePath: string) => chromium.launch({ executablePath, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });

/** A browser and the origin of the controller it may reach. */
interface Target {
  browser: Browser;
  base: string;
}

let lab: DnsLab;
let ctl: ControllerHandle;
let browser: Browser;
let base: string;
let loopback: Target;
const contexts: BrowserContext[] = [];
/** Requests the browser made to anything but the controller (must stay empty). */
const elsewhere: string[] = [];
/** Every URL the browser asked for (none may hold a token). */
const visited: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install the Debian package chromium (scripts/test.sh installs it as root)`);
  mkdirSync(SHOTS, { recursive: true });
  lab = await startDnsLab({ cases: loadLabCases(join(MX_LAB_FIXTURES, 'cases.yaml')).filter((c) => AUDIT.some(([d]) => d === c.domain)), resolverThreads: 1 });
  const apiPort = await freePort();
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
    apiPort,
    token: TOKENS.ops,
    env: { FC_JOBS_TOKEN: TOKENS.jobs, FC_SUPPORT_TOKEN: TOKENS.support },
    sections: {
      api: apiSection(apiPort),
      servers: [
        { name: 'srv-42', profile: 'vps', addresses: ['127.0.0.10', '127.0.0.11'] },
        { name: 'srv-43', profile: 'small', addresses: ['203.0.113.30'] },
      ],
      transits: [
        { name: 'transit-3', profile: 'vps', addresses: ['127.0.0.20', '127.0.0.21'] },
        { name: 'transit-4', profile: 'small', addresses: ['198.51.100.40'] },
      ],
      accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }, { name: 'shop', server: 'srv-43', zones: ['shop.test'] }],
      mx_audit: { resolver: lab.resolver, timeout_ms: 1000, retries: 2 },
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
  base = `http://127.0.0.1:${apiPort}`;
  browser = await launch(CHROMIUM);
  loopback = { browser, base };
}, 180_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await ctl?.stop();
  await lab?.stop();
});

/** A fresh context (nothing stored) that lets only the target's controller through (default: the loopback one). */
async function open(hash = '', target: Target = loopback): Promise<Page> {
  const context = await target.browser.newContext({ acceptDownloads: true });
  contexts.push(context);
  await context.route('**/*', (route) => {
    const url = route.request().url();
    visited.push(url);
    if (url.startsWith(`${target.base}/`)) return route.continue();
    elsewhere.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  await page.goto(`${target.base}/ui/${hash}`);
  return page;
}

/** Signs in with a token through the form (Enter submits) and waits for the role to show. */
async function signIn(page: Page, token: string, name: string, role: string) {
  await page.getByLabel('API token').fill(token);
  await page.getByLabel('API token').press('Enter');
  await page.getByText(`Signed in as ${name} (role ${role})`).waitFor();
}

const api = (path: string, token: string, init: RequestInit = {}) =>
  fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

/** The interactive nodes of the page's accessibility tree (ARIA snapshot) without a name. */
async function unnamedControls(page: Page): Promise<string[]> {
  const yaml = await page.locator('body').ariaSnapshot();
  return yaml.split('\n').filter((l) => /^\s*- (button|textbox|combobox|checkbox|radio|link|progressbar|spinbutton|slider|listbox)\b(?! ")/.test(l));
}

/** What Tab reaches going once round the page (each stop: tag#id:text), from wherever focus is. */
async function tabStops(page: Page, max = 80): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const stop = await page.evaluate(() => {
      const e = document.activeElement as HTMLElement | null;
      if (!e || e === document.body) return null;
      return `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}:${(e.textContent ?? '').trim().slice(0, 40)}`;
    });
    if (stop === null) continue; // past the last control: the next Tab starts again at the first
    if (seen.includes(stop)) break;
    seen.push(stop);
  }
  return seen;
}

/** Every visible control of the page, in the form tabStops reports them. */
const visibleControls = (page: Page) => page.evaluate(() => [...document.querySelectorAll<HTMLElement>('a[href], button, input, select, textarea')]
  .filter((e) => e.offsetParent !== null && !(e as HTMLButtonElement).disabled && !e.closest('dialog'))
  .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}:${(e.textContent ?? '').trim().slice(0, 40)}`));

describe('the page at /ui', () => {
  test('is served with a strict CSP and no token; whoami names the caller', async () => {
    const res = await fetch(`${base}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'self'; script-src 'self'; style-src 'self'/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await (await api('/v1/whoami', TOKENS.support)).json()).toEqual({ name: 'support', role: 'read' });
    expect((await fetch(`${base}/ui/nope.js`)).status).toBe(404);
  });

  test.each([['ops', 'admin'], ['jobs', 'operate'], ['support', 'read']] as const)('signs in with the %s token (role %s), kept in sessionStorage only', async (name, role) => {
    const page = await open();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    if (name === 'ops') await page.screenshot({ path: join(SHOTS, 'sign-in.png') });
    await page.getByLabel('API token').fill('not-a-token-0123456789');
    await page.getByLabel('API token').press('Enter');
    await page.getByRole('alert').getByText('This token is not known to the controller.').waitFor();
    await signIn(page, TOKENS[name], name, role);
    await page.getByRole('table', { name: 'Servers and their migrations' }).getByRole('link', { name: 'srv-42' }).waitFor();
    expect(page.url()).toBe(`${base}/ui/#/board`);
    const stored = await page.evaluate(() => ({ session: { ...sessionStorage }, local: localStorage.length, cookie: document.cookie }));
    expect(stored).toEqual({ session: { 'failover-token': TOKENS[name] }, local: 0, cookie: '' });
    // a reload keeps the tab signed in; Sign out forgets the token
    await page.reload();
    await page.getByText(`Signed in as ${name} (role ${role})`).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    // a stored token the controller refuses (401) brings the sign-in back, saying so
    await page.evaluate(() => sessionStorage.setItem('failover-token', 'revoked-token-0123456789'));
    await page.reload();
    await page.getByRole('alert').getByText('The controller refused the token (401): sign in again.').waitFor();
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  });

  test('support audits the lab domains: each verdict and its fix, live progress, the CSV', async () => {
    const page = await open();
    await signIn(page, TOKENS.support, 'support', 'read');
    await page.getByRole('link', { name: 'MX audit' }).click();
    await page.getByRole('heading', { name: 'MX audit' }).waitFor();
    await page.getByLabel('Domains, one per line').fill(AUDIT.map(([d]) => d).join('\n'));
    await page.getByRole('button', { name: 'Audit' }).click();
    await page.locator('#audit-progress-text').getByText(`${AUDIT.length} / ${AUDIT.length}`).waitFor({ timeout: 60_000 });
    const results = page.getByRole('table', { name: 'MX audit results' });
    for (const [domain, verdict, fix] of AUDIT) {
      const row = results.getByRole('row').filter({ has: page.getByRole('rowheader', { name: domain, exact: true }) });
      await expect(row.getByRole('cell').nth(0).textContent()).resolves.toBe(verdict);
      expect(await row.getByRole('cell').nth(0).locator('span').getAttribute('class')).toBe(`verdict verdict-${verdict}`);
      const fixes = await row.getByRole('cell').nth(1).textContent();
      if (fix) expect(fixes).toContain(fix);
      if (verdict === 'OK') expect(fixes).toBe('nothing');
    }
    expect(await page.locator('#audit-progress').evaluate((p: HTMLProgressElement) => [p.value, p.max])).toEqual([AUDIT.length, AUDIT.length]);
    await page.screenshot({ path: join(SHOTS, 'mx-audit.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    expect(download.suggestedFilename()).toBe('mx-audit.csv');
    const csv = readFileSync(await download.path(), 'utf8').split('\r\n');
    expect(csv[0]).toBe('domain,verdict,fix');
    for (const [domain, verdict, fix] of AUDIT) {
      const cell = domain.startsWith('=') ? `'${domain}` : domain;
      const line = csv.find((l) => l.startsWith(`${cell},`));
      expect(line).toBeDefined();
      expect(line!.startsWith(`${cell},${verdict},`)).toBe(true);
      if (fix) expect(line).toContain(fix);
    }
    expect(csv.filter(Boolean)).toHaveLength(AUDIT.length + 1);
  });

  describe('in the namespace lab', () => {
    let nsLab: Lab;
    let labCtl: ControllerHandle;
    let wrapperDir: string | undefined;
    let inLab: Target;
    beforeAll(async () => {
      nsLab = await createLab();
      const apiPort = await freePort();
      labCtl = await startController({
        netns: nsLab.ns.client,
        zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
        apiPort,
        token: TOKENS.ops,
        env: { FC_JOBS_TOKEN: TOKENS.jobs, FC_SUPPORT_TOKEN: TOKENS.support },
        sections: {
          ...labSections(nsLab),
          api: apiSection(apiPort),
          health: { interval_ms: 20, timeout_ms: 500, deadline_s: 30, recovery_probes: 3, probe: { type: 'http', port: 80, path: '/', identity_header: 'x-served-by' } },
        },
      });
      // chromium in the client namespace, where the controller's API listens
      wrapperDir = mkdtempSync(join(tmpdir(), 'fc-ui-'));
      const wrapper = join(wrapperDir, 'chromium-in-netns');
      writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${nsLab.ns.client} ${CHROMIUM} "$@"\n`);
      chmodSync(wrapper, 0o755);
      inLab = { browser: await launch(wrapper), base: `http://127.0.0.1:${apiPort}` };
    }, 120_000);
    afterAll(async () => {
      await inLab?.browser.close();
      await labCtl?.stop();
      await nsLab?.destroy();
      if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
    });

    test('an operator cuts srv-42 over from its page: confirmation, routes flip, succeeded, the downtime bars', async () => {
      const addresses = SERVICE_ADDRESSES[ORIGIN];
      expect(await Promise.all(addresses.map((a) => nsLab.httpFrom(nsLab.ns.client, urlOf(a), 1000)))).toEqual(addresses.map(() => ORIGIN));
      const page = await open('#/servers/srv-42', inLab);
      await signIn(page, TOKENS.jobs, 'jobs', 'operate');
      await page.getByRole('heading', { name: 'Server srv-42' }).waitFor();
      await page.getByRole('table', { name: 'Addresses' }).getByRole('rowheader', { name: addresses[0] }).waitFor();
      await page.getByLabel('Transit').selectOption(TRANSIT);
      await page.getByRole('button', { name: 'Cut over', exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByText('Cut srv-42 over to transit-3?').waitFor();
      expect(await unnamedControls(page)).toEqual([]);
      await page.screenshot({ path: join(SHOTS, 'server-confirm.png') });
      await dialog.getByRole('button', { name: 'Cut srv-42 over' }).click();
      await page.locator('#operation-status').getByText(/: succeeded$/).waitFor({ timeout: 60_000 });
      const id = (await page.locator('#operation-status').textContent())!.split(' ')[1];
      const op = JSON.parse((await labCtl.get(`/v1/operations/${id}`)).body) as { state: string; backend: string; requested_by: string; addresses: { address: string; downtime_ms: number }[] };
      expect(op).toMatchObject({ state: 'succeeded', backend: 'linux-route', requested_by: 'jobs' });
      console.log(`cutover ${id} from the page (${op.backend}): ${op.addresses.map((a) => `${a.address} ${a.downtime_ms} ms`).join(', ')}`);
      // the routes really moved: the client now reaches the transit at the server's addresses
      expect(await Promise.all(addresses.map((a) => nsLab.httpFrom(nsLab.ns.client, urlOf(a), 1000)))).toEqual(addresses.map(() => TRANSIT));
      // one bar per address, with the measured value the API reports
      expect(op.addresses.map((a) => a.address).sort()).toEqual([...addresses].sort());
      const chart = page.locator(`figure[data-operation="${id}"]`);
      await chart.getByRole('img', { name: `Measured downtime per address of operation ${id}` }).waitFor();
      const bars = await chart.locator('rect').evaluateAll((rs) => rs.map((r) => [r.getAttribute('data-address'), r.getAttribute('data-downtime-ms')]));
      expect(bars).toEqual(op.addresses.map((a) => [a.address, String(a.downtime_ms)]));
      for (const a of op.addresses) await chart.getByRole('table').getByRole('row').filter({ hasText: a.address }).getByText(`${a.downtime_ms} ms`).waitFor();
      await page.getByText('Cut over to transit-3 since').waitFor();
      await page.getByRole('button', { name: 'Cut back' }).waitFor();
      await page.screenshot({ path: join(SHOTS, 'server.png'), fullPage: true });
    });
  });

  test('a read token sees no cutover button; a forged cutover from the page is 403', async () => {
    const page = await open('#/servers/srv-43');
    await signIn(page, TOKENS.support, 'support', 'read');
    await page.getByRole('table', { name: 'Addresses' }).getByRole('rowheader', { name: '203.0.113.30' }).waitFor();
    await page.getByText('Your token has the read role: cutover and cutback need operate.').waitFor();
    expect(await page.getByRole('button', { name: /Cut (over|back)/ }).count()).toBe(0);
    const forged = await page.evaluate(async () => {
      const r = await fetch('/v1/servers/srv-43/cutover', {
        method: 'POST', headers: { authorization: `Bearer ${sessionStorage.getItem('failover-token')}`, 'content-type': 'application/json' }, body: JSON.stringify({ transit: 'transit-4' }),
      });
      return { status: r.status, body: await r.json() };
    });
    expect(forged).toEqual({ status: 403, body: { error: expect.objectContaining({ code: 'FORBIDDEN', role_needed: 'operate' }) } });
  });

  test('the migrations board (polled: a migration requested meanwhile shows) and the transits', async () => {
    const page = await open();
    await signIn(page, TOKENS.support, 'support', 'read');
    const board = page.getByRole('table', { name: 'Servers and their migrations' });
    const row = board.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'srv-43' }) });
    await row.getByText('no migration').waitFor();
    const req = await api('/v1/servers/srv-43/migration', TOKENS.jobs, { method: 'POST', body: JSON.stringify({ reinstall_at: new Date(Date.now() + 24 * 3600_000).toISOString() }) });
    expect(req.status).toBe(201);
    // no reload: the board's next poll shows it
    await row.getByText('transit-4').waitFor();
    await row.getByText('shop: home').waitFor();
    await page.screenshot({ path: join(SHOTS, 'board.png'), fullPage: true });
    await page.getByRole('link', { name: 'Transits' }).click();
    const transits = page.getByRole('table', { name: 'Transits', exact: true });
    await transits.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'transit-4' }) }).getByRole('link', { name: 'srv-43' }).waitFor();
    await page.screenshot({ path: join(SHOTS, 'transits.png'), fullPage: true });
  });

  test("an operator reports an account's move from the server page, after a confirmation naming the server", async () => {
    const page = await open('#/servers/srv-43');
    await signIn(page, TOKENS.jobs, 'jobs', 'operate');
    const accounts = page.getByRole('table', { name: 'Accounts' });
    await accounts.getByRole('row').filter({ hasText: 'shop' }).getByText('home').waitFor();
    await accounts.getByRole('button', { name: 'Start moving shop to transit-4' }).click();
    await page.getByRole('dialog').getByText('srv-43: report "Start moving shop to transit-4"?').waitFor();
    await page.getByRole('dialog').getByRole('button', { name: 'Report: Start moving shop to transit-4' }).click();
    await page.locator('#operation-status').getByText('Account shop: moving to transit').waitFor();
    await accounts.getByRole('button', { name: 'Moved shop to transit-4' }).waitFor();
    const where = await (await api('/v1/accounts/shop', TOKENS.support)).json() as { location: string };
    expect(where.location).toBe('moving_to_transit');
  });

  test('keyboard: every control is reached by Tab and has a name in the accessibility tree', async () => {
    const page = await open();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await unnamedControls(page)).toEqual([]);
    // Tab to the token field, type, Enter submits
    await page.locator('main h1').focus();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('token');
    await page.keyboard.type(TOKENS.jobs);
    await page.keyboard.press('Enter');
    await page.getByText('Signed in as jobs (role operate)').waitFor();
    for (const hash of ['#/board', '#/audit', '#/transits', '#/servers/srv-42']) {
      await page.evaluate((h) => { location.hash = h; }, hash);
      await page.locator('main h1').waitFor();
      await page.locator('main table, main form').first().waitFor();
      expect({ hash, unnamed: await unnamedControls(page) }).toEqual({ hash, unnamed: [] });
      const stops = await tabStops(page);
      const controls = await visibleControls(page);
      expect(controls.length).toBeGreaterThanOrEqual(4); // the header's links and Sign out at least
      expect({ hash, missed: controls.filter((c) => !stops.includes(c)) }).toEqual({ hash, missed: [] });
    }
    expect(elsewhere).toEqual([]);
    expect(visited.length).toBeGreaterThan(0);
    expect(visited.filter((u) => Object.values(TOKENS).some((t) => u.includes(t)))).toEqual([]);
  });
});

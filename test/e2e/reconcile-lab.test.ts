/**
 * The routing reconcile loop end to end, through the real controller process: during a cutover's
 * hold (srv-42 cut over to transit-3, operation succeeded), the routing drifts behind the
 * controller's back and the loop (interval 1 s) finds it and puts it back (mode repair), or only
 * reports it (mode report):
 *   (a) linux-route: one service route deleted on the router: repaired, traffic back, repairs
 *       counted in /metrics; the outage is measured from the client (probe loop);
 *   (b) linux-route: every route of the managed addresses flushed (a router reboot): all repaired;
 *   (c) linux-route, make-before-break: the address removed from the transit's lo: re-added;
 *   (d) linux-address: the address removed from the transit's device: re-added, traffic recovers;
 *   (e) http (fake provider): the failover IP switched back to the origin by someone else: switched again;
 *   (f) report mode: drift reported (state, drift_since, gauge), nothing changed on the router;
 *   (g) router unreachable (its command prefix fails): unknown, nothing tried; once back, repaired;
 *   (h) SIGKILL, drift made while the controller is down: the start pass repairs it before the API answers.
 * Also POST /v1/routing/reconcile: 200 with the pass with ?wait, 202 without.
 * Every case builds its own lab (namespaces) and removes it, with its temp dirs, also on failure.
 */
import { describe, expect, test } from '@jest/globals';
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, LAN, labSections, ORIGIN, probeLoop, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab, type ProbeStats } from '../support/netns-lab.js';
import { FakeRobot } from '../support/fake-robot.js';
import { waitFor } from '../support/wait-for.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
const RETRY = { deadline_s: 20, min_delay_ms: 100, max_delay_ms: 1000 };
/** Overall deadline of every wait below: only bounds a test that would hang. */
const WAIT = { timeoutMs: 30_000, pollMs: 50 };
const SERVER_ADDRESSES = [...SERVICE_ADDRESSES[ORIGIN]];
const V4 = '203.0.113.10';
/** Client probes for the outage figures: a short timeout, so that a probe lost in the outage ends soon (the lab answers in well under 1 ms). */
const PROBE_INTERVAL_MS = 10;
const PROBE_TIMEOUT_MS = 100;
/** (a) deletes the route this many times, for a spread of figures (the deletion falls anywhere in the interval). */
const ROUNDS = 3;

/** Runs `body` with a fresh lab and a temp dir; both are removed however it ends. */
async function withLab(body: (lab: Lab, dir: string) => Promise<void>): Promise<void> {
  const lab = await createLab();
  const dir = mkdtempSync(join(tmpdir(), 'fc-reconcile-lab-'));
  try {
    await body(lab, dir);
  } finally {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Config sections for linux-route with make-before-break (hosts), a 1 s reconcile loop, and overrides. */
function linuxRouteSections(lab: Lab, opts: { reconcile?: Record<string, unknown>; router?: string[] } = {}): Record<string, unknown> {
  const s = labSections(lab);
  const routing = s.routing as Record<string, any>;
  routing.retry = RETRY;
  routing.reconcile = { interval_s: 1, ...(opts.reconcile ?? {}) };
  if (opts.router) routing.linux_route.router = opts.router;
  return s;
}

interface RoutingView {
  backend: string;
  mode: string;
  interval_s: number;
  last_pass: Record<string, any> | null;
  summary: Record<string, number>;
  addresses: Record<string, any>[];
}

async function routing(ctl: ControllerHandle): Promise<RoutingView> {
  const r = await ctl.get('/v1/routing');
  if (r.status !== 200) throw new Error(`GET /v1/routing: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as RoutingView;
}

const entry = (view: RoutingView, address: string) => {
  const e = view.addresses.find((a) => a.address === address);
  if (!e) throw new Error(`${address} not in GET /v1/routing: ${JSON.stringify(view.addresses.map((a) => a.address))}`);
  return e;
};

/** Waits for a pass that started after this call and returns the view after it. */
async function nextPasses(ctl: ControllerHandle, n = 1): Promise<RoutingView> {
  const from = (await routing(ctl)).last_pass?.id ?? 0;
  return waitFor(`${n} more reconcile pass(es) after pass ${from}`, async () => {
    const v = await routing(ctl);
    return (v.last_pass?.id ?? 0) >= from + n + 1 ? v : null;
  }, WAIT);
}

/** Waits until every address of GET /v1/routing is in_sync; returns that view. */
const allInSync = (ctl: ControllerHandle, what: string) => waitFor(what, async () => {
  const v = await routing(ctl);
  return v.addresses.length > 0 && v.addresses.every((a) => a.state === 'in_sync') ? v : null;
}, WAIT);

async function cutOver(ctl: ControllerHandle): Promise<void> {
  const r = await ctl.post(`/v1/servers/${ORIGIN}/cutover?wait=30`, { transit: TRANSIT });
  const op = JSON.parse(r.body) as Record<string, any>;
  if (op.state !== 'succeeded') throw new Error(`cutover ${r.status}: ${r.body}`);
  // the hold: the next pass sees everything where it must be
  await allInSync(ctl, 'every address in_sync on the transit after the cutover');
}

/** The value of a sample in the Prometheus text (labels exactly as printed); NaN when absent. */
function metric(body: string, name: string, labels = ''): number {
  const head = labels ? `${name}{${labels}} ` : `${name} `;
  const line = body.split('\n').find((l) => l.startsWith(head));
  return line ? Number(line.slice(head.length).trim().split(' ')[0]) : NaN;
}
const metrics = async (ctl: ControllerHandle) => (await ctl.get('/metrics', false)).body;

const plen = (address: string) => (address.includes(':') ? 128 : 32);

/** The router's next hop for `address`'s host route, or null when it has none. */
async function routerHop(lab: Lab, address: string): Promise<string | null> {
  const r = await lab.exec(lab.ns.router, ['ip', '-j', address.includes(':') ? '-6' : '-4', 'route', 'show', 'exact', `${address}/${plen(address)}`]);
  if (r.code !== 0) throw new Error(`route show ${address}: ${r.stderr}`);
  const list = JSON.parse(r.stdout.trim() || '[]') as { gateway?: string }[];
  return list[0]?.gateway ?? null;
}
const transitHop = (address: string) => (address.includes(':') ? LAN.transit[1] : LAN.transit[0]);

/** The addresses on `device` in the lab namespace of `role`. */
async function deviceAddresses(lab: Lab, role: 'origin' | 'transit', device: string): Promise<string[]> {
  const r = await lab.exec(lab.ns[role], ['ip', '-j', 'addr', 'show', 'dev', device]);
  if (r.code !== 0) throw new Error(`addr show ${device}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { addr_info?: { local: string }[] }[]).flatMap((l) => (l.addr_info ?? []).map((a) => a.local));
}

async function must(lab: Lab, role: 'router' | 'origin' | 'transit', argv: string[]): Promise<void> {
  const r = await lab.exec(lab.ns[role], argv);
  if (r.code !== 0) throw new Error(`${role}: ${argv.join(' ')}: ${r.stderr}`);
}

/**
 * The outage of `url` seen by a probe loop after `since` (performance.now()): from the send of the
 * first failed probe to the send of the next answered one (the controller's own convention), and
 * from `since` to that answer. Null when no probe failed.
 */
function outageOf(stats: ProbeStats, url: string, since: number): { gapMs: number; sinceMs: number; failed: number; errors: string[] } | null {
  const log = stats.log.filter((p) => p.url === url && p.at >= since);
  const first = log.findIndex((p) => p.servedBy === null);
  if (first < 0) return null;
  const back = log.findIndex((p, i) => i > first && p.servedBy !== null);
  if (back < 0) throw new Error(`${url}: no answer after the first failed probe`);
  const failed = log.slice(first, back);
  return { gapMs: log[back].at - log[first].at, sinceMs: log[back].at - since, failed: failed.length, errors: [...new Set(failed.map((p) => p.error ?? 'none'))] };
}

/** Waits until `url` is answered by `host` on a probe sent at or after `since`. */
const answeredBy = (stats: ProbeStats, url: string, host: string, since: number) =>
  waitFor(`${url} answered by ${host}`, () => stats.log.some((p) => p.url === url && p.at >= since && p.servedBy === host), WAIT);

const servedBy = (lab: Lab, addresses: readonly string[]) => Promise.all(addresses.map((a) => lab.httpFrom(lab.ns.client, urlOf(a), 1000)));

describe('routing reconcile loop in the namespace lab', () => {
  test('(a) linux-route: one route deleted on the router is repaired within an interval; traffic back; repairs counted; outage measured', async () => {
    await withLab(async (lab, dir) => {
      const ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab) });
      let loop: ReturnType<typeof probeLoop> | null = null;
      try {
        await cutOver(ctl);
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
        const okBefore = metric(await metrics(ctl), 'failover_routing_repairs_total', 'backend="linux-route",result="ok"');
        expect(okBefore).toBe(0);

        const url = urlOf(V4);
        loop = probeLoop(lab, lab.ns.client, [url], PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
        const figures: string[] = [];
        for (let round = 1; round <= ROUNDS; round++) {
          await answeredBy(loop.stats, url, TRANSIT, performance.now());
          const t0 = performance.now();
          const wall0 = Date.now();
          await must(lab, 'router', ['ip', 'route', 'del', `${V4}/32`]);
          const t1 = performance.now();
          const repaired = await waitFor(`the deleted route repaired (round ${round})`, async () => {
            const e = entry(await routing(ctl), V4);
            return e.state === 'in_sync' && e.repairs.ok >= round ? e : null;
          }, WAIT);
          expect(repaired.last_repair.result).toBe('ok');
          expect(await routerHop(lab, V4)).toBe(transitHop(V4));
          await answeredBy(loop.stats, url, TRANSIT, performance.now());
          const outage = outageOf(loop.stats, url, t0);
          figures.push(`round ${round}: deleted -> repaired ${Date.parse(repaired.last_repair.at) - wall0} ms (controller's last_repair.at); client `
            + (outage ? `gap ${outage.gapMs.toFixed(0)} ms (first failed probe -> next answer), deletion -> first answer ${outage.sinceMs.toFixed(0)} ms, `
              + `${outage.failed} failed probes (${outage.errors.join(', ')})` : 'saw no failed probe')
            + `; ip route del took ${(t1 - t0).toFixed(1)} ms`);
        }
        const stats = await loop.stop();
        loop = null;
        console.log(`(a) ${V4} route deleted on the router, reconcile interval 1 s, probes every ${PROBE_INTERVAL_MS} ms (timeout ${PROBE_TIMEOUT_MS} ms) from the client:\n  `
          + `${figures.join('\n  ')}\n  ${stats.probes} probes in all, ${stats.failures} failed`);
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
        // the repair is set in_sync without a read; the next pass reads and confirms it
        const confirmed = await nextPasses(ctl, 1);
        expect(entry(confirmed, V4)).toMatchObject({ state: 'in_sync', observed: { host: TRANSIT, problems: [] }, confirmed: TRANSIT, drift_since: null });

        const body = await metrics(ctl);
        expect(metric(body, 'failover_routing_repairs_total', 'backend="linux-route",result="ok"')).toBe(okBefore + ROUNDS);
        expect(metric(body, 'failover_routing_repairs_total', 'backend="linux-route",result="failed"')).toBe(0);
        expect(metric(body, 'failover_routing_reconcile_interval_seconds')).toBe(1);

        // a pass on request: 200 with the pass when waited for, 202 when not
        const waited = await ctl.post('/v1/routing/reconcile?wait=10', {});
        expect(waited.status).toBe(200);
        const done = JSON.parse(waited.body);
        expect(done.status).toBe('done');
        expect(done.pass).toMatchObject({ trigger: 'request', mode: 'repair', checked: 3, in_sync: 3, drifted: 0, unknown: 0, read_error: null });
        const queued = await ctl.post('/v1/routing/reconcile', {});
        expect(queued.status).toBe(202);
        expect(JSON.parse(queued.body).status).toBe('running');
      } finally {
        await loop?.stop();
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(b) linux-route: every route of the managed addresses flushed (router reboot): all repaired', async () => {
    await withLab(async (lab, dir) => {
      const ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab) });
      try {
        await cutOver(ctl);
        const r = await lab.exec(lab.ns.router, ['ip', '-batch', '-'], SERVER_ADDRESSES.map((a) => `route del ${a}/${plen(a)}`).join('\n') + '\n');
        expect(r.code).toBe(0);
        expect(await Promise.all(SERVER_ADDRESSES.map((a) => routerHop(lab, a)))).toEqual([null, null, null]);
        const view = await waitFor('every flushed route repaired', async () => {
          const v = await routing(ctl);
          return SERVER_ADDRESSES.every((a) => entry(v, a).state === 'in_sync' && entry(v, a).repairs.ok >= 1) ? v : null;
        }, WAIT);
        expect(await Promise.all(SERVER_ADDRESSES.map((a) => routerHop(lab, a)))).toEqual(SERVER_ADDRESSES.map(transitHop));
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
        expect(view.summary).toMatchObject({ addresses: 3, in_sync: 3, drifted: 0, unknown: 0 });
        expect(metric(await metrics(ctl), 'failover_routing_repairs_total', 'backend="linux-route",result="ok"')).toBeGreaterThanOrEqual(3);
      } finally {
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(c) linux-route, make-before-break: the address removed from the transit\'s lo is re-added; traffic back', async () => {
    await withLab(async (lab, dir) => {
      const ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab) });
      let loop: ReturnType<typeof probeLoop> | null = null;
      try {
        await cutOver(ctl);
        expect(await deviceAddresses(lab, 'transit', 'lo')).toContain(V4);
        const url = urlOf(V4);
        loop = probeLoop(lab, lab.ns.client, [url], PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
        await answeredBy(loop.stats, url, TRANSIT, performance.now());
        const t0 = performance.now();
        await must(lab, 'transit', ['ip', 'addr', 'del', `${V4}/32`, 'dev', 'lo']);
        const e = await waitFor(`${V4} repaired on the transit's lo`, async () => {
          const x = entry(await routing(ctl), V4);
          return x.state === 'in_sync' && x.repairs.ok >= 1 ? x : null;
        }, WAIT);
        expect(e.last_repair.result).toBe('ok');
        expect(await deviceAddresses(lab, 'transit', 'lo')).toContain(V4);
        expect(await deviceAddresses(lab, 'origin', 'lo')).not.toContain(V4);
        expect(await routerHop(lab, V4)).toBe(transitHop(V4));
        await answeredBy(loop.stats, url, TRANSIT, performance.now());
        const stats = await loop.stop();
        loop = null;
        const outage = outageOf(stats, url, t0);
        console.log(`(c) address removed from the transit's lo: client outage ${outage ? `${outage.gapMs.toFixed(0)} ms (${outage.failed} failed probes: ${outage.errors.join(', ')})` : 'none seen'}`);
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
      } finally {
        await loop?.stop();
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(d) linux-address: the address removed from the transit is re-added; traffic from the client recovers', async () => {
    await withLab(async (lab, dir) => {
      const la = lab.linuxAddress;
      const onLink = ['192.0.2.50', '2001:db8:ffff::50'];
      const ctl = await startController({
        zonesDir: ZONES, dir,
        sections: {
          servers: [{ name: ORIGIN, addresses: onLink }],
          transits: [{ name: TRANSIT, addresses: ['198.51.100.20', '2001:db8:3::20'] }],
          state: { path: './state.db' },
          routing: {
            backend: 'linux-address', retry: RETRY, reconcile: { interval_s: 1 },
            linux_address: {
              hosts: Object.fromEntries(Object.entries(la.hosts).map(([k, v]) => [k, { exec: v.exec, device: v.device }])),
              prefix_length_v4: la.prefixLength![4], prefix_length_v6: la.prefixLength![6],
            },
          },
        },
      });
      let loop: ReturnType<typeof probeLoop> | null = null;
      try {
        await cutOver(ctl);
        expect(await servedBy(lab, onLink)).toEqual([TRANSIT, TRANSIT]);
        const url = urlOf(onLink[0]);
        loop = probeLoop(lab, lab.ns.client, [url], PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
        await answeredBy(loop.stats, url, TRANSIT, performance.now());
        const t0 = performance.now();
        await must(lab, 'transit', ['ip', 'addr', 'del', `${onLink[0]}/25`, 'dev', 'eth0']);
        const e = await waitFor(`${onLink[0]} re-added on the transit`, async () => {
          const x = entry(await routing(ctl), onLink[0]);
          return x.state === 'in_sync' && x.repairs.ok >= 1 ? x : null;
        }, WAIT);
        expect(e.last_repair.result).toBe('ok');
        expect(await deviceAddresses(lab, 'transit', 'eth0')).toContain(onLink[0]);
        expect(await deviceAddresses(lab, 'origin', 'eth0')).not.toContain(onLink[0]);
        await answeredBy(loop.stats, url, TRANSIT, performance.now());
        const stats = await loop.stop();
        loop = null;
        const outage = outageOf(stats, url, t0);
        console.log(`(d) on-link address removed from the transit: client outage ${outage ? `${outage.gapMs.toFixed(0)} ms (${outage.failed} failed probes: ${outage.errors.join(', ')})` : 'none seen'}`);
        expect(await servedBy(lab, onLink)).toEqual([TRANSIT, TRANSIT]);
        expect(metric(await metrics(ctl), 'failover_routing_repairs_total', 'backend="linux-address",result="ok"')).toBeGreaterThanOrEqual(1);
      } finally {
        await loop?.stop();
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(e) http: the failover IP switched back to the origin by someone else is switched again', async () => {
    const robot = await FakeRobot.start({
      username: 'robot-user', password: 'robot-secret-pw',
      servers: [{ ip: '192.0.2.42' }, { ip: '192.0.2.43' }],
      failovers: [{ ip: V4, serverIp: '192.0.2.42', activeServerIp: '192.0.2.42' }],
    });
    const dir = mkdtempSync(join(tmpdir(), 'fc-reconcile-lab-'));
    let ctl: ControllerHandle | null = null;
    try {
      ctl = await startController({
        zonesDir: ZONES, dir,
        env: { ROBOT_USER: 'robot-user', ROBOT_PASSWORD: 'robot-secret-pw' },
        sections: {
          servers: [{ name: ORIGIN, addresses: [V4], routing: { main_ip: '192.0.2.42' } }],
          transits: [{ name: TRANSIT, addresses: ['198.51.100.20'], routing: { main_ip: '192.0.2.43' } }],
          state: { path: './state.db' },
          routing: {
            backend: 'http', retry: RETRY, reconcile: { interval_s: 1 },
            http: { base_url: robot.url, username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 5000 },
          },
        },
      });
      await cutOver(ctl);
      expect(robot.activeServerIp(V4)).toBe('192.0.2.43');
      const posts = robot.requestsFor({ method: 'POST', ip: V4 }).length;

      robot.setActive(V4, '192.0.2.42'); // the provider's panel clicked
      const e = await waitFor('the failover IP switched to the transit again', async () => {
        const x = entry(await routing(ctl!), V4);
        return x.state === 'in_sync' && x.repairs.ok >= 1 && robot.activeServerIp(V4) === '192.0.2.43' ? x : null;
      }, WAIT);
      expect(e.last_repair.result).toBe('ok');
      expect(robot.activeServerIp(V4)).toBe('192.0.2.43');
      const repairPosts = robot.requestsFor({ method: 'POST', ip: V4 }).slice(posts);
      expect(repairPosts.map((r) => [r.body.active_server_ip, r.status])).toEqual([['192.0.2.43', 200]]);
      expect(metric(await metrics(ctl), 'failover_routing_repairs_total', 'backend="http",result="ok"')).toBe(1);
    } finally {
      await ctl?.stop();
      await robot.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('(f) report mode: drift reported (state, drift_since, gauge), nothing changed on the router', async () => {
    await withLab(async (lab, dir) => {
      const ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab, { reconcile: { mode: 'report' } }) });
      try {
        await cutOver(ctl);
        await must(lab, 'router', ['ip', 'route', 'del', `${V4}/32`]);
        const first = await waitFor('the drift reported', async () => {
          const v = await routing(ctl);
          return entry(v, V4).state === 'drifted' ? v : null;
        }, WAIT);
        expect(first.mode).toBe('report');
        const since = entry(first, V4).drift_since as string;
        expect(Date.parse(since)).not.toBeNaN();
        expect(entry(first, V4).reason).toMatch(/no host/);

        // two more passes: still reported, the same drift_since, never repaired
        const later = await nextPasses(ctl, 2);
        const e = entry(later, V4);
        expect(e).toMatchObject({ state: 'drifted', drift_since: since, repairs: { ok: 0, failed: 0 }, last_repair: null, next_repair_at: null });
        expect(later.summary).toMatchObject({ drifted: 1, in_sync: 2 });
        expect(await routerHop(lab, V4)).toBeNull();
        const body = await metrics(ctl);
        expect(metric(body, 'failover_routing_drift_addresses')).toBe(1);
        expect(metric(body, 'failover_routing_drift_oldest_seconds')).toBeGreaterThan(0);
        expect(metric(body, 'failover_routing_repairs_total', 'backend="linux-route",result="ok"')).toBe(0);

        const waited = await ctl.post('/v1/routing/reconcile?wait=10', {});
        expect(waited.status).toBe(200);
        expect(JSON.parse(waited.body).pass).toMatchObject({ trigger: 'request', mode: 'report', checked: 3, in_sync: 2, drifted: 1, repaired: 0 });
        expect((await ctl.post('/v1/routing/reconcile', {})).status).toBe(202);
        expect(await routerHop(lab, V4)).toBeNull();
      } finally {
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(g) router unreachable: unknown, nothing tried, unknown gauge; once it is back the drift is repaired', async () => {
    await withLab(async (lab, dir) => {
      // the router's command prefix is a script the test can break and mend
      const wrapper = join(dir, 'router-exec');
      const writeWrapper = (text: string) => {
        const tmp = `${wrapper}.tmp`;
        writeFileSync(tmp, text);
        chmodSync(tmp, 0o755);
        renameSync(tmp, wrapper);
      };
      const working = `#!/bin/sh\nexec ip netns exec ${lab.ns.router} "$@"\n`;
      writeWrapper(working);
      const ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab, { router: [wrapper] }) });
      try {
        await cutOver(ctl);
        writeWrapper('#!/bin/sh\necho "router: connection refused" >&2\nexit 1\n');
        const unknown = await waitFor('every address unknown', async () => {
          const v = await routing(ctl);
          return v.addresses.every((a) => a.state === 'unknown') ? v : null;
        }, WAIT);
        expect(unknown.last_pass?.read_error).toEqual(expect.any(String));
        // drift while it cannot be read: left alone
        await must(lab, 'router', ['ip', 'route', 'del', `${V4}/32`]);
        const later = await nextPasses(ctl, 2);
        expect(entry(later, V4)).toMatchObject({ state: 'unknown', repairs: { ok: 0, failed: 0 }, last_repair: null });
        expect(later.summary).toMatchObject({ unknown: 3, drifted: 0 });
        expect(await routerHop(lab, V4)).toBeNull();
        const body = await metrics(ctl);
        expect(metric(body, 'failover_routing_unknown_addresses')).toBeGreaterThan(0);
        expect(metric(body, 'failover_routing_read_failures_total', 'backend="linux-route"')).toBeGreaterThan(0);
        expect(metric(body, 'failover_routing_repairs_total', 'backend="linux-route",result="failed"')).toBe(0);

        writeWrapper(working);
        const e = await waitFor('the drift repaired once the router is back', async () => {
          const x = entry(await routing(ctl), V4);
          return x.state === 'in_sync' && x.repairs.ok >= 1 ? x : null;
        }, WAIT);
        expect(e.repairs.failed).toBe(0);
        expect(await routerHop(lab, V4)).toBe(transitHop(V4));
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
        await allInSync(ctl, 'every address in_sync again');
        expect(metric(await metrics(ctl), 'failover_routing_unknown_addresses')).toBe(0);
      } finally {
        await ctl.stop();
      }
    });
  }, 120_000);

  test('(h) SIGKILL with drift made meanwhile: the start pass repairs it before the API answers', async () => {
    await withLab(async (lab, dir) => {
      let ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab) });
      try {
        await cutOver(ctl);
        await ctl.kill();
        await must(lab, 'router', ['ip', 'route', 'del', `${V4}/32`]);
        expect(await routerHop(lab, V4)).toBeNull();
        // a long interval: the first pass after the restart is the start pass, whenever the GET comes
        ctl = await startController({ zonesDir: ZONES, dir, sections: linuxRouteSections(lab, { reconcile: { interval_s: 300 } }) });
        const v = await routing(ctl); // the first request after /readyz: the API listens only after the start pass
        expect(v.last_pass).toMatchObject({ trigger: 'start', repaired: 1, read_error: null });
        expect(entry(v, V4)).toMatchObject({ state: 'in_sync', last_repair: { result: 'ok' } });
        expect(entry(v, V4).repairs.ok).toBeGreaterThanOrEqual(1);
        expect(await routerHop(lab, V4)).toBe(transitHop(V4));
        expect(await servedBy(lab, SERVER_ADDRESSES)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
      } finally {
        await ctl.stop();
      }
    });
  }, 120_000);
});

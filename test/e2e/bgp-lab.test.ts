/**
 * The bgp backend end to end, through the real controller process (the built CLI): gobgpd in a
 * speaker namespace on the server LAN, BIRD 2 on the router (deploy/bgp/), HTTP probes every
 * 10 ms from the client. gobgpd starts with graceful restart (-r) and its neighbour admin-down:
 *   (a) the controller's start replays every desired path, then enables the neighbour: traffic flows;
 *   (b) cutover and cutback through the API, probed;
 *   (c) gobgpd SIGKILLed right after a cutover was accepted and restarted with -r: the reconcile
 *       loop finds it waiting (neighbour admin-down), replays the whole desired state and enables
 *       the neighbour; the cutover then completes; no probe lost across the restart;
 *   (d) a path withdrawn by hand (DeletePath): repaired by the reconcile loop, counted;
 *   (e) the controller SIGKILLed while cut over, gobgpd SIGKILLed and restarted while it is down
 *       (the router keeps the stale routes): the restarted controller re-announces every path from
 *       its state before anything else, then enables the neighbour; no probe lost.
 * Needs root, bird2, gobgpd, golang-github-osrg-gobgp-dev and the build (npm run build).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { routerRoute } from '../../src/routing/bgp-backend.js';
import { GobgpGrpcClient } from '../../src/routing/gobgp-client.js';
import { addBgp, haveBgpTools, type BgpLab } from '../support/bgp-lab.js';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { answeredSince, createLab, labSections, ORIGIN, probeLoop, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab } from '../support/netns-lab.js';
import { waitFor } from '../support/wait-for.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
const WAIT = { timeoutMs: 30_000, pollMs: 50 };
const PROBE_INTERVAL_MS = 10;
const PROBE_TIMEOUT_MS = 3000;
/** As for linux-route without pinning: a flip can reset the one TCP connection in flight (see src/routing/README.md). */
const MAX_LOST_PER_FLIP = 2;
const OURS = [...SERVICE_ADDRESSES[ORIGIN]];
const THEIRS = [...SERVICE_ADDRESSES[TRANSIT]];
const HOP = { [ORIGIN]: ['192.0.2.2', '2001:db8:ffff::2'], [TRANSIT]: ['192.0.2.3', '2001:db8:ffff::3'] } as const;
const family = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);

/** The value of a sample in the Prometheus text (labels exactly as printed); NaN when absent. */
function metric(body: string, name: string, labels = ''): number {
  const head = labels ? `${name}{${labels}} ` : `${name} `;
  const line = body.split('\n').find((l) => l.startsWith(head));
  return line ? Number(line.slice(head.length).trim().split(' ')[0]) : NaN;
}

const haveAll = haveBgpTools() && process.getuid?.() === 0;
if (!haveAll) console.warn('bgp-lab e2e skipped: needs root, bird2, gobgpd and golang-github-osrg-gobgp-dev');

(haveAll ? describe : describe.skip)('bgp backend through the controller in the namespace lab', () => {
  let lab: Lab;
  let bgp: BgpLab;
  let ctl: ControllerHandle | undefined;
  let dir: string;

  /** The router's next hop for each address (null: no host route). */
  const routerHops = (addresses: readonly string[]) =>
    Promise.all(addresses.map(async (a) => routerRoute(await bgp.birdc(['show', 'route', 'for', a]), a, family(a)).nextHop));
  const hopsOf = (host: keyof typeof HOP, addresses: readonly string[]) => addresses.map((a) => HOP[host][family(a) === 4 ? 0 : 1]);
  const metrics = async () => (await ctl!.get('/metrics', false)).body;
  const start = () => startController({
    zonesDir: ZONES,
    dir,
    sections: {
      ...labSections(lab),
      routing: {
        backend: 'bgp',
        retry: { deadline_s: 30, min_delay_ms: 100, max_delay_ms: 500 },
        reconcile: { interval_s: 1 },
        bgp: { api: bgp.api, next_hops: lab.linuxRoute.nextHops, communities: ['65000:100'], hosts: lab.linuxRoute.hosts, verify: bgp.verify, verify_deadline_ms: 5000 },
      },
    },
  });

  beforeAll(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'fc-bgp-lab-'));
    try {
      bgp = await addBgp(lab);
      await bgp.startGobgpd({ gracefulRestart: true });
    } catch (err) {
      await lab.destroy();
      throw err;
    }
  }, 60_000);
  afterAll(async () => {
    await ctl?.stop();
    await bgp?.destroy();
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('(a) at start the controller replays every path, then enables the admin-down neighbour', async () => {
    expect(await bgp.birdc(['show', 'protocols', 'speaker'])).not.toMatch(/Established/);
    ctl = await start();
    // (the transit's own addresses are not the controller's: only server addresses are announced)
    await waitFor('the router on the origin', async () => JSON.stringify(await routerHops(OURS)) === JSON.stringify(hopsOf(ORIGIN, OURS)), WAIT);
    expect(await routerHops(THEIRS)).toEqual(THEIRS.map(() => null));
    expect(await Promise.all(OURS.map((a) => lab.httpFrom(lab.ns.client, urlOf(a), 1000)))).toEqual(OURS.map(() => ORIGIN));
    expect(metric(await metrics(), 'failover_routing_daemon_resumes_total', 'backend="bgp",trigger="start",result="ok"')).toBe(1);
  }, 60_000);

  test('(b) cutover and cutback through the API under 10 ms probes', async () => {
    for (const [verb, to, from] of [['cutover', TRANSIT, ORIGIN], ['cutback', ORIGIN, TRANSIT]] as const) {
      const urls = OURS.map(urlOf);
      const loop = probeLoop(lab, lab.ns.client, urls, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
      await waitFor(`every address answered by ${from}`, () => answeredSince(loop.stats, urls, from, performance.now() - 1000), WAIT);
      const r = await ctl!.post(`/v1/servers/${ORIGIN}/${verb}?wait=30`, verb === 'cutover' ? { transit: TRANSIT } : {});
      const op = JSON.parse(r.body) as Record<string, any>;
      const t1 = performance.now();
      await waitFor(`every address answered by ${to}`, () => answeredSince(loop.stats, urls, to, t1), WAIT);
      const stats = await loop.stop();
      console.log(`(b) ${verb}: operation ${op.state}, routing ${op.durations_ms?.routing} ms; ${stats.probes} probes, ${stats.failures} failures ${JSON.stringify(stats.errors)}`);
      expect(op.state).toBe('succeeded');
      expect(await routerHops(OURS)).toEqual(hopsOf(to, OURS));
      expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
    }
  }, 90_000);

  test('(c) gobgpd SIGKILLed during a cutover and restarted with -r: the controller replays and enables the neighbour; the cutover completes; no probe lost', async () => {
    const urls = OURS.map(urlOf);
    const loop = probeLoop(lab, lab.ns.client, urls, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
    await waitFor(`every address answered by ${ORIGIN}`, () => answeredSince(loop.stats, urls, ORIGIN, performance.now() - 1000), WAIT);
    const resetsBefore = metric(await metrics(), 'failover_routing_daemon_resumes_total', 'backend="bgp",trigger="reset",result="ok"') || 0;
    const r = await ctl!.post(`/v1/servers/${ORIGIN}/cutover`, { transit: TRANSIT });
    const k0 = performance.now();
    await bgp.stopGobgpd('SIGKILL');
    await bgp.startGobgpd({ gracefulRestart: true });
    const id = (JSON.parse(r.body) as { operation: { id: string } }).operation?.id ?? (JSON.parse(r.body) as { id: string }).id;
    const op = await ctl!.waitOperation(id, 60_000);
    const t1 = performance.now();
    await waitFor(`every address answered by ${TRANSIT}`, () => answeredSince(loop.stats, urls, TRANSIT, t1), WAIT);
    const stats = await loop.stop();
    const resets = metric(await metrics(), 'failover_routing_daemon_resumes_total', 'backend="bgp",trigger="reset",result="ok"');
    console.log(`(c) gobgpd SIGKILL + restart during a cutover: operation ${op.state} ${(t1 - k0).toFixed(0)} ms after the kill (routing ${op.durations_ms?.routing} ms); resumes after a reset: ${resets - resetsBefore}; ${stats.probes} probes, ${stats.failures} failures ${JSON.stringify(stats.errors)}`);
    expect(op.state).toBe('succeeded');
    expect(resets).toBeGreaterThan(resetsBefore);
    expect(ctl!.output()).toMatch(/routing daemon resumed/);
    expect(await routerHops(OURS)).toEqual(hopsOf(TRANSIT, OURS));
    // across the restart nothing is lost; the flip itself may reset the one connection in flight
    expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
  }, 90_000);

  test('(d) a path withdrawn by hand: repaired by the reconcile loop, counted', async () => {
    const v4 = OURS[0];
    const okBefore = metric(await metrics(), 'failover_routing_repairs_total', 'backend="bgp",result="ok"');
    const loop = probeLoop(lab, lab.ns.client, [urlOf(v4)], PROBE_INTERVAL_MS, 100);
    await waitFor(`${v4} answered by ${TRANSIT}`, () => answeredSince(loop.stats, [urlOf(v4)], TRANSIT, performance.now() - 1000), WAIT);
    const client = new GobgpGrpcClient({ api: bgp.api });
    const t0 = performance.now();
    try {
      await client.deletePaths([{ address: v4, family: 4, nextHop: HOP[TRANSIT][0], communities: [] }]);
    } finally {
      client.close();
    }
    await waitFor('the repair counted', async () => metric(await metrics(), 'failover_routing_repairs_total', 'backend="bgp",result="ok"') > okBefore, WAIT);
    await waitFor(`${v4} answered by ${TRANSIT} again`, () => loop.stats.log.some((p) => p.at > t0 && p.servedBy === null) ? answeredSince(loop.stats, [urlOf(v4)], TRANSIT, loop.stats.log.filter((p) => p.servedBy === null).at(-1)!.at) : true, WAIT);
    const stats = await loop.stop();
    const failed = stats.log.filter((p) => p.at >= t0 && p.servedBy === null);
    console.log(`(d) path withdrawn by hand: repaired by reconcile (interval 1 s); outage ${failed.length > 0 ? `${(failed.at(-1)!.at - failed[0].at + PROBE_INTERVAL_MS).toFixed(0)} ms, ${failed.length} failed probes (${[...new Set(failed.map((p) => p.error))].join(', ')})` : 'none seen'}`);
    expect(await routerHops([v4])).toEqual([HOP[TRANSIT][0]]);
  }, 60_000);

  test('(e) controller SIGKILLed while cut over, gobgpd restarted meanwhile: the restarted controller re-announces every path from its state first; no probe lost', async () => {
    const urls = OURS.map(urlOf);
    const loop = probeLoop(lab, lab.ns.client, urls, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS);
    await waitFor(`every address answered by ${TRANSIT}`, () => answeredSince(loop.stats, urls, TRANSIT, performance.now() - 1000), WAIT);
    await ctl!.kill();
    ctl = undefined;
    const k0 = performance.now();
    await bgp.stopGobgpd('SIGKILL');
    await bgp.startGobgpd({ gracefulRestart: true });
    const client = new GobgpGrpcClient({ api: bgp.api });
    try {
      const paths = await waitFor('the restarted gobgpd read', () => client.listPaths(4).catch(() => undefined), WAIT);
      expect(paths.size).toBe(0); // gobgpd lost every path; the router keeps the stale ones
      ctl = await start();
      const v4 = OURS.filter((a) => family(a) === 4);
      await waitFor('every path re-announced', async () => {
        const now = await client.listPaths(4);
        return v4.every((a) => now.get(a)?.nextHop === HOP[TRANSIT][0]);
      }, WAIT);
    } finally {
      client.close();
    }
    await waitFor('BGP session Established', async () => /Established/.test(await bgp.birdc(['show', 'protocols', 'speaker'])), WAIT);
    const t1 = performance.now();
    await waitFor('the router on the transit (fresh routes)', async () => JSON.stringify(await routerHops(OURS)) === JSON.stringify(hopsOf(TRANSIT, OURS)), WAIT);
    await waitFor(`every address answered by ${TRANSIT}`, () => answeredSince(loop.stats, urls, TRANSIT, t1), WAIT);
    const stats = await loop.stop();
    console.log(`(e) controller SIGKILL + gobgpd restart while it was down: session up ${(t1 - k0).toFixed(0)} ms after the gobgpd kill; ${stats.probes} probes, ${stats.failures} failures ${JSON.stringify(stats.errors)}`);
    expect(metric(await metrics(), 'failover_routing_daemon_resumes_total', 'backend="bgp",trigger="start",result="ok"')).toBe(1);
    expect(stats.failures).toBe(0);
  }, 90_000);
});

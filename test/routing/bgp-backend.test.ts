/**
 * BgpRouteBackend: the router-output parser, path messages and apply()/current() with a fake
 * gobgpd and a fake runner; then gobgpd and BIRD 2 in a network-namespace lab (root, bird2,
 * gobgpd, golang-github-osrg-gobgp-dev): announce, cutover and cutback under 10 ms probes, a
 * path the router refuses, a path withdrawn by hand.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { BgpRouteBackend, parseCommunity, routerRoute } from '../../src/routing/bgp-backend.js';
import type { CommandRunner } from '../../src/routing/command-runner.js';
import { announcedPaths, GobgpGrpcClient, pathMessage, peersOf, type AnnouncedPath, type GobgpApi, type GobgpPath, type GobgpPeer } from '../../src/routing/gobgp-client.js';
import { RouteError, type DesiredRoute } from '../../src/core/ports.js';
import { addBgp, haveBgpTools, type BgpLab } from '../support/bgp-lab.js';
import { answeredSince, createLab, ORIGIN, probeLoop, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab } from '../support/netns-lab.js';
import { waitFor } from '../support/wait-for.js';

const NEXT_HOPS = { [ORIGIN]: ['192.0.2.2', '2001:db8:ffff::2'], [TRANSIT]: ['192.0.2.3', '2001:db8:ffff::3'] };
const familyOf = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);
const moveAll = (addresses: readonly string[], to: string, from: string): DesiredRoute[] => addresses.map((address) => ({ address, family: familyOf(address), to, from }));
/** As for linux-route without pinning: a flip can reset the one TCP connection in flight. */
const MAX_LOST_PER_FLIP = 2;
const PROBE_TIMEOUT_MS = 3000;

/** birdc output shapes (BIRD 2.0.12, copied from the lab). */
const BIRD = {
  v4: 'BIRD 2.0.12 ready.\nTable master4:\n203.0.113.10/32      unicast [speaker 17:05:09.469 from 192.0.2.5] * (100) [AS65001i]\n\tvia 192.0.2.2 on br0\n',
  v4all: 'BIRD 2.0.12 ready.\nTable master4:\n203.0.113.10/32      unicast [speaker 17:05:09.469 from 192.0.2.5] * (100) [AS65001i]\n\tvia 192.0.2.2 on br0\n\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.next_hop: 192.0.2.2\n',
  v6: 'BIRD 2.0.12 ready.\nTable master6:\n2001:db8:42::10/128  unicast [speaker 17:05:09.485 from 192.0.2.5] * (100) [AS65001i]\n\tvia 2001:db8:ffff::2 on br0\n',
  connected: 'BIRD 2.0.12 ready.\nTable master4:\n192.0.2.0/25         unicast [direct1 17:04:10.189] * (240)\n\tdev br0\n',
  notFound: 'BIRD 2.0.12 ready.\nNetwork not found\n',
  multipath: 'BIRD 2.0.12 ready.\nTable master4:\n203.0.113.10/32      unicast [speaker 17:05:09.469 from 192.0.2.5] * (100) [AS65001i]\n\tvia 192.0.2.2 on br0 weight 1\n\tvia 192.0.2.3 on br0 weight 1\n',
  secondBest: 'BIRD 2.0.12 ready.\nTable master4:\n203.0.113.10/32      unicast [speaker 17:05:09.469 from 192.0.2.5] * (100) [AS65001i]\n\tvia 192.0.2.3 on br0\n                     unicast [other 17:05:09.469 from 192.0.2.6] (100) [AS65002i]\n\tvia 192.0.2.2 on br0\n',
};

describe('routerRoute (birdc show route for)', () => {
  test.each([
    ['an IPv4 host route', BIRD.v4, '203.0.113.10', 4, { present: true, nextHop: '192.0.2.2' }],
    ['with `all` attributes', BIRD.v4all, '203.0.113.10', 4, { present: true, nextHop: '192.0.2.2' }],
    ['an IPv6 host route', BIRD.v6, '2001:db8:42::10', 6, { present: true, nextHop: '2001:db8:ffff::2' }],
    ['a less specific net answers (longest-prefix lookup): absent', BIRD.connected, '192.0.2.77', 4, { present: false, nextHop: null }],
    ['Network not found', BIRD.notFound, '203.0.113.10', 4, { present: false, nextHop: null }],
    ['multipath: no single next hop', BIRD.multipath, '203.0.113.10', 4, { present: true, nextHop: null }],
    ['the primary (*) route counts, not the alternative', BIRD.secondBest, '203.0.113.10', 4, { present: true, nextHop: '192.0.2.3' }],
    ['garbage', '\u0000{]not bird', '203.0.113.10', 4, { present: false, nextHop: null }],
  ] as const)('%s', (_label, out, address, family, expected) => {
    expect(routerRoute(out, address, family)).toEqual(expected);
  });
});

describe('path messages', () => {
  test('IPv4: NextHopAttribute; IPv6: MpReachNLRIAttribute with the next hop; communities as numbers', () => {
    expect(parseCommunity('65000:100')).toBe(4259840100);
    expect(() => parseCommunity('65536:1')).toThrow(RouteError);
    const v4 = pathMessage({ address: '203.0.113.10', family: 4, nextHop: '192.0.2.2', communities: [4259840100] });
    expect(v4.pattrs).toEqual([
      { '@type': 'type.googleapis.com/apipb.OriginAttribute', origin: 0 },
      { '@type': 'type.googleapis.com/apipb.NextHopAttribute', next_hop: '192.0.2.2' },
      { '@type': 'type.googleapis.com/apipb.CommunitiesAttribute', communities: [4259840100] },
    ]);
    const v6 = pathMessage({ address: '2001:db8:42::10', family: 6, nextHop: '2001:db8:ffff::2', communities: [] });
    expect(v6.family).toEqual({ afi: 'AFI_IP6', safi: 'SAFI_UNICAST' });
    expect((v6.pattrs as { next_hops?: string[] }[])[1].next_hops).toEqual(['2001:db8:ffff::2']);
  });

  test('ListPath answers: local host prefixes with their next hop', () => {
    const answer = (prefix: string, len: number, pattrs: unknown[], extra = {}) => ({ destination: { prefix: `${prefix}/${len}`, paths: [{ nlri: { prefix, prefix_len: len }, pattrs, best: true, neighbor_ip: '<nil>', ...extra }] } });
    const got = announcedPaths([
      answer('203.0.113.10', 32, [{ '@type': 'type.googleapis.com/apipb.NextHopAttribute', next_hop: '192.0.2.2' }, { '@type': 'type.googleapis.com/apipb.CommunitiesAttribute', communities: [1] }]),
      answer('203.0.113.0', 24, [{ '@type': 'type.googleapis.com/apipb.NextHopAttribute', next_hop: '192.0.2.2' }]),
      answer('203.0.113.11', 32, [{ '@type': 'type.googleapis.com/apipb.NextHopAttribute', next_hop: '192.0.2.3' }], { neighbor_ip: '192.0.2.1' }),
      null,
      { destination: { paths: 'x' } },
    ], 4);
    expect([...got]).toEqual([['203.0.113.10', { nextHop: '192.0.2.2', communities: [1] }]]);
  });
});

/** A gobgpd that records batches; the router follows it unless told to refuse a next hop. */
function fakeGobgp() {
  const rib = new Map<string, AnnouncedPath>();
  const batches: GobgpPath[][] = [];
  const deletes: GobgpPath[] = [];
  const peers: GobgpPeer[] = [{ address: '192.0.2.1', adminDown: false, session: 'ESTABLISHED' }];
  const enabled: string[] = [];
  const api: GobgpApi = {
    async addPaths(paths) {
      batches.push(paths);
      for (const p of paths) rib.set(p.address, { nextHop: p.nextHop, communities: p.communities });
    },
    async deletePaths(paths) {
      deletes.push(...paths);
      for (const p of paths) rib.delete(p.address);
    },
    async listPaths(family) {
      return new Map([...rib].filter(([a]) => familyOf(a) === family));
    },
    async enablePeer(address) {
      enabled.push(address);
      for (const p of peers) if (p.address === address) Object.assign(p, { adminDown: false, session: 'ESTABLISHED' });
    },
    async listPeers() {
      return peers.map((p) => ({ ...p }));
    },
    close() {},
  };
  /** gobgpd killed and started again with its neighbour admin-down: no paths. */
  const restart = () => {
    rib.clear();
    for (const p of peers) Object.assign(p, { adminDown: true, session: 'IDLE' });
  };
  return { api, rib, batches, deletes, peers, enabled, restart };
}

/** A router read through the verify command: shows what gobgpd announces, except refused next hops. */
function fakeRouter(rib: Map<string, AnnouncedPath>, refuse = new Set<string>()): CommandRunner {
  return async (argv) => {
    const address = argv[argv.length - 1];
    const p = rib.get(address);
    if (!p || refuse.has(p.nextHop ?? '')) return { code: 1, stdout: BIRD.notFound, stderr: '' };
    const len = familyOf(address) === 4 ? 32 : 128;
    return { code: 0, stdout: `BIRD 2.0.12 ready.\nTable master${familyOf(address)}:\n${address}/${len}  unicast [speaker] * (100)\n\tvia ${p.nextHop} on br0\n`, stderr: '' };
  };
}

describe('BgpRouteBackend with a fake gobgpd', () => {
  const ours = ['203.0.113.10', '2001:db8:42::10'];

  test('a move is one batch of replacement paths; already announced ones are not sent again', async () => {
    const g = fakeGobgp();
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, communities: ['65000:100'], client: g.api, verify: ['birdc', 'show', 'route', 'for'], runner: fakeRouter(g.rib) });
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: ours, unchanged: [] });
    expect(await b.apply(moveAll(ours, TRANSIT, ORIGIN))).toEqual({ changed: ours, unchanged: [] });
    expect(await b.apply(moveAll(ours, TRANSIT, ORIGIN))).toEqual({ changed: [], unchanged: ours });
    expect(g.batches.map((x) => x.map((p) => `${p.address} via ${p.nextHop}`))).toEqual([
      ['203.0.113.10 via 192.0.2.2', '2001:db8:42::10 via 2001:db8:ffff::2'],
      ['203.0.113.10 via 192.0.2.3', '2001:db8:42::10 via 2001:db8:ffff::3'],
    ]);
    expect(g.deletes).toEqual([]);
    expect(await b.current(ours)).toEqual(ours.map((address) => ({ address, to: TRANSIT })));
  });

  test('a next hop the router does not take: announced as before again at once (its route was dropped), a final RouteError naming the address', async () => {
    const g = fakeGobgp();
    // a deadline far beyond the test's timeout: the refusal is seen when the router drops the route it had
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, client: g.api, verify: ['birdc'], verifyDeadlineMs: 600_000, verifyIntervalMs: 10, runner: fakeRouter(g.rib, new Set(['192.0.2.3'])) });
    await b.apply(moveAll(['203.0.113.10'], ORIGIN, TRANSIT));
    const err = await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RouteError);
    expect((err as RouteError).address).toBe('203.0.113.10');
    expect((err as RouteError).retryable).toBe(false);
    expect((err as RouteError).message).toMatch(/203\.0\.113\.10 via 192\.0\.2\.3 \(transit-3\): the router shows no route for the host prefix \(announced as before again\)$/);
    expect(g.rib.get('203.0.113.10')?.nextHop).toBe('192.0.2.2');
  });

  test('refused with no path before: withdrawn again; with a BGP session down the error is retryable', async () => {
    const g = fakeGobgp();
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, client: g.api, verify: ['birdc'], verifyDeadlineMs: 100, verifyIntervalMs: 10, runner: fakeRouter(g.rib, new Set(['192.0.2.3'])) });
    const first = await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN)).catch((e: unknown) => e as RouteError);
    expect(first).toMatchObject({ retryable: false, message: expect.stringMatching(/\(withdrawn \(not announced before\)\)$/) });
    expect(g.rib.has('203.0.113.10')).toBe(false);
    g.peers[0].session = 'ACTIVE';
    const again = await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN)).catch((e: unknown) => e as RouteError);
    expect(again).toMatchObject({ retryable: true, message: expect.stringMatching(/BGP session not established: 192\.0\.2\.1 ACTIVE$/) });
  });

  test('gobgpd restarted (neighbour admin-down, no paths): current() asks for resume, apply() waits, resume() replays everything then enables the neighbour', async () => {
    const g = fakeGobgp();
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, client: g.api });
    await b.apply(moveAll(ours, ORIGIN, TRANSIT));
    expect((await b.current(ours)).every((c) => c.needsResume === undefined)).toBe(true);
    g.restart();
    const seen = await b.current(ours);
    expect(seen.map((c) => c.needsResume)).toEqual(ours.map(() => "gobgpd's neighbour 192.0.2.1 is admin-down (gobgpd restarted, waiting for the replay)"));
    const batches = g.batches.length;
    await expect(b.apply(moveAll(ours, TRANSIT, ORIGIN))).rejects.toMatchObject({ retryable: true, message: expect.stringMatching(/admin-down .*nothing announced until the controller replays its paths/) });
    expect(g.batches.length).toBe(batches);
    await b.resume(moveAll(ours, ORIGIN, TRANSIT));
    expect(g.batches.at(-1)!.map((p) => `${p.address} via ${p.nextHop}`)).toEqual(['203.0.113.10 via 192.0.2.2', '2001:db8:42::10 via 2001:db8:ffff::2']);
    expect(g.enabled).toEqual(['192.0.2.1']);
    expect(await b.current(ours)).toEqual(ours.map((address) => ({ address, to: ORIGIN })));
    // neighbours up but none of the paths (gobgpd started without admin-down): resume asked too
    g.rib.clear();
    expect((await b.current(ours))[0].needsResume).toBe('gobgpd announces none of the 2 addresses (restarted?)');
  });

  test('ListPeer answers: address, admin state, session state', () => {
    expect(peersOf([
      { peer: { conf: { neighbor_address: '192.0.2.1' }, state: { neighbor_address: '192.0.2.1', admin_state: 'DOWN' } } },
      { peer: { conf: { neighbor_address: '192.0.2.7' }, state: { session_state: 'ESTABLISHED' } } },
      { peer: {} },
      null,
    ])).toEqual([
      { address: '192.0.2.1', adminDown: true, session: 'UNKNOWN' },
      { address: '192.0.2.7', adminDown: false, session: 'ESTABLISHED' },
    ]);
  });

  test('current(): a path withdrawn by hand is a problem; apply() announces it again', async () => {
    const g = fakeGobgp();
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, client: g.api });
    await b.apply(moveAll(ours, ORIGIN, TRANSIT));
    g.rib.delete('203.0.113.10');
    expect(await b.current(ours)).toEqual([{ address: '203.0.113.10', to: null }, { address: '2001:db8:42::10', to: ORIGIN }]);
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: ['203.0.113.10'], unchanged: ['2001:db8:42::10'] });
  });

  test.each([
    ['an unknown host', [{ address: '203.0.113.10', family: 4, to: 'nope', from: ORIGIN }], /unknown host "nope"/],
    ['a prefix', [{ address: '203.0.113.0/24', family: 4, to: ORIGIN, from: TRANSIT }], /203\.0\.113\.0\/24/],
    ['from = to', [{ address: '203.0.113.10', family: 4, to: ORIGIN, from: ORIGIN }], /from and to are both/],
  ] as const)('refused before anything is sent: %s', async (_label, desired, message) => {
    const g = fakeGobgp();
    const b = new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops: NEXT_HOPS, client: g.api });
    await expect(b.apply(desired as unknown as DesiredRoute[])).rejects.toThrow(message);
    expect(g.batches).toEqual([]);
  });

  test.each([
    ['an unspecified IPv4 next hop', { [ORIGIN]: ['0.0.0.0'] }, /0\.0\.0\.0 is not a next hop/],
    ['an unspecified IPv6 next hop', { [ORIGIN]: ['::'] }, /:: is not a next hop/],
    ['a next hop shared by two hosts', { [ORIGIN]: ['192.0.2.2'], [TRANSIT]: ['192.0.2.2'] }, /given for both/],
  ])('configuration refused: %s', (_label, nextHops, message) => {
    expect(() => new BgpRouteBackend({ api: '127.0.0.1:50051', nextHops, client: fakeGobgp().api })).toThrow(message);
  });
});

const lab_ = haveBgpTools() && process.getuid?.() === 0 ? describe : describe.skip;
if (!haveBgpTools()) console.warn('bgp-backend lab tests skipped: bird2, gobgpd or golang-github-osrg-gobgp-dev not installed');

lab_('BgpRouteBackend with gobgpd and BIRD 2 in a network-namespace lab', () => {
  let lab: Lab;
  let bgp: BgpLab;
  let backend: BgpRouteBackend;
  const ours = SERVICE_ADDRESSES[ORIGIN];
  const theirs = SERVICE_ADDRESSES[TRANSIT];

  beforeAll(async () => {
    lab = await createLab();
    try {
      bgp = await addBgp(lab);
      await bgp.startGobgpd({ gracefulRestart: true });
      await bgp.enablePeer();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    backend = new BgpRouteBackend({ api: bgp.api, nextHops: NEXT_HOPS, communities: ['65000:100'], hosts: lab.linuxRoute.hosts, verify: bgp.verify });
  }, 60_000);
  afterAll(async () => {
    backend?.close();
    await bgp?.destroy();
    await lab?.destroy();
  });

  test('announces every address to its owner; the router shows them; current() reads them back', async () => {
    await backend.apply([...moveAll(ours, ORIGIN, TRANSIT), ...moveAll(theirs, TRANSIT, ORIGIN)]);
    expect(await backend.current([...ours, ...theirs])).toEqual([...ours.map((address) => ({ address, to: ORIGIN })), ...theirs.map((address) => ({ address, to: TRANSIT }))]);
    expect(await lab.httpFrom(lab.ns.client, urlOf(ours[0]), 1000)).toBe(ORIGIN);
  });

  test('cutover and cutback under 10 ms probes (make-before-break)', async () => {
    for (const [to, from] of [[TRANSIT, ORIGIN], [ORIGIN, TRANSIT]] as const) {
      const urls = ours.map(urlOf);
      const loop = probeLoop(lab, lab.ns.client, urls, 10, PROBE_TIMEOUT_MS);
      const begin = performance.now();
      await waitFor(`every address answered by ${from}`, () => answeredSince(loop.stats, urls, from, begin));
      const t0 = performance.now();
      const result = await backend.apply(moveAll(ours, to, from));
      const applyMs = performance.now() - t0;
      await waitFor(`every address answered by ${to}`, () => answeredSince(loop.stats, urls, to, t0 + applyMs));
      const stats = await loop.stop();
      console.log(`bgp ${from} → ${to}: apply ${applyMs.toFixed(0)} ms; ${stats.probes} probes, ${stats.failures} failures ${JSON.stringify(stats.errors)}`);
      expect(result.changed).toEqual([...ours]);
      expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
    }
  }, 60_000);

  test('a next hop the router refuses (import filter): the apply fails for good as soon as the router drops the route, naming it; announced as before again', async () => {
    const rogue = new BgpRouteBackend({ api: bgp.api, nextHops: { ...NEXT_HOPS, 'rogue-9': ['192.0.2.9'] }, verify: bgp.verify, verifyDeadlineMs: 5000 });
    const url = urlOf(ours[0]);
    const loop = probeLoop(lab, lab.ns.client, [url], 10, 100);
    try {
      await waitFor(`${ours[0]} answered by ${ORIGIN}`, () => answeredSince(loop.stats, [url], ORIGIN, performance.now() - 1000));
      const t0 = performance.now();
      const err = await rogue.apply([{ address: ours[0], family: 4, to: 'rogue-9', from: ORIGIN }]).catch((e: unknown) => e as RouteError);
      expect(err).toBeInstanceOf(RouteError);
      expect(err).toMatchObject({ retryable: false, address: ours[0] });
      expect((err as RouteError).message).toMatch(/203\.0\.113\.10 via 192\.0\.2\.9 \(rogue-9\): the router shows no route for the host prefix \(announced as before again\)$/);
      const t1 = performance.now();
      await waitFor('the router back on origin', async () => (await backend.current([...ours]))[0].to === ORIGIN);
      const t2 = performance.now();
      await waitFor(`${ours[0]} answered by ${ORIGIN} again`, () => answeredSince(loop.stats, [url], ORIGIN, t2));
      const stats = await loop.stop();
      const failed = stats.log.filter((p) => p.at >= t0 && p.servedBy === null);
      // the refused replacement withdrew the route it replaced (implicit withdraw): the address is lost until the path announced as before arrives
      console.log(`bgp refused path: apply failed after ${(t1 - t0).toFixed(0)} ms (deadline 5000); ${failed.length} failed probes (${[...new Set(failed.map((p) => p.error))].join(', ')}), ${failed.length > 0 ? `${(failed.at(-1)!.at - failed[0].at).toFixed(0)} ms` : 'no gap'}`);
      expect(await backend.current([...ours])).toEqual(ours.map((address) => ({ address, to: ORIGIN })));
      // not the deadline: the router dropped the route it had, a refusal
      expect(t1 - t0).toBeLessThan(5000);
    } finally {
      await loop.stop();
      rogue.close();
    }
  });

  test('a path withdrawn by hand: current() shows it, apply() repairs it', async () => {
    const client = new GobgpGrpcClient({ api: bgp.api });
    try {
      await client.deletePaths([{ address: ours[0], family: 4, nextHop: NEXT_HOPS[ORIGIN][0], communities: [] }]);
    } finally {
      client.close();
    }
    const seen = await waitFor('the withdrawal seen', async () => {
      const [c] = await backend.current([...ours]);
      return c.to === null ? c : undefined;
    });
    // one path of several gone is drift (repaired by apply), not a gobgpd restart (needsResume)
    expect(seen).toEqual({ address: ours[0], to: null });
    expect(await backend.apply(moveAll([ours[0]], ORIGIN, TRANSIT))).toEqual({ changed: [ours[0]], unchanged: [] });
    expect((await backend.current([ours[0]]))[0].to).toBe(ORIGIN);
  });

  test('gobgpd SIGKILLed, restarted with -r: current() asks for resume; resume() replays, then enables the neighbour; a cutover after it: no probe lost', async () => {
    const urls = ours.map(urlOf);
    const loop = probeLoop(lab, lab.ns.client, urls, 10, PROBE_TIMEOUT_MS);
    const begin = performance.now();
    await waitFor(`every address answered by ${ORIGIN}`, () => answeredSince(loop.stats, urls, ORIGIN, begin));
    const k0 = performance.now();
    await bgp.stopGobgpd('SIGKILL');
    await bgp.startGobgpd({ gracefulRestart: true });
    // the channel reconnects to the new gobgpd
    const seen = await waitFor('the restarted gobgpd read', () => backend.current([...ours]).catch(() => undefined));
    expect(seen.map((c) => c.needsResume)).toEqual(ours.map(() => expect.stringMatching(/192\.0\.2\.1 is admin-down/)));
    await expect(backend.apply(moveAll(ours, TRANSIT, ORIGIN))).rejects.toMatchObject({ retryable: true });
    await backend.resume(moveAll(ours, ORIGIN, TRANSIT));
    const r0 = performance.now();
    await waitFor('BGP session Established', async () => /Established/.test(await bgp.birdc(['show', 'protocols', 'speaker'])));
    const established = performance.now();
    const result = await backend.apply(moveAll(ours, TRANSIT, ORIGIN));
    const t1 = performance.now();
    await waitFor(`every address answered by ${TRANSIT}`, () => answeredSince(loop.stats, urls, TRANSIT, t1));
    const stats = await loop.stop();
    console.log(`bgp gobgpd SIGKILL + restart -r: resume ${(r0 - k0).toFixed(0)} ms after the kill, session up ${(established - r0).toFixed(0)} ms after it, cutover apply ${(t1 - established).toFixed(0)} ms; ${stats.probes} probes, ${stats.failures} failures ${JSON.stringify(stats.errors)}`);
    expect(result.changed).toEqual([...ours]);
    expect(stats.log.filter((p) => p.at > k0 && p.at < established && p.servedBy === null)).toEqual([]);
    expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
    await backend.apply(moveAll(ours, ORIGIN, TRANSIT));
  }, 60_000);

  test('gobgpd stopped with SIGTERM: the router withdraws its routes at once (the safe restart is SIGKILL + -r + admin-down)', async () => {
    const v4 = ours[0];
    expect(routerRoute(await bgp.birdc(['show', 'route', 'for', v4]), v4, 4).present).toBe(true);
    const t0 = performance.now();
    await bgp.stopGobgpd('SIGTERM');
    await waitFor('the router without the route', async () => !routerRoute(await bgp.birdc(['show', 'route', 'for', v4]), v4, 4).present);
    const gone = performance.now() - t0;
    console.log(`bgp gobgpd SIGTERM: the router dropped ${v4} ${gone.toFixed(0)} ms after the signal`);
    await bgp.startGobgpd({ gracefulRestart: true });
    await waitFor('the restarted gobgpd resumed', () => backend.resume(moveAll(ours, ORIGIN, TRANSIT)).then(() => true, () => false));
    await waitFor('the router on origin again', async () => (await backend.current([v4]))[0].to === ORIGIN);
  }, 60_000);
});

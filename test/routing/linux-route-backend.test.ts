/**
 * LinuxRouteBackend: argv shapes, validation and error mapping with a fake CommandRunner, then the
 * real thing in a network-namespace lab (root): cutover, idempotency, current(), cutback, and
 * make-before-break under a tight loop of HTTP probes from the client.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { runCommand, type CommandResult, type CommandRunner } from '../../src/routing/command-runner.js';
import { LinuxRouteBackend } from '../../src/routing/linux-route-backend.js';
import { RouteError, type DesiredRoute } from '../../src/routing/route-backend.js';
import { createLab, LAN, ORIGIN, probeLoop, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab } from '../support/netns-lab.js';

const ROUTER = ['ssh', 'router'];
const NEXT_HOPS = { [ORIGIN]: ['192.0.2.2', '2001:db8:ffff::2'], [TRANSIT]: ['192.0.2.3', '2001:db8:ffff::3'] };
const HOSTS = { [ORIGIN]: ['ssh', 'srv-42'], [TRANSIT]: ['ssh', 'transit-3'] };

const familyOf = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);
const moveAll = (addresses: readonly string[], to: string, from: string): DesiredRoute[] => addresses.map((address) => ({ address, family: familyOf(address), to, from }));

interface Call {
  argv: string[];
  input?: string;
}

/**
 * A fake router and hosts behind the fake runner: a routing table (address → gateway) and the
 * addresses on each host's lo; answers `ip -j route show`, `route replace`, `addr show/replace/del`.
 */
function fakeNetwork(routes: Record<string, string>, lo: Record<string, string[]>) {
  const calls: Call[] = [];
  let fail: ((c: Call) => CommandResult | undefined) | undefined;
  const runner: CommandRunner = async (argv, opts) => {
    const call = { argv: [...argv], input: opts?.input };
    calls.push(call);
    const forced = fail?.(call);
    if (forced) return forced;
    const who = argv[1];
    const ip = argv.slice(2);
    const lines = (opts?.input ?? '').split('\n').filter(Boolean);
    if (ip[0] !== 'ip') return { code: 127, stdout: '', stderr: 'not found' };
    if (who === 'router' && ip.includes('-j')) {
      const out = lines.map((l) => {
        const dst = l.split(' ')[2].replace(/\/\d+$/, '');
        return routes[dst] ? JSON.stringify([{ dst, gateway: routes[dst], dev: 'br0', flags: [] }]) : '[]';
      });
      return { code: 0, stdout: out.join('\n') + '\n', stderr: '' };
    }
    if (who === 'router') {
      for (const l of lines) {
        const [, , prefix, , gw] = l.split(' ');
        routes[prefix.replace(/\/\d+$/, '')] = gw;
      }
      return { code: 0, stdout: '', stderr: '' };
    }
    if (ip[1] === '-j') {
      const info = (lo[who] ?? []).map((a) => ({ family: a.includes(':') ? 'inet6' : 'inet', local: a, prefixlen: a.includes(':') ? 128 : 32 }));
      return { code: 0, stdout: JSON.stringify([{ ifname: 'lo', addr_info: info }]), stderr: '' };
    }
    for (const l of lines) {
      const [, op, pfx] = l.split(' ');
      const a = pfx.replace(/\/\d+$/, '');
      if (op === 'replace') lo[who] = [...new Set([...(lo[who] ?? []), a])];
      else lo[who] = (lo[who] ?? []).filter((x) => x !== a);
    }
    return { code: 0, stdout: '', stderr: '' };
  };
  return { runner, calls, routes, lo, failWith: (f: typeof fail) => (fail = f) };
}

describe('LinuxRouteBackend with a fake runner', () => {
  const origin = () => ({ '203.0.113.10': '192.0.2.2', '2001:db8:42::10': '2001:db8:ffff::2' });

  test('one read per family, one router batch, make-before-break order, argv arrays only', async () => {
    const net = fakeNetwork(origin(), { 'srv-42': ['203.0.113.10', '2001:db8:42::10'], 'transit-3': [] });
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    const r = await b.apply(moveAll(['203.0.113.10', '2001:DB8:42:0::10'], TRANSIT, ORIGIN));
    expect(r).toEqual({ changed: ['203.0.113.10', '2001:db8:42::10'], unchanged: [] });
    const shapes = net.calls.map((c) => [c.argv.join(' '), c.input]);
    // The reads run concurrently: their order is free.
    expect(shapes.slice(0, 3).sort()).toEqual([
      ['ssh router ip -j -4 -batch -', 'route show 203.0.113.10/32\n'],
      ['ssh router ip -j -6 -batch -', 'route show 2001:db8:42::10/128\n'],
      ['ssh transit-3 ip -j addr show dev lo', undefined],
    ]);
    expect(shapes.slice(3)).toEqual([
      ['ssh transit-3 ip -batch -', 'addr replace 203.0.113.10/32 dev lo\naddr replace 2001:db8:42::10/128 dev lo nodad\n'],
      ['ssh router ip -batch -', 'route replace 203.0.113.10/32 via 192.0.2.3\nroute replace 2001:db8:42::10/128 via 2001:db8:ffff::3\n'],
      ['ssh srv-42 ip -j addr show dev lo', undefined],
      ['ssh srv-42 ip -force -batch -', 'addr del 203.0.113.10/32 dev lo\naddr del 2001:db8:42::10/128 dev lo\n'],
    ]);
    // No shell anywhere, and no argument with spaces or shell syntax.
    for (const c of net.calls) {
      expect(['sh', 'bash', '/bin/sh']).not.toContain(c.argv[0]);
      for (const a of c.argv) expect(a).toMatch(/^[A-Za-z0-9_.:\/-]+$/);
    }
  });

  test('the same desired state again: unchanged, only reads', async () => {
    const net = fakeNetwork({ '203.0.113.10': '192.0.2.3' }, { 'srv-42': [], 'transit-3': ['203.0.113.10'] });
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    expect(await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN))).toEqual({ changed: [], unchanged: ['203.0.113.10'] });
    expect(net.calls.map((c) => c.argv.join(' '))).toEqual(['ssh router ip -j -4 -batch -', 'ssh transit-3 ip -j addr show dev lo', 'ssh srv-42 ip -j addr show dev lo']);
  });

  test('without host prefixes only the router is touched', async () => {
    const net = fakeNetwork(origin(), {});
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner });
    await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN));
    expect(net.calls.every((c) => c.argv[1] === 'router')).toBe(true);
  });

  test.each([
    ['1.2.3.4; reboot'],
    ['srv-42'],
    ['203.0.113.10/24'],
    ['fe80::1%eth0'],
    ['$(reboot)'],
    [''],
    ['010.0.0.1'],
  ])('%j is refused before any command runs', async (address) => {
    const net = fakeNetwork({}, {});
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    const err = await b.apply([{ address, family: 4, to: TRANSIT, from: ORIGIN }, ...moveAll(['203.0.113.11'], TRANSIT, ORIGIN)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RouteError);
    expect((err as RouteError).retryable).toBe(false);
    await expect(b.current([address])).rejects.toThrow(RouteError);
    expect(net.calls).toEqual([]);
  });

  test('unknown hosts, wrong family, bad config: final errors, no command', async () => {
    const net = fakeNetwork({}, {});
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner });
    await expect(b.apply([{ address: '203.0.113.10', family: 4, to: 'srv-99', from: ORIGIN }])).rejects.toMatchObject({ retryable: false, address: '203.0.113.10' });
    await expect(b.apply([{ address: '203.0.113.10', family: 6, to: TRANSIT, from: ORIGIN }])).rejects.toMatchObject({ retryable: false });
    await expect(b.apply([{ address: '203.0.113.10', family: 4, to: TRANSIT, from: TRANSIT }])).rejects.toMatchObject({ retryable: false });
    expect(net.calls).toEqual([]);
    expect(() => new LinuxRouteBackend({ router: [], nextHops: NEXT_HOPS })).toThrow(RouteError);
    expect(() => new LinuxRouteBackend({ router: ROUTER, nextHops: { x: ['192.0.2.2; reboot'] } })).toThrow(RouteError);
    expect(() => new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hostDevice: 'lo; reboot' })).toThrow(RouteError);
  });

  test.each<[string, boolean, CommandResult]>([
    ['timeout', true, { code: 124, stdout: '', stderr: 'Command failed: ip (killed)' }],
    ['command not found', true, { code: 127, stdout: '', stderr: 'spawn ssh ENOENT' }],
    ['ip netns exec: exec failed', true, { code: 255, stdout: '', stderr: 'exec of "ip" failed: No such file or directory' }],
    ['ssh: host unreachable', true, { code: 255, stdout: '', stderr: 'ssh: connect to host router port 22: No route to host' }],
    ['network unreachable', false, { code: 2, stdout: '', stderr: 'RTNETLINK answers: Network is unreachable\nCommand failed -:1' }],
    ['invalid next hop', false, { code: 1, stdout: '', stderr: 'Error: Nexthop has invalid gateway.\nCommand failed -:1' }],
    ['IPv6 next hop off-link', false, { code: 2, stdout: '', stderr: 'RTNETLINK answers: No route to host\nCommand failed -:1' }],
    ['busy kernel', true, { code: 2, stdout: '', stderr: 'RTNETLINK answers: No buffer space available\nCommand failed -:1' }],
  ])('router replace failing with %s: retryable %s, stderr in the message', async (_name, retryable, result) => {
    const net = fakeNetwork({ '203.0.113.10': '192.0.2.2' }, {});
    net.failWith((c) => (c.input?.startsWith('route replace') ? result : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner });
    const err = (await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN)).catch((e: unknown) => e)) as RouteError;
    expect(err).toBeInstanceOf(RouteError);
    expect(err.retryable).toBe(retryable);
    expect(err.message).toContain(result.stderr.split('\n')[0]);
    if (!retryable) expect(err.address).toBe('203.0.113.10');
  });

  test('the failed batch line names the address', async () => {
    const net = fakeNetwork({}, {});
    net.failWith((c) => (c.input?.startsWith('route replace') ? { code: 2, stdout: '', stderr: 'RTNETLINK answers: Network is unreachable\nCommand failed -:2' } : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner });
    await expect(b.apply(moveAll(['203.0.113.10', '203.0.113.11'], TRANSIT, ORIGIN))).rejects.toMatchObject({ retryable: false, address: '203.0.113.11' });
  });

  test('removing an address that is already gone is not an error', async () => {
    const net = fakeNetwork(origin(), { 'srv-42': ['203.0.113.10'], 'transit-3': [] });
    net.failWith((c) => (c.input?.startsWith('addr del') ? { code: 1, stdout: '', stderr: 'RTNETLINK answers: Cannot assign requested address\nCommand failed -:1' } : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    await expect(b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN))).resolves.toEqual({ changed: ['203.0.113.10'], unchanged: [] });
  });

  test('current() maps next hops back to hosts, null for no route or an unknown next hop', async () => {
    const net = fakeNetwork({ '203.0.113.10': '192.0.2.3', '203.0.113.11': '192.0.2.99', '2001:db8:42::10': '2001:db8:ffff::2' }, {});
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner });
    expect(await b.current(['203.0.113.10', '203.0.113.11', '203.0.113.12', '2001:db8:42:0:0::10'])).toEqual([
      { address: '203.0.113.10', to: TRANSIT },
      { address: '203.0.113.11', to: null },
      { address: '203.0.113.12', to: null },
      { address: '2001:db8:42::10', to: ORIGIN },
    ]);
  });
});

describe('LinuxRouteBackend in a network-namespace lab', () => {
  let lab: Lab;
  const ours = SERVICE_ADDRESSES[ORIGIN];

  /** The real runner, recording every command. */
  function recording() {
    const calls: Call[] = [];
    const runner: CommandRunner = (argv, opts) => {
      calls.push({ argv: [...argv], input: opts?.input });
      return runCommand(argv, opts);
    };
    return { runner, calls };
  }

  async function servedBy(addresses: readonly string[]): Promise<(string | null)[]> {
    return Promise.all(addresses.map((a) => lab.httpFrom(lab.ns.client, urlOf(a), 1000)));
  }

  /** Applies while the client probes every address every 10 ms; prints and returns the totals. */
  async function applyUnderProbes(b: LinuxRouteBackend, desired: DesiredRoute[], label: string) {
    const loop = probeLoop(lab, lab.ns.client, ours.map(urlOf), 10, 500);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    const result = await b.apply(desired);
    const applyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 300));
    const stats = await loop.stop();
    console.log(`linux-route ${label}: apply ${applyMs.toFixed(0)} ms; ${stats.probes} probes from the client during it (every 10 ms), ${stats.failures} failures ${JSON.stringify(stats.errors)}, served by ${JSON.stringify(stats.servedBy)}`);
    return { result, stats };
  }

  beforeAll(async () => {
    lab = await createLab();
    console.log(`netns lab built in ${lab.buildMs.toFixed(0)} ms`);
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  test('at start every service address is served by its owner, v4 and v6', async () => {
    expect(await servedBy(SERVICE_ADDRESSES[ORIGIN])).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    expect(await servedBy(SERVICE_ADDRESSES[TRANSIT])).toEqual([TRANSIT, TRANSIT, TRANSIT]);
  });

  test('cutover: every srv-42 address is served by transit-3, with no failed probe on the way', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const { result, stats } = await applyUnderProbes(b, moveAll(ours, TRANSIT, ORIGIN), 'cutover');
    expect(result).toEqual({ changed: [...ours], unchanged: [] });
    expect(await servedBy(ours)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
    expect(stats.failures).toBe(0);
    expect(stats.servedBy[ORIGIN]).toBeGreaterThan(0);
    expect(stats.servedBy[TRANSIT]).toBeGreaterThan(0);
    // srv-42 gave the addresses up; transit-3 has them on lo.
    const originLo = await lab.exec(lab.ns.origin, ['ip', '-j', 'addr', 'show', 'dev', 'lo']);
    for (const a of ours) expect(originLo.stdout).not.toContain(`"${a}"`);
  });

  test('the same cutover again: all unchanged, the router is only read', async () => {
    const rec = recording();
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, runner: rec.runner });
    expect(await b.apply(moveAll(ours, TRANSIT, ORIGIN))).toEqual({ changed: [], unchanged: [...ours] });
    const router = rec.calls.filter((c) => c.argv.includes(lab.ns.router));
    expect(router.length).toBeGreaterThan(0);
    for (const c of router) {
      expect(c.argv).toContain('-j');
      expect(c.input?.split('\n').filter(Boolean).every((l) => l.startsWith('route show '))).toBe(true);
    }
    expect(rec.calls.every((c) => c.argv.includes('-j'))).toBe(true);
  });

  test('current() agrees with the router', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    expect(await b.current([...ours, ...SERVICE_ADDRESSES[TRANSIT], '203.0.113.99'])).toEqual([
      ...ours.map((address) => ({ address, to: TRANSIT })),
      ...SERVICE_ADDRESSES[TRANSIT].map((address) => ({ address, to: TRANSIT })),
      { address: '203.0.113.99', to: null },
    ]);
  });

  test('cutback: srv-42 serves its addresses again, with no failed probe on the way', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const { result, stats } = await applyUnderProbes(b, moveAll(ours, ORIGIN, TRANSIT), 'cutback');
    expect(result).toEqual({ changed: [...ours], unchanged: [] });
    expect(await servedBy(ours)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    expect(stats.failures).toBe(0);
    expect((await b.current([...ours])).map((c) => c.to)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    const transitLo = await lab.exec(lab.ns.transit, ['ip', '-j', 'addr', 'show', 'dev', 'lo']);
    for (const a of ours) expect(transitLo.stdout).not.toContain(`"${a}"`);
  });

  test('a next hop the router cannot reach: final error with the kernel message, nothing changed', async () => {
    const b = new LinuxRouteBackend({ router: lab.linuxRoute.router, nextHops: { ...lab.linuxRoute.nextHops, 'far-1': ['203.0.113.200', '2001:db8:ff00::1'] } });
    for (const address of ['203.0.113.10', '2001:db8:42::10']) {
      const err = (await b.apply([{ address, family: familyOf(address), to: 'far-1', from: ORIGIN }]).catch((e: unknown) => e)) as RouteError;
      expect(err).toBeInstanceOf(RouteError);
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/Nexthop has invalid gateway|Network is unreachable|No route to host/);
      expect(err.address).toBe(address);
    }
    expect((await b.current([...ours])).map((c) => c.to)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    expect(LAN.origin[0]).toBe(lab.linuxRoute.nextHops[ORIGIN][0]);
  });

  test('a router command that cannot start: retryable', async () => {
    const b = new LinuxRouteBackend({ router: [...lab.linuxRoute.router, '/nonexistent/ip-wrapper'], nextHops: lab.linuxRoute.nextHops });
    await expect(b.current(['203.0.113.10'])).rejects.toMatchObject({ retryable: true });
    const gone = new LinuxRouteBackend({ router: ['/nonexistent/ssh', 'router'], nextHops: lab.linuxRoute.nextHops });
    await expect(gone.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN))).rejects.toMatchObject({ retryable: true });
  });
});

/**
 * LinuxRouteBackend: argv shapes, validation and error mapping with a fake CommandRunner, then the
 * real thing in a network-namespace lab (root): cutover, idempotency, current(), cutback, and
 * make-before-break under a tight loop of HTTP probes from the client.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { runCommand, type CommandResult, type CommandRunner } from '../../src/routing/command-runner.js';
import { conntrackEntries, hostRoutes, LinuxRouteBackend, parsePinTable, PIN_MARK_BASE, pinElements, pinIds } from '../../src/routing/linux-route-backend.js';
import { RouteError, type DesiredRoute } from '../../src/routing/route-backend.js';
import { answeredSince, createLab, LAN, ORIGIN, probeLoop, SERVICE_ADDRESSES, TRANSIT, urlOf, type Lab, type ProbeStats } from '../support/netns-lab.js';
import { waitFor } from '../support/wait-for.js';

const ROUTER = ['ssh', 'router'];
const NEXT_HOPS = { [ORIGIN]: ['192.0.2.2', '2001:db8:ffff::2'], [TRANSIT]: ['192.0.2.3', '2001:db8:ffff::3'] };
const HOSTS = { [ORIGIN]: ['ssh', 'srv-42'], [TRANSIT]: ['ssh', 'transit-3'] };

const familyOf = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);

/**
 * Probes lost per flip without connection pinning. A flip resets the TCP connection in flight at
 * its instant (the README's known limit: in bench:cutover 5-30% of flips lose one probe at 10 ms).
 * The probe loop has one probe in flight at a time, so the route switch and the removal from the
 * old host can each cut at most one.
 */
const MAX_LOST_PER_FLIP = 2;
/** Probe timeout in the labs: a slow answer on a loaded machine is an answer, not a lost probe. */
const PROBE_TIMEOUT_MS = 3000;
const moveAll = (addresses: readonly string[], to: string, from: string): DesiredRoute[] => addresses.map((address) => ({ address, family: familyOf(address), to, from }));

interface Call {
  argv: string[];
  input?: string;
}

/** The nft state of the fake router: absent until `nft -f` adds the table. */
interface FakeNft {
  maps: Set<string>;
  /** The chain holds pinning's three rules (`flush chain` + `add rule` lines). */
  rules: boolean;
  elements: Map<string, number>;
}

/** `nft -j list table inet failover` as nft 1.0.6 prints it (shapes copied from a real router), for `t`. */
function nftJson(t: FakeNft): string {
  const ctMark = { ct: { key: 'mark' } };
  const metaMark = { meta: { key: 'mark' } };
  const items: unknown[] = [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, { table: { family: 'inet', name: 'failover', handle: 1 } }];
  for (const f of [4, 6] as const) {
    if (!t.maps.has(`pin${f}`)) continue;
    const elem = [...t.elements].filter(([a]) => familyOf(a) === f).map(([a, m]) => [a, m]);
    items.push({ map: { family: 'inet', name: `pin${f}`, table: 'failover', type: f === 4 ? 'ipv4_addr' : 'ipv6_addr', handle: f, map: 'mark', ...(elem.length ? { elem } : {}) } });
  }
  items.push({ chain: { family: 'inet', table: 'failover', name: 'prerouting', handle: 3, type: 'filter', hook: 'prerouting', prio: -150, policy: 'accept' } });
  if (t.rules) {
    const direction = { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'original' } };
    items.push({ rule: { family: 'inet', table: 'failover', chain: 'prerouting', handle: 4, expr: [direction, { match: { op: '==', left: ctMark, right: { prefix: { addr: PIN_MARK_BASE, len: 16 } } } }, { mangle: { key: metaMark, value: ctMark } }, { return: null }] } });
    for (const [f, proto] of [[4, 'ip'], [6, 'ip6']] as const) {
      items.push({ rule: { family: 'inet', table: 'failover', chain: 'prerouting', handle: 4 + f, expr: [direction, { mangle: { key: metaMark, value: { map: { key: { payload: { protocol: proto, field: 'daddr' } }, data: `@pin${f}` } } } }, { mangle: { key: ctMark, value: metaMark } }] } });
    }
  }
  return JSON.stringify({ nftables: items });
}

/**
 * A fake router and hosts behind the fake runner. The router: a main table (address → gateway),
 * ip rules and host tables per family, an nft table, a conntrack listing; it answers the batched
 * reads (`route show table main`, `rule show`, `route show table N`), `route replace` batches,
 * `nft -f`/`nft -j list`, `conntrack`. The hosts: the addresses on lo; `addr show/replace/del`.
 */
function fakeNetwork(routes: Record<string, string>, lo: Record<string, string[]>) {
  const calls: Call[] = [];
  let fail: ((c: Call) => CommandResult | undefined) | undefined;
  const rules: Record<4 | 6, { priority: number; fwmark: string; table: string }[]> = { 4: [], 6: [] };
  /** per family: table id → its default route's gateway */
  const tables: Record<4 | 6, Map<string, string>> = { 4: new Map(), 6: new Map() };
  const state: { nft?: FakeNft; conntrack: () => string } = { conntrack: () => '' };
  const ok = { code: 0, stdout: '', stderr: '' };
  const runner: CommandRunner = async (argv, opts) => {
    const call = { argv: [...argv], input: opts?.input };
    calls.push(call);
    const forced = fail?.(call);
    if (forced) return forced;
    const who = argv[1];
    const cmd = argv.slice(2);
    const lines = (opts?.input ?? '').split('\n').filter(Boolean);
    if (who === 'router' && cmd[0] === 'nft') {
      if (cmd[1] === '-j') return state.nft ? { code: 0, stdout: nftJson(state.nft), stderr: '' } : { code: 1, stdout: '', stderr: 'Error: No such file or directory\nlist table inet failover\n' };
      for (const l of lines) {
        if (l.startsWith('add table')) state.nft ??= { maps: new Set(), rules: false, elements: new Map() };
        const t = state.nft;
        if (!t) return { code: 1, stdout: '', stderr: `Error: No such file or directory\n${l}\n` };
        const map = /^add map inet failover (pin[46]) /.exec(l);
        if (map) t.maps.add(map[1]);
        if (l.startsWith('flush chain')) t.rules = false;
        if (l.startsWith('add rule')) t.rules = true;
        const m = /^(add|delete) element inet failover pin[46] \{ (.*) \}$/.exec(l);
        if (!m) continue;
        for (const e of m[2].split(', ')) {
          const [a, v] = e.split(' : ');
          if (m[1] === 'delete') t.elements.delete(a);
          else t.elements.set(a, Number(v));
        }
      }
      return ok;
    }
    if (who === 'router' && cmd[0] === 'conntrack') {
      return cmd[1] === '-L' ? { code: 0, stdout: state.conntrack(), stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n' } : { code: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' };
    }
    if (cmd[0] !== 'ip') return { code: 127, stdout: '', stderr: 'not found' };
    if (who === 'router' && cmd[1] === '-j') {
      const family = cmd[2] === '-6' ? 6 : 4;
      const docs = lines.map((l) => {
        if (l === 'route show table main') return Object.entries(routes).filter(([a]) => familyOf(a) === family).map(([dst, gateway]) => ({ dst, gateway, dev: 'br0', flags: [] }));
        if (l === 'rule show') return rules[family];
        const t = /^route show table (\d+)$/.exec(l);
        if (t) return tables[family].has(t[1]) ? [{ dst: 'default', gateway: tables[family].get(t[1]), dev: 'br0', flags: [] }] : [];
        throw new Error(`fake router: unexpected read ${l}`);
      });
      return { code: 0, stdout: docs.map((d) => JSON.stringify(d)).join('\n') + '\n', stderr: '' };
    }
    if (who === 'router' && (cmd[1] === '-4' || cmd[1] === '-6')) {
      const family = cmd[1] === '-6' ? 6 : 4;
      for (const l of lines) {
        const r = /^rule add pref (\d+) fwmark (\S+) lookup (\d+)$/.exec(l);
        if (r) rules[family].push({ priority: Number(r[1]), fwmark: `0x${Number(r[2]).toString(16)}`, table: r[3] });
        const t = /^route replace (?:default|::\/0) via (\S+) table (\d+)$/.exec(l);
        if (t) tables[family].set(t[2], t[1]);
      }
      return ok;
    }
    if (who === 'router') {
      for (const l of lines) {
        const [, , prefix, , gw] = l.split(' ');
        routes[prefix.replace(/\/\d+$/, '')] = gw;
      }
      return ok;
    }
    if (cmd[1] === '-j') {
      const info = (lo[who] ?? []).map((a) => ({ family: a.includes(':') ? 'inet6' : 'inet', local: a, prefixlen: a.includes(':') ? 128 : 32 }));
      return { code: 0, stdout: JSON.stringify([{ ifname: 'lo', addr_info: info }]), stderr: '' };
    }
    for (const l of lines) {
      const [, op, pfx] = l.split(' ');
      const a = pfx.replace(/\/\d+$/, '');
      if (op === 'replace') lo[who] = [...new Set([...(lo[who] ?? []), a])];
      else lo[who] = (lo[who] ?? []).filter((x) => x !== a);
    }
    return ok;
  };
  return { runner, calls, routes, lo, rules, tables, state, failWith: (f: typeof fail) => (fail = f) };
}

describe('LinuxRouteBackend with a fake runner', () => {
  const origin = () => ({ '203.0.113.10': '192.0.2.2', '2001:db8:42::10': '2001:db8:ffff::2' });

  test('one read of the main table per family, one router batch, make-before-break order, argv arrays only', async () => {
    const net = fakeNetwork(origin(), { 'srv-42': ['203.0.113.10', '2001:db8:42::10'], 'transit-3': [] });
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    const r = await b.apply(moveAll(['203.0.113.10', '2001:DB8:42:0::10'], TRANSIT, ORIGIN));
    expect(r).toEqual({ changed: ['203.0.113.10', '2001:db8:42::10'], unchanged: [] });
    const shapes = net.calls.map((c) => [c.argv.join(' '), c.input]);
    // The reads run concurrently: their order is free.
    expect(shapes.slice(0, 3).sort()).toEqual([
      ['ssh router ip -j -4 -batch -', 'route show table main\n'],
      ['ssh router ip -j -6 -batch -', 'route show table main\n'],
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

  test.each<[string, unknown[], Record<string, string | null>]>([
    ['plain host routes, /32 written or not', [{ dst: '203.0.113.10', gateway: '192.0.2.3' }, { dst: '203.0.113.11/32', gateway: '192.0.2.2' }], { '203.0.113.10': '192.0.2.3', '203.0.113.11': '192.0.2.2' }],
    ['other prefixes and default are not host routes', [{ dst: '203.0.113.0/24', gateway: '192.0.2.3' }, { dst: 'default', gateway: '192.0.2.1' }], {}],
    ['the lowest metric wins', [{ dst: '203.0.113.16', gateway: '192.0.2.2', metric: 100 }, { dst: '203.0.113.16', gateway: '192.0.2.3', metric: 50 }], { '203.0.113.16': '192.0.2.3' }],
    ['multipath: null', [{ dst: '203.0.113.11', flags: [], nexthops: [{ gateway: '192.0.2.2' }, { gateway: '192.0.2.3' }] }], { '203.0.113.11': null }],
    ['a single nexthop object (nhid) is shown with its gateway', [{ dst: '203.0.113.14', nhid: 5, gateway: '192.0.2.3', dev: 'br0' }], { '203.0.113.14': '192.0.2.3' }],
    ['a nexthop group: null', [{ dst: '203.0.113.15', nhid: 7, nexthops: [{ gateway: '192.0.2.3' }, { gateway: '192.0.2.2' }] }], { '203.0.113.15': null }],
    ['blackhole, unreachable: null', [{ type: 'blackhole', dst: '203.0.113.12' }, { type: 'unreachable', dst: '203.0.113.17' }], { '203.0.113.12': null, '203.0.113.17': null }],
    ['device only: null', [{ dst: '203.0.113.13', dev: 'br0', scope: 'link' }], { '203.0.113.13': null }],
    ['a next hop of the other family (via inet6): null', [{ dst: '203.0.113.18', via: { family: 'inet6', host: '2001:db8:ffff::3' } }], { '203.0.113.18': null }],
    ['garbage entries are skipped', [null, 7, 'x', {}, { dst: 42 }, { dst: 'not-an-ip' }, { dst: '2001:db8:42::10', gateway: '2001:db8:ffff::2' }], {}],
  ])('hostRoutes (IPv4): %s', (_name, list, expected) => {
    expect(Object.fromEntries(hostRoutes(list, 4))).toEqual(expected);
  });

  test('hostRoutes (IPv6): /128 only, normalised; not an array: nothing', () => {
    const list = [{ dst: '2001:DB8:42:0::10', gateway: '2001:db8:ffff:0::2', metric: 1024 }, { dst: '2001:db8:ffff::/64', dev: 'br0' }, { dst: '2001:db8:42::11/128', gateway: '2001:db8:ffff::3' }];
    expect(Object.fromEntries(hostRoutes(list, 6))).toEqual({ '2001:db8:42::10': '2001:db8:ffff::2', '2001:db8:42::11': '2001:db8:ffff::3' });
    expect(hostRoutes({ not: 'an array' }, 6).size).toBe(0);
  });

  /** Both addresses of srv-42 routed to transit-3, which holds them (make-before-break configured). */
  const atTransit = () => fakeNetwork({ '203.0.113.10': '192.0.2.3', '2001:db8:42::10': '2001:db8:ffff::3', '198.51.100.20': '192.0.2.3', '203.0.113.11': '192.0.2.2' }, { 'transit-3': ['203.0.113.10', '2001:db8:42::10', '198.51.100.20'], 'srv-42': ['203.0.113.11'] });
  const down: CommandResult = { code: 255, stdout: '', stderr: 'ssh: connect to host transit-3 port 22: Connection timed out' };

  test.each<{ name: string; change: (net: ReturnType<typeof atTransit>) => void; expected: object[] }>([
    { name: 'complete: no problems', change: () => {}, expected: [{ address: '203.0.113.10', to: TRANSIT }, { address: '2001:db8:42::10', to: TRANSIT }, { address: '203.0.113.11', to: ORIGIN }] },
    {
      name: 'address removed from the receiving host\'s lo: a problem for it only',
      change: (net) => (net.lo['transit-3'] = ['2001:db8:42::10', '198.51.100.20']),
      expected: [{ address: '203.0.113.10', to: TRANSIT, problems: ['transit-3 does not hold 203.0.113.10 on lo'] }, { address: '2001:db8:42::10', to: TRANSIT }, { address: '203.0.113.11', to: ORIGIN }],
    },
    {
      name: 'the receiving host does not answer: its addresses unknown, the others read',
      change: (net) => net.failWith((c) => (c.argv[1] === 'transit-3' ? down : undefined)),
      expected: [
        { address: '203.0.113.10', to: TRANSIT, unknown: expect.stringMatching(/^transit-3 \(receiving 203\.0\.113\.10\) could not be read: .*Connection timed out/) },
        { address: '2001:db8:42::10', to: TRANSIT, unknown: expect.stringContaining('transit-3') },
        { address: '203.0.113.11', to: ORIGIN },
      ],
    },
    {
      name: 'route flushed: to null, nothing else read for it',
      change: (net) => delete net.routes['203.0.113.10'],
      expected: [{ address: '203.0.113.10', to: null }, { address: '2001:db8:42::10', to: TRANSIT }, { address: '203.0.113.11', to: ORIGIN }],
    },
  ])('current(): $name', async ({ change, expected }) => {
    const net = atTransit();
    change(net);
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    expect(await b.current(['203.0.113.10', '2001:db8:42::10', '203.0.113.11'])).toEqual(expected);
  });

  test('current() reads only the receiving hosts, each once, after the router; the other host may be down', async () => {
    const net = atTransit();
    net.failWith((c) => (c.argv[1] === 'srv-42' ? down : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    expect(await b.current(['203.0.113.10', '2001:db8:42::10', '198.51.100.20'])).toEqual([
      { address: '203.0.113.10', to: TRANSIT },
      { address: '2001:db8:42::10', to: TRANSIT },
      { address: '198.51.100.20', to: TRANSIT },
    ]);
    expect(net.calls.map((c) => c.argv.join(' '))).toEqual(['ssh router ip -j -4 -batch -', 'ssh router ip -j -6 -batch -', 'ssh transit-3 ip -j addr show dev lo']);
  });

  test('without a command prefix for the receiving host, no host is read', async () => {
    const net = atTransit();
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: { [ORIGIN]: HOSTS[ORIGIN] }, runner: net.runner });
    net.lo['transit-3'] = [];
    expect(await b.current(['203.0.113.10'])).toEqual([{ address: '203.0.113.10', to: TRANSIT }]);
    expect(net.calls.every((c) => c.argv[1] === 'router')).toBe(true);
  });

  test.each<[string, boolean, CommandResult]>([
    ['cannot be reached', true, { code: 255, stdout: '', stderr: 'ssh: connect to host router port 22: No route to host' }],
    ['answers something that is not JSON', false, { code: 0, stdout: 'RTNETLINK answers: nonsense', stderr: '' }],
    ['answers fewer documents than asked', false, { code: 0, stdout: '', stderr: '' }],
  ])('current(): a router that %s throws (retryable %s)', async (_name, retryable, result) => {
    const net = atTransit();
    net.failWith((c) => (c.argv[1] === 'router' ? result : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    await expect(b.current(['203.0.113.10'])).rejects.toMatchObject({ name: 'RouteError', retryable });
  });

  test('apply() repairs an address missing on the receiving host even when the route is right (unchanged: the route did not change)', async () => {
    const net = atTransit();
    net.lo['transit-3'] = [];
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    expect(await b.apply(moveAll(['203.0.113.10', '2001:db8:42::10'], TRANSIT, ORIGIN))).toEqual({ changed: [], unchanged: ['203.0.113.10', '2001:db8:42::10'] });
    expect(net.lo['transit-3']).toEqual(['203.0.113.10', '2001:db8:42::10']);
    expect((await b.current(['203.0.113.10', '2001:db8:42::10'])).every((c) => c.problems === undefined)).toBe(true);
    // A receiving host with a prefix gets the address even when the other host has none.
    const one = atTransit();
    one.lo['transit-3'] = [];
    await new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: { [TRANSIT]: HOSTS[TRANSIT] }, runner: one.runner }).apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN));
    expect(one.lo['transit-3']).toEqual(['203.0.113.10']);
  });

  test('a repair with the other host down (being reinstalled): the receiving host gets the address, no error; a move still fails', async () => {
    const net = atTransit();
    net.lo['transit-3'] = [];
    net.failWith((c) => (c.argv[1] === 'srv-42' ? down : undefined));
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    const repair = moveAll(['203.0.113.10'], TRANSIT, ORIGIN).map((d) => ({ ...d, repair: true }));
    expect(await b.apply(repair)).toEqual({ changed: [], unchanged: ['203.0.113.10'] });
    expect(net.lo['transit-3']).toEqual(['203.0.113.10']);
    net.lo['transit-3'] = [];
    await expect(b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN))).rejects.toMatchObject({ name: 'RouteError', message: expect.stringContaining('(the routes are already switched)') });
  });

  test('1,000 addresses: two router reads and one read per receiving host, whatever the count', async () => {
    const routes: Record<string, string> = {};
    const lo: Record<string, string[]> = { 'srv-42': [], 'transit-3': [] };
    const addresses = Array.from({ length: 1000 }, (_, i) => (i < 256 ? `203.0.113.${i}` : `2001:db8:42::${(i + 1).toString(16)}`));
    addresses.forEach((a, i) => {
      const host = i % 2 === 0 ? ORIGIN : TRANSIT;
      routes[a] = NEXT_HOPS[host][familyOf(a) === 4 ? 0 : 1];
      lo[host].push(a);
    });
    const net = fakeNetwork(routes, lo);
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner });
    const got = await b.current(addresses);
    expect(got.map((c) => c.to)).toEqual(addresses.map((_, i) => (i % 2 === 0 ? ORIGIN : TRANSIT)));
    expect(got.every((c) => c.problems === undefined && c.unknown === undefined)).toBe(true);
    expect(net.calls).toHaveLength(4);
  });
});

describe('LinuxRouteBackend with pinning, fake runner', () => {
  const ids = pinIds([ORIGIN, TRANSIT]);
  const mark = (h: string) => (PIN_MARK_BASE | ids.get(h)!) >>> 0;
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

  /** fakeNetwork with srv-42 holding its addresses, no pinning setup yet, and a conntrack listing. */
  function pinnedNetwork(conntrack: () => string = () => '') {
    const net = fakeNetwork({ '203.0.113.10': '192.0.2.2', '2001:db8:42::10': '2001:db8:ffff::2' }, { 'srv-42': ['203.0.113.10', '2001:db8:42::10'], 'transit-3': [] });
    net.state.conntrack = conntrack;
    return { ...net, table: () => net.state.nft?.elements };
  }

  test('host ids are stable: adding a host does not renumber the others', () => {
    const two = pinIds(['srv-42', 'transit-3']);
    const three = pinIds(['transit-3', 'srv-7', 'srv-42']);
    expect(three.get('srv-42')).toBe(two.get('srv-42'));
    expect(three.get('transit-3')).toBe(two.get('transit-3'));
    expect(new Set(three.values()).size).toBe(3);
    for (const id of three.values()) expect(id).toBeGreaterThan(0);
  });

  test('conntrack -L lines: protocol, TCP state, original destination, mark', () => {
    const out = [
      'tcp      6 86399 ESTABLISHED src=192.0.2.130 dst=203.0.113.10 sport=40000 dport=80 src=203.0.113.10 dst=192.0.2.130 sport=80 dport=40000 [ASSURED] mark=262209537 use=1',
      'tcp      6 119 TIME_WAIT src=2001:db8:c::2 dst=2001:db8:42:0::10 sport=40001 dport=80 src=2001:db8:42::10 dst=2001:db8:c::2 sport=80 dport=40001 [ASSURED] mark=262209538 use=1',
      'udp      17 29 src=192.0.2.130 dst=203.0.113.11 sport=5353 dport=53 [UNREPLIED] src=203.0.113.11 dst=192.0.2.130 sport=53 dport=5353 mark=262209537 use=1',
    ].join('\n');
    expect(conntrackEntries(out)).toEqual([
      { proto: 'tcp', state: 'ESTABLISHED', dst: '203.0.113.10', mark: 262209537 },
      { proto: 'tcp', state: 'TIME_WAIT', dst: '2001:db8:42::10', mark: 262209538 },
      { proto: 'udp', state: undefined, dst: '203.0.113.11', mark: 262209537 },
    ]);
  });

  test('first apply: installs the table, rules and tables, pins addresses where they are, then flips the map before the routes', async () => {
    const net = pinnedNetwork();
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner, pinConnections: true, drainMs: 0 });
    const r = await b.apply(moveAll(['203.0.113.10', '2001:db8:42::10'], TRANSIT, ORIGIN));
    expect(r).toEqual({ changed: ['203.0.113.10', '2001:db8:42::10'], unchanged: [] });
    const nftWrites = net.calls.filter((c) => c.argv[2] === 'nft' && c.argv[3] === '-f');
    expect(nftWrites).toHaveLength(2);
    // Setup: the table (chain flushed and refilled) and the elements where the routes point now.
    expect(nftWrites[0].input).toContain('add table inet failover\n');
    expect(nftWrites[0].input).toContain('flush chain inet failover prerouting\n');
    expect(nftWrites[0].input).toContain(`add element inet failover pin4 { 203.0.113.10 : ${hex(mark(ORIGIN))} }`);
    // The flip: one transaction, delete + add per map.
    expect(nftWrites[1].input).toBe(
      `delete element inet failover pin4 { 203.0.113.10 }\nadd element inet failover pin4 { 203.0.113.10 : ${hex(mark(TRANSIT))} }\n` +
        `delete element inet failover pin6 { 2001:db8:42::10 }\nadd element inet failover pin6 { 2001:db8:42::10 : ${hex(mark(TRANSIT))} }\n`,
    );
    const ip4 = net.calls.find((c) => c.argv.slice(2).join(' ') === 'ip -4 -batch -')!;
    expect(ip4.input).toContain(`route replace default via 192.0.2.3 table ${mark(TRANSIT)}\n`);
    expect(ip4.input).toContain(`rule add pref 1000 fwmark ${hex(mark(TRANSIT))} lookup ${mark(TRANSIT)}\n`);
    expect(net.calls.find((c) => c.argv.slice(2).join(' ') === 'ip -6 -batch -')!.input).toContain(`route replace ::/0 via 2001:db8:ffff::3 table ${mark(TRANSIT)}\n`);
    // Order: map flip, then routes, then the drain read, then the old host gives the addresses up.
    const flip = net.calls.indexOf(nftWrites[1]);
    const routeBatch = net.calls.findIndex((c) => c.argv[1] === 'router' && c.input?.startsWith('route replace 203'));
    expect(flip).toBeGreaterThan(0);
    expect(flip).toBeLessThan(routeBatch);
    const del = net.calls.findIndex((c) => c.argv[1] === 'srv-42' && c.input?.startsWith('addr del'));
    expect(del).toBeGreaterThan(routeBatch);
    expect(net.table()).toEqual(new Map([['203.0.113.10', mark(TRANSIT)], ['2001:db8:42::10', mark(TRANSIT)]]));
    for (const c of net.calls) for (const a of c.argv) expect(a).toMatch(/^[A-Za-z0-9_.:\/-]+$/);

    // Again: only reads (the setup is not repeated by this instance).
    net.calls.length = 0;
    expect(await b.apply(moveAll(['203.0.113.10', '2001:db8:42::10'], TRANSIT, ORIGIN))).toEqual({ changed: [], unchanged: ['203.0.113.10', '2001:db8:42::10'] });
    expect(net.calls.filter((c) => c.input !== undefined && !c.argv.includes('-j'))).toEqual([]);
    // A second instance reads the rules, finds them, and adds none.
    net.calls.length = 0;
    const b2 = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner, pinConnections: true });
    await b2.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN));
    expect(net.calls.filter((c) => c.input?.includes('rule add'))).toEqual([]);
    expect(net.rules[4]).toHaveLength(2);
  });

  test('a route right but a map element wrong is changed (the map is repaired)', async () => {
    const net = pinnedNetwork();
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner, pinConnections: true });
    await b.apply(moveAll(['203.0.113.10'], ORIGIN, TRANSIT)); // installs, element = srv-42
    net.table()!.set('203.0.113.10', mark(TRANSIT));
    expect(await b.apply(moveAll(['203.0.113.10'], ORIGIN, TRANSIT))).toEqual({ changed: ['203.0.113.10'], unchanged: [] });
    expect(net.table()!.get('203.0.113.10')).toBe(mark(ORIGIN));
    expect(net.calls.filter((c) => c.input?.startsWith('route replace 203'))).toEqual([]);
  });

  test('drain: waits while a TCP connection is pinned to the old host, up to drainMs, then cuts it', async () => {
    const line = `tcp 6 86399 ESTABLISHED src=192.0.2.130 dst=203.0.113.10 sport=40000 dport=80 src=203.0.113.10 dst=192.0.2.130 sport=80 dport=40000 [ASSURED] mark=${mark(ORIGIN)} use=1`;
    const net = pinnedNetwork(() => line);
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner, pinConnections: true, drainMs: 300 });
    const t0 = performance.now();
    await b.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(300 + 200 - 5); // settle after a fresh setup + drain
    // Read again until drainMs ran out (how many reads fit in 300 ms depends on the machine's load).
    const reads = net.calls.filter((c) => c.argv[2] === 'conntrack' && c.argv[3] === '-L');
    expect(reads.length).toBeGreaterThanOrEqual(2);
    expect(net.calls.at(-1)!.argv.slice(2)).toEqual(['conntrack', '-D', '-f', 'ipv4', '-d', '203.0.113.10', '-m', String(mark(ORIGIN))]);
  });

  test.each<[string, string, boolean, boolean]>([
    ['as installed', 'full', true, true],
    ['chain flushed', 'norules', false, false],
    ['map pin6 gone', 'nopin6', true, true],
  ])('parsePinTable: %s', (_name, kind, chain4, chain6) => {
    const t: FakeNft = { maps: new Set(kind === 'nopin6' ? ['pin4'] : ['pin4', 'pin6']), rules: kind !== 'norules', elements: new Map([['203.0.113.10', mark(ORIGIN)], ['2001:db8:42::10', mark(TRANSIT)]]) };
    const parsed = parsePinTable(nftJson(t));
    expect(parsed.chain).toEqual({ 4: chain4, 6: chain6 });
    expect([...parsed.maps].sort()).toEqual([...t.maps].sort());
    expect(parsed.elements).toEqual(kind === 'nopin6' ? new Map([['203.0.113.10', mark(ORIGIN)]]) : t.elements);
    expect(() => parsePinTable('{"nothing": 1}')).toThrow();
  });

  /**
   * Each way the router can lose part of pinning after a backend instance installed it (the same
   * instance reads and repairs: what it cached must not hide the loss): current() names it for
   * the addresses it concerns, apply() of the same desired state repairs it, current() is clean.
   */
  test.each<{ name: string; breakIt: (net: ReturnType<typeof pinnedNetwork>) => void; problem: RegExp; only4?: boolean }>([
    { name: 'map element pointing at the other host', breakIt: (net) => net.table()!.set('203.0.113.10', mark(ORIGIN)), problem: /^router: map pin4 sends new connections to 203\.0\.113\.10 to srv-42, not transit-3 \(pinning 203\.0\.113\.10 to transit-3\)$/, only4: true },
    { name: 'map element missing', breakIt: (net) => net.table()!.delete('203.0.113.10'), problem: /^router: map pin4 has no element for 203\.0\.113\.10/, only4: true },
    { name: 'nft table deleted', breakIt: (net) => (net.state.nft = undefined), problem: /^router: no nftables table inet failover \(pinning .* to transit-3\)$/ },
    { name: 'chain flushed', breakIt: (net) => (net.state.nft!.rules = false), problem: /^router: chain inet failover prerouting does not pin with @pin[46]/ },
    { name: 'ip rules deleted', breakIt: (net) => ((net.rules[4].length = 0), (net.rules[6].length = 0)), problem: new RegExp(`^router: no ip -[46] rule fwmark ${hex(mark(TRANSIT))} lookup ${mark(TRANSIT)} \\(pref 1000\\) for transit-3`) },
    { name: 'the host tables flushed', breakIt: (net) => (net.tables[4].clear(), net.tables[6].clear()), problem: new RegExp(`^router: table ${mark(TRANSIT)} has no default route via (192\\.0\\.2\\.3|2001:db8:ffff::3) for transit-3`) },
    {
      name: 'router rebooted (table, rules and host tables gone)',
      breakIt: (net) => ((net.state.nft = undefined), (net.rules[4].length = 0), (net.rules[6].length = 0), net.tables[4].clear(), net.tables[6].clear()),
      problem: /^router: no nftables table inet failover/,
    },
  ])('pinning: $name → a problem in current(), apply() of the same state repairs it', async ({ breakIt, problem, only4 }) => {
    const net = pinnedNetwork();
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, hosts: HOSTS, runner: net.runner, pinConnections: true, drainMs: 0 });
    const ours = ['203.0.113.10', '2001:db8:42::10'];
    await b.apply(moveAll(ours, TRANSIT, ORIGIN));
    expect(await b.current(ours)).toEqual(ours.map((address) => ({ address, to: TRANSIT })));

    breakIt(net);
    const broken = await b.current(ours);
    expect(broken.map((c) => c.to)).toEqual([TRANSIT, TRANSIT]);
    expect(broken[0].problems).toEqual([expect.stringMatching(problem)]);
    if (only4) expect(broken[1].problems).toBeUndefined();
    else expect(broken[1].problems?.length).toBeGreaterThan(0);

    net.calls.length = 0;
    await b.apply(moveAll(ours, TRANSIT, ORIGIN));
    expect(await b.current(ours)).toEqual(ours.map((address) => ({ address, to: TRANSIT })));
    // Repaired on the router, not in memory: the routes were right all along and were not rewritten.
    expect(net.calls.filter((c) => c.input?.includes('route replace 203.0.113.10/32'))).toEqual([]);
    expect(net.table()).toEqual(new Map(ours.map((a) => [a, mark(TRANSIT)])));
    expect(net.rules[4].filter((r) => r.table === String(mark(TRANSIT)))).toHaveLength(1);
  });

  test('pinning: current() of an address routed nowhere names no pinning problem; a failing nft read throws', async () => {
    const net = pinnedNetwork();
    const b = new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, runner: net.runner, pinConnections: true });
    expect(await b.current(['203.0.113.99'])).toEqual([{ address: '203.0.113.99', to: null }]);
    net.failWith((c) => (c.argv[2] === 'nft' ? { code: 1, stdout: '', stderr: 'Error: Operation not permitted' } : undefined));
    await expect(b.current(['203.0.113.10'])).rejects.toThrow(/nft list table/);
  });

  test('options are checked', () => {
    expect(() => new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, drainMs: -1 })).toThrow(RouteError);
    expect(() => new LinuxRouteBackend({ router: ROUTER, nextHops: NEXT_HOPS, pinRulePriority: 40000 })).toThrow(RouteError);
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

  /**
   * Applies while the client probes every address every 10 ms: from the moment every address has
   * answered from `from` until every address has answered from `to` after apply() returned.
   * Prints and returns the totals.
   */
  async function applyUnderProbes(b: LinuxRouteBackend, desired: DesiredRoute[], label: string, from: string, to: string) {
    const urls = ours.map(urlOf);
    const loop = probeLoop(lab, lab.ns.client, urls, 10, PROBE_TIMEOUT_MS);
    const begin = performance.now();
    await waitFor(`every address answered by ${from}`, () => answeredSince(loop.stats, urls, from, begin));
    const t0 = performance.now();
    const result = await b.apply(desired);
    const applyMs = performance.now() - t0;
    const t1 = performance.now();
    await waitFor(`every address answered by ${to} after apply()`, () => answeredSince(loop.stats, urls, to, t1));
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

  test('cutover: every srv-42 address is served by transit-3; at most the probe in flight at the flip is lost', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const { result, stats } = await applyUnderProbes(b, moveAll(ours, TRANSIT, ORIGIN), 'cutover', ORIGIN, TRANSIT);
    expect(result).toEqual({ changed: [...ours], unchanged: [] });
    expect(await servedBy(ours)).toEqual([TRANSIT, TRANSIT, TRANSIT]);
    expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
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

  test('cutback: srv-42 serves its addresses again; at most the probe in flight at the flip is lost', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const { result, stats } = await applyUnderProbes(b, moveAll(ours, ORIGIN, TRANSIT), 'cutback', TRANSIT, ORIGIN);
    expect(result).toEqual({ changed: [...ours], unchanged: [] });
    expect(await servedBy(ours)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP);
    expect(stats.servedBy[TRANSIT]).toBeGreaterThan(0);
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

  test('current() reads the receiving host: an address taken off its lo is a problem; apply() of the same state puts it back', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    expect((await lab.exec(lab.ns.origin, ['ip', 'addr', 'del', `${ours[0]}/32`, 'dev', 'lo'])).code).toBe(0);
    expect(await b.current([...ours])).toEqual([{ address: ours[0], to: ORIGIN, problems: [`${ORIGIN} does not hold ${ours[0]} on lo`] }, { address: ours[1], to: ORIGIN }, { address: ours[2], to: ORIGIN }]);
    // The route was right all along: unchanged; the address is back on srv-42's lo.
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: [], unchanged: [...ours] });
    expect(await b.current([...ours])).toEqual(ours.map((address) => ({ address, to: ORIGIN })));
    expect(await servedBy(ours)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
  });

  test('a host route deleted on the router: to null; apply() of the same state restores it', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    expect((await lab.exec(lab.ns.router, ['ip', 'route', 'del', `${ours[1]}/32`])).code).toBe(0);
    expect((await b.current([...ours])).map((c) => c.to)).toEqual([ORIGIN, null, ORIGIN]);
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: [ours[1]], unchanged: [ours[0], ours[2]] });
    expect(await b.current([...ours])).toEqual(ours.map((address) => ({ address, to: ORIGIN })));
    expect(await servedBy(ours)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
  });

  test('a receiving host that cannot be read: its addresses are unknown, the others are read', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, hosts: { ...lab.linuxRoute.hosts, [ORIGIN]: ['ip', 'netns', 'exec', `${lab.ns.origin}-gone`] } });
    const got = await b.current([...ours, ...SERVICE_ADDRESSES[TRANSIT]]);
    expect(got.slice(0, 3)).toEqual(ours.map((address) => ({ address, to: ORIGIN, unknown: expect.stringMatching(/^srv-42 \(receiving .*\) could not be read: .*Cannot open network namespace/) })));
    expect(got.slice(3)).toEqual(SERVICE_ADDRESSES[TRANSIT].map((address) => ({ address, to: TRANSIT })));
  });

  test('a router command that cannot start: retryable', async () => {
    const b = new LinuxRouteBackend({ router: [...lab.linuxRoute.router, '/nonexistent/ip-wrapper'], nextHops: lab.linuxRoute.nextHops });
    await expect(b.current(['203.0.113.10'])).rejects.toMatchObject({ retryable: true });
    const gone = new LinuxRouteBackend({ router: ['/nonexistent/ssh', 'router'], nextHops: lab.linuxRoute.nextHops });
    await expect(gone.apply(moveAll(['203.0.113.10'], TRANSIT, ORIGIN))).rejects.toMatchObject({ retryable: true });
  });
});

describe('LinuxRouteBackend with connection pinning in a network-namespace lab', () => {
  let lab: Lab;
  const ours = SERVICE_ADDRESSES[ORIGIN];
  const FLIPS = 10;

  /**
   * Flips the srv-42 addresses back and forth `flips` times while the client probes every 10 ms (a
   * new connection each); after each flip, waits until every address has answered from its new host.
   */
  async function flipsUnderProbes(b: LinuxRouteBackend, flips: number, label: string): Promise<{ stats: ProbeStats; applyMs: number[] }> {
    const urls = ours.map(urlOf);
    const loop = probeLoop(lab, lab.ns.client, urls, 10, PROBE_TIMEOUT_MS);
    const applyMs: number[] = [];
    const begin = performance.now();
    await waitFor(`every address answered by ${ORIGIN}`, () => answeredSince(loop.stats, urls, ORIGIN, begin));
    for (let i = 0; i < flips; i++) {
      const [to, from] = i % 2 === 0 ? [TRANSIT, ORIGIN] : [ORIGIN, TRANSIT];
      const t0 = performance.now();
      await b.apply(moveAll(ours, to, from));
      const t1 = performance.now();
      applyMs.push(t1 - t0);
      await waitFor(`flip ${i + 1}: every address answered by ${to}`, () => answeredSince(loop.stats, urls, to, t1));
    }
    const stats = await loop.stop();
    const failed = stats.log.filter((p) => p.servedBy === null).map((p) => `${p.url} ${p.error}`);
    console.log(`linux-route ${label}: ${flips} flips (apply ${applyMs.map((x) => x.toFixed(0)).join(', ')} ms); ${stats.probes} probes from the client, ${stats.failures} failures ${JSON.stringify(stats.errors)}, served by ${JSON.stringify(stats.servedBy)}${failed.length ? `; failed: ${failed.slice(0, 5).join('; ')}` : ''}`);
    return { stats, applyMs };
  }

  /**
   * A TCP connection from the client to ADDR:80 held open by a node process: `send()` writes one
   * HTTP request on it, `result` is the served-by of the answer or the socket error.
   */
  function heldConnection(address: string) {
    const code = `
      const s = require('node:net').connect({ host: ${JSON.stringify(address)}, port: 80 });
      let buf = '';
      s.on('connect', () => console.log('connected'));
      s.on('data', (d) => (buf += d));
      s.on('end', () => { const m = /x-served-by: (\\S+)/i.exec(buf); console.log('served ' + (m ? m[1] : 'none')); process.exit(0); });
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
      require('node:readline').createInterface({ input: process.stdin }).on('line', () => s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
    `;
    const child = spawn('ip', ['netns', 'exec', lab.ns.client, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout });
    let onLine: (l: string) => void = () => {};
    lines.on('line', (l) => onLine(l));
    const next = () => new Promise<string>((r) => (onLine = r));
    const connected = next();
    return {
      connected,
      async send(): Promise<string> {
        const answer = next();
        child.stdin.write('go\n');
        return answer;
      },
      close: () => child.kill('SIGKILL'),
    };
  }

  const onLo = async (ns: string, address: string) => (await lab.exec(ns, ['ip', '-j', 'addr', 'show', 'dev', 'lo'])).stdout.includes(`"${address}"`);

  beforeAll(async () => {
    lab = await createLab();
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  test(`without pinning: ${FLIPS} make-before-break flips under 10 ms probes, each followed by answers from the new host`, async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const { stats } = await flipsUnderProbes(b, FLIPS, 'without pinning');
    // How many flips lose a probe is a figure of bench:cutover; the bound is what a flip can cost.
    expect(stats.failures).toBeLessThanOrEqual(MAX_LOST_PER_FLIP * FLIPS);
    expect((await b.current([...ours])).map((c) => c.to)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
  });

  test(`with pinning: ${FLIPS} make-before-break flips under 10 ms probes (a new connection each), no failed probe`, async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, pinConnections: true });
    const { stats } = await flipsUnderProbes(b, FLIPS, 'with pinning');
    expect(stats.failures).toBe(0);
    expect(stats.servedBy[ORIGIN]).toBeGreaterThan(0);
    expect(stats.servedBy[TRANSIT]).toBeGreaterThan(0);
    expect(await servedBy()).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    expect((await b.current([...ours])).map((c) => c.to)).toEqual([ORIGIN, ORIGIN, ORIGIN]);
    for (const a of ours) expect(await onLo(lab.ns.transit, a)).toBe(false);
  });

  async function servedBy(): Promise<(string | null)[]> {
    return Promise.all(ours.map((a) => lab.httpFrom(lab.ns.client, urlOf(a), 1000)));
  }

  test('what pinning installed on the router: table inet failover, one rule and table per host and family', async () => {
    const table = await lab.exec(lab.ns.router, ['nft', '-j', 'list', 'table', 'inet', 'failover']);
    expect(table.code).toBe(0);
    const ids = pinIds([ORIGIN, TRANSIT]);
    const mark = (h: string) => (PIN_MARK_BASE | ids.get(h)!) >>> 0;
    expect(pinElements(table.stdout)).toEqual(new Map(ours.map((a) => [a, mark(ORIGIN)])));
    for (const family of ['-4', '-6']) {
      const rules = JSON.parse((await lab.exec(lab.ns.router, ['ip', '-j', family, 'rule', 'show'])).stdout) as { priority: number; fwmark?: string; table: string }[];
      for (const h of [ORIGIN, TRANSIT]) expect(rules.filter((r) => r.priority === 1000 && Number(r.fwmark) === mark(h) && r.table === String(mark(h)))).toHaveLength(1);
      const routes = (await lab.exec(lab.ns.router, ['ip', '-j', family, 'route', 'show', 'table', String(mark(TRANSIT))])).stdout;
      expect(routes).toContain(family === '-4' ? LAN.transit[0] : LAN.transit[1]);
    }
    // A second instance (controller restart) finds everything in place: the same state is only read.
    const rec: Call[] = [];
    const again = new LinuxRouteBackend({ ...lab.linuxRoute, pinConnections: true, runner: (argv, opts) => (rec.push({ argv: [...argv], input: opts?.input }), runCommand(argv, opts)) });
    expect(await again.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: [], unchanged: [...ours] });
    const rules = JSON.parse((await lab.exec(lab.ns.router, ['ip', '-j', '-4', 'rule', 'show'])).stdout) as { priority: number }[];
    expect(rules.filter((r) => r.priority === 1000)).toHaveLength(2);
    expect(rec.filter((c) => c.input?.includes('element'))).toEqual([]);
  });

  test('a connection opened before the flip stays on the old host; the old host keeps the address until it ends', async () => {
    // The router's batch of host routes returning is the end of the flip (the map is flipped just
    // before it; the pinning setup's `route replace default ... table N` lines come earlier).
    let flipped!: () => void;
    const flip = new Promise<void>((r) => (flipped = r));
    const runner: CommandRunner = async (argv, opts) => {
      const r = await runCommand(argv, opts);
      if (argv.includes(lab.ns.router) && opts?.input?.includes(`route replace ${ours[0]}/32 via `) && r.code === 0) flipped();
      return r;
    };
    // A drain bound far beyond anything this test waits for: the apply must end with the connection.
    const drainMs = 60_000;
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, runner, pinConnections: true, drainMs });
    const conn = heldConnection(ours[0]);
    let applied: Promise<unknown> | undefined;
    try {
      expect(await conn.connected).toBe('connected');
      let appliedAt: number | undefined;
      applied = b.apply(moveAll(ours, TRANSIT, ORIGIN)).then((r) => ((appliedAt = performance.now()), r));
      await flip;
      // Flipped: new connections go to transit-3, while srv-42 still has the address (draining).
      expect(await lab.httpFrom(lab.ns.client, urlOf(ours[0]), PROBE_TIMEOUT_MS)).toBe(TRANSIT);
      expect(await onLo(lab.ns.origin, ours[0])).toBe(true);
      expect(appliedAt).toBeUndefined();
      expect(await conn.send()).toBe(`served ${ORIGIN}`);
      const endedAt = performance.now();
      await applied;
      // Ended by the connection's end (the drain reads conntrack every 50 ms), not by drainMs.
      expect(appliedAt! - endedAt).toBeLessThan(drainMs / 3);
      expect(await onLo(lab.ns.origin, ours[0])).toBe(false);
    } finally {
      conn.close(); // ends the connection, hence the drain, also when an expectation failed
      await applied?.catch(() => undefined);
    }
  });

  test('a connection still open after drainMs is cut: the address leaves the old host, the connection is reset', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, pinConnections: true, drainMs: 300 });
    const conn = heldConnection(ours[1]);
    try {
      expect(await conn.connected).toBe('connected');
      const t0 = performance.now();
      await b.apply(moveAll(ours, ORIGIN, TRANSIT));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(300);
      expect(await onLo(lab.ns.transit, ours[1])).toBe(false);
      const ct = conntrackEntries((await lab.exec(lab.ns.router, ['conntrack', '-L', '-f', 'ipv4', '-d', ours[1]])).stdout);
      expect(ct.filter((e) => e.state === 'ESTABLISHED')).toEqual([]);
      expect(await conn.send()).toBe('error ECONNRESET');
    } finally {
      conn.close();
    }
  });
  test('the router loses the pinning setup (a reboot: table, rules, host tables): current() says so; apply() of the same state installs it again', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, pinConnections: true, drainMs: 0 });
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: [], unchanged: [...ours] });
    expect(await b.current([...ours])).toEqual(ours.map((address) => ({ address, to: ORIGIN })));

    const ids = pinIds([ORIGIN, TRANSIT]);
    const marks = [ORIGIN, TRANSIT].map((h) => (PIN_MARK_BASE | ids.get(h)!) >>> 0);
    const reboot = [
      ['nft', 'delete', 'table', 'inet', 'failover'],
      ...['-4', '-6'].flatMap((f) => marks.flatMap((m) => [['ip', f, 'rule', 'del', 'pref', '1000', 'fwmark', String(m), 'lookup', String(m)], ['ip', f, 'route', 'flush', 'table', String(m)]])),
    ];
    for (const argv of reboot) expect({ argv, code: (await lab.exec(lab.ns.router, argv)).code }).toEqual({ argv, code: 0 });

    const broken = await b.current([...ours]);
    for (const c of broken) {
      expect(c.to).toBe(ORIGIN);
      expect(c.problems).toEqual([`router: no nftables table inet failover (pinning ${c.address} to ${ORIGIN})`]);
    }
    // The same instance (it installed the setup before): the apply finds the loss and repairs it.
    // The map elements are set again where the routes point: nothing moves, so `unchanged`.
    expect(await b.apply(moveAll(ours, ORIGIN, TRANSIT))).toEqual({ changed: [], unchanged: [...ours] });
    expect(await b.current([...ours])).toEqual(ours.map((address) => ({ address, to: ORIGIN })));
    expect(pinElements((await lab.exec(lab.ns.router, ['nft', '-j', 'list', 'table', 'inet', 'failover'])).stdout)).toEqual(new Map(ours.map((a) => [a, marks[0]])));
    for (const f of ['-4', '-6']) {
      const rules = JSON.parse((await lab.exec(lab.ns.router, ['ip', '-j', f, 'rule', 'show'])).stdout) as { priority: number }[];
      expect(rules.filter((r) => r.priority === 1000)).toHaveLength(2);
    }
    // Pinning works again: a new connection is marked for srv-42 in the router's conntrack table.
    expect(await lab.httpFrom(lab.ns.client, urlOf(ours[0]), PROBE_TIMEOUT_MS)).toBe(ORIGIN);
    const ct = conntrackEntries((await lab.exec(lab.ns.router, ['conntrack', '-L', '-f', 'ipv4', '-d', ours[0]])).stdout);
    expect(ct.some((e) => e.mark === marks[0])).toBe(true);
  });
});

describe('LinuxRouteBackend with 1,000 addresses in a network-namespace lab', () => {
  let lab: Lab;
  // Documentation ranges only: 256 IPv4 addresses, the rest IPv6; even ones on srv-42, odd ones on transit-3.
  const addresses = [
    ...Array.from({ length: 128 }, (_, i) => `203.0.113.${100 + i}`),
    ...Array.from({ length: 128 }, (_, i) => `198.51.100.${100 + i}`),
    ...Array.from({ length: 744 }, (_, i) => `2001:db8:42::1:${(i + 1).toString(16)}`),
  ];
  const owner = (i: number) => (i % 2 === 0 ? ORIGIN : TRANSIT);
  const hopOf = (i: number) => lab.linuxRoute.nextHops[owner(i)][familyOf(addresses[i]) === 4 ? 0 : 1];
  const must = async (ns: string, argv: string[], input?: string) => {
    const r = await lab.exec(ns, argv, input);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };

  beforeAll(async () => {
    lab = await createLab({ http: false });
    const lo = (host: string) => addresses.filter((_, i) => owner(i) === host).map((a) => `addr add ${a}/${familyOf(a) === 4 ? 32 : 128} dev lo${familyOf(a) === 6 ? ' nodad' : ''}`);
    await must(lab.ns.origin, ['ip', '-batch', '-'], lo(ORIGIN).join('\n') + '\n');
    await must(lab.ns.transit, ['ip', '-batch', '-'], lo(TRANSIT).join('\n') + '\n');
    await must(lab.ns.router, ['ip', '-batch', '-'], addresses.map((a, i) => `route add ${a}/${familyOf(a) === 4 ? 32 : 128} via ${hopOf(i)}`).join('\n') + '\n');
  });
  afterAll(async () => {
    await lab?.destroy();
  });

  test('current(): one read of the main table per family and one per receiving host, whatever the count; compared with one route show per address', async () => {
    const calls: Call[] = [];
    const runner: CommandRunner = (argv, opts) => (calls.push({ argv: [...argv], input: opts?.input }), runCommand(argv, opts));
    const b = new LinuxRouteBackend({ ...lab.linuxRoute, runner });
    const passes: number[] = [];
    for (let pass = 0; pass < 3; pass++) {
      calls.length = 0;
      const t0 = performance.now();
      const got = await b.current(addresses);
      passes.push(performance.now() - t0);
      expect(got.map((c) => c.to)).toEqual(addresses.map((_, i) => owner(i)));
      expect(got.filter((c) => c.problems !== undefined || c.unknown !== undefined)).toEqual([]);
      expect(calls.map((c) => c.argv.slice(4).join(' ')).sort()).toEqual(['ip -j -4 -batch -', 'ip -j -6 -batch -', 'ip -j addr show dev lo', 'ip -j addr show dev lo']);
    }
    // The read this backend made before: one `route show ADDR/32` per address (both families in parallel).
    const t0 = performance.now();
    const old = await Promise.all(([4, 6] as const).map((f) => lab.exec(lab.ns.router, ['ip', '-j', `-${f}`, '-batch', '-'], addresses.filter((a) => familyOf(a) === f).map((a) => `route show ${a}/${f === 4 ? 32 : 128}`).join('\n') + '\n')));
    const oldMs = performance.now() - t0;
    expect(old.map((r) => r.code)).toEqual([0, 0]);
    console.log(`linux-route current() of ${addresses.length} addresses (256 IPv4, 744 IPv6, make-before-break hosts read): ${passes.map((x) => x.toFixed(0)).join(', ')} ms per pass; the router read alone as before (one route show per address): ${oldMs.toFixed(0)} ms`);
  });

  test('apply() of the same state: unchanged, reads only; drift on a few addresses is repaired by one apply of all', async () => {
    const b = new LinuxRouteBackend({ ...lab.linuxRoute });
    const desired = addresses.map((address, i) => ({ address, family: familyOf(address), to: owner(i), from: owner(i + 1) }));
    let t0 = performance.now();
    expect(await b.apply(desired)).toEqual({ changed: [], unchanged: addresses });
    const sameMs = performance.now() - t0;
    // Drift: two routes deleted, two addresses taken off their host.
    await must(lab.ns.router, ['ip', '-batch', '-'], `route del ${addresses[0]}/32\nroute del ${addresses[999]}/128\n`);
    await must(lab.ns.transit, ['ip', 'addr', 'del', `${addresses[1]}/32`, 'dev', 'lo']);
    await must(lab.ns.origin, ['ip', 'addr', 'del', `${addresses[998]}/128`, 'dev', 'lo']);
    const drift = (await b.current(addresses)).filter((c, i) => c.to !== owner(i) || c.problems !== undefined);
    expect(drift).toEqual([
      { address: addresses[0], to: null },
      { address: addresses[1], to: TRANSIT, problems: [`${TRANSIT} does not hold ${addresses[1]} on lo`] },
      { address: addresses[998], to: ORIGIN, problems: [`${ORIGIN} does not hold ${addresses[998]} on lo`] },
      { address: addresses[999], to: null },
    ]);
    t0 = performance.now();
    expect((await b.apply(desired)).changed).toEqual([addresses[0], addresses[999]]);
    const repairMs = performance.now() - t0;
    expect((await b.current(addresses)).filter((c, i) => c.to !== owner(i) || c.problems !== undefined)).toEqual([]);
    console.log(`linux-route apply() of ${addresses.length} addresses: ${sameMs.toFixed(0)} ms when all are right; ${repairMs.toFixed(0)} ms repairing 4 drifts`);
  });
});

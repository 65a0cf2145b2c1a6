/**
 * LinuxRouteBackend: argv shapes, validation and error mapping with a fake CommandRunner, then the
 * real thing in a network-namespace lab (root): cutover, idempotency, current(), cutback, and
 * make-before-break under a tight loop of HTTP probes from the client.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { runCommand, type CommandResult, type CommandRunner } from '../../src/routing/command-runner.js';
import { conntrackEntries, LinuxRouteBackend, PIN_MARK_BASE, pinElements, pinIds } from '../../src/routing/linux-route-backend.js';
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

describe('LinuxRouteBackend with pinning, fake runner', () => {
  const ids = pinIds([ORIGIN, TRANSIT]);
  const mark = (h: string) => (PIN_MARK_BASE | ids.get(h)!) >>> 0;
  const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

  /** fakeNetwork plus an nft table (absent until `nft -f` creates it), ip rules and a conntrack listing. */
  function pinnedNetwork(conntrack: () => string = () => '') {
    const net = fakeNetwork({ '203.0.113.10': '192.0.2.2', '2001:db8:42::10': '2001:db8:ffff::2' }, { 'srv-42': ['203.0.113.10', '2001:db8:42::10'], 'transit-3': [] });
    let table: Map<string, number> | undefined;
    const rules: Record<string, { priority: number; fwmark: string; table: string }[]> = { '-4': [], '-6': [] };
    const inner = net.runner;
    const runner: CommandRunner = async (argv, opts) => {
      const cmd = argv.slice(2);
      const lines = (opts?.input ?? '').split('\n').filter(Boolean);
      if (cmd[0] === 'nft' && cmd[1] === '-j') {
        net.calls.push({ argv: [...argv] });
        if (!table) return { code: 1, stdout: '', stderr: 'Error: No such file or directory\nlist table inet failover\n' };
        const elem = (f: 4 | 6) => [...table!].filter(([a]) => familyOf(a) === f).map(([a, m]) => [a, m]);
        return { code: 0, stdout: JSON.stringify({ nftables: [{ table: { name: 'failover' } }, { map: { name: 'pin4', elem: elem(4) } }, { map: { name: 'pin6', elem: elem(6) } }] }), stderr: '' };
      }
      if (cmd[0] === 'nft') {
        net.calls.push({ argv: [...argv], input: opts?.input });
        table ??= new Map();
        for (const l of lines) {
          const m = /^(add|delete) element inet failover pin[46] \{ (.*) \}$/.exec(l);
          if (!m) continue;
          for (const e of m[2].split(', ')) {
            const [a, v] = e.split(' : ');
            if (m[1] === 'delete') table.delete(a);
            else table.set(a, Number(v));
          }
        }
        return { code: 0, stdout: '', stderr: '' };
      }
      if (cmd[0] === 'conntrack') {
        net.calls.push({ argv: [...argv] });
        return cmd[1] === '-L' ? { code: 0, stdout: conntrack(), stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n' } : { code: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' };
      }
      if (cmd[0] === 'ip' && cmd[1] === '-j' && cmd[3] === 'rule') {
        net.calls.push({ argv: [...argv] });
        return { code: 0, stdout: JSON.stringify(rules[cmd[2]]), stderr: '' };
      }
      if (cmd[0] === 'ip' && (cmd[1] === '-4' || cmd[1] === '-6')) {
        net.calls.push({ argv: [...argv], input: opts?.input });
        for (const l of lines) {
          const m = /^rule add pref (\d+) fwmark (\S+) lookup (\d+)$/.exec(l);
          if (m) rules[cmd[1]].push({ priority: Number(m[1]), fwmark: `0x${Number(m[2]).toString(16)}`, table: m[3] });
        }
        return { code: 0, stdout: '', stderr: '' };
      }
      return inner(argv, opts);
    };
    return { ...net, runner, table: () => table, rules };
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
    expect(net.rules['-4']).toHaveLength(2);
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
});

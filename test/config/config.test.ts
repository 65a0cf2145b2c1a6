/** Config validation: every problem with its path, line and reason; defaults; frozen result. */
import { describe, expect, test } from '@jest/globals';
import { ConfigError, parseConfig, parseHostPort, withInventoryEdits } from '../../src/config/config.js';

const GOOD = `dns:
  listen: ["127.0.0.1:5300", "[::1]:5300"]
  zones: ./zones
api:
  listen: "127.0.0.1:8080"
  token_env: FAILOVER_API_TOKEN
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, '/etc/fc/config.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('config', () => {
  test('a valid file gives absolute paths, parsed addresses and defaults, frozen', () => {
    const c = parseConfig(GOOD, '/etc/fc/config.yaml');
    expect(c.dns.listen).toEqual([{ host: '127.0.0.1', port: 5300, family: 4 }, { host: '::1', port: 5300, family: 6 }]);
    expect(c.dns.zones).toBe('/etc/fc/zones');
    expect(c.dns.tcpIdleTimeoutMs).toBe(10_000);
    expect(c.dns.tcpMaxConnections).toBe(1000);
    expect(c.api.tokenFile).toBe('/etc/fc/api-token');
    expect(c.log.level).toBe('info');
    expect(Object.isFrozen(c.dns.listen)).toBe(true);
  });

  test.each([
    ['a listen entry without a port',
      GOOD.replace('"[::1]:5300"', '"1.2.3.4"'),
      ['/etc/fc/config.yaml:2: dns.listen[1]: "1.2.3.4" is not host:port (IPv6 as [addr]:port)']],
    ['a host name where an IP literal is needed',
      GOOD.replace('"127.0.0.1:8080"', '"localhost:8080"'),
      ['/etc/fc/config.yaml:5: api.listen: "localhost:8080": "localhost" is not an IPv4 address (host names are not accepted)']],
    ['a port out of range',
      GOOD.replace('127.0.0.1:5300', '127.0.0.1:70000'),
      ['/etc/fc/config.yaml:2: dns.listen[0]: "127.0.0.1:70000": port must be from 1 to 65535']],
    ['a missing zones key and an unknown key, both reported',
      GOOD.replace('  zones: ./zones\n', '  zone: ./zones\n'),
      ['/etc/fc/config.yaml:3: dns.zone: unknown key (allowed: listen, zones, tcp_idle_timeout_ms, tcp_max_connections, cache_entries, cutover_ttl, ttl_margin_s, max_zone_file_bytes, tsig_keys, secondaries, catalog, journal_dir)',
        '/etc/fc/config.yaml:2: dns.zones: is required']],
    ['a duplicate listen address',
      GOOD.replace('"[::1]:5300"', '"127.0.0.1:5300"'),
      ['/etc/fc/config.yaml:2: dns.listen[1]: "127.0.0.1:5300" is already listed at dns.listen[0]']],
    ['a bad env var name',
      GOOD.replace('FAILOVER_API_TOKEN', 'NOT-A-NAME'),
      ['/etc/fc/config.yaml:6: api.token_env: "NOT-A-NAME" is not an environment variable name']],
    ['trailing blank lines are fine',
      GOOD + '  \n',
      []],
    ['an integer setting of the wrong type',
      GOOD.replace('  zones: ./zones\n', '  zones: ./zones\n  tcp_max_connections: lots\n'),
      ['/etc/fc/config.yaml:4: dns.tcp_max_connections: must be an integer from 1 to 100000, not "lots"']],
    ['a YAML syntax error', 'dns: [\n', ['/etc/fc/config.yaml:2: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']],
    ['a top level that is not a mapping', '- a\n- b\n', ['/etc/fc/config.yaml:1: the top level must be a mapping']],
    ['an empty file', '', ['/etc/fc/config.yaml: dns: is required', '/etc/fc/config.yaml: api: is required']],
    ['a bad log level', GOOD + 'log:\n  level: loud\n', ['/etc/fc/config.yaml:8: log.level: must be one of fatal, error, warn, info, debug, trace, not "loud"']],
  ])('%s', (_name, text, expected) => {
    const got = problems(text);
    if (expected.length === 1 && expected[0].includes('YAML')) {
      expect(got[0]).toMatch(/^\/etc\/fc\/config\.yaml:\d+: YAML: /);
    } else {
      expect(got).toEqual(expected);
    }
  });

  test.each([
    ['127.0.0.1:53', { host: '127.0.0.1', port: 53, family: 4 }],
    ['[2001:DB8:0::1]:53', { host: '2001:db8::1', port: 53, family: 6 }],
    ['[::ffff:192.0.2.1]:53', { host: '::ffff:c000:201', port: 53, family: 6 }],
    ['::1:53', '"::1:53" is not host:port (IPv6 as [addr]:port)'],
    ['1.2.3:53', '"1.2.3:53": "1.2.3" is not an IPv4 address (host names are not accepted)'],
    ['[fe80::1%eth0]:53', '"[fe80::1%eth0]:53": "fe80::1%eth0" is not an IPv6 address'],
  ])('parseHostPort(%s)', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });
});

const INVENTORY = `${GOOD}servers:
  - name: srv-42
    addresses: [203.0.113.10, 203.0.113.11, "2001:DB8:42:0::10"]
transits:
  - name: transit-3
    addresses: [198.51.100.20, 198.51.100.21, "2001:db8:3::20"]
state:
  path: ./var/state.db
routing:
  backend: linux-route
  linux_route:
    router: ["ip", "netns", "exec", "lab-router"]
    next_hops:
      srv-42: [192.0.2.2, "2001:db8:ffff::2"]
      transit-3: [192.0.2.3, "2001:db8:ffff::3"]
    hosts:
      srv-42: ["ip", "netns", "exec", "lab-origin"]
      transit-3: ["ip", "netns", "exec", "lab-transit"]
`;

describe('config: inventory and routing', () => {
  test('addresses are normalised; routing settings are read; defaults apply', () => {
    const c = parseConfig(INVENTORY, '/etc/fc/config.yaml');
    expect(c.servers[0].addresses.map((a) => a.address)).toEqual(['203.0.113.10', '203.0.113.11', '2001:db8:42::10']);
    expect(c.cutoverTtl).toBe(60);
    expect(c.state.path).toBe('/etc/fc/var/state.db');
    expect(c.routing.backend).toBe('linux-route');
    expect(c.routing.retry).toEqual({ deadlineMs: 120_000, minDelayMs: 200, maxDelayMs: 5000 });
    expect(c.routing.linuxRoute?.nextHops['srv-42']).toEqual(['192.0.2.2', '2001:db8:ffff::2']);
    expect(c.routing.linuxRoute?.device).toBe('lo');
    expect(c.routing.reconcile).toEqual({ intervalMs: 30_000, mode: 'repair', maxBackoffMs: 600_000 });
  });

  test.each([
    ['given', 'routing:\n  reconcile: {interval_s: 5, mode: report, max_backoff_s: 60}\n', 'linux-route', { intervalMs: 5000, mode: 'report', maxBackoffMs: 60_000 }],
    ['http default: the provider allows 100 GET an hour', 'routing:\n', 'http', { intervalMs: 300_000, mode: 'repair', maxBackoffMs: 600_000 }],
    ['http, given', 'routing:\n  reconcile: {interval_s: 120}\n', 'http', { intervalMs: 120_000, mode: 'repair', maxBackoffMs: 600_000 }],
  ])('routing.reconcile: %s', (_n, head, backend, expected) => {
    let text = INVENTORY.replace('routing:\n', head);
    if (backend === 'http') text = text.replace('backend: linux-route', 'backend: http\n  http: {base_url: "http://127.0.0.1:9/"}').replace(/(\n\s+- name: (srv-42|transit-3)\n\s+addresses: [^\n]+)/g, (m, _a, name) => `${m}\n    routing: {main_ip: ${name === 'srv-42' ? '198.51.100.2' : '198.51.100.3'}}`);
    expect(parseConfig(text, '/etc/fc/config.yaml').routing.reconcile).toEqual(expected);
  });

  test.each([
    ['an address claimed by two servers',
      INVENTORY.replace('transits:', '  - name: srv-43\n    addresses: ["203.0.113.010"]\n  - name: srv-44\n    addresses: ["2001:db8:42::10"]\ntransits:'),
      ['/etc/fc/config.yaml:11: servers[1].addresses[0]: "203.0.113.010" is not an IPv4 address',
        '/etc/fc/config.yaml:13: servers[2].addresses[0]: 2001:db8:42::10 is already listed at servers[0].addresses[2] (srv-42)',
        '/etc/fc/config.yaml:24: routing.linux_route.next_hops: no next hop for srv-43',
        '/etc/fc/config.yaml:24: routing.linux_route.next_hops: no next hop for srv-44']],
    ['a server with more IPv4 addresses than the transit',
      INVENTORY.replace('198.51.100.20, 198.51.100.21,', '198.51.100.20,'),
      ['/etc/fc/config.yaml:9: servers[0].addresses: srv-42 has 2 IPv4 addresses but transit-3 has 1 (transits[0])']],
    ['a duplicate address in one server (written two ways)',
      INVENTORY.replace('203.0.113.11, "2001:DB8:42:0::10"', '"2001:db8:42::10", "2001:DB8:42:0::10"'),
      ['/etc/fc/config.yaml:9: servers[0].addresses[2]: 2001:db8:42::10 is already listed at servers[0].addresses[1] (srv-42)',
        '/etc/fc/config.yaml:9: servers[0].addresses: srv-42 has 2 IPv6 addresses but transit-3 has 1 (transits[0])']],
    ['a bad name and a name used twice',
      INVENTORY.replace('name: transit-3', 'name: srv-42').replace('name: srv-42\n    addresses: [203', 'name: "../x"\n    addresses: [203'),
      ['/etc/fc/config.yaml:8: servers[0].name: "../x" is not a valid name (lower-case letters, digits and hyphens, at most 63)',
        '/etc/fc/config.yaml:21: routing.linux_route.next_hops.transit-3: unknown key (allowed: ../x, srv-42)',
        '/etc/fc/config.yaml:20: routing.linux_route.next_hops: no next hop for ../x',
        '/etc/fc/config.yaml:24: routing.linux_route.hosts.transit-3: unknown key (allowed: ../x, srv-42)']],
    ['servers without a routing backend',
      INVENTORY.slice(0, INVENTORY.indexOf('routing:')),
      ['/etc/fc/config.yaml:1: routing: is required']],
    ['a missing IPv6 next hop and an unknown backend setting',
      INVENTORY.replace('[192.0.2.3, "2001:db8:ffff::3"]', '[192.0.2.3]').replace('    router:', '    routr: x\n    router:'),
      ['/etc/fc/config.yaml:18: routing.linux_route.routr: unknown key (allowed: router, next_hops, hosts, device, pin_connections, drain_ms)',
        '/etc/fc/config.yaml:22: routing.linux_route.next_hops.transit-3: transit-3 has IPv6 addresses but no IPv6 next hop']],
    ['reconcile: a bad mode, a zero interval, an unknown key',
      INVENTORY.replace('routing:\n', 'routing:\n  reconcile: {interval_s: 0, mode: fix, every: 3}\n'),
      ['/etc/fc/config.yaml:16: routing.reconcile.every: unknown key (allowed: interval_s, mode, max_backoff_s)',
        '/etc/fc/config.yaml:16: routing.reconcile.interval_s: must be an integer from 1 to 86400, not 0',
        '/etc/fc/config.yaml:16: routing.reconcile.mode: must be one of repair, report, not "fix"']],
    ['an unknown backend',
      INVENTORY.replace('backend: linux-route', 'backend: carrier-pigeon'),
      ['/etc/fc/config.yaml:16: routing.backend: must be one of dry-run, linux-route, linux-address, http, bgp, not "carrier-pigeon"']],
  ])('%s', (_n, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });
});

/** The inventory with routing.backend bgp, as the README spells the section. */
const BGP = INVENTORY.replace(/routing:\n[\s\S]*$/, `routing:
  backend: bgp
  bgp:
    api: "127.0.0.1:50051"
    next_hops:
      srv-42: [192.0.2.2, "2001:db8:ffff::2"]
      transit-3: [192.0.2.3, "2001:db8:ffff::3"]
    communities: ["65000:100"]
    hosts: {srv-42: ["ssh", "srv-42"]}
    verify: ["birdc", "-s", "/run/bird/bird.ctl", "show", "route", "for"]
    verify_deadline_ms: 5000
`);

describe('config: routing.bgp', () => {
  test('the section as documented: api, next hops, communities, hosts, verify', () => {
    const c = parseConfig(BGP, '/etc/fc/config.yaml');
    expect(c.routing.backend).toBe('bgp');
    expect(c.routing.bgp).toEqual({
      api: '127.0.0.1:50051',
      communities: ['65000:100'],
      verify: ['birdc', '-s', '/run/bird/bird.ctl', 'show', 'route', 'for'],
      verifyDeadlineMs: 5000,
      nextHops: { 'srv-42': ['192.0.2.2', '2001:db8:ffff::2'], 'transit-3': ['192.0.2.3', '2001:db8:ffff::3'] },
      hosts: { 'srv-42': ['ssh', 'srv-42'] },
    });
  });

  test.each([
    ['no bgp section', BGP.replace(/  bgp:\n[\s\S]*$/, ''), ['/etc/fc/config.yaml:16: routing.bgp: is required']],
    ['a bad api, community and a missing next hop',
      BGP.replace('"127.0.0.1:50051"', '"http://gobgp"').replace('"65000:100"', '"65000:70000"').replace('      transit-3: [192.0.2.3, "2001:db8:ffff::3"]\n', ''),
      ['/etc/fc/config.yaml:18: routing.bgp.api: "http://gobgp" is not HOST:PORT or unix:///PATH',
        '/etc/fc/config.yaml:20: routing.bgp.next_hops: no next hop for transit-3',
        '/etc/fc/config.yaml:21: routing.bgp.communities[0]: "65000:70000" is not a community ASN:VALUE (each 0-65535)']],
    ['an unspecified next hop', BGP.replace('transit-3: [192.0.2.3, "2001:db8:ffff::3"]', 'transit-3: [0.0.0.0, "::"]'),
      ['/etc/fc/config.yaml:21: routing.bgp.next_hops.transit-3: 0.0.0.0 is not a next hop (gobgpd would announce its own address instead)',
        '/etc/fc/config.yaml:21: routing.bgp.next_hops.transit-3: :: is not a next hop (gobgpd would announce its own address instead)']],
  ])('%s', (_n, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });
});

/** The same inventory with each host's routing settings in its own entry. */
const OWN_ROUTING = `${GOOD}servers:
  - name: srv-42
    addresses: [203.0.113.10, "2001:db8:42::10"]
    routing:
      next_hops: [192.0.2.2, "2001:db8:ffff::2"]
      exec: ["ip", "netns", "exec", "lab-origin"]
      main_ip: 198.51.100.2
      ipv6_net: "2001:db8:1::/64"
transits:
  - name: transit-3
    addresses: [198.51.100.20, "2001:db8:3::20"]
    routing: {next_hops: [192.0.2.3, "2001:db8:ffff::3"], exec: ["ip", "netns", "exec", "lab-transit"], main_ip: 198.51.100.3}
routing:
  backend: linux-route
  linux_route:
    router: ["ip", "netns", "exec", "lab-router"]
`;

describe('config: routing settings in the inventory entries', () => {
  test('each backend reads its settings from the host entries', () => {
    const c = parseConfig(OWN_ROUTING, '/etc/fc/config.yaml');
    expect(c.routing.linuxRoute?.nextHops).toEqual({ 'srv-42': ['192.0.2.2', '2001:db8:ffff::2'], 'transit-3': ['192.0.2.3', '2001:db8:ffff::3'] });
    expect(c.routing.linuxRoute?.hosts).toEqual({ 'srv-42': ['ip', 'netns', 'exec', 'lab-origin'], 'transit-3': ['ip', 'netns', 'exec', 'lab-transit'] });
    const http = parseConfig(OWN_ROUTING.replace('backend: linux-route', 'backend: http\n  http: {base_url: "http://127.0.0.1:9"}'), '/etc/fc/config.yaml');
    expect(http.routing.http?.serverIps).toEqual({ 'srv-42': '198.51.100.2', 'transit-3': '198.51.100.3' });
    expect(http.routing.http?.serverIpv6Nets).toEqual({ 'srv-42': '2001:db8:1::' });
  });

  test.each([
    ['a setting in the entry and in the backend map',
      OWN_ROUTING + '    next_hops:\n      srv-42: [192.0.2.9, "2001:db8:ffff::9"]\n',
      ["/etc/fc/config.yaml:24: routing.linux_route.next_hops.srv-42: srv-42's next_hops is also set at servers[0].routing.next_hops; keep one"]],
    ['a host without a next hop anywhere',
      OWN_ROUTING.replace('      next_hops: [192.0.2.2, "2001:db8:ffff::2"]\n', ''),
      ['/etc/fc/config.yaml:8: servers[0]: no next hop for srv-42: set next_hops in its routing settings']],
    ['bad settings in an entry',
      OWN_ROUTING.replace('[192.0.2.2, "2001:db8:ffff::2"]', '[192.0.2.2, 192.0.2.4]').replace('main_ip: 198.51.100.2', 'main_ip: 198.51.100').replace('"2001:db8:1::/64"', '"2001:db8:1::/129"').replace('      exec:', '      colour: red\n      exec:'),
      ['/etc/fc/config.yaml:12: servers[0].routing.colour: unknown key (allowed: next_hops, exec, device, main_ip, ipv6_net)',
        '/etc/fc/config.yaml:11: servers[0].routing.next_hops[1]: a second IPv4 next hop (one per family)',
        '/etc/fc/config.yaml:14: servers[0].routing.main_ip: "198.51.100" is not an IPv4 address',
        '/etc/fc/config.yaml:15: servers[0].routing.ipv6_net: "2001:db8:1::/129": the prefix length must be from 0 to 128 (an IPv6 net: 2001:db8:1:: or 2001:db8:1::/64)']],
    ['linux-address needs exec and device',
      OWN_ROUTING.replace('backend: linux-route', 'backend: linux-address').replace(/  linux_route:\n.*\n/, '').replace('main_ip: 198.51.100.3}', 'main_ip: 198.51.100.3, device: eth0}'),
      ['/etc/fc/config.yaml:8: servers[0]: no device for srv-42: set exec and device in its routing settings']],
  ])('%s', (_n, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });

  test.each([
    ['mail domains are normalised', '[Shop.Example., "bücher.example"]', '[other.example]', [], [['shop.example', 'xn--bcher-kva.example'], ['other.example']]],
    ['a name that is not a domain name', '["not a domain", 192.0.2.1, 3]', '[]', [
      '/etc/fc/config.yaml:29: accounts[0].mail_domains[0]: "not a domain" is not a domain name: "not a domain" has a single label (a registered domain is needed)',
      '/etc/fc/config.yaml:29: accounts[0].mail_domains[1]: "192.0.2.1" is not a domain name: "192.0.2.1" looks like an IP address, not a domain',
      '/etc/fc/config.yaml:29: accounts[0].mail_domains[2]: 3 is not a domain name: not a string',
    ], null],
    ['listed twice', '[shop.example, SHOP.example.]', '[]', ['/etc/fc/config.yaml:29: accounts[0].mail_domains: shop.example listed more than once'], null],
    ['one domain in two accounts', '[shop.example]', '[Shop.example]', ['/etc/fc/config.yaml:33: accounts[1].mail_domains[0]: shop.example is already a mail domain of account acme'], null],
    ['not a list', 'shop.example', '[]', ['/etc/fc/config.yaml:29: accounts[0].mail_domains: must be a list of domain names'], null],
  ] as [string, string, string, string[], string[][] | null][])('accounts[].mail_domains: %s', (_what, acme, bob, errors, parsed) => {
    const text = `${INVENTORY}accounts:\n  - name: acme\n    server: srv-42\n    zones: [acme.test]\n    mail_domains: ${acme}\n  - name: bob\n    server: srv-42\n    zones: [bob.test]\n    mail_domains: ${bob}\n`;
    expect(problems(text)).toEqual(errors);
    if (parsed) expect(parseConfig(text, '/etc/fc/config.yaml').accounts.map((a) => a.mailDomains ?? [])).toEqual(parsed);
  });

  test('a value wrapped in a list is refused, not read as its text', () => {
    const text = OWN_ROUTING.replace('addresses: [203.0.113.10, "2001:db8:42::10"]', 'addresses: [["203.0.113.10"], "2001:db8:42::10"]\n    monthly_price: ["29.99"]');
    expect(problems(text)).toEqual([
      '/etc/fc/config.yaml:9: servers[0].addresses[0]: must be a string, not a list',
      '/etc/fc/config.yaml:10: servers[0].monthly_price: must be a quoted decimal string (e.g. "29.99"), not a list',
    ]);
  });

  test('the older per-backend maps accept an IPv6 net written with its length, as the routing README shows', () => {
    const text = INVENTORY.replace('backend: linux-route', 'backend: http\n  http:\n    base_url: "http://127.0.0.1:9"\n    server_ips: {srv-42: 198.51.100.2, transit-3: 198.51.100.3}\n    server_ipv6_nets: {srv-42: "2001:db8:42::/64"}');
    expect(parseConfig(text, '/etc/fc/config.yaml').routing.http?.serverIpv6Nets).toEqual({ 'srv-42': '2001:db8:42::' });
  });

  test.each([
    ['1.2.3:53', '"1.2.3:53": "1.2.3" is not an IPv4 address (host names are not accepted)'],
    ['999.1.1.1:53', '"999.1.1.1:53": "999.1.1.1" is not an IPv4 address (host names are not accepted)'],
    ['resolver.example:53', '"resolver.example:53": "resolver.example" is not an IPv4 address (host names are not accepted)'],
  ])('mx_audit.resolver %s is refused', (resolver, message) => {
    expect(problems(`${GOOD}mx_audit:\n  resolver: "${resolver}"\n`)).toEqual([`/etc/fc/config.yaml:8: mx_audit.resolver: ${message}`]);
  });
});

describe('config: inventory edits', () => {
  const base = () => parseConfig(INVENTORY, '/etc/fc/config.yaml');

  test('a host named in a backend map can be removed, and one added with its own settings', () => {
    const withServer = withInventoryEdits(base(), [{ kind: 'servers', name: 'srv-44', value: { addresses: ['203.0.113.44'], routing: { next_hops: ['192.0.2.44'] } } }]);
    expect(withServer.routing.linuxRoute?.nextHops['srv-44']).toEqual(['192.0.2.44']);
    const without = withInventoryEdits(withServer, [{ kind: 'servers', name: 'srv-42', value: null }]);
    expect(without.servers.map((s) => s.name)).toEqual(['srv-44']);
    expect(without.routing.linuxRoute?.nextHops).toEqual({ 'transit-3': ['192.0.2.3', '2001:db8:ffff::3'], 'srv-44': ['192.0.2.44'] });
    // the file's map entry for srv-42 may stay, and srv-42 may come back through the API
    const back = withInventoryEdits(without, [{ kind: 'servers', name: 'srv-42', value: { addresses: ['203.0.113.10'] } }]);
    expect(back.routing.linuxRoute?.nextHops['srv-42']).toEqual(['192.0.2.2', '2001:db8:ffff::2']);
  });

  test('an added host without its next hop is refused, naming the entry', () => {
    expect(() => withInventoryEdits(base(), [{ kind: 'servers', name: 'srv-44', value: { addresses: ['203.0.113.44'] } }]))
      .toThrow('/etc/fc/config.yaml: the edit of server "srv-44": servers[1]: no next hop for srv-44: set next_hops in its routing settings');
  });

  test('a stored edit that no longer fits names the edit and when it was made, not a line', () => {
    const at = Date.parse('2026-11-30T08:15:00Z');
    let err: unknown;
    try {
      withInventoryEdits(base(), [{ kind: 'transits', name: 'transit-9', value: { addresses: ['198.51.100.90', '198.51.100.91', '2001:db8:3::20'], routing: { next_hops: ['192.0.2.9'] } }, at }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message.split('\n')).toEqual([
      '/etc/fc/config.yaml: stored edit of transit "transit-9" (made 2026-11-30T08:15:00.000Z): transits[1].addresses[2]: 2001:db8:3::20 is already listed at transits[0].addresses[2] (transit-3)',
      '/etc/fc/config.yaml: stored edit of transit "transit-9" (made 2026-11-30T08:15:00.000Z): transits[1].routing.next_hops: transit-9 has IPv6 addresses but no IPv6 next hop',
    ]);
  });

  test('problems in the file keep their lines when edits come before them', () => {
    const text = INVENTORY.replace('transits:', '  - name: srv-43\n    addresses: [203.0.113.43, 203.0.113.44]\ntransits:').replace('      transit-3: [192.0.2.3', '      srv-43: [192.0.2.43]\n      transit-3: [192.0.2.3');
    const c = parseConfig(text, '/etc/fc/config.yaml');
    // srv-42 removed by an edit: srv-43 is now servers[0], still reported at its own line of the file
    expect(() => withInventoryEdits(c, [
      { kind: 'servers', name: 'srv-42', value: null },
      { kind: 'transits', name: 'transit-3', value: { addresses: ['198.51.100.20'] } },
    ])).toThrow('/etc/fc/config.yaml:11: servers[0].addresses: srv-43 has 2 IPv4 addresses but transit-3 has 1 (transits[0])');
  });
});

describe('config: the hidden primary (dns.tsig_keys, dns.secondaries, dns.catalog)', () => {
  const SECRET = Buffer.alloc(32, 7).toString('base64');
  const XFR = GOOD.replace('  zones: ./zones\n', `  zones: ./zones
  tsig_keys:
    - {name: xfr-key, algorithm: hmac-sha256, secret_env: FAILOVER_TSIG_XFR}
  secondaries:
    - {name: ns1, address: "192.0.2.53:53", tsig: xfr-key}
    - {name: ns2, address: "[2001:db8::53]:53", tsig: xfr-key., notify: false}
  catalog: catalog.invalid.
`);
  const parse = (text: string, env: NodeJS.ProcessEnv) => {
    try {
      return parseConfig(text, '/etc/fc/config.yaml', env);
    } catch (err) {
      if (err instanceof ConfigError) return err.message.split('\n');
      throw err;
    }
  };

  test('keys, secondaries and the catalog are read; the secret stays in the environment', () => {
    const c = parse(XFR, { FAILOVER_TSIG_XFR: SECRET });
    expect(Array.isArray(c)).toBe(false);
    const dns = (c as ReturnType<typeof parseConfig>).dns;
    expect(dns.tsigKeys).toEqual([{ name: 'xfr-key.', algorithm: 'hmac-sha256', secretEnv: 'FAILOVER_TSIG_XFR' }]);
    expect(dns.secondaries).toEqual([
      { name: 'ns1', address: { host: '192.0.2.53', port: 53, family: 4 }, tsig: 'xfr-key.', notify: true },
      { name: 'ns2', address: { host: '2001:db8::53', port: 53, family: 6 }, tsig: 'xfr-key.', notify: false },
    ]);
    expect(dns.catalog).toBe('catalog.invalid.');
    expect(JSON.stringify(c)).not.toContain(SECRET);
  });

  test.each([
    ['the secret variable unset', XFR, {},
      ['/etc/fc/config.yaml:5: dns.tsig_keys[0].secret_env: environment variable FAILOVER_TSIG_XFR is not set']],
    ['a secret that is not base64 of 16 bytes', XFR, { FAILOVER_TSIG_XFR: 'c2hvcnQ=' },
      ['/etc/fc/config.yaml:5: dns.tsig_keys[0].secret_env: environment variable FAILOVER_TSIG_XFR is not base64 of at least 16 bytes']],
    ['an unknown key name, an unknown key, hmac-md5', XFR.replace('tsig: xfr-key}', 'tsig: other-key, port: 53}').replace('hmac-sha256', 'hmac-md5'), { FAILOVER_TSIG_XFR: SECRET },
      ['/etc/fc/config.yaml:5: dns.tsig_keys[0].algorithm: must be one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, not "hmac-md5"',
        '/etc/fc/config.yaml:7: dns.secondaries[0].port: unknown key (allowed: name, address, tsig, notify)']],
    ['a secondary naming no configured key', XFR.replace('tsig: xfr-key}', 'tsig: other-key}'), { FAILOVER_TSIG_XFR: SECRET },
      ['/etc/fc/config.yaml:7: dns.secondaries[0].tsig: no TSIG key named other-key. in dns.tsig_keys (known: xfr-key.)']],
    ['two secondaries with one name and one address', XFR.replace('name: ns2, address: "[2001:db8::53]:53"', 'name: ns1, address: "192.0.2.53:53"'), { FAILOVER_TSIG_XFR: SECRET },
      ['/etc/fc/config.yaml:8: dns.secondaries[1].name: ns1 is already listed at dns.secondaries[0]',
        '/etc/fc/config.yaml:8: dns.secondaries[1].address: is already the address of dns.secondaries[0]']],
    ['a secondary address without a port, a catalog that is not a name', XFR.replace('"192.0.2.53:53"', '"192.0.2.53"').replace('catalog.invalid.', '"cat alog"'), { FAILOVER_TSIG_XFR: SECRET },
      ['/etc/fc/config.yaml:7: dns.secondaries[0].address: "192.0.2.53" is not host:port (IPv6 as [addr]:port)',
        '/etc/fc/config.yaml:9: dns.catalog: "cat alog" is not a domain name (has white space)']],
  ])('%s', (_n, text, env, expected) => {
    expect(parse(text, env)).toEqual(expected);
  });

  test('secrets: false (a command that uses none) skips only the secrets\' variables', () => {
    const without = (text: string) => {
      try {
        return parseConfig(text, '/etc/fc/config.yaml', {}, { secrets: false }).dns.tsigKeys;
      } catch (err) {
        if (err instanceof ConfigError) return err.message.split('\n');
        throw err;
      }
    };
    expect(without(XFR)).toEqual([{ name: 'xfr-key.', algorithm: 'hmac-sha256', secretEnv: 'FAILOVER_TSIG_XFR' }]);
    expect(without(XFR.replace('tsig: xfr-key}', 'tsig: other-key}'))).toEqual(
      ['/etc/fc/config.yaml:7: dns.secondaries[0].tsig: no TSIG key named other-key. in dns.tsig_keys (known: xfr-key.)']);
    expect(parse(XFR, {})).toEqual(['/etc/fc/config.yaml:5: dns.tsig_keys[0].secret_env: environment variable FAILOVER_TSIG_XFR is not set']);
  });
});

const ETCD = `${GOOD}state:
  backend: etcd
  etcd:
    endpoints: ["http://127.0.0.1:2379", "https://192.0.2.2:2379"]
    tls: {ca: tls/ca.pem, cert: tls/client.pem, key: tls/client-key.pem}
cluster:
  name: r1
  advertise_api: "http://127.0.0.1:8080"
`;

describe('config: state on etcd, this replica', () => {
  test('defaults; TLS files resolved against the config file; the replica named', () => {
    const c = parseConfig(ETCD, '/etc/fc/config.yaml');
    expect(c.state).toEqual({
      backend: 'etcd', path: '/etc/fc/var/state.db',
      etcd: {
        endpoints: ['http://127.0.0.1:2379', 'https://192.0.2.2:2379'], prefix: '/failover/', lease_ttl_s: 5, call_timeout_ms: 2000,
        tls: { ca: '/etc/fc/tls/ca.pem', cert: '/etc/fc/tls/client.pem', key: '/etc/fc/tls/client-key.pem' },
      },
    });
    expect(c.cluster).toEqual({ name: 'r1', advertise_api: 'http://127.0.0.1:8080' });
    expect(parseConfig(GOOD, '/etc/fc/config.yaml').state).toEqual({ backend: 'sqlite', path: '/etc/fc/var/state.db' });
    expect(parseConfig(GOOD, '/etc/fc/config.yaml').cluster).toBeNull();
  });

  test.each([
    ['etcd without its settings and without cluster', `${GOOD}state:\n  backend: etcd\n`,
      ['/etc/fc/config.yaml:8: state.etcd: is required with backend etcd (endpoints, prefix, lease_ttl_s)', '/etc/fc/config.yaml:1: cluster: is required with state.backend etcd (name and advertise_api of this replica)']],
    ['cluster with the SQLite store', `${GOOD}cluster:\n  name: r1\n  advertise_api: "http://127.0.0.1:8080"\n`,
      ['/etc/fc/config.yaml:8: cluster: is only for replicas sharing state on etcd (state.backend: etcd)']],
    ['etcd settings with the SQLite store', ETCD.replace('backend: etcd', 'backend: sqlite').replace(/cluster:[\s\S]*$/, ''),
      ['/etc/fc/config.yaml:8: state.backend: is sqlite while state.etcd is set: say backend: etcd to use it, or remove state.etcd']],
    ['bad values', ETCD.replace('"https://192.0.2.2:2379"', '"192.0.2.2:2379"').replace('name: r1', 'name: R_1').replace('tls: {ca: tls/ca.pem, cert: tls/client.pem, key: tls/client-key.pem}', 'lease_ttl_s: 1\n    prefix: failover\n    tls: {ca: tls/ca.pem, cert: tls/client.pem}'),
      ['/etc/fc/config.yaml:10: state.etcd.endpoints[1]: "192.0.2.2:2379" is not an http(s) URL',
        '/etc/fc/config.yaml:12: state.etcd.prefix: "failover" must start and end with "/" (e.g. "/failover/")',
        '/etc/fc/config.yaml:11: state.etcd.lease_ttl_s: must be an integer from 2 to 60, not 1',
        '/etc/fc/config.yaml:13: state.etcd.tls: cert and key go together (both or neither)',
        '/etc/fc/config.yaml:15: cluster.name: "R_1" is not a replica name (lowercase letters, digits and "-", at most 63)']],
  ])('%s', (_n, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });
});

/**
 * Config section `routing` (the backend, its retry policy and one section per backend) and the
 * routing settings of each host (`servers[].routing`, `transits[].routing`): each backend reads
 * the host settings it needs (src/routing/config-rules.ts says which).
 */
import { z } from 'zod';
import { parsePrefix } from '../core/addresses.js';
import { argv, byName, envName, flag, httpUrl, int, ipAddress, nonEmptyList, oneOf, parsedBy, section, text, valid } from '../core/config-fields.js';
import type { HostRouting } from '../core/inventory.js';

export const BACKENDS = ['dry-run', 'linux-route', 'linux-address', 'http', 'bgp'] as const;
export type BackendName = (typeof BACKENDS)[number];

const ONE_PER_FAMILY = 'must be a list of IP addresses (one per family)';

/** The router's next hops towards a host, one per family (normalised addresses). */
export const nextHopsField = nonEmptyList(ipAddress(), ONE_PER_FAMILY, 2)
  .superRefine((hops, ctx) => {
    if (hops.length === 2 && hops[0].family === hops[1].family) {
      ctx.addIssue({ code: 'custom', path: [1], message: `a second IPv${hops[1].family} next hop (one per family)` });
    }
  })
  .transform((hops) => hops.map((a) => a.address));

/** A host's interface on the shared segment. */
export const deviceField = text().check(valid((v) => /^[A-Za-z0-9_.@-]{1,15}$/.test(v), (v) => `${JSON.stringify(v)} is not an interface name`));

/** The provider's main IP of a host. */
export const mainIpField = ipAddress().transform((a) => a.address);

/** The provider's IPv6 net of a host, its first address (`2001:db8:1::` or `2001:db8:1::/64`). */
export const ipv6NetField = parsedBy((text) => {
  const p = parsePrefix(text, { family: 6, defaultLength: { 4: 32, 6: 64 } });
  return typeof p === 'string' ? `${p} (an IPv6 net: 2001:db8:1:: or 2001:db8:1::/64)` : p;
}).transform((p) => p.address);

/** A host's own routing settings (servers[].routing, transits[].routing). */
export const hostRoutingShape = {
  next_hops: nextHopsField.optional(),
  exec: argv().optional(),
  device: deviceField.optional(),
  main_ip: mainIpField.optional(),
  ipv6_net: ipv6NetField.optional(),
};

export const hostRoutingSchema = section(hostRoutingShape).transform((r): HostRouting => {
  const out: HostRouting = { nextHops: r.next_hops, exec: r.exec, device: r.device, mainIp: r.main_ip, ipv6Net: r.ipv6_net };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
});

const retrySchema = section({
  /** Overall time for one routing step, retries included. */
  deadline_s: int(1, 86400).default(120),
  min_delay_ms: int(1, 600_000).default(200),
  max_delay_ms: int(1, 3_600_000).default(5000),
}).prefault({}).transform((r) => ({ deadlineMs: r.deadline_s * 1000, minDelayMs: r.min_delay_ms, maxDelayMs: r.max_delay_ms }));

/** routing.reconcile: how often the real routing state is read and compared with the desired one. */
const reconcileSchema = section({
  /** Time between passes (also run at start and on POST /v1/routing/reconcile); default reconcileIntervalMs(backend). */
  interval_s: int(1, 86400).optional(),
  /** repair: drift is repaired through the backend; report: logged, counted and alerted, nothing changed. */
  mode: oneOf(['repair', 'report'] as const).default('repair'),
  /** Upper bound of the wait before a failed repair of one address is tried again (doubling from one interval). */
  max_backoff_s: int(1, 86400).default(600),
}).prefault({}).transform((r) => ({ intervalMs: r.interval_s === undefined ? null : r.interval_s * 1000, mode: r.mode, maxBackoffMs: r.max_backoff_s * 1000 }));

/** The reconcile settings when the file gives none. */
export const RECONCILE_DEFAULTS = reconcileSchema.parse(undefined);

/**
 * The time between reconcile passes when the file gives none: 30 s, and 300 s with the http
 * backend, whose provider allows 100 GET requests an hour (a pass costs one).
 */
export function reconcileIntervalMs(backend: BackendName | null): number {
  return backend === 'http' ? 300_000 : 30_000;
}

/** routing.linux_route; the hosts' next hops and command prefixes come from config-rules. */
const linuxRouteSchema = section({
  /** Command prefix that runs `ip` on the router. */
  router: argv(),
  /** HOST: next hops, the older form of the hosts' own routing.next_hops. */
  next_hops: byName().optional(),
  /** HOST: command prefix, the older form of the hosts' own routing.exec. */
  hosts: byName().optional(),
  device: text().default('lo'),
  pin_connections: flag().default(false),
  drain_ms: int(0, 600_000).default(2000),
}).transform((l) => ({ router: l.router, device: l.device, pinConnections: l.pin_connections, drainMs: l.drain_ms }));

/** routing.linux_address; the hosts' exec and device come from config-rules. */
const linuxAddressSchema = section({
  /** HOST: {exec, device}, the older form of the hosts' own routing.exec and routing.device. */
  hosts: byName().optional(),
  prefix_length_v4: int(1, 32).default(32),
  prefix_length_v6: int(1, 128).default(128),
  announce_count: int(1, 20).default(3),
  announce_interval_ms: int(0, 5000).default(200),
}).transform((l) => ({
  prefixLengthV4: l.prefix_length_v4,
  prefixLengthV6: l.prefix_length_v6,
  announceCount: l.announce_count,
  announceIntervalMs: l.announce_interval_ms,
}));

/** The linux-address settings when the file gives none. */
export const LINUX_ADDRESS_DEFAULTS = linuxAddressSchema.parse({});

/** routing.linux_address.hosts.HOST, the older form. */
export const legacyAddressHostSchema = section({ exec: argv().optional(), device: deviceField.optional() });

/** routing.http; the hosts' main IPs and IPv6 nets come from config-rules. */
const httpSchema = section({
  base_url: httpUrl(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/),
  /** Names of the environment variables holding the basic-auth credentials (read at start). */
  username_env: envName().default('FAILOVER_HTTP_USERNAME'),
  password_env: envName().default('FAILOVER_HTTP_PASSWORD'),
  timeout_ms: int(100, 300_000).default(10_000),
  /** HOST: main IP, the older form of the hosts' own routing.main_ip. */
  server_ips: byName().optional(),
  /** HOST: IPv6 net, the older form of the hosts' own routing.ipv6_net. */
  server_ipv6_nets: byName().optional(),
}).transform((h) => ({ baseUrl: h.base_url.replace(/\/+$/, ''), usernameEnv: h.username_env, passwordEnv: h.password_env, timeoutMs: h.timeout_ms }));

/** routing.bgp: gobgpd's API and what every path carries; the hosts' next hops and command prefixes come from config-rules. */
const bgpSchema = section({
  /** gobgpd's gRPC API: HOST:PORT or unix:///PATH (plaintext; keep it on loopback). */
  api: text().check(valid((v) => /^(unix:\/\/\/\S+|[^\s/]+:\d{1,5})$/.test(v), (v) => `${JSON.stringify(v)} is not HOST:PORT or unix:///PATH`)),
  /** HOST: next hops, the older form of the hosts' own routing.next_hops. */
  next_hops: byName().optional(),
  /** Standard communities ASN:VALUE put on every path. */
  communities: z
    .array(text().check(valid((v) => /^(\d{1,5}):(\d{1,5})$/.test(v) && v.split(':').every((n) => Number(n) <= 65535), (v) => `${JSON.stringify(v)} is not a community ASN:VALUE (each 0-65535)`)), {
      error: 'must be a list of communities ASN:VALUE',
    })
    .optional(),
  /** HOST: command prefix, the older form of the hosts' own routing.exec (make-before-break). */
  hosts: byName().optional(),
  /** Command that reads the router's route for an address (appended): birdc -s SOCKET show route for. */
  verify: argv().optional(),
  verify_deadline_ms: int(100, 600_000).default(5000),
}).transform((b) => ({ api: b.api, communities: b.communities ?? [], verify: b.verify, verifyDeadlineMs: b.verify_deadline_ms }));

/** The backend's own section, required for the backends that cannot run without it. */
const REQUIRED_SECTION: Partial<Record<BackendName, 'linux_route' | 'http' | 'bgp'>> = { 'linux-route': 'linux_route', http: 'http', bgp: 'bgp' };

export const routingConfigSchema = section({
  backend: oneOf(BACKENDS),
  retry: retrySchema,
  reconcile: reconcileSchema,
  linux_route: linuxRouteSchema.optional(),
  linux_address: linuxAddressSchema.optional(),
  http: httpSchema.optional(),
  bgp: bgpSchema.optional(),
}).superRefine((r, ctx) => {
  const key = REQUIRED_SECTION[r.backend];
  if (key && r[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'is required' });
}, { when: (payload) => typeof payload.value === 'object' && payload.value !== null });

export type RoutingSection = z.output<typeof routingConfigSchema>;

/** The retry policy when the file has no routing section. */
export const RETRY_DEFAULTS = retrySchema.parse(undefined);

/**
 * The routing settings of each host, as the chosen backend needs them: read from the host's own
 * entry (servers[].routing) or from the backend section's map by host name (the older form,
 * still read); the same setting in both places is an error, and so is a required one in
 * neither. One host per next hop and per main IP; next hops for every family a host has. A map
 * may name hosts of the file that stored edits removed; any other name is an error. Pure.
 */
import type { z } from 'zod';
import type { IpAddress } from '../core/addresses.js';
import { argv, formatPath, isMapping, problemsOf, type ConfigPath, type FieldProblem } from '../core/config-fields.js';
import type { HostView } from '../core/inventory-rules.js';
import {
  BACKENDS, LINUX_ADDRESS_DEFAULTS, RECONCILE_DEFAULTS, RETRY_DEFAULTS, reconcileIntervalMs, ipv6NetField, legacyAddressHostSchema, mainIpField, nextHopsField,
  type BackendName, type RoutingSection,
} from './config-schema.js';

/** The hosts' settings each backend gets, by host name. */
export interface HostSettings {
  linuxRoute?: { nextHops: Record<string, string[]>; hosts?: Record<string, string[]> };
  bgp?: { nextHops: Record<string, string[]>; hosts?: Record<string, string[]> };
  linuxAddress?: { hosts: Record<string, { exec: string[]; device: string }> };
  http?: { serverIps: Record<string, string>; serverIpv6Nets: Record<string, string> };
}

/** routing.*: the backend and its settings, the hosts' included, and the retry policy around it. */
export interface RoutingConfig {
  readonly backend: BackendName | null;
  readonly retry: RoutingSection['retry'];
  readonly reconcile: Omit<RoutingSection['reconcile'], 'intervalMs'> & { readonly intervalMs: number };
  readonly linuxRoute?: NonNullable<RoutingSection['linux_route']> & NonNullable<HostSettings['linuxRoute']>;
  readonly linuxAddress?: NonNullable<RoutingSection['linux_address']> & NonNullable<HostSettings['linuxAddress']>;
  readonly http?: NonNullable<RoutingSection['http']> & NonNullable<HostSettings['http']>;
  readonly bgp?: NonNullable<RoutingSection['bgp']> & NonNullable<HostSettings['bgp']>;
}

/** The families of `addresses` that `hops` has no next hop for. */
function uncovered(addresses: readonly IpAddress[], hops: readonly string[]): (4 | 6)[] {
  const has = (fam: 4 | 6, list: readonly string[]) => list.some((a) => a.includes(':') === (fam === 6));
  return ([4, 6] as const).filter((fam) => addresses.some((a) => a.family === fam) && !has(fam, hops));
}

/**
 * Checks the hosts' routing settings against the routing section (`routing`, as given) and
 * collects them per backend. `knownNames`: the names a backend map may use; `fromEdit`: whether a
 * path comes from an inventory edit (its problems then point at the entry, not at a map).
 */
export function checkHostRouting(args: {
  routing: unknown;
  hosts: readonly HostView[];
  knownNames: readonly string[];
  fromEdit: (path: ConfigPath) => boolean;
}): { problems: FieldProblem[]; settings: HostSettings } {
  const { hosts, knownNames, fromEdit } = args;
  const problems: FieldProblem[] = [];
  const settings: HostSettings = {};
  const fail = (path: ConfigPath, message: string, after?: ConfigPath) => problems.push({ path, message, after });
  const familyCheck = (h: HostView, hops: readonly string[], path: ConfigPath, after?: ConfigPath) => {
    for (const fam of uncovered(h.addresses, hops)) fail(path, `${h.name} has IPv${fam} addresses but no IPv${fam} next hop`, after);
  };
  for (const h of hosts) if (h.routing?.nextHops) familyCheck(h, h.routing.nextHops, [...h.path, 'routing', 'next_hops']);

  if (args.routing === undefined) {
    if (hosts.length > 0) fail(['routing'], 'is required');
    return { problems, settings };
  }
  if (!isMapping(args.routing)) return { problems, settings };
  const r = args.routing;
  const backend = BACKENDS.includes(r.backend as BackendName) ? (r.backend as BackendName) : null;
  const present = new Map(hosts.map((h) => [h.name, h]));

  /** A value of a map, read with `schema`; its problems are listed after `after`. */
  const read = <T>(schema: z.ZodType<T>, path: ConfigPath, v: unknown, after: ConfigPath): T | undefined => {
    const res = schema.safeParse(v);
    if (!res.success) problems.push(...problemsOf(res.error, path).map((p) => ({ ...p, after })));
    return res.success ? res.data : undefined;
  };
  type Entry = [ConfigPath, unknown];
  /** A map by host name: only known names; entries of hosts not in the inventory are dropped. */
  const hostMap = (path: ConfigPath, v: unknown, after = path): Map<HostView, Entry> | undefined => {
    if (!isMapping(v)) return undefined; // not a mapping: the schema says so
    for (const k of Object.keys(v)) if (!knownNames.includes(k)) fail([...path, k], `unknown key (allowed: ${knownNames.join(', ')})`, after);
    return new Map(Object.entries(v).filter(([k]) => present.has(k)).map(([k, x]) => [present.get(k)!, [[...path, k], x]]));
  };
  /** One setting of a host, from its entry or from a map; both is an error. */
  const setting = <T>(h: HostView, own: T | undefined, ownKey: string, map: Map<HostView, Entry> | undefined, after: ConfigPath,
    readLegacy: (path: ConfigPath, v: unknown) => T | undefined): T | undefined => {
    const legacy = map?.get(h);
    if (own !== undefined && legacy) {
      fail(legacy[0], `${h.name}'s ${ownKey} is also set at ${formatPath([...h.path, 'routing', ownKey])}; keep one`, after);
      return own;
    }
    return own ?? (legacy ? readLegacy(legacy[0], legacy[1]) : undefined);
  };
  /** A required setting that no place gives: reported at the map when the file has one, else at the host. */
  const missing = (h: HostView, mapPath: ConfigPath, map: Map<HostView, unknown> | undefined, what: string, ownKey: string) => {
    if (h.given.has(ownKey) || map?.has(h)) return; // given, but not valid: reported there
    if (map && !fromEdit(h.path)) fail(mapPath, `no ${what} for ${h.name}`, mapPath);
    else fail(h.path, `no ${what} for ${h.name}: set ${ownKey} in its routing settings`, mapPath);
  };

  /** Next hops and command prefixes by host, for linux-route and bgp (their maps in `section`, the hosts' own settings). */
  const nextHopHosts = (key: 'linux_route' | 'bgp', section: Record<string, unknown>, required: boolean) => {
    const at: ConfigPath = ['routing', key, 'next_hops'];
    const nh = hostMap(at, section.next_hops);
    const nextHops: Record<string, string[]> = {};
    const hopOwner = new Map<string, string>();
    for (const h of hosts) {
      const hops = setting(h, h.routing?.nextHops, 'next_hops', nh, at, (path, v) => {
        const legacy = read(nextHopsField, path, v, at);
        if (legacy) familyCheck(h, legacy, path, at);
        return legacy;
      });
      // the router's next hop tells where an address is delivered: one host per next hop
      for (const hop of hops ?? []) {
        // gobgpd replaces an unspecified next hop with its own session address (blackhole, or dropped by the router)
        if (key === 'bgp' && (hop === '0.0.0.0' || hop === '::')) fail(nh?.get(h)?.[0] ?? [...h.path, 'routing', 'next_hops'], `${hop} is not a next hop (gobgpd would announce its own address instead)`, at);
        else if (hopOwner.has(hop)) fail(nh?.get(h)?.[0] ?? [...h.path, 'routing', 'next_hops'], `${hop} is already the next hop of ${hopOwner.get(hop)}`, at);
        else hopOwner.set(hop, h.name);
      }
      if (hops) nextHops[h.name] = [...hops];
      else if (required) missing(h, at, nh, 'next hop', 'next_hops');
    }
    const hostsAt: ConfigPath = ['routing', key, 'hosts'];
    const hm = hostMap(hostsAt, section.hosts);
    const prefixes: Record<string, string[]> = {};
    for (const h of hosts) {
      const exec = setting(h, h.routing?.exec, 'exec', hm, hostsAt, (path, v) => read(argv(), path, v, hostsAt));
      if (exec) prefixes[h.name] = [...exec];
    }
    const anyHosts = section.hosts !== undefined || Object.keys(prefixes).length > 0;
    return { nextHops, hosts: anyHosts ? prefixes : undefined };
  };
  if ((backend === 'linux-route' || r.linux_route !== undefined) && isMapping(r.linux_route)) {
    settings.linuxRoute = nextHopHosts('linux_route', r.linux_route, backend === 'linux-route');
  }
  if ((backend === 'bgp' || r.bgp !== undefined) && isMapping(r.bgp)) {
    settings.bgp = nextHopHosts('bgp', r.bgp, backend === 'bgp');
  }

  if (backend === 'linux-address' || r.linux_address !== undefined) {
    const la = isMapping(r.linux_address) ? r.linux_address : {};
    const at: ConfigPath = ['routing', 'linux_address', 'hosts'];
    const hm = hostMap(at, la.hosts);
    const out: Record<string, { exec: string[]; device: string }> = {};
    for (const h of hosts) {
      const legacy = hm?.get(h);
      let exec = h.routing?.exec;
      let device = h.routing?.device;
      if (legacy) {
        const [path, v] = legacy;
        const o = read(legacyAddressHostSchema, path, v, at);
        if (isMapping(v)) {
          for (const [k, own] of [['exec', exec], ['device', device]] as const) {
            if (own !== undefined && v[k] !== undefined) fail([...path, k], `${h.name}'s ${k} is also set at ${formatPath([...h.path, 'routing', k])}; keep one`, at);
          }
          exec ??= o?.exec;
          device ??= o?.device;
          if (v.exec === undefined && h.routing?.exec === undefined) fail([...path, 'exec'], 'is required', at);
          if (v.device === undefined && h.routing?.device === undefined) fail([...path, 'device'], 'is required', at);
        }
      } else if (backend === 'linux-address' && !(h.given.has('exec') && h.given.has('device'))) {
        if (hm !== undefined && !h.given.has('exec') && !h.given.has('device') && !fromEdit(h.path)) fail(at, `no settings for ${h.name}`, at);
        else fail(h.path, `no ${h.given.has('exec') ? 'device' : 'exec'} for ${h.name}: set exec and device in its routing settings`, at);
      }
      if (exec && device) out[h.name] = { exec: [...exec], device };
    }
    settings.linuxAddress = { hosts: out };
  }

  if ((backend === 'http' || r.http !== undefined) && isMapping(r.http)) {
    const at: ConfigPath = ['routing', 'http', 'server_ips'];
    const ips = hostMap(['routing', 'http', 'server_ips'], r.http.server_ips, at);
    const nets = hostMap(['routing', 'http', 'server_ipv6_nets'], r.http.server_ipv6_nets, at);
    const serverIps: Record<string, string> = {};
    const serverIpv6Nets: Record<string, string> = {};
    const mainOwner = new Map<string, string>();
    for (const h of hosts) {
      const ip = setting(h, h.routing?.mainIp, 'main_ip', ips, at, (path, v) => read(mainIpField, path, v, at));
      if (ip && mainOwner.has(ip)) fail(ips?.get(h)?.[0] ?? [...h.path, 'routing', 'main_ip'], `${ip} is already the main IP of ${mainOwner.get(ip)}`, at);
      else if (ip) mainOwner.set(ip, h.name);
      if (ip) serverIps[h.name] = ip;
      else if (backend === 'http') missing(h, at, ips, 'main IP', 'main_ip');
      const net = setting(h, h.routing?.ipv6Net, 'ipv6_net', nets, at, (path, v) => read(ipv6NetField, path, v, at));
      if (net) serverIpv6Nets[h.name] = net;
    }
    settings.http = { serverIps, serverIpv6Nets };
  }
  return { problems, settings };
}

/** The routing config: the section's settings with the hosts' (no section: no backend). */
export function routingConfig(section: RoutingSection | undefined, hosts: HostSettings): RoutingConfig {
  if (!section) return { backend: null, retry: RETRY_DEFAULTS, reconcile: { ...RECONCILE_DEFAULTS, intervalMs: reconcileIntervalMs(null) } };
  return {
    backend: section.backend,
    retry: section.retry,
    reconcile: { ...section.reconcile, intervalMs: section.reconcile.intervalMs ?? reconcileIntervalMs(section.backend) },
    ...(hosts.linuxRoute && section.linux_route ? { linuxRoute: { ...section.linux_route, ...hosts.linuxRoute } } : {}),
    ...(hosts.linuxAddress ? { linuxAddress: { ...(section.linux_address ?? LINUX_ADDRESS_DEFAULTS), ...hosts.linuxAddress } } : {}),
    ...(hosts.http && section.http ? { http: { ...section.http, ...hosts.http } } : {}),
    ...(hosts.bgp && section.bgp ? { bgp: { ...section.bgp, ...hosts.bgp } } : {}),
  };
}


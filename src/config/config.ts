/**
 * The configuration: one YAML file, validated as a whole at start. Every problem is reported
 * with its path, its line and the reason (`dns.listen[1]: "1.2.3.4" is not host:port`);
 * an invalid file starts nothing. The result is frozen.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';
import { parseAddress, parseEndpoint, parseHostPort, parsePrefix, type HostPort, type IpAddress } from '../core/addresses.js';
import { HOST_NAME, pairAddresses, profileOf, type Account, type Host, type HostRouting, type Server, type Transit } from '../core/inventory.js';
import { parseMoney } from '../core/money.js';
import { mxAuditSettings, type MxAuditSettings } from '../audit/audit-settings.js';
import { nameKey } from '../dns/name.js';

export { parseHostPort, type HostPort };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** The validated configuration. Paths are absolute. */
export interface Config {
  readonly file: string;
  /** The file's text, to validate inventory edits exactly as the file is, with its lines. */
  readonly text: string;
  /** The stored inventory edits applied over the file, oldest first. */
  readonly edits: readonly InventoryEdit[];
  /** The configuration as plain data (the file's, with the edits applied). */
  readonly raw: Readonly<Record<string, unknown>>;
  readonly dns: {
    readonly listen: readonly HostPort[];
    readonly zones: string;
    readonly tcpIdleTimeoutMs: number;
    readonly tcpMaxConnections: number;
    readonly cacheEntries: number;
    /** Most bytes read for one zone: its master file and every file it includes, together. */
    readonly maxZoneFileBytes: number;
  };
  readonly api: {
    readonly listen: HostPort;
    readonly tokenEnv: string;
    /** Where a generated token is written when the env var is unset. */
    readonly tokenFile: string;
  };
  readonly log: { readonly level: LogLevel };
  readonly servers: readonly Server[];
  readonly transits: readonly Transit[];
  readonly accounts: readonly Account[];
  /** billing.*: the transit's free period and the currency of monthly prices. */
  readonly billing: { readonly freeDays: number; readonly currency: string };
  /** dns.ttl_margin_s: extra time before a scheduled reinstall when TTLs are lowered. */
  readonly ttlMarginS: number;
  /** Cap on the TTL of records rewritten by a cutover overlay. */
  readonly cutoverTtl: number;
  readonly state: { readonly path: string };
  readonly routing: RoutingConfig;
  readonly health: HealthConfig;
  /** mx_audit.*: the provider's rules for the MX audit (defaults: the provider's real values). */
  readonly mxAudit: MxAuditSettings;
}

/** health.*: how downtime is measured during operations (probe null: not measured). */
export interface HealthConfig {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly recoveryProbes: number;
  readonly overlayMaxDays: number;
  readonly probe: ProbeConfig | null;
}

export type ProbeConfig =
  | { readonly type: 'http'; readonly port: number; readonly path: string; readonly host?: string; readonly identityHeader?: string; readonly bodyPattern?: string }
  | { readonly type: 'tcp'; readonly port: number }
  | { readonly type: 'icmp' };

export type BackendName = 'dry-run' | 'linux-route' | 'linux-address' | 'http';

/** routing.*: the backend and its settings, and the retry policy around it. */
export interface RoutingConfig {
  readonly backend: BackendName | null;
  readonly retry: { readonly deadlineMs: number; readonly minDelayMs: number; readonly maxDelayMs: number };
  readonly linuxRoute?: {
    readonly router: readonly string[];
    readonly nextHops: Readonly<Record<string, readonly string[]>>;
    readonly hosts?: Readonly<Record<string, readonly string[]>>;
    readonly device: string;
    readonly pinConnections: boolean;
    readonly drainMs: number;
  };
  readonly linuxAddress?: {
    readonly hosts: Readonly<Record<string, { readonly exec: readonly string[]; readonly device: string }>>;
    readonly prefixLengthV4: number;
    readonly prefixLengthV6: number;
    readonly announceCount: number;
    readonly announceIntervalMs: number;
  };
  readonly http?: {
    readonly baseUrl: string;
    readonly usernameEnv: string;
    readonly passwordEnv: string;
    readonly timeoutMs: number;
    readonly serverIps: Readonly<Record<string, string>>;
    readonly serverIpv6Nets: Readonly<Record<string, string>>;
  };
}

/**
 * One problem: `path: message`, with the line of the file when it comes from the file, or the
 * stored inventory edit it comes from (`source`).
 */
export interface ConfigProblem {
  path: string;
  message: string;
  line?: number;
  source?: string;
}

/** An invalid configuration; `problems` lists every problem found. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly file: string, readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${p.source ? p.source + ': ' : ''}${p.path ? p.path + ': ' : ''}${p.message}`).join('\n'));
  }
}

type Json = unknown;

/** Where a value comes from: a line of the file, or a stored edit. */
interface Origin {
  line?: number;
  source?: string;
}
type Locate = (path: Path) => Origin;

/** Lines of a parsed YAML document by path (a path the file lacks gets its parent's line). */
function docLocator(doc: Document, lines: LineCounter): Locate {
  const line = (path: Path): number | undefined => {
    const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (!range) return path.length > 0 ? line(path.slice(0, -1)) : undefined;
    return lines.linePos(range[0]).line;
  };
  return (path) => ({ line: line(path) });
}

/** Validation context: collects problems with their origin. */
class Checker {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly locate: Locate) {}

  fail(path: (string | number)[], message: string): void {
    this.problems.push({ path: fmtPath(path), message, ...this.locate(path) });
  }

  /** Whether the value at `path` comes from an inventory edit rather than the file. */
  fromEdit(path: Path): boolean {
    return this.locate(path).source !== undefined;
  }

  /** An object with only the given keys; unknown keys are problems. */
  object(path: (string | number)[], v: Json, keys: string[], required = true): Record<string, Json> | undefined {
    if (v === undefined || v === null) {
      if (required) this.fail(path, 'is required');
      return undefined;
    }
    if (typeof v !== 'object' || Array.isArray(v)) {
      this.fail(path, `must be a mapping, not ${describe(v)}`);
      return undefined;
    }
    for (const k of Object.keys(v)) {
      if (!keys.includes(k)) this.fail([...path, k], `unknown key (allowed: ${keys.join(', ')})`);
    }
    return v as Record<string, Json>;
  }

  string(path: (string | number)[], v: Json, dflt?: string): string | undefined {
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(path, 'is required');
      return dflt;
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.fail(path, `must be a non-empty string, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  integer(path: (string | number)[], v: Json, dflt: number, min: number, max: number): number {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(path, `must be an integer from ${min} to ${max}, not ${describe(v)}`);
      return dflt;
    }
    return v;
  }

  hostPort(path: (string | number)[], v: Json): HostPort | undefined {
    if (typeof v !== 'string') {
      this.fail(path, `must be a "host:port" string, not ${describe(v)}`);
      return undefined;
    }
    const hp = parseHostPort(v);
    if (typeof hp === 'string') {
      this.fail(path, hp);
      return undefined;
    }
    return hp;
  }
}

function fmtPath(path: (string | number)[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${p}` : p;
  return s;
}

function describe(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** Validates a configuration text. `file` locates relative paths and names the file in messages. */
export function parseConfig(text: string, file: string): Config {
  const { root, locate } = readYaml(text, file);
  return validate({ root, locate, file, text, edits: [], seedNames: hostNames(root) });
}

/** The file's data and a locator of its lines. Throws ConfigError on YAML errors. */
function readYaml(text: string, file: string): { root: Record<string, Json>; locate: Locate } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({
      path: '', message: `YAML: ${e.message.split('\n')[0]}`, line: e.linePos?.[0]?.line,
    })));
  }
  if (doc.contents !== null && !isMap(doc.contents)) {
    throw new ConfigError(file, [{ path: '', message: 'the top level must be a mapping', line: 1 }]);
  }
  return { root: (doc.toJS() ?? {}) as Record<string, Json>, locate: docLocator(doc, lines) };
}

/** Names of the servers and transits listed in a config's data. */
function hostNames(root: Record<string, Json>): Set<string> {
  const out = new Set<string>();
  for (const k of ['servers', 'transits']) {
    if (!Array.isArray(root[k])) continue;
    for (const h of root[k] as Json[]) if (h && typeof h === 'object' && typeof (h as { name?: unknown }).name === 'string') out.add((h as { name: string }).name);
  }
  return out;
}

/** Validates config data: the file's, or the file's with stored inventory edits applied. */
function validate(args: { root: Record<string, Json>; locate: Locate; file: string; text: string; edits: InventoryEdit[]; seedNames: Set<string> }): Config {
  const { root, file } = args;
  const c = new Checker(args.locate);
  const base = dirname(resolve(file));
  const top = c.object([], root, ['dns', 'api', 'log', 'servers', 'transits', 'accounts', 'billing', 'state', 'routing', 'health', 'mx_audit'])!;

  const dns = c.object(['dns'], top.dns, ['listen', 'zones', 'tcp_idle_timeout_ms', 'tcp_max_connections', 'cache_entries', 'cutover_ttl', 'ttl_margin_s', 'max_zone_file_bytes']);
  const cutoverTtl = c.integer(['dns', 'cutover_ttl'], dns?.cutover_ttl, 60, 0, 86400);
  const ttlMarginS = c.integer(['dns', 'ttl_margin_s'], dns?.ttl_margin_s, 300, 0, 86400);
  const listen: HostPort[] = [];
  if (dns) {
    const l = dns.listen;
    if (!Array.isArray(l) || l.length === 0) {
      c.fail(['dns', 'listen'], l === undefined ? 'is required (a list of "host:port")' : 'must be a non-empty list of "host:port"');
    } else {
      const seen = new Map<string, number>();
      l.forEach((v, i) => {
        const hp = c.hostPort(['dns', 'listen', i], v);
        if (!hp) return;
        const k = `${hp.host}|${hp.port}`;
        if (seen.has(k)) c.fail(['dns', 'listen', i], `${JSON.stringify(v)} is already listed at dns.listen[${seen.get(k)}]`);
        seen.set(k, i);
        listen.push(hp);
      });
    }
  }
  const zones = dns ? c.string(['dns', 'zones'], dns.zones) : undefined;
  const tcpIdle = c.integer(['dns', 'tcp_idle_timeout_ms'], dns?.tcp_idle_timeout_ms, 10_000, 100, 600_000);
  const tcpMax = c.integer(['dns', 'tcp_max_connections'], dns?.tcp_max_connections, 1000, 1, 100_000);
  const cacheEntries = c.integer(['dns', 'cache_entries'], dns?.cache_entries, 200_000, 1000, 10_000_000);
  // default: DEFAULT_MAX_ZONE_FILE_BYTES (src/dns/zone/zone-file.ts); at most V8's longest string, 2^29 - 24
  const maxZoneFileBytes = c.integer(['dns', 'max_zone_file_bytes'], dns?.max_zone_file_bytes, 64 * 1024 * 1024, 1, 2 ** 29 - 24);

  const api = c.object(['api'], top.api, ['listen', 'token_env', 'token_file']);
  let apiListen: HostPort | undefined;
  if (api) {
    if (api.listen === undefined) c.fail(['api', 'listen'], 'is required');
    else apiListen = c.hostPort(['api', 'listen'], api.listen);
  }
  const tokenEnv = api ? c.string(['api', 'token_env'], api.token_env, 'FAILOVER_API_TOKEN') : undefined;
  if (tokenEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(tokenEnv)) c.fail(['api', 'token_env'], `${JSON.stringify(tokenEnv)} is not an environment variable name`);
  const tokenFile = api ? c.string(['api', 'token_file'], api.token_file, 'api-token') : undefined;

  const log = c.object(['log'], top.log, ['level'], false);
  let level: LogLevel = 'info';
  if (log?.level !== undefined) {
    if (LOG_LEVELS.includes(log.level as LogLevel)) level = log.level as LogLevel;
    else c.fail(['log', 'level'], `must be one of ${LOG_LEVELS.join(', ')}, not ${describe(log.level)}`);
  }

  const inv = checkInventory(c, top);
  const accounts = checkAccounts(c, top.accounts, inv.servers);
  const b = c.object(['billing'], top.billing, ['free_days', 'currency'], false);
  const billing = {
    freeDays: c.integer(['billing', 'free_days'], b?.free_days, 14, 0, 3650),
    currency: c.string(['billing', 'currency'], b?.currency, 'EUR') ?? 'EUR',
  };
  if (!/^[A-Z]{3}$/.test(billing.currency)) c.fail(['billing', 'currency'], `${JSON.stringify(billing.currency)} is not an ISO 4217 currency code`);
  const st = c.object(['state'], top.state, ['path'], false);
  const statePath = c.string(['state', 'path'], st?.path, './var/state.db');
  const routing = checkRouting(c, top.routing, inv.hosts, new Set([...args.seedNames, ...inv.hosts.map((h) => h.name)]));
  const health = checkHealth(c, top.health);
  const mxAudit = checkMxAudit(c, top.mx_audit);

  if (c.problems.length > 0) throw new ConfigError(file, c.problems);
  return deepFreeze({
    file: resolve(file),
    text: args.text,
    edits: args.edits.map((e) => ({ ...e })),
    raw: structuredClone(root),
    dns: { listen, zones: resolve(base, zones!), tcpIdleTimeoutMs: tcpIdle, tcpMaxConnections: tcpMax, cacheEntries, maxZoneFileBytes },
    api: { listen: apiListen!, tokenEnv: tokenEnv!, tokenFile: resolve(base, tokenFile!) },
    log: { level },
    servers: inv.servers,
    transits: inv.transits,
    accounts,
    billing,
    ttlMarginS,
    cutoverTtl,
    state: { path: resolve(base, statePath!) },
    routing,
    health,
    mxAudit,
  });
}

type Path = (string | number)[];

/** servers and transits: names, addresses (normalised), no address claimed twice, pairs that work. */
function checkInventory(c: Checker, top: Record<string, Json>): { servers: Server[]; transits: Transit[]; hosts: CheckedHost[] } {
  const owner = new Map<string, string>(); // address -> "servers[0].addresses[1] (srv-42)"
  const names = new Map<string, string>();
  const hosts = (key: 'servers' | 'transits'): (Server & CheckedHost)[] => {
    const list = top[key];
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) {
      c.fail([key], 'must be a list');
      return [];
    }
    const out: (Server & CheckedHost)[] = [];
    list.forEach((raw, i) => {
      const path: Path = [key, i];
      const h = c.object(path, raw, [...INVENTORY_KEYS[key]]);
      if (!h) return;
      const name = c.string([...path, 'name'], h.name);
      if (name !== undefined) {
        if (!HOST_NAME.test(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} is not a valid name (lower-case letters, digits and hyphens, at most 63)`);
        else if (names.has(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} is already used by ${names.get(name)}`);
        else names.set(name, fmtPath(path));
      }
      const addresses: IpAddress[] = [];
      if (!Array.isArray(h.addresses) || h.addresses.length === 0) {
        c.fail([...path, 'addresses'], 'must be a non-empty list of IP addresses');
      } else {
        h.addresses.forEach((a, j) => {
          const ap: Path = [...path, 'addresses', j];
          const parsed = parseAddress(typeof a === 'string' ? a : String(a));
          if (typeof parsed === 'string') {
            c.fail(ap, parsed);
            return;
          }
          const other = owner.get(parsed.address);
          if (other) c.fail(ap, `${parsed.address} is already listed at ${other}`);
          else owner.set(parsed.address, `${fmtPath(ap)} (${name ?? '?'})`);
          addresses.push(parsed);
        });
      }
      let pairs: Record<string, Record<string, string>> | undefined;
      if (h.pairs !== undefined) {
        const p = c.object([...path, 'pairs'], h.pairs, Object.keys((h.pairs as object) ?? {}));
        if (p) {
          pairs = {};
          for (const [transit, m] of Object.entries(p)) {
            const mp = c.object([...path, 'pairs', transit], m, Object.keys((m as object) ?? {}));
            if (!mp) continue;
            pairs[transit] = {};
            for (const [from, to] of Object.entries(mp)) {
              const f = parseAddress(from);
              const t = parseAddress(String(to));
              if (typeof f === 'string') c.fail([...path, 'pairs', transit, from], f);
              else if (typeof t === 'string') c.fail([...path, 'pairs', transit, from], t);
              else pairs[transit][f.address] = t.address;
            }
          }
        }
      }
      let profile: string | undefined;
      if (h.profile !== undefined) {
        profile = c.string([...path, 'profile'], h.profile);
        if (profile !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(profile)) c.fail([...path, 'profile'], `${JSON.stringify(profile)} is not a profile name (letters, digits, . _ -)`);
      }
      let monthlyPrice: string | undefined;
      if (h.monthly_price !== undefined) {
        const m = parseMoney(typeof h.monthly_price === 'string' ? h.monthly_price : String(h.monthly_price));
        if (typeof m === 'string') c.fail([...path, 'monthly_price'], `${m} (write it as a quoted decimal, e.g. "29.99")`);
        else if (typeof h.monthly_price !== 'string') c.fail([...path, 'monthly_price'], `must be a quoted decimal string (e.g. "29.99"), not the number ${h.monthly_price}`);
        else monthlyPrice = h.monthly_price;
      }
      const routing = h.routing === undefined ? undefined : checkHostRouting(c, [...path, 'routing'], h.routing, name ?? `?${i}`, addresses);
      const given = new Set(h.routing && typeof h.routing === 'object' ? Object.keys(h.routing) : []);
      out.push({ name: name ?? `?${i}`, addresses, pairs, path, profile, monthlyPrice, routing, given });
    });
    return out;
  };
  const servers = hosts('servers');
  const transits = hosts('transits');
  for (const s of servers) {
    for (const t of transits) {
      if (profileOf(s) !== profileOf(t)) continue; // a transit only stands in for its own profile
      const r = pairAddresses(s, t);
      if (typeof r === 'string') c.fail([...s.path, s.pairs?.[t.name] ? 'pairs' : 'addresses'], `${r} (${fmtPath(t.path)})`);
    }
    for (const transit of Object.keys(s.pairs ?? {})) {
      if (!transits.some((t) => t.name === transit)) c.fail([...s.path, 'pairs', transit], `no transit named ${JSON.stringify(transit)}`);
    }
  }
  const strip = ({ path: _p, given: _g, ...h }: Server & CheckedHost) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as unknown as Server;
  return {
    servers: servers.map(strip),
    transits: transits.map((t) => strip({ name: t.name, addresses: t.addresses, profile: t.profile, routing: t.routing, path: t.path, given: t.given })),
    hosts: [...servers, ...transits],
  };
}

/** A server or transit as validated, with where it is in the data and the routing keys its entry gives. */
type CheckedHost = Host & { path: Path; given?: Set<string> };

/** The keys of each inventory entry (the file's form and the API's). */
export const INVENTORY_KEYS: Readonly<Record<InventoryKind, readonly string[]>> = {
  servers: ['name', 'addresses', 'pairs', 'profile', 'monthly_price', 'routing'],
  transits: ['name', 'addresses', 'profile', 'routing'],
  accounts: ['name', 'server', 'zones', 'probe'],
};

/** The keys of a host's `routing` settings; each backend reads the ones it needs. */
const HOST_ROUTING_KEYS = ['next_hops', 'exec', 'device', 'main_ip', 'ipv6_net'];

/** Validates a host's own routing settings (servers[].routing, transits[].routing). */
function checkHostRouting(c: Checker, path: Path, raw: Json, name: string, addresses: IpAddress[]): HostRouting | undefined {
  const r = c.object(path, raw, HOST_ROUTING_KEYS);
  if (!r) return undefined;
  const out: HostRouting = {};
  if (r.next_hops !== undefined) out.nextHops = checkNextHops(c, [...path, 'next_hops'], r.next_hops, name, addresses);
  if (r.exec !== undefined) out.exec = checkArgv(c, [...path, 'exec'], r.exec);
  if (r.device !== undefined) out.device = checkDevice(c, [...path, 'device'], r.device);
  if (r.main_ip !== undefined) out.mainIp = checkMainIp(c, [...path, 'main_ip'], r.main_ip);
  if (r.ipv6_net !== undefined) out.ipv6Net = checkIpv6Net(c, [...path, 'ipv6_net'], r.ipv6_net);
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** Next hops of a host: one per family, one for every family the host has. */
function checkNextHops(c: Checker, path: Path, v: Json, name: string, addresses: readonly IpAddress[]): string[] | undefined {
  if (!Array.isArray(v) || v.length === 0 || v.length > 2) {
    c.fail(path, 'must be a list of IP addresses (one per family)');
    return undefined;
  }
  const ok: IpAddress[] = [];
  v.forEach((x, i) => {
    const a = parseAddress(typeof x === 'string' ? x : String(x));
    if (typeof a === 'string') c.fail([...path, i], a);
    else if (ok.some((o) => o.family === a.family)) c.fail([...path, i], `a second IPv${a.family} next hop (one per family)`);
    else ok.push(a);
  });
  if (ok.length !== v.length) return undefined;
  for (const fam of [4, 6] as const) {
    if (addresses.some((a) => a.family === fam) && !ok.some((a) => a.family === fam)) {
      c.fail(path, `${name} has IPv${fam} addresses but no IPv${fam} next hop`);
    }
  }
  return ok.map((a) => a.address);
}

/** A command and its arguments, run without a shell. */
function checkArgv(c: Checker, path: Path, v: Json): string[] | undefined {
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'string' || x.length === 0)) {
    c.fail(path, 'must be a non-empty list of strings (a command and its arguments, no shell)');
    return undefined;
  }
  return v as string[];
}

function checkDevice(c: Checker, path: Path, v: Json): string | undefined {
  const device = c.string(path, v);
  if (device !== undefined && !/^[A-Za-z0-9_.@-]{1,15}$/.test(device)) {
    c.fail(path, `${JSON.stringify(device)} is not an interface name`);
    return undefined;
  }
  return device;
}

function checkMainIp(c: Checker, path: Path, v: Json): string | undefined {
  const a = parseAddress(typeof v === 'string' ? v : String(v));
  if (typeof a === 'string') {
    c.fail(path, a);
    return undefined;
  }
  return a.address;
}

/** An IPv6 net as the provider names it: its address, with or without its length (`2001:db8:1::/64`). */
function checkIpv6Net(c: Checker, path: Path, v: Json): string | undefined {
  const p = parsePrefix(typeof v === 'string' ? v : String(v), { family: 6, defaultLength: { 4: 32, 6: 64 } });
  if (typeof p === 'string') {
    c.fail(path, `${p} (an IPv6 net: 2001:db8:1:: or 2001:db8:1::/64)`);
    return undefined;
  }
  return p.address;
}

/** accounts: names, home servers that exist, zones owned by one account each. */
function checkAccounts(c: Checker, raw: Json, servers: Server[]): Account[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    c.fail(['accounts'], 'must be a list');
    return [];
  }
  const names = new Map<string, number>();
  const zoneOwner = new Map<string, string>();
  const out: Account[] = [];
  raw.forEach((r, i) => {
    const path: Path = ['accounts', i];
    const a = c.object(path, r, ['name', 'server', 'zones', 'probe']);
    if (!a) return;
    const name = c.string([...path, 'name'], a.name);
    if (name !== undefined) {
      if (!HOST_NAME.test(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} is not a valid name (lower-case letters, digits and hyphens)`);
      else if (names.has(name)) c.fail([...path, 'name'], `${JSON.stringify(name)} is already accounts[${names.get(name)}]`);
      else names.set(name, i);
    }
    const server = c.string([...path, 'server'], a.server);
    if (server !== undefined && !servers.some((s) => s.name === server)) c.fail([...path, 'server'], `no server named ${JSON.stringify(server)}`);
    const zones: string[] = [];
    if (!Array.isArray(a.zones) || a.zones.length === 0) c.fail([...path, 'zones'], 'must be a non-empty list of zone names');
    else {
      a.zones.forEach((z, j) => {
        try {
          if (typeof z !== 'string') throw new Error('not a string');
          const k = nameKey(z.endsWith('.') ? z : z + '.');
          const other = zoneOwner.get(k);
          if (other) c.fail([...path, 'zones', j], `${z} already belongs to account ${other}`);
          else zoneOwner.set(k, name ?? '?');
          zones.push(k);
        } catch (err) {
          c.fail([...path, 'zones', j], `${JSON.stringify(z)} is not a zone name: ${(err as Error).message}`);
        }
      });
    }
    let probe: Account['probe'];
    if (a.probe !== undefined) {
      const pr = c.object([...path, 'probe'], a.probe, ['url', 'identity_header']);
      const url = pr ? c.string([...path, 'probe', 'url'], pr.url) : undefined;
      if (url !== undefined && !/^https?:\/\/[^\s]+$/.test(url)) c.fail([...path, 'probe', 'url'], `${JSON.stringify(url)} is not an http(s) URL`);
      const ih = pr?.identity_header === undefined ? undefined : c.string([...path, 'probe', 'identity_header'], pr.identity_header);
      if (url) probe = { url, identityHeader: ih?.toLowerCase() };
    }
    if (name && server) out.push({ name, server, zones, probe });
  });
  return out;
}

/** health: probe cadence, timeouts, the prober and its settings. */
function checkHealth(c: Checker, raw: Json): HealthConfig {
  const h = c.object(['health'], raw, ['interval_ms', 'timeout_ms', 'deadline_s', 'recovery_probes', 'overlay_max_days', 'probe'], false);
  const intervalMs = c.integer(['health', 'interval_ms'], h?.interval_ms, 20, 10, 60_000);
  const timeoutMs = c.integer(['health', 'timeout_ms'], h?.timeout_ms, 200, 1, 60_000);
  const deadlineMs = c.integer(['health', 'deadline_s'], h?.deadline_s, 600, 1, 86_400) * 1000;
  const recoveryProbes = c.integer(['health', 'recovery_probes'], h?.recovery_probes, 3, 1, 1000);
  const overlayMaxDays = c.integer(['health', 'overlay_max_days'], h?.overlay_max_days, 14, 1, 3650);
  let probe: ProbeConfig | null = null;
  const p = c.object(['health', 'probe'], h?.probe, ['type', 'port', 'path', 'host', 'identity_header', 'body_pattern'], false);
  if (p) {
    const path: Path = ['health', 'probe'];
    const port = () => {
      if (p.port === undefined) {
        c.fail([...path, 'port'], 'is required');
        return 0;
      }
      return c.integer([...path, 'port'], p.port, 0, 1, 65535);
    };
    const only = (keys: string[]) => {
      for (const k of Object.keys(p)) if (!keys.includes(k)) c.fail([...path, k], `is not a setting of a ${String(p.type)} probe`);
    };
    switch (p.type) {
      case 'http': {
        const pth = c.string([...path, 'path'], p.path, '/')!;
        if (!pth.startsWith('/')) c.fail([...path, 'path'], `${JSON.stringify(pth)} must start with "/"`);
        const host = p.host === undefined ? undefined : c.string([...path, 'host'], p.host);
        const identityHeader = p.identity_header === undefined ? undefined : c.string([...path, 'identity_header'], p.identity_header);
        const bodyPattern = p.body_pattern === undefined ? undefined : c.string([...path, 'body_pattern'], p.body_pattern);
        if (bodyPattern !== undefined) {
          try {
            new RegExp(bodyPattern);
          } catch (err) {
            c.fail([...path, 'body_pattern'], `is not a regular expression: ${(err as Error).message}`);
          }
        }
        if (identityHeader === undefined && bodyPattern === undefined) {
          c.fail(path, 'an http probe needs identity_header or body_pattern, to tell the origin from the transit');
        }
        probe = { type: 'http', port: port(), path: pth, host, identityHeader: identityHeader?.toLowerCase(), bodyPattern };
        break;
      }
      case 'tcp':
        only(['type', 'port']);
        probe = { type: 'tcp', port: port() };
        break;
      case 'icmp':
        only(['type']);
        probe = { type: 'icmp' };
        break;
      default:
        c.fail([...path, 'type'], `must be one of http, tcp, icmp, not ${describe(p.type)}`);
    }
  }
  if (timeoutMs > deadlineMs) c.fail(['health', 'timeout_ms'], 'must not exceed deadline_s');
  return { intervalMs, timeoutMs, deadlineMs, recoveryProbes, overlayMaxDays, probe };
}

/** mx_audit: resolver, timeouts and the provider's MX rules. */
function checkMxAudit(c: Checker, raw: Json): MxAuditSettings {
  const p: Path = ['mx_audit'];
  const m = c.object(p, raw, ['resolver', 'timeout_ms', 'retries', 'provider_nameservers', 'required_mx', 'forbidden_mx', 'spf_include', 'concurrency', 'authoritative_port', 'check_authoritative'], false);
  const d = mxAuditSettings();
  if (!m) return d;
  const host = (path: Path, v: Json): string | undefined => {
    if (typeof v !== 'string' || v.length === 0) {
      c.fail(path, `must be a host name, not ${describe(v)}`);
      return undefined;
    }
    try {
      const k = nameKey(v.endsWith('.') ? v : v + '.');
      if (k === '.') throw new Error('the root is not a host');
      return k.slice(0, -1);
    } catch (err) {
      c.fail(path, `${JSON.stringify(v)} is not a host name: ${(err as Error).message}`);
      return undefined;
    }
  };
  const names = (path: Path, v: Json, dflt: string[], pattern = false): string[] => {
    if (v === undefined) return dflt;
    if (!Array.isArray(v) || v.length === 0) {
      c.fail(path, 'must be a non-empty list of host names');
      return dflt;
    }
    return v.flatMap((x, i) => {
      if (pattern && typeof x === 'string' && x.startsWith('*.')) {
        const h = host([...path, i], x.slice(2));
        return h ? ['*.' + h] : [];
      }
      const h = host([...path, i], x);
      return h ? [h] : [];
    });
  };
  let resolver = d.resolver;
  if (m.resolver !== undefined) {
    if (typeof m.resolver !== 'string') c.fail([...p, 'resolver'], `must be "IP:PORT", not ${describe(m.resolver)}`);
    else {
      const hp = parseEndpoint(m.resolver, 53);
      if (typeof hp === 'string') c.fail([...p, 'resolver'], hp);
      else resolver = m.resolver;
    }
  }
  let required = d.required_mx;
  if (m.required_mx !== undefined) {
    if (!Array.isArray(m.required_mx) || m.required_mx.length === 0) c.fail([...p, 'required_mx'], 'must be a non-empty list of {priority, host}');
    else {
      required = [];
      m.required_mx.forEach((x, i) => {
        const o = c.object([...p, 'required_mx', i], x, ['priority', 'host']);
        if (!o) return;
        if (o.priority === undefined) c.fail([...p, 'required_mx', i, 'priority'], 'is required');
        const priority = c.integer([...p, 'required_mx', i, 'priority'], o.priority, 0, 0, 65535);
        const h = host([...p, 'required_mx', i, 'host'], o.host);
        if (h) required.push({ priority, host: h });
      });
    }
  }
  let spf = d.spf_include;
  if (m.spf_include !== undefined) spf = host([...p, 'spf_include'], m.spf_include) ?? spf;
  let checkAuth = d.check_authoritative;
  if (m.check_authoritative !== undefined) {
    if (typeof m.check_authoritative !== 'boolean') c.fail([...p, 'check_authoritative'], `must be true or false, not ${describe(m.check_authoritative)}`);
    else checkAuth = m.check_authoritative;
  }
  return mxAuditSettings({
    resolver,
    timeout_ms: c.integer([...p, 'timeout_ms'], m.timeout_ms, d.timeout_ms, 10, 60_000),
    retries: c.integer([...p, 'retries'], m.retries, d.retries, 0, 10),
    provider_nameservers: names([...p, 'provider_nameservers'], m.provider_nameservers, d.provider_nameservers),
    required_mx: required,
    forbidden_mx: names([...p, 'forbidden_mx'], m.forbidden_mx, d.forbidden_mx, true),
    spf_include: spf,
    concurrency: c.integer([...p, 'concurrency'], m.concurrency, d.concurrency, 1, 4096),
    authoritative_port: c.integer([...p, 'authoritative_port'], m.authoritative_port, d.authoritative_port, 1, 65535),
    check_authoritative: checkAuth,
  });
}

const BACKENDS: BackendName[] = ['dry-run', 'linux-route', 'linux-address', 'http'];
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * routing: backend, retry policy and the chosen backend's settings. A host's settings come from
 * its own entry (servers[].routing) or from the backend section's map by host name (the older
 * form, still read); the same setting in both places is an error. A map may name hosts of the
 * file that stored edits removed (`knownNames`); any other name is an error.
 */
function checkRouting(c: Checker, raw: Json, hosts: CheckedHost[], knownNames: Set<string>): RoutingConfig {
  const r = c.object(['routing'], raw, ['backend', 'retry', 'linux_route', 'linux_address', 'http'], hosts.length > 0);
  let backend: BackendName | null = null;
  if (r) {
    if (r.backend === undefined) c.fail(['routing', 'backend'], `is required (one of ${BACKENDS.join(', ')})`);
    else if (!BACKENDS.includes(r.backend as BackendName)) c.fail(['routing', 'backend'], `must be one of ${BACKENDS.join(', ')}, not ${describe(r.backend)}`);
    else backend = r.backend as BackendName;
  }
  const rt = c.object(['routing', 'retry'], r?.retry, ['deadline_s', 'min_delay_ms', 'max_delay_ms'], false);
  const retry = {
    deadlineMs: c.integer(['routing', 'retry', 'deadline_s'], rt?.deadline_s, 120, 1, 86400) * 1000,
    minDelayMs: c.integer(['routing', 'retry', 'min_delay_ms'], rt?.min_delay_ms, 200, 1, 600_000),
    maxDelayMs: c.integer(['routing', 'retry', 'max_delay_ms'], rt?.max_delay_ms, 5000, 1, 3_600_000),
  };
  const allowed = [...knownNames];
  const present = new Map(hosts.map((h) => [h.name, h]));
  /** A map by host name: only known names; entries of hosts not in the inventory are dropped. */
  const hostMap = (path: Path, v: Json): Map<CheckedHost, [Path, Json]> | undefined => {
    const m = c.object(path, v, allowed, false);
    if (!m) return undefined;
    return new Map(Object.entries(m).filter(([k]) => present.has(k)).map(([k, x]) => [present.get(k)!, [[...path, k], x]]));
  };
  /** One setting of a host, from its entry or from a map; both is an error. */
  const setting = <T>(h: CheckedHost, own: T | undefined, ownKey: string, map: Map<CheckedHost, [Path, Json]> | undefined, read: (path: Path, v: Json) => T | undefined): T | undefined => {
    const legacy = map?.get(h);
    if (own !== undefined && legacy) {
      c.fail(legacy[0], `${h.name}'s ${ownKey} is also set at ${fmtPath([...h.path, 'routing', ownKey])}; keep one`);
      return own;
    }
    return own ?? (legacy ? read(legacy[0], legacy[1]) : undefined);
  };
  /** A required setting that no place gives: reported at the map when there is one (as before), else at the host. */
  const missing = (h: CheckedHost, mapPath: Path, map: Map<CheckedHost, unknown> | undefined, what: string, ownKey: string) => {
    if (h.given?.has(ownKey) || map?.has(h)) return; // given, but not valid: reported there
    if (map && !c.fromEdit(h.path)) c.fail(mapPath, `no ${what} for ${h.name}`);
    else c.fail(h.path, `no ${what} for ${h.name}: set ${ownKey} in its routing settings`);
  };
  const out: { -readonly [K in keyof RoutingConfig]: RoutingConfig[K] } = { backend, retry };
  if (backend === 'linux-route' || r?.linux_route !== undefined) {
    const p: Path = ['routing', 'linux_route'];
    const lr = c.object(p, r?.linux_route, ['router', 'next_hops', 'hosts', 'device', 'pin_connections', 'drain_ms'], backend === 'linux-route');
    if (lr) {
      const router = checkArgv(c, [...p, 'router'], lr.router);
      const nh = hostMap([...p, 'next_hops'], lr.next_hops);
      const nextHops: Record<string, string[]> = {};
      const hostPrefixes: Record<string, string[]> = {};
      const hopOwner = new Map<string, string>();
      for (const h of hosts) {
        const hops = setting(h, h.routing?.nextHops, 'next_hops', nh, (path, v) => checkNextHops(c, path, v, h.name, h.addresses));
        // the router's next hop tells where an address is delivered: one host per next hop
        for (const hop of hops ?? []) {
          if (hopOwner.has(hop)) c.fail(nh?.get(h)?.[0] ?? [...h.path, 'routing', 'next_hops'], `${hop} is already the next hop of ${hopOwner.get(hop)}`);
          else hopOwner.set(hop, h.name);
        }
        if (hops) nextHops[h.name] = [...hops];
        else if (backend === 'linux-route') missing(h, [...p, 'next_hops'], nh, 'next hop', 'next_hops');
      }
      const hm = hostMap([...p, 'hosts'], lr.hosts);
      for (const h of hosts) {
        const exec = setting(h, h.routing?.exec, 'exec', hm, (path, v) => checkArgv(c, path, v));
        if (exec) hostPrefixes[h.name] = [...exec];
      }
      const device = c.string([...p, 'device'], lr.device, 'lo');
      let pinConnections = false;
      if (lr.pin_connections !== undefined) {
        if (typeof lr.pin_connections !== 'boolean') c.fail([...p, 'pin_connections'], `must be true or false, not ${describe(lr.pin_connections)}`);
        else pinConnections = lr.pin_connections;
      }
      const drainMs = c.integer([...p, 'drain_ms'], lr.drain_ms, 2000, 0, 600_000);
      const anyHosts = lr.hosts !== undefined || Object.keys(hostPrefixes).length > 0;
      if (router) out.linuxRoute = { router, nextHops, hosts: anyHosts ? hostPrefixes : undefined, device: device ?? 'lo', pinConnections, drainMs };
    }
  }
  if (backend === 'linux-address' || r?.linux_address !== undefined) {
    const p: Path = ['routing', 'linux_address'];
    const la = c.object(p, r?.linux_address, ['hosts', 'prefix_length_v4', 'prefix_length_v6', 'announce_count', 'announce_interval_ms'], false) ?? {};
    if (la) {
      const hm = hostMap([...p, 'hosts'], la.hosts);
      const hostsOut: Record<string, { exec: string[]; device: string }> = {};
      for (const h of hosts) {
        const legacy = hm?.get(h);
        let exec = h.routing?.exec;
        let device = h.routing?.device;
        if (legacy) {
          const o = c.object(legacy[0], legacy[1], ['exec', 'device']);
          if (o) {
            for (const [k, own] of [['exec', exec], ['device', device]] as const) {
              if (own !== undefined && o[k] !== undefined) c.fail([...legacy[0], k], `${h.name}'s ${k} is also set at ${fmtPath([...h.path, 'routing', k])}; keep one`);
            }
            exec ??= o.exec === undefined ? undefined : checkArgv(c, [...legacy[0], 'exec'], o.exec);
            device ??= o.device === undefined ? undefined : checkDevice(c, [...legacy[0], 'device'], o.device);
            if (o.exec === undefined && h.routing?.exec === undefined) c.fail([...legacy[0], 'exec'], 'is required');
            if (o.device === undefined && h.routing?.device === undefined) c.fail([...legacy[0], 'device'], 'is required');
          }
        } else if (backend === 'linux-address' && !(h.given?.has('exec') && h.given?.has('device'))) {
          if (hm !== undefined && !h.given?.has('exec') && !h.given?.has('device') && !c.fromEdit(h.path)) c.fail([...p, 'hosts'], `no settings for ${h.name}`);
          else c.fail(h.path, `no ${h.given?.has('exec') ? 'device' : 'exec'} for ${h.name}: set exec and device in its routing settings`);
        }
        if (exec && device) hostsOut[h.name] = { exec: [...exec], device };
      }
      out.linuxAddress = {
        hosts: hostsOut,
        prefixLengthV4: c.integer([...p, 'prefix_length_v4'], la.prefix_length_v4, 32, 1, 32),
        prefixLengthV6: c.integer([...p, 'prefix_length_v6'], la.prefix_length_v6, 128, 1, 128),
        announceCount: c.integer([...p, 'announce_count'], la.announce_count, 3, 1, 20),
        announceIntervalMs: c.integer([...p, 'announce_interval_ms'], la.announce_interval_ms, 200, 0, 5000),
      };
    }
  }
  if (backend === 'http' || r?.http !== undefined) {
    const p: Path = ['routing', 'http'];
    const h = c.object(p, r?.http, ['base_url', 'username_env', 'password_env', 'timeout_ms', 'server_ips', 'server_ipv6_nets'], backend === 'http');
    if (h) {
      const baseUrl = c.string([...p, 'base_url'], h.base_url);
      if (baseUrl !== undefined && !/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(baseUrl)) c.fail([...p, 'base_url'], `${JSON.stringify(baseUrl)} is not an http(s) URL`);
      const usernameEnv = c.string([...p, 'username_env'], h.username_env, 'FAILOVER_HTTP_USERNAME')!;
      const passwordEnv = c.string([...p, 'password_env'], h.password_env, 'FAILOVER_HTTP_PASSWORD')!;
      for (const [k, v] of [['username_env', usernameEnv], ['password_env', passwordEnv]] as const) {
        if (v && !ENV_NAME.test(v)) c.fail([...p, k], `${JSON.stringify(v)} is not an environment variable name`);
      }
      const ips = hostMap([...p, 'server_ips'], h.server_ips);
      const nets = hostMap([...p, 'server_ipv6_nets'], h.server_ipv6_nets);
      const serverIps: Record<string, string> = {};
      const serverIpv6Nets: Record<string, string> = {};
      const mainOwner = new Map<string, string>();
      for (const host of hosts) {
        const ip = setting(host, host.routing?.mainIp, 'main_ip', ips, (path, v) => checkMainIp(c, path, v));
        if (ip && mainOwner.has(ip)) c.fail(ips?.get(host)?.[0] ?? [...host.path, 'routing', 'main_ip'], `${ip} is already the main IP of ${mainOwner.get(ip)}`);
        else if (ip) mainOwner.set(ip, host.name);
        if (ip) serverIps[host.name] = ip;
        else if (backend === 'http') missing(host, [...p, 'server_ips'], ips, 'main IP', 'main_ip');
        const net = setting(host, host.routing?.ipv6Net, 'ipv6_net', nets, (path, v) => checkIpv6Net(c, path, v));
        if (net) serverIpv6Nets[host.name] = net;
      }
      out.http = {
        serverIpv6Nets,
        baseUrl: (baseUrl ?? '').replace(/\/+$/, ''),
        usernameEnv, passwordEnv,
        timeoutMs: c.integer([...p, 'timeout_ms'], h.timeout_ms, 10_000, 100, 300_000),
        serverIps,
      };
    }
  }
  return out;
}

/** The inventory sections that the API can edit, as plain data (the config's own form). */
export type InventoryKind = 'servers' | 'transits' | 'accounts';

/** An inventory entry created or replaced (value) or removed (null) through the API. */
export interface InventoryEdit {
  kind: InventoryKind;
  name: string;
  value: Record<string, unknown> | null;
  /** When it was stored (ms since the epoch); absent for an edit being validated before it is stored. */
  at?: number;
}

/** How a problem inside an edited entry names its origin (there is no line to point to). */
function editSource(e: InventoryEdit): string {
  const what = `${e.kind.slice(0, -1)} ${JSON.stringify(e.name)}`;
  return e.at === undefined ? `the edit of ${what}` : `stored edit of ${what} (made ${new Date(e.at).toISOString()})`;
}

/**
 * Validates the configuration with inventory entries replaced (value) or removed (null), after
 * the edits it already has, exactly as the file is validated. Problems inside an edited entry
 * name that edit; problems elsewhere keep the file's line. Throws ConfigError.
 */
export function withInventoryEdits(config: Config, edits: InventoryEdit[]): Config {
  const { root: seed, locate: fileLocate } = readYaml(config.text, config.file);
  const all = [...config.edits, ...edits];
  const root = structuredClone(seed);
  type Item = { value: unknown; fileIndex?: number; edit?: InventoryEdit };
  const lists = new Map<InventoryKind, Item[]>();
  for (const kind of ['servers', 'transits', 'accounts'] as const) {
    lists.set(kind, Array.isArray(root[kind]) ? (root[kind] as unknown[]).map((value, fileIndex) => ({ value, fileIndex })) : []);
  }
  for (const e of all) {
    const list = lists.get(e.kind)!;
    const i = list.findIndex((x) => x.value !== null && typeof x.value === 'object' && (x.value as { name?: unknown }).name === e.name);
    if (e.value === null) {
      if (i >= 0) list.splice(i, 1);
    } else if (i >= 0) list[i] = { value: { ...e.value, name: e.name }, edit: e };
    else list.push({ value: { ...e.value, name: e.name }, edit: e });
  }
  for (const [kind, list] of lists) {
    if (list.length > 0 || Array.isArray(root[kind])) root[kind] = list.map((x) => x.value);
  }
  const locate: Locate = (path) => {
    const [kind, index, ...rest] = path;
    const item = typeof index === 'number' ? lists.get(kind as InventoryKind)?.[index] : undefined;
    if (item?.edit) return { source: editSource(item.edit) };
    if (item?.fileIndex !== undefined) return fileLocate([kind, item.fileIndex, ...rest]);
    return fileLocate(path);
  };
  // relative paths stay relative to the original file
  return validate({ root, locate, file: config.file, text: config.text, edits: all, seedNames: hostNames(seed) });
}

/** Reads and validates a configuration file. Throws ConfigError. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parseConfig(text, file);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}


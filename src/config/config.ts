/**
 * The configuration: one YAML file, validated as a whole at start, and the stored inventory edits
 * over it. Each section's schema lives beside its capability (src/config/config-schema.ts
 * composes them); the rules across fields run after it. Every problem is reported with its path,
 * its line and the reason (`dns.listen[1]: "1.2.3.4" is not host:port`), in the order of the
 * keys; an invalid file starts nothing. The result is frozen.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { parseHostPort, type HostPort } from '../core/addresses.js';
import { formatPath, isMapping, problemsOf, type ConfigPath, type FieldProblem } from '../core/config-fields.js';
import type { Account, Server, Transit } from '../core/inventory.js';
import { accountProblems, inventoryProblems } from '../core/inventory-rules.js';
import type { MxAuditSettings } from '../audit/audit-settings.js';
import { apiTokenProblems, type ApiSection } from '../api/config-schema.js';
import type { BillingSection } from '../core/billing-schema.js';
import { dnsSecretProblems, type DnsSection } from '../dns/config-schema.js';
import type { HealthConfig } from '../health/config-schema.js';
import { accountViews, hostViews, type InventoryKind } from '../controller/inventory-schema.js';
import { checkHostRouting, routingConfig, type RoutingConfig } from '../routing/config-rules.js';
import type { ClusterSection, StateSection } from '../store/config-schema.js';
import { configSchema, type LogLevel } from './config-schema.js';

export { parseHostPort, type HostPort, type LogLevel, type RoutingConfig, type HealthConfig, type InventoryKind };
export { INVENTORY_KEYS } from '../controller/inventory-schema.js';
export type { ProbeConfig } from '../health/config-schema.js';
export type { BackendName } from '../routing/config-schema.js';

/** The validated configuration. Paths are absolute. */
export interface Config {
  readonly file: string;
  /** The file's text, to validate inventory edits exactly as the file is, with its lines. */
  readonly text: string;
  /** The stored inventory edits applied over the file, oldest first. */
  readonly edits: readonly InventoryEdit[];
  /** The configuration as plain data (the file's, with the edits applied). */
  readonly raw: Readonly<Record<string, unknown>>;
  readonly dns: Readonly<Omit<DnsSection, 'cutoverTtl' | 'ttlMarginS'>>;
  readonly api: Readonly<ApiSection>;
  readonly log: { readonly level: LogLevel };
  readonly servers: readonly Server[];
  readonly transits: readonly Transit[];
  readonly accounts: readonly Account[];
  /** billing.*: the transit's free period and the currency of monthly prices. */
  readonly billing: Readonly<BillingSection>;
  /** dns.ttl_margin_s: extra time before a scheduled reinstall when TTLs are lowered. */
  readonly ttlMarginS: number;
  /** dns.cutover_ttl: cap on the TTL of records rewritten by a cutover overlay. */
  readonly cutoverTtl: number;
  /** state.*: where durable state lives (TLS paths resolved against the config file's directory). */
  readonly state: Readonly<StateSection>;
  /** cluster.*: this replica (with state on etcd), else null. */
  readonly cluster: Readonly<NonNullable<ClusterSection>> | null;
  readonly routing: RoutingConfig;
  /** health.*: how downtime is measured during operations (probe null: not measured). */
  readonly health: Readonly<HealthConfig>;
  /** mx_audit.*: the provider's rules for the MX audit (defaults: the provider's real values). */
  readonly mxAudit: MxAuditSettings;
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

/** Where a value comes from: a line of the file, or a stored edit. */
interface Origin {
  line?: number;
  source?: string;
}
type Locate = (path: ConfigPath) => Origin;

/** Lines of a parsed YAML document by path (a path the file lacks gets its parent's line). */
function docLocator(doc: Document, lines: LineCounter): Locate {
  const line = (path: ConfigPath): number | undefined => {
    const node = path.length === 0 ? doc.contents : doc.getIn(path, true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (!range) return path.length > 0 ? line(path.slice(0, -1)) : undefined;
    return lines.linePos(range[0]).line;
  };
  return (path) => ({ line: line(path) });
}

/** Options of {@link parseConfig} and {@link loadConfig}. */
export interface ConfigLoadOptions {
  /**
   * Whether the secrets (TSIG keys' environment variables, the API's tokens) must be readable (default true). False only for
   * commands that use no secret (`failoverctl secondaries-config`, `failoverctl mx-audit`); the
   * rest is validated all the same. A configuration loaded so cannot serve: the DNS setup reads the secrets and fails.
   */
  secrets?: boolean;
}

/** Validates a configuration text. `file` locates relative paths and names the file in messages. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env, opts: ConfigLoadOptions = {}): Config {
  const { root, locate } = readYaml(text, file);
  return validate({ root, locate, file, text, edits: [], seedNames: hostNames(root), env: opts.secrets === false ? null : env });
}

/** The file's data and a locator of its lines. Throws ConfigError on YAML errors. */
function readYaml(text: string, file: string): { root: Record<string, unknown>; locate: Locate } {
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
  return { root: (doc.toJS() ?? {}) as Record<string, unknown>, locate: docLocator(doc, lines) };
}

/** Names of the servers and transits listed in a config's data. */
function hostNames(root: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  for (const k of ['servers', 'transits']) {
    const list = root[k];
    if (!Array.isArray(list)) continue;
    for (const h of list) if (isMapping(h) && typeof h.name === 'string') out.add(h.name);
  }
  return out;
}

/** Cluster and state backend go together: replicas share state on etcd, and only there. */
function clusterProblems(data: Record<string, unknown>): FieldProblem[] {
  const backend = isMapping(data.state) ? data.state.backend : undefined;
  if (backend === 'etcd' && data.cluster === undefined) return [{ path: ['cluster'], message: 'is required with state.backend etcd (name and advertise_api of this replica)' }];
  if (backend !== 'etcd' && data.cluster !== undefined) return [{ path: ['cluster'], message: 'is only for replicas sharing state on etcd (state.backend: etcd)' }];
  return [];
}

/** The data with every key whose value is empty (`key:` in YAML, null) left out: absent. */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (!isMapping(v)) return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, withoutNulls(x)]));
}

/** Validates config data: the file's, or the file's with stored inventory edits applied; `env` null: the secrets (TSIG, API tokens) not read. */
function validate(args: { root: Record<string, unknown>; locate: Locate; file: string; text: string; edits: InventoryEdit[]; seedNames: Set<string>; env: NodeJS.ProcessEnv | null }): Config {
  const { root, file, locate } = args;
  const data = withoutNulls(root) as Record<string, unknown>;
  const parsed = configSchema.safeParse(data);
  // the rules across fields read each entry as far as it is valid, so one run reports everything
  const servers = hostViews('servers', data.servers);
  const transits = hostViews('transits', data.transits);
  const hosts = [...servers, ...transits];
  const routes = checkHostRouting({
    routing: data.routing,
    hosts,
    knownNames: [...new Set([...args.seedNames, ...hosts.map((h) => h.name)])],
    fromEdit: (path) => locate(path).source !== undefined,
  });
  const problems = [
    ...problemsOf(parsed.error),
    ...inventoryProblems(servers, transits),
    ...accountProblems(accountViews(data.accounts), new Set(servers.map((s) => s.name))),
    ...routes.problems,
    ...(args.env ? dnsSecretProblems(data.dns, args.env) : []),
    ...apiTokenProblems(data.api, args.env, dirname(resolve(file))),
    ...clusterProblems(data),
  ];
  if (problems.length > 0 || !parsed.success) {
    throw new ConfigError(file, inKeyOrder(problems).map((p) => ({ path: formatPath(p.path), message: p.message, ...locate(p.path) })));
  }
  const { dns: { cutoverTtl, ttlMarginS, ...dns }, ...d } = parsed.data;
  const base = dirname(resolve(file));
  return deepFreeze({
    file: resolve(file),
    text: args.text,
    edits: args.edits.map((e) => ({ ...e })),
    raw: structuredClone(root),
    dns: { ...dns, zones: resolve(base, dns.zones), journalDir: resolve(base, dns.journalDir) },
    api: {
      ...d.api,
      tokenFile: resolve(base, d.api.tokenFile),
      tokens: d.api.tokens && d.api.tokens.map((t) => ({ ...t, tokenFile: t.tokenFile && resolve(base, t.tokenFile) })),
    },
    log: d.log,
    servers: d.servers,
    transits: d.transits,
    accounts: d.accounts,
    billing: d.billing,
    ttlMarginS,
    cutoverTtl,
    state: {
      ...d.state,
      path: resolve(base, d.state.path),
      ...(d.state.etcd ? { etcd: { ...d.state.etcd, tls: d.state.etcd.tls && { ca: resolve(base, d.state.etcd.tls.ca), cert: d.state.etcd.tls.cert && resolve(base, d.state.etcd.tls.cert), key: d.state.etcd.tls.key && resolve(base, d.state.etcd.tls.key) } } } : {}),
    },
    cluster: d.cluster ?? null,
    routing: routingConfig(d.routing, routes.settings),
    health: d.health,
    mxAudit: d.mx_audit,
  });
}

/** The schema as JSON Schema: the order of each mapping's keys, for inKeyOrder. */
let keyOrder: JsonSchema | undefined;
interface JsonSchema {
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
}

/** A path as the positions of its keys in the schema (an unknown key comes first). */
function positions(path: ConfigPath): number[] {
  keyOrder ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  let node: JsonSchema | undefined = keyOrder;
  return path.map((seg) => {
    if (typeof seg === 'number') {
      node = node?.items;
      return seg;
    }
    const owner: JsonSchema | undefined = [node, ...(node?.anyOf ?? []), ...(node?.oneOf ?? [])].find((o) => o?.properties && seg in o.properties);
    if (owner?.properties) {
      node = owner.properties[seg];
      return Object.keys(owner.properties).indexOf(seg);
    }
    const rest: JsonSchema | boolean | undefined = node?.additionalProperties;
    node = typeof rest === 'object' ? rest : undefined;
    return typeof rest === 'object' ? 0 : -1;
  });
}

/**
 * Problems in the order of the schema's keys (a problem with `after` comes after what is at that
 * path), as the file is read: a section's unknown keys first, then each key's problems.
 */
function inKeyOrder(problems: FieldProblem[]): FieldProblem[] {
  const keyed = problems.map((p) => ({ p, k: positions(p.after ?? p.path) }));
  const cmp = (a: number[], b: number[]) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  };
  return keyed.sort((a, b) => cmp(a.k, b.k)).map((x) => x.p);
}

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
export function withInventoryEdits(config: Config, edits: InventoryEdit[], env: NodeJS.ProcessEnv = process.env): Config {
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
    const i = list.findIndex((x) => isMapping(x.value) && x.value.name === e.name);
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
  return validate({ root, locate, file: config.file, text: config.text, edits: all, seedNames: hostNames(seed), env });
}

/** Reads and validates a configuration file. Throws ConfigError. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, opts: ConfigLoadOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parseConfig(text, file, env, opts);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

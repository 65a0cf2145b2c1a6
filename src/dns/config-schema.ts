/**
 * Config section `dns`: the listeners, the zones directory, the answers' limits, and the hidden
 * primary's secondaries (TSIG keys, the secondaries transfers are allowed to and NOTIFY goes to,
 * the catalog zone). TSIG secrets are read from the environment (dnsSecretProblems checks them).
 */
import { z } from 'zod';
import { parseHostPort, type HostPort } from '../core/addresses.js';
import { describe, envName, flag, hostPort, int, nonEmptyList, oneOf, section, text, valid, type FieldProblem } from '../core/config-fields.js';
import { nameKey } from './name.js';
import { DEFAULT_MAX_ZONE_FILE_BYTES } from './zone/zone-file.js';

/** TSIG algorithms accepted (RFC 8945; hmac-md5 is not: it must not be used for new deployments). */
export const TSIG_ALGORITHMS = ['hmac-sha256', 'hmac-sha384', 'hmac-sha512', 'hmac-sha224', 'hmac-sha1'] as const;
export type TsigAlgorithm = (typeof TSIG_ALGORITHMS)[number];

/** A domain name written as text, kept as its canonical key ("xfr-key." → "xfr-key."). */
const domainName = text().transform((v, ctx) => {
  try {
    if (/\s/.test(v)) throw new Error('has white space');
    return nameKey(v.endsWith('.') ? v : `${v}.`);
  } catch (err) {
    ctx.issues.push({ code: 'custom', message: `${JSON.stringify(v)} is not a domain name (${(err as Error).message})`, input: v });
    return z.NEVER;
  }
});

const tsigKeySchema = section({
  /** The key's name, as the secondaries know it. */
  name: domainName,
  algorithm: oneOf(TSIG_ALGORITHMS).default('hmac-sha256'),
  /** The environment variable holding the base64 secret (read at start, never logged). */
  secret_env: envName(),
}).transform((k) => ({ name: k.name, algorithm: k.algorithm, secretEnv: k.secret_env }));

const secondarySchema = section({
  /** A short name for metrics and logs (lower-case letters, digits, hyphens). */
  name: text().check(valid((v) => /^[a-z0-9][a-z0-9-]{0,62}$/.test(v), (v) => `${JSON.stringify(v)} is not a valid name (lower-case letters, digits and hyphens, at most 63)`)),
  /** Where NOTIFY goes, and the only address transfers are allowed from (IP literal and port). */
  address: hostPort(),
  /** The TSIG key (a dns.tsig_keys name) transfers and NOTIFY are signed with; absent: by address only. */
  tsig: domainName.optional(),
  /** Send NOTIFY to it on every change and at start. */
  notify: flag().default(true),
}).transform((s) => ({ name: s.name, address: s.address, tsig: s.tsig ?? null, notify: s.notify }));

const listenEntry = z.string({ error: (iss) => `must be a "host:port" string, not ${describe(iss.input)}` })
  .check(valid((v) => typeof parseHostPort(v) !== 'string', (v) => parseHostPort(v) as string));

export const dnsConfigSchema = section({
  /** UDP and TCP on each. */
  listen: nonEmptyList(listenEntry, (iss) => (iss.input === undefined ? 'is required (a list of "host:port")' : 'must be a non-empty list of "host:port"'))
    .superRefine((list, ctx) => {
      const seen = new Map<string, number>();
      if (!Array.isArray(list)) return; // the type is reported
      list.forEach((v, i) => {
        const hp = typeof v === 'string' ? parseHostPort(v) : undefined;
        if (!hp || typeof hp === 'string') return;
        const k = `${hp.host}|${hp.port}`;
        if (seen.has(k)) ctx.addIssue({ code: 'custom', path: [i], message: `${JSON.stringify(v)} is already listed at dns.listen[${seen.get(k)}]` });
        seen.set(k, i);
      });
    }, { when: () => true })
    .transform((list) => list.map((v) => parseHostPort(v) as HostPort)),
  /** Directory of master files, relative to the config file. */
  zones: text(),
  tcp_idle_timeout_ms: int(100, 600_000).default(10_000),
  tcp_max_connections: int(1, 100_000).default(1000),
  cache_entries: int(1000, 10_000_000).default(200_000),
  /** Cap on the TTL of records rewritten by a cutover overlay. */
  cutover_ttl: int(0, 86400).default(60),
  /** Extra time before a scheduled reinstall when TTLs are lowered. */
  ttl_margin_s: int(0, 86400).default(300),
  /** Most bytes read for one zone, its includes counted; at most V8's longest string. */
  max_zone_file_bytes: int(1, 2 ** 29 - 24).default(DEFAULT_MAX_ZONE_FILE_BYTES),
  /** TSIG keys (RFC 8945) for transfers and NOTIFY. */
  tsig_keys: z.array(tsigKeySchema, { error: (iss) => `must be a list of {name, algorithm, secret_env}, not ${describe(iss.input)}` }).default([]),
  /** The provider's nameservers that transfer the zones from the controller (hidden primary). */
  secondaries: z.array(secondarySchema, { error: (iss) => `must be a list of {name, address, tsig}, not ${describe(iss.input)}` }).default([]),
  /** Name of an RFC 9432 catalog zone listing every served zone (for Knot and BIND secondaries). */
  catalog: domainName.optional(),
  /** Where the zones' transfer journals are kept across restarts, relative to the config file. */
  journal_dir: text().default('./var/journal'),
}).superRefine((d, ctx) => {
  const keys = new Map<string, number>();
  d.tsig_keys.forEach((k, i) => {
    if (keys.has(k.name)) ctx.addIssue({ code: 'custom', path: ['tsig_keys', i, 'name'], message: `${k.name} is already listed at dns.tsig_keys[${keys.get(k.name)}]` });
    else keys.set(k.name, i);
  });
  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  d.secondaries.forEach((s, i) => {
    if (names.has(s.name)) ctx.addIssue({ code: 'custom', path: ['secondaries', i, 'name'], message: `${s.name} is already listed at dns.secondaries[${names.get(s.name)}]` });
    else names.set(s.name, i);
    const a = `${s.address.host}|${s.address.port}`;
    if (addresses.has(a)) ctx.addIssue({ code: 'custom', path: ['secondaries', i, 'address'], message: `is already the address of dns.secondaries[${addresses.get(a)}]` });
    else addresses.set(a, i);
    if (s.tsig !== null && !keys.has(s.tsig)) {
      const known = [...keys.keys()];
      ctx.addIssue({ code: 'custom', path: ['secondaries', i, 'tsig'], message: `no TSIG key named ${s.tsig} in dns.tsig_keys${known.length > 0 ? ` (known: ${known.join(', ')})` : ''}` });
    }
  });
}).transform((d) => ({
  listen: d.listen,
  zones: d.zones,
  tcpIdleTimeoutMs: d.tcp_idle_timeout_ms,
  tcpMaxConnections: d.tcp_max_connections,
  cacheEntries: d.cache_entries,
  maxZoneFileBytes: d.max_zone_file_bytes,
  cutoverTtl: d.cutover_ttl,
  ttlMarginS: d.ttl_margin_s,
  tsigKeys: d.tsig_keys,
  secondaries: d.secondaries,
  catalog: d.catalog ?? null,
  journalDir: d.journal_dir,
}));

/**
 * The TSIG secrets' environment variables: each must be set to base64 of at least 16 bytes (the
 * values are never returned or logged). Reads the section as given, so it reports next to the
 * schema's problems.
 */
export function dnsSecretProblems(dns: unknown, env: NodeJS.ProcessEnv): FieldProblem[] {
  const keys = (dns as { tsig_keys?: unknown } | undefined)?.tsig_keys;
  if (!Array.isArray(keys)) return [];
  const out: FieldProblem[] = [];
  keys.forEach((k, i) => {
    const name = (k as { secret_env?: unknown } | null)?.secret_env;
    if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return; // the schema says so
    const path = ['dns', 'tsig_keys', i, 'secret_env'];
    const value = env[name];
    if (value === undefined || value === '') out.push({ path, message: `environment variable ${name} is not set` });
    else if (tsigSecret(value) === null) out.push({ path, message: `environment variable ${name} is not base64 of at least 16 bytes` });
  });
  return out;
}

/** A TSIG secret from its base64 text, or null when it is not base64 of at least 16 bytes. */
export function tsigSecret(text: string): Buffer | null {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) return null;
  const b = Buffer.from(t, 'base64');
  return b.length >= 16 ? b : null;
}

export type DnsSection = z.output<typeof dnsConfigSchema>;

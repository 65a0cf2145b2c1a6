/** Config section `dns`: the listeners, the zones directory and the answers' limits. */
import { z } from 'zod';
import { parseHostPort, type HostPort } from '../core/addresses.js';
import { describe, int, nonEmptyList, section, text, valid } from '../core/config-fields.js';
import { DEFAULT_MAX_ZONE_FILE_BYTES } from './zone/zone-file.js';

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
}).transform((d) => ({
  listen: d.listen,
  zones: d.zones,
  tcpIdleTimeoutMs: d.tcp_idle_timeout_ms,
  tcpMaxConnections: d.tcp_max_connections,
  cacheEntries: d.cache_entries,
  maxZoneFileBytes: d.max_zone_file_bytes,
  cutoverTtl: d.cutover_ttl,
  ttlMarginS: d.ttl_margin_s,
}));

export type DnsSection = z.output<typeof dnsConfigSchema>;

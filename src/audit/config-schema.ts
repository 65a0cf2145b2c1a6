/**
 * Config section `mx_audit`: the resolver, timeouts and the provider's MX rules. The defaults are
 * the provider's real values (alwaysdata's migration guide).
 */
import { z } from 'zod';
import { parseEndpoint } from '../core/addresses.js';
import { describe, flag, int, nonEmptyList, section, valid } from '../core/config-fields.js';
import { nameKey } from '../dns/name.js';

/** A host name, lower case, without its trailing dot; with `pattern`, `*.name` too. */
function readHostName(pattern: boolean) {
  return (v: unknown, ctx: z.RefinementCtx): string => {
    const wild = pattern && typeof v === 'string' && v.startsWith('*.');
    const name = wild ? (v as string).slice(2) : v;
    if (typeof name !== 'string' || name.length === 0) {
      ctx.addIssue({ code: 'custom', message: name === undefined ? 'is required' : `must be a host name, not ${describe(name)}` });
      return z.NEVER;
    }
    try {
      const k = nameKey(name.endsWith('.') ? name : name + '.');
      if (k === '.') throw new Error('the root is not a host');
      return (wild ? '*.' : '') + k.slice(0, -1);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(name)} is not a host name: ${(err as Error).message}` });
      return z.NEVER;
    }
  };
}

const hostName = (pattern = false) => z.unknown().transform(readHostName(pattern));
const hostNames = (pattern = false) => nonEmptyList(hostName(pattern), 'must be a non-empty list of host names');

export const mxAuditConfigSchema = section({
  /**
   * Recursive resolver to ask, "HOST:PORT" ("HOST" alone means port 53; IPv6 as "[::1]:53").
   * Absent: the system's first nameserver (/etc/resolv.conf).
   */
  resolver: z.string({ error: (iss) => `must be "IP:PORT", not ${describe(iss.input)}` })
    .check(valid((v) => typeof parseEndpoint(v, 53) !== 'string', (v) => parseEndpoint(v, 53) as string))
    .optional(),
  /** Timeout of one query attempt, in ms. */
  timeout_ms: int(10, 60_000).default(2000),
  /** Retries after a timeout, SERVFAIL or malformed answer (p-retry), per lookup. */
  retries: int(0, 10).default(2),
  /** Name servers of the provider: a domain delegated to these only has "DNS managed by the provider". */
  provider_nameservers: hostNames().default(() => ['dns1.alwaysdata.com', 'dns2.alwaysdata.com']),
  /** MX records a domain using the provider's mail must have, with these exact priorities. */
  required_mx: nonEmptyList(section({ priority: int(0, 65535), host: hostName() }), 'must be a non-empty list of {priority, host}')
    .default(() => [{ priority: 10, host: 'mx1.alwaysdata.com' }, { priority: 20, host: 'mx2.alwaysdata.com' }]),
  /** Patterns of MX targets to delete ("*.alwaysdata.net": any name below alwaysdata.net). */
  forbidden_mx: hostNames(true).default(() => ['*.alwaysdata.net']),
  /** The SPF include a domain using the provider's mail must have. */
  spf_include: z.unknown().default('_spf.alwaysdata.com').transform(readHostName(false)),
  /** Domains audited at the same time by auditMany (bulk CLI and POST /v1/mx-audit). */
  concurrency: int(1, 4096).default(64),
  /** Port the domains' authoritative servers are asked on (53; other values for labs only). */
  authoritative_port: int(1, 65535).default(53),
  /** Ask each authoritative server directly (lame / stale-secondary checks). */
  check_authoritative: flag().default(true),
  /** How long the audit of a migrating server's mail domains may take before it is recorded as missing, in s. */
  migration_deadline_s: int(1, 86_400).default(300),
}).prefault({});

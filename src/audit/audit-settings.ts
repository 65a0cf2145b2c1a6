/**
 * Settings of the MX audit (config section `mx_audit`). The defaults are the provider's real
 * values (alwaysdata's migration guide); the config loader validates YAML into this shape.
 */

/** One MX record the domain must publish. */
export interface RequiredMx {
  priority: number;
  /** Host name, lower case, without trailing dot. */
  host: string;
}

/** Everything the MX audit can be configured with. */
export interface MxAuditSettings {
  /**
   * Recursive resolver to ask, "HOST:PORT" ("HOST" alone means port 53; IPv6 as "[::1]:53").
   * Undefined: the system's first nameserver (/etc/resolv.conf).
   */
  resolver?: string;
  /** Timeout of one query attempt, in ms. */
  timeout_ms: number;
  /** Retries after a timeout, SERVFAIL or malformed answer (p-retry), per lookup. */
  retries: number;
  /** Name servers of the provider: a domain delegated to these only has "DNS managed by the provider". */
  provider_nameservers: string[];
  /** MX records a domain using the provider's mail must have, with these exact priorities. */
  required_mx: RequiredMx[];
  /** Patterns of MX targets to delete ("*.alwaysdata.net": any name below alwaysdata.net). */
  forbidden_mx: string[];
  /** The SPF include a domain using the provider's mail must have. */
  spf_include: string;
  /** Domains audited at the same time by auditMany (bulk CLI and POST /v1/mx-audit). */
  concurrency: number;
  /** Port the domains' authoritative servers are asked on (53; other values for labs only). */
  authoritative_port: number;
  /** Ask each authoritative server directly (lame / stale-secondary checks). */
  check_authoritative: boolean;
}

/** The provider's real values. */
export const DEFAULT_MX_AUDIT_SETTINGS: Readonly<MxAuditSettings> = Object.freeze({
  resolver: undefined,
  timeout_ms: 2000,
  retries: 2,
  provider_nameservers: ['dns1.alwaysdata.com', 'dns2.alwaysdata.com'],
  required_mx: [
    { priority: 10, host: 'mx1.alwaysdata.com' },
    { priority: 20, host: 'mx2.alwaysdata.com' },
  ],
  forbidden_mx: ['*.alwaysdata.net'],
  spf_include: '_spf.alwaysdata.com',
  concurrency: 64,
  authoritative_port: 53,
  check_authoritative: true,
});

/** Defaults overlaid with the given values (undefined values keep the default). */
export function mxAuditSettings(partial: Partial<MxAuditSettings> = {}): MxAuditSettings {
  const out: MxAuditSettings = {
    ...DEFAULT_MX_AUDIT_SETTINGS,
    provider_nameservers: [...DEFAULT_MX_AUDIT_SETTINGS.provider_nameservers],
    required_mx: DEFAULT_MX_AUDIT_SETTINGS.required_mx.map((r) => ({ ...r })),
    forbidden_mx: [...DEFAULT_MX_AUDIT_SETTINGS.forbidden_mx],
  };
  for (const [k, v] of Object.entries(partial)) {
    if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}

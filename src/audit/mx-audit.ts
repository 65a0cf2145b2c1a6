/**
 * The MX audit use case: validates a domain name, gathers its records (lookups.ts), runs the
 * pure rules (mx-rules.ts) and returns the domain's verdict with every check. `auditMany` runs
 * many domains with bounded concurrency, results in input order.
 */
import type { MxAuditSettings } from './audit-settings.js';
import { DnsClient } from './dns-client.js';
import { validateDomain } from './domain-name.js';
import { AuditLookups } from './lookups.js';

export { validateDomain, type DomainValidation } from './domain-name.js';
import { overallVerdict, runMxRules, type AuditInput, type Check, type Verdict } from './mx-rules.js';

/** A domain's verdict, or INVALID for a name that was not looked up. */
export type AuditVerdict = Verdict | 'INVALID';

/** The result for one domain (the CLI's JSON line and the API's object). */
export interface AuditResult {
  domain: string;
  verdict: AuditVerdict;
  checks: Check[];
  /** Set for INVALID: why the name is not a domain name. */
  error?: { code: 'INVALID_DOMAIN'; message: string };
}

/** The result object for a name that is not a domain name. */
export function invalidResult(domain: unknown, reason: string): AuditResult {
  return {
    domain: typeof domain === 'string' ? domain : JSON.stringify(domain) ?? String(domain),
    verdict: 'INVALID',
    checks: [],
    error: { code: 'INVALID_DOMAIN', message: reason },
  };
}

/** What the auditor needs; everything has a default. */
export interface MxAuditorDeps {
  /** DNS client (default: one with the settings' timeout and retries). */
  client?: DnsClient;
  /** Gathers the input of the rules (default: {@link AuditLookups} through the settings' resolver). */
  gather?: (domain: string) => Promise<AuditInput>;
}

/** Options of {@link MxAuditor.auditMany}. */
export interface AuditManyOptions {
  /** Domains in flight at once (default: settings.concurrency). */
  concurrency?: number;
  /** Called after each domain with the number done and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Called with each result as soon as it is known (not in input order). */
  onResult?: (result: AuditResult, index: number) => void;
}

/** The MX auditor. */
export interface MxAuditor {
  readonly settings: MxAuditSettings;
  /** Audits one domain name (validated first; an invalid name gives verdict INVALID). */
  audit(domain: unknown): Promise<AuditResult>;
  /** Audits many; the results are in input order. */
  auditMany(domains: readonly unknown[], opts?: AuditManyOptions): Promise<AuditResult[]>;
}

/** Creates an auditor from settings and optional dependencies. */
export function createMxAuditor(settings: MxAuditSettings, deps: MxAuditorDeps = {}): MxAuditor {
  let gather = deps.gather;
  if (!gather) {
    const client = deps.client ?? new DnsClient({ timeoutMs: settings.timeout_ms, retries: settings.retries });
    const lookups = new AuditLookups(client, settings);
    gather = (d) => lookups.gather(d);
  }
  const g = gather;
  const audit = async (raw: unknown): Promise<AuditResult> => {
    const v = validateDomain(raw);
    if (!v.ok) return invalidResult(raw, v.reason);
    let input: AuditInput;
    try {
      input = await g(v.domain);
    } catch (e) {
      // never "OK" on a failure of our own
      return {
        domain: v.domain,
        verdict: 'UNKNOWN',
        checks: [{ check: 'lookup', verdict: 'UNKNOWN', evidence: `lookup error: ${(e as Error).message}`, fix: null }],
      };
    }
    const checks = runMxRules(input, settings);
    return { domain: v.domain, verdict: overallVerdict(checks), checks };
  };
  const auditMany = async (domains: readonly unknown[], opts: AuditManyOptions = {}): Promise<AuditResult[]> => {
    const total = domains.length;
    const results: AuditResult[] = new Array(total);
    const width = Math.max(1, Math.min(opts.concurrency ?? settings.concurrency, total || 1));
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        results[i] = await audit(domains[i]);
        done++;
        opts.onResult?.(results[i], i);
        opts.onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: width }, worker));
    return results;
  };
  return { settings, audit, auditMany };
}

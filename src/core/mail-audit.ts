/**
 * The MX audit kept on a migration: the mail domains of the server's accounts, audited when the
 * migration is requested and again when its cutover is requested. Pure: what the record becomes
 * when an audit starts, ends or gives nothing, and what a cutover is warned about. The audit itself
 * runs behind the `MailDomainAuditor` port (src/core/ports.ts; adapter src/audit).
 */
import type { Account } from './inventory.js';

/** One check of a domain, in the audit's JSON shape. */
export interface MailCheck {
  check: string;
  verdict: string;
  evidence: string;
  /** The exact record to add, delete or change (set for FAIL and WARN). */
  fix: string | null;
}

/** One audited domain, in the audit's JSON shape (`{domain, verdict, checks}`). */
export interface MailDomainResult {
  domain: string;
  /** OK, INFO, WARN, UNKNOWN, FAIL (or INVALID for a name that is not a domain name). */
  verdict: string;
  checks: MailCheck[];
  error?: { code: string; message: string };
}

/** Why an audit was started. */
export type MailAuditTrigger = 'request' | 'cutover';

/** The MX audit of a migration (a field of its stored record; absent in records stored before). */
export interface MigrationMailAudit {
  /** The latest audit started: why and when (ms since the epoch). */
  trigger: MailAuditTrigger;
  startedAt: number;
  /** running: no result yet; done: `domains` are its results; missing: it gave none (`reason`). */
  state: 'running' | 'done' | 'missing';
  reason: string | null;
  /** When `domains` were audited (null: never); they stay those of the last audit that gave results. */
  auditedAt: number | null;
  /** Each domain's result with its account; of its checks, those that are not OK. */
  domains: (MailDomainResult & { account: string })[];
}

/** A cutover warning: a domain that still points its mail at the server being reinstalled. */
export interface MailAuditWarning {
  code: 'FORBIDDEN_MX';
  account: string;
  domain: string;
  /** The records to delete, as typed at the domain's DNS provider. */
  fixes: string[];
  /** When the domain was audited. */
  auditedAt: number;
  message: string;
}

/** The mail domains of the server's accounts, with their account, in inventory order. */
export function mailDomainsOf(accounts: Iterable<Account>, server: string): { account: string; domain: string }[] {
  const out: { account: string; domain: string }[] = [];
  for (const a of accounts) {
    if (a.server !== server) continue;
    for (const domain of a.mailDomains ?? []) out.push({ account: a.name, domain });
  }
  return out;
}

/** The record once an audit started: the previous results are kept until it gives its own. */
export function mailAuditStarted(prev: MigrationMailAudit | null | undefined, trigger: MailAuditTrigger, now: number): MigrationMailAudit {
  return {
    trigger, startedAt: now, state: 'running', reason: null,
    auditedAt: prev?.auditedAt ?? null, domains: prev?.domains ?? [],
  };
}

/**
 * The record once the audit started at `startedAt` gave results (one per domain, in the order
 * audited); null when a later audit started since (its result is the one to keep).
 */
export function mailAuditDone(
  prev: MigrationMailAudit | null | undefined, startedAt: number,
  audited: readonly { account: string; domain: string }[], results: readonly MailDomainResult[], now: number,
): MigrationMailAudit | null {
  if (!prev || prev.startedAt !== startedAt) return null;
  const domains = audited.map((d, i) => {
    const r = results[i] ?? missingResult(d.domain);
    // kept small enough for one state-store commit with many domains: the checks that say something
    return { account: d.account, ...r, checks: r.checks.filter((c) => c.verdict !== 'OK') };
  });
  return { ...prev, state: 'done', reason: null, auditedAt: now, domains };
}

/** The record once the audit started at `startedAt` gave nothing (`reason`); null when a later audit started since. */
export function mailAuditMissing(prev: MigrationMailAudit | null | undefined, startedAt: number, reason: string): MigrationMailAudit | null {
  if (!prev || prev.startedAt !== startedAt) return null;
  return { ...prev, state: 'missing', reason };
}

function missingResult(domain: string): MailDomainResult {
  return { domain, verdict: 'UNKNOWN', checks: [{ check: 'lookup', verdict: 'UNKNOWN', evidence: 'the audit gave no result for this domain', fix: null }] };
}

/** Warnings for a cutover: every domain of the last audit with a FAIL on `forbidden-mx`. */
export function forbiddenMxWarnings(audit: MigrationMailAudit | null | undefined, server: string): MailAuditWarning[] {
  if (!audit || audit.auditedAt === null) return [];
  const at = audit.auditedAt;
  return audit.domains.flatMap((d) => {
    const fails = d.checks.filter((c) => c.check === 'forbidden-mx' && c.verdict === 'FAIL');
    if (fails.length === 0) return [];
    const fixes = fails.map((c) => c.fix ?? c.evidence);
    return [{
      code: 'FORBIDDEN_MX' as const, account: d.account, domain: d.domain, fixes, auditedAt: at,
      message: `${d.domain} (account ${d.account}) still sends its mail to ${server}, which is being reinstalled: ${fixes.join('; ')} (audited ${new Date(at).toISOString()})`,
    }];
  });
}

/** The verdicts counted in `failover_mx_audit_domains` (each one present, 0 included). */
export const MAIL_AUDIT_VERDICTS = ['OK', 'INFO', 'WARN', 'UNKNOWN', 'FAIL', 'INVALID'] as const;

/** Domains of the last audit per verdict. */
export function mailAuditCounts(audit: MigrationMailAudit): Record<(typeof MAIL_AUDIT_VERDICTS)[number], number> {
  const counts = Object.fromEntries(MAIL_AUDIT_VERDICTS.map((v) => [v, 0])) as Record<(typeof MAIL_AUDIT_VERDICTS)[number], number>;
  for (const d of audit.domains) if (d.verdict in counts) counts[d.verdict as keyof typeof counts]++;
  return counts;
}

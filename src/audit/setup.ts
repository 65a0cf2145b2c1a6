/** The MX audit capability, built from the `mx_audit` config section, with its metric. */
import type { Registry } from 'prom-client';
import type { MailDomainAuditor } from '../core/ports.js';
import type { MxAuditSettings } from './audit-settings.js';
import { createAuditMetrics } from './metrics.js';
import { createMxAuditor, type MxAuditor } from './mx-audit.js';

export interface AuditCapability {
  readonly auditor: MxAuditor;
  /** The auditor as the migration service drives it (the mail domains of a migrating server's accounts). */
  readonly mailAuditor: MailDomainAuditor;
  /** Counts a domain audited through the API by its verdict. */
  audited(verdict: string): void;
}

export function setupAudit(deps: { config: MxAuditSettings; registry: Registry }): AuditCapability {
  const metrics = createAuditMetrics(deps.registry);
  const auditor = createMxAuditor(deps.config);
  return {
    auditor,
    mailAuditor: { audit: (domains) => auditor.auditMany(domains) },
    audited: (verdict) => metrics.mxAudits.inc({ verdict }),
  };
}

/** The MX audit capability, built from the `mx_audit` config section, with its metric. */
import type { Registry } from 'prom-client';
import type { MxAuditSettings } from './audit-settings.js';
import { createAuditMetrics } from './metrics.js';
import { createMxAuditor, type MxAuditor } from './mx-audit.js';

export interface AuditCapability {
  readonly auditor: MxAuditor;
  /** Counts a domain audited through the API by its verdict. */
  audited(verdict: string): void;
}

export function setupAudit(deps: { config: MxAuditSettings; registry: Registry }): AuditCapability {
  const metrics = createAuditMetrics(deps.registry);
  return { auditor: createMxAuditor(deps.config), audited: (verdict) => metrics.mxAudits.inc({ verdict }) };
}

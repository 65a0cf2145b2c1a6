/** The MX audit's metrics (listed in src/audit/README.md). */
import { Counter, type Registry } from 'prom-client';

export interface AuditMetrics {
  mxAudits: Counter<'verdict'>;
}

export function createAuditMetrics(registry: Registry): AuditMetrics {
  return {
    mxAudits: new Counter({
      name: 'failover_mx_audits_total',
      help: 'Domains audited by the MX audit (API), by overall verdict (OK, INFO, WARN, UNKNOWN, FAIL).',
      labelNames: ['verdict'] as const,
      registers: [registry],
    }),
  };
}

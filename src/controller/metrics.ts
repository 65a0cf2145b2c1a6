/** Operations, overlays and the migration lifecycle (listed in the README's metrics table). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Sample } from '../metrics/registry.js';

/** Read-outs of the migration lifecycle at scrape time. */
export interface MigrationSource {
  transitsFree(): Sample<'profile'>[];
  queueLength(): Sample<'profile'>[];
  migrations(): Sample<'state'>[];
  billableDays(): Sample<'server'>[];
  /** When each active migration's server is to be reinstalled (s since the epoch), until it is. */
  reinstallAt(): Sample<'server'>[];
  /** Domains of each active migration's last MX audit, per verdict. */
  mxAuditDomains(): Sample<'server' | 'verdict'>[];
}

export interface ControllerMetrics {
  operations: Counter<'direction' | 'result'>;
  operationDuration: Histogram<'direction' | 'phase'>;
  overlayActive: Gauge<'server'>;
  addressOnTransit: Gauge<'server' | 'address'>;
  overlaySince: Gauge<'server'>;
  overlayMaxAge: Gauge;
  accountMoveDowntime: Histogram<'direction'>;
}

/** Defines the metrics; `migrations()` is read at each scrape (undefined without servers). */
export function createControllerMetrics(registry: Registry, migrations: () => MigrationSource | undefined): ControllerMetrics {
  const gaugeFrom = <L extends string>(name: string, help: string, label: L | L[], read: (m: MigrationSource) => Sample<L>[]) => new Gauge({
    name, help, labelNames: Array.isArray(label) ? label : [label], registers: [registry],
    collect() {
      this.reset();
      const m = migrations();
      if (m) for (const s of read(m)) this.set(s.labels as never, s.value);
    },
  });
  gaugeFrom('failover_transits_free', 'Transits of each profile free for the next migration.', 'profile', (m) => m.transitsFree());
  gaugeFrom('failover_migration_queue_length', 'Servers waiting for a transit, per profile.', 'profile', (m) => m.queueLength());
  gaugeFrom('failover_migrations', 'Migrations per state (completed and cancelled included).', 'state', (m) => m.migrations());
  gaugeFrom('failover_migration_reinstall_timestamp_seconds', 'When the server of an active migration is to be reinstalled (Unix time), until it is reinstalled.', 'server', (m) => m.reinstallAt());
  gaugeFrom('failover_mx_audit_domains', 'Mail domains of the server\'s accounts per verdict of the migration\'s last MX audit (active migrations).', ['server', 'verdict'], (m) => m.mxAuditDomains());
  gaugeFrom('failover_transit_billable_days', 'Billable days so far of the transit held by the server (days started past the free period).', 'server', (m) => m.billableDays());
  return {
    operations: new Counter({
      name: 'failover_operations_total',
      help: 'Cutover and cutback operations finished, by direction (cutover, cutback) and result (succeeded, failed).',
      labelNames: ['direction', 'result'] as const,
      registers: [registry],
    }),
    operationDuration: new Histogram({
      name: 'failover_operation_duration_seconds',
      help: 'Time from the request to the end of each phase of an operation (dns: overlay active; routing: routes applied; recovery: measurement ended).',
      labelNames: ['direction', 'phase'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    overlayActive: new Gauge({
      name: 'failover_dns_overlay_active',
      help: '1 while DNS answers for the server carry its transit\'s addresses.',
      labelNames: ['server'] as const,
      registers: [registry],
    }),
    addressOnTransit: new Gauge({
      name: 'failover_address_on_transit',
      help: '1 while the address is routed to a transit (confirmed by the backend).',
      labelNames: ['server', 'address'] as const,
      registers: [registry],
    }),
    overlaySince: new Gauge({
      name: 'failover_dns_overlay_since_timestamp_seconds',
      help: 'When the active DNS overlay of the server started (Unix time); absent without one.',
      labelNames: ['server'] as const,
      registers: [registry],
    }),
    overlayMaxAge: new Gauge({
      name: 'failover_dns_overlay_max_age_seconds',
      help: 'health.overlay_max_days in seconds: the age past which an active overlay is alerted on.',
      registers: [registry],
    }),
    accountMoveDowntime: new Histogram({
      name: 'failover_account_move_downtime_seconds',
      help: 'Downtime of an account during its move (reported by the migration tool, else started to completed), by direction (transit, home).',
      labelNames: ['direction'] as const,
      buckets: [1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600],
      registers: [registry],
    }),
  };
}

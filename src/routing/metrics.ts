/** The routing capability's metrics (listed in src/routing/README.md). */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface RoutingMetrics {
  routingErrors: Counter<'backend'>;
  /** Managed addresses not delivered where desired (complete), as of the last reconcile pass. */
  driftAddresses: Gauge;
  /** Managed addresses whose state could not be read in the last reconcile pass. */
  unknownAddresses: Gauge;
  /** Age of the oldest drift still present (0 when none). */
  driftOldestSeconds: Gauge;
  repairs: Counter<'backend' | 'result'>;
  /** Replays of the whole desired state into the backend's daemon (bgp: gobgpd). */
  daemonResumes: Counter<'backend' | 'trigger' | 'result'>;
  /** current() reads that failed: a whole call, or one address marked unknown. */
  readFailures: Counter<'backend'>;
  reconcileDuration: Histogram;
  lastReconcile: Gauge;
  reconcileInterval: Gauge;
}

export function createRoutingMetrics(registry: Registry): RoutingMetrics {
  return {
    routingErrors: new Counter({
      name: 'failover_routing_errors_total',
      help: 'Routing attempts that failed for good (after retries), by backend.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    driftAddresses: new Gauge({
      name: 'failover_routing_drift_addresses',
      help: 'Managed addresses not delivered where the controller says (as of the last reconcile pass).',
      registers: [registry],
    }),
    unknownAddresses: new Gauge({
      name: 'failover_routing_unknown_addresses',
      help: 'Managed addresses whose delivery could not be read in the last reconcile pass (router, host or provider did not answer).',
      registers: [registry],
    }),
    driftOldestSeconds: new Gauge({
      name: 'failover_routing_drift_oldest_seconds',
      help: 'How long the oldest drift still present has lasted (0 when there is none).',
      registers: [registry],
    }),
    repairs: new Counter({
      name: 'failover_routing_repairs_total',
      help: 'Drifted addresses the reconcile loop tried to repair, by backend and result (ok, failed).',
      labelNames: ['backend', 'result'] as const,
      registers: [registry],
    }),
    daemonResumes: new Counter({
      name: 'failover_routing_daemon_resumes_total',
      help: 'Replays of the whole desired state into the routing daemon (bgp: gobgpd, then its admin-down neighbours enabled), by backend, trigger (start: the controller started acting; reset: a read found the daemon restarted) and result (ok, failed).',
      labelNames: ['backend', 'trigger', 'result'] as const,
      registers: [registry],
    }),
    readFailures: new Counter({
      name: 'failover_routing_read_failures_total',
      help: 'Reads of the real routing state that failed, by backend: a whole current() call, or one address it could not read.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: 'failover_routing_reconcile_duration_seconds',
      help: 'Duration of one reconcile pass (read, compare, repair).',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    lastReconcile: new Gauge({
      name: 'failover_routing_last_reconcile_timestamp_seconds',
      help: 'When the last reconcile pass ended (Unix time; 0 before the first).',
      registers: [registry],
    }),
    reconcileInterval: new Gauge({
      name: 'failover_routing_reconcile_interval_seconds',
      help: 'The configured time between reconcile passes (routing.reconcile.interval_s).',
      registers: [registry],
    }),
  };
}

/** Measured downtime and probes (listed in src/health/README.md). */
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { Operation } from '../core/operation.js';

export interface HealthMetrics {
  ipDowntime: Histogram<'direction' | 'backend'>;
  ipLastDowntime: Gauge<'server' | 'address' | 'direction'>;
  ipRecovered: Gauge<'server' | 'address' | 'direction'>;
  probeSuccess: Gauge<'server' | 'address'>;
  /** Records the measured downtime of a finished operation. */
  operationMeasured(op: Operation): void;
}

export function createHealthMetrics(registry: Registry): HealthMetrics {
  const m = {
    ipDowntime: new Histogram({
      name: 'failover_ip_downtime_seconds',
      help: 'Measured downtime of each rerouted address per operation (sum of probe gaps, to the probe interval).',
      labelNames: ['direction', 'backend'] as const,
      buckets: [0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers: [registry],
    }),
    ipLastDowntime: new Gauge({
      name: 'failover_ip_last_downtime_seconds',
      help: 'Measured downtime of the address during its last cutover or cutback.',
      labelNames: ['server', 'address', 'direction'] as const,
      registers: [registry],
    }),
    ipRecovered: new Gauge({
      name: 'failover_ip_recovered',
      help: '1 when the address answered from its new host at the end of its last measurement, 0 when it never did before the deadline.',
      labelNames: ['server', 'address', 'direction'] as const,
      registers: [registry],
    }),
    probeSuccess: new Gauge({
      name: 'failover_probe_success',
      help: 'Result of the latest probe of the address while a measurement runs (1 answered by origin or target, 0 failed).',
      labelNames: ['server', 'address'] as const,
      registers: [registry],
    }),
  };
  return {
    ...m,
    operationMeasured(op) {
      for (const a of op.addresses) {
        if (a.downtimeMs === null || a.recovered === null) continue;
        m.ipDowntime.observe({ direction: op.direction, backend: op.backend }, a.downtimeMs / 1000);
        m.ipLastDowntime.set({ server: op.server, address: a.address, direction: op.direction }, a.downtimeMs / 1000);
        m.ipRecovered.set({ server: op.server, address: a.address, direction: op.direction }, a.recovered ? 1 : 0);
      }
    },
  };
}

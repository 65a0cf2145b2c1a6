/** The routing capability's metrics (listed in src/routing/README.md). */
import { Counter, type Registry } from 'prom-client';

export interface RoutingMetrics {
  routingErrors: Counter<'backend'>;
}

export function createRoutingMetrics(registry: Registry): RoutingMetrics {
  return {
    routingErrors: new Counter({
      name: 'failover_routing_errors_total',
      help: 'Routing attempts that failed for good (after retries), by backend.',
      labelNames: ['backend'] as const,
      registers: [registry],
    }),
  };
}

/**
 * The metrics registry every capability defines its metrics on (never prom-client's global one),
 * with Node's default process metrics. Each capability's metrics live beside its code
 * (metrics.ts in each folder of src) and are listed in that folder's README; hot-path counters are kept as plain
 * numbers by their owners and read at scrape time.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';

/** A labelled value read at scrape time. */
export interface Sample<L extends string> {
  labels: Record<L, string>;
  value: number;
}

/** A new registry with Node's default process metrics (those promtool rejects left out). */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // these three are gauges named like counters; promtool rejects them
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  return registry;
}

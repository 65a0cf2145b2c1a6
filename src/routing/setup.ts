/**
 * The routing capability, built from the `routing` config section (with the hosts' own routing
 * settings from the inventory): the configured backend behind retries (p-retry: exponential
 * backoff with jitter, overall deadline), and its metrics. An inventory edit that changes a
 * host's settings gets a backend built from them (`prepare`), swapped in once the edit is stored.
 * The reconcile loop (src/controller/route-reconciler.ts) reads through the bare backend and
 * repairs through a retry bounded by one interval; this capability gives it both and its metrics.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { RoutingConfig } from '../config/config.js';
import type { RouteBackend } from '../core/ports.js';
import type { ReconcileObserver } from '../core/routing-plan.js';
import { createRouteBackend } from './create-backend.js';
import { createRoutingMetrics, type RoutingMetrics } from './metrics.js';
import { withRetry } from './retrying-backend.js';
import { SwappableBackend } from './swappable-backend.js';

export interface RoutingCapability {
  /** The backend the controller drives (retried). */
  readonly backend: RouteBackend;
  /** The same backend, not retried: the reconcile loop's reads (a failed read is unknown until the next pass). */
  readonly reader: RouteBackend;
  /** The same backend, retried within one reconcile interval at most: the reconcile loop's repairs. */
  readonly repairer: RouteBackend;
  /** routing.reconcile. */
  readonly reconcile: RoutingConfig['reconcile'];
  /** Metrics of the reconcile loop. */
  readonly reconcileObserver: ReconcileObserver;
  readonly metrics: RoutingMetrics;
  /** Builds the backend for edited settings (throws when it refuses them); the result swaps it in. */
  prepare(next: RoutingConfig): () => void;
}

export function setupRouting(deps: { config: RoutingConfig; registry: Registry; logger: Logger; env?: NodeJS.ProcessEnv }): RoutingCapability {
  const log = deps.logger.child({ component: 'routing' });
  let current = deps.config;
  const routes = new SwappableBackend(createRouteBackend(current, log, deps.env));
  const retry = current.retry;
  const backend = withRetry(routes, {
    deadlineMs: retry.deadlineMs,
    minTimeoutMs: retry.minDelayMs,
    maxTimeoutMs: retry.maxDelayMs,
    onRetry: ({ attempt, error }) => log.warn({ attempt, err: error.message, address: error.address }, 'routing attempt failed; retrying'),
  });
  const repairer = withRetry(routes, {
    deadlineMs: Math.min(retry.deadlineMs, current.reconcile.intervalMs),
    minTimeoutMs: retry.minDelayMs,
    maxTimeoutMs: retry.maxDelayMs,
    onRetry: ({ attempt, error }) => log.warn({ attempt, err: error.message, address: error.address }, 'repair attempt failed; retrying'),
  });
  const metrics = createRoutingMetrics(deps.registry);
  metrics.reconcileInterval.set(current.reconcile.intervalMs / 1000);
  // the series exist from the start, so that increase() sees the first failed repair
  for (const result of ['ok', 'failed'] as const) metrics.repairs.inc({ backend: routes.name, result }, 0);
  return {
    backend,
    reader: routes,
    repairer,
    reconcile: current.reconcile,
    reconcileObserver: {
      readFailed: (b, count) => metrics.readFailures.inc({ backend: b }, count),
      repaired: (b, result, count) => metrics.repairs.inc({ backend: b, result }, count),
      resumed: (b, trigger, result) => metrics.daemonResumes.inc({ backend: b, trigger, result }),
      passEnded(pass, oldestDriftMs) {
        metrics.driftAddresses.set(pass.drifted);
        metrics.unknownAddresses.set(pass.unknown);
        metrics.driftOldestSeconds.set(oldestDriftMs / 1000);
        metrics.reconcileDuration.observe(pass.durationMs / 1000);
        metrics.lastReconcile.set(pass.endedAt / 1000);
      },
    },
    metrics,
    prepare(next) {
      const built = JSON.stringify(next) === JSON.stringify(current) ? null : createRouteBackend(next, log, deps.env);
      return () => {
        current = next;
        if (built) routes.swap(built);
      };
    },
  };
}

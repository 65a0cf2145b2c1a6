/**
 * The routing capability, built from the `routing` config section (with the hosts' own routing
 * settings from the inventory): the configured backend behind retries (p-retry: exponential
 * backoff with jitter, overall deadline), and its metrics. An inventory edit that changes a
 * host's settings gets a backend built from them (`prepare`), swapped in once the edit is stored.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { RoutingConfig } from '../config/config.js';
import type { RouteBackend } from '../core/ports.js';
import { createRouteBackend } from './create-backend.js';
import { createRoutingMetrics, type RoutingMetrics } from './metrics.js';
import { withRetry } from './retrying-backend.js';
import { SwappableBackend } from './swappable-backend.js';

export interface RoutingCapability {
  /** The backend the controller drives (retried). */
  readonly backend: RouteBackend;
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
  return {
    backend,
    metrics: createRoutingMetrics(deps.registry),
    prepare(next) {
      const built = JSON.stringify(next) === JSON.stringify(current) ? null : createRouteBackend(next, log, deps.env);
      return () => {
        current = next;
        if (built) routes.swap(built);
      };
    },
  };
}

/**
 * The measurement capability, built from the `health` config section: the DowntimeMeter that
 * probes every address of an operation (absent without `health.probe`), the AccountProber that
 * probes an account's site during its move through the controller's own answers, and the metrics.
 */
import type { Registry } from 'prom-client';
import type { HealthConfig } from '../config/config.js';
import type { AccountProber, DowntimeMeter } from '../core/ports.js';
import { createAccountProber } from './account-probe.js';
import { createDowntimeMeter } from './downtime-meter.js';
import { createHealthMetrics, type HealthMetrics } from './metrics.js';

export interface HealthCapability {
  /** Absent when operations are not measured (no health.probe). */
  readonly meter?: DowntimeMeter;
  readonly accountProber: AccountProber;
  readonly metrics: HealthMetrics;
}

export function setupHealth(deps: {
  config: HealthConfig;
  registry: Registry;
  /** What the controller's DNS answers for a host now (account probes resolve through it). */
  resolve: (host: string) => { address: string; family: 4 | 6 } | null;
}): HealthCapability {
  const { config } = deps;
  const metrics = createHealthMetrics(deps.registry);
  const timing = { intervalMs: config.intervalMs, timeoutMs: config.timeoutMs, deadlineMs: config.deadlineMs, recoveryProbes: config.recoveryProbes };
  return {
    metrics,
    meter: config.probe
      ? createDowntimeMeter({ probe: config.probe, ...timing, onProbe: (server, address, ok) => metrics.probeSuccess.set({ server, address }, ok ? 1 : 0) })
      : undefined,
    accountProber: createAccountProber({ resolve: deps.resolve, ...timing }),
  };
}

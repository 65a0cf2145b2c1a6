/**
 * The DowntimeMeter port on top of the probers: one probe runner per operation (fping's loop for
 * ICMP), a streaming tracker that says when every address has recovered (or the deadline passed),
 * then the pure downtime computation over all samples.
 */
import type { ProbeConfig } from '../config/config.js';
import type { AddressDowntime } from '../core/operation.js';
import type { DowntimeMeter, MeterRun } from '../core/ports.js';
import { computeAllDowntime, createDowntimeTracker, type DowntimeOptions, type DowntimeTracker } from './downtime.js';
import { createHttpProber } from './http-prober.js';
import { startIcmpLoop } from './icmp-prober.js';
import { monotonicEpochClock, startProbeRunner, type ProbeRunner, type Sample } from './probe-runner.js';
import { createTcpProber } from './tcp-prober.js';

export interface DowntimeMeterOptions {
  probe: ProbeConfig;
  intervalMs: number;
  timeoutMs: number;
  deadlineMs: number;
  recoveryProbes: number;
  /** Every probe result as it completes (for the failover_probe_success gauge). */
  onProbe?: (server: string, address: string, ok: boolean) => void;
}

function describe(p: ProbeConfig): string {
  switch (p.type) {
    case 'http':
      return `http:${p.port}${p.path}`;
    case 'tcp':
      return `tcp:${p.port}`;
    case 'icmp':
      return 'icmp';
  }
}

/** Builds the meter for health.*; throws FpingMissingError at once for ICMP without fping. */
export function createDowntimeMeter(o: DowntimeMeterOptions): DowntimeMeter {
  const prober =
    o.probe.type === 'http'
      ? createHttpProber({ port: o.probe.port, path: o.probe.path, host: o.probe.host, timeoutMs: o.timeoutMs, identityHeader: o.probe.identityHeader, bodyPattern: o.probe.bodyPattern })
      : o.probe.type === 'tcp'
        ? createTcpProber({ port: o.probe.port, timeoutMs: o.timeoutMs })
        : null;
  if (o.probe.type === 'icmp') {
    // fail at start, not at the first cutover
    startIcmpLoop({ targets: [], intervalMs: o.intervalMs, timeoutMs: o.timeoutMs }).stop().catch(() => undefined);
  }
  const requireIdentity = o.probe.type === 'http';

  return {
    description: describe(o.probe),
    intervalMs: o.intervalMs,
    start({ addresses, origin, target, server }): MeterRun {
      let tracker: DowntimeTracker | undefined;
      const pending: Sample[] = [];
      const onResult = (s: Sample) => {
        o.onProbe?.(server, s.address, s.ok);
        if (tracker) tracker.add(s);
        else pending.push(s);
      };
      const runner: ProbeRunner = prober
        ? startProbeRunner({ targets: addresses, prober, intervalMs: o.intervalMs, timeoutMs: o.timeoutMs, onResult })
        : startIcmpLoop({ targets: addresses, intervalMs: o.intervalMs, timeoutMs: o.timeoutMs, onResult });
      const list = addresses.map((a) => a.address);
      let opts: DowntimeOptions = {
        origin, target, intervalMs: o.intervalMs, recoveryCount: o.recoveryProbes,
        startedAt: runner.startedAt, deadlineAt: runner.startedAt + o.deadlineMs, requireIdentity,
        // without identity (tcp, icmp) an answer only counts as the target's once routing switched
        switchedAt: requireIdentity ? undefined : Infinity,
      };
      tracker = createDowntimeTracker(opts, list);
      for (const s of pending.splice(0)) tracker.add(s);

      let finished: Promise<AddressDowntime[]> | undefined;
      const finish = (): Promise<AddressDowntime[]> => {
        finished ??= runner.stop().then((samples) => {
          const now = monotonicEpochClock();
          const summary = computeAllDowntime(samples, { ...opts, now, switchedAt: opts.switchedAt === Infinity ? undefined : opts.switchedAt }, list);
          return summary.addresses.map((r) => ({
            address: r.address, downtimeMs: r.downtimeMs, recovered: r.recovered, waitedMs: r.waitedMs,
            probesSent: r.probesSent, probesFailed: r.probesFailed,
          }));
        });
        return finished;
      };
      return {
        routed() {
          if (requireIdentity) return;
          // probes are stamped on the runner's clock: take the switch from it, not from the caller's
          opts = { ...opts, switchedAt: monotonicEpochClock() };
          tracker = createDowntimeTracker(opts, list);
          for (const s of runner.samples()) tracker.add(s);
        },
        done() {
          return new Promise<AddressDowntime[]>((resolve, reject) => {
            const tick = () => {
              if (finished || tracker!.isDone(monotonicEpochClock())) {
                finish().then(resolve, reject);
                return;
              }
              setTimeout(tick, Math.max(o.intervalMs, 10));
            };
            tick();
          });
        },
        stop: finish,
      };
    },
  };
}

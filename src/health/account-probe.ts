/**
 * Probes an account's site during its move, the way a customer on the provider's DNS reaches it:
 * each probe resolves the URL's host through the controller's own answers (so the DNS switch at
 * the move is part of what is measured), then GETs the URL from that address with the right Host
 * header and tells who answered (identity header). The gap is computed like an address's downtime.
 */
import { computeDowntime } from './downtime.js';
import { createHttpProber } from './http-prober.js';
import type { Prober } from './prober.js';
import { startProbeRunner } from './probe-runner.js';
import type { AccountProber, AccountProbeResult, AccountProbeRun } from '../core/ports.js';

/** `resolve(host)` gives the address the controller answers for the host now (A first, then AAAA). */
export function createAccountProber(o: {
  resolve: (host: string) => { address: string; family: 4 | 6 } | null;
  intervalMs: number;
  timeoutMs: number;
  deadlineMs: number;
  recoveryProbes: number;
}): AccountProber {
  return {
    start({ url, identityHeader, origin, target }) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        return null;
      }
      if (u.protocol !== 'http:') return null;
      const host = u.hostname;
      const first = o.resolve(host);
      if (!first) return null;
      const http = createHttpProber({
        port: Number(u.port || 80), path: u.pathname + u.search, host: u.host, timeoutMs: o.timeoutMs,
        identityHeader: identityHeader ?? 'x-served-by',
      });
      // the runner keys samples by address; the address actually probed is resolved at each probe
      const prober: Prober = {
        type: 'http',
        probe: async (_t, signal) => {
          const now = o.resolve(host);
          if (!now) return { ok: false, rttMs: 0, reason: 'no-address' };
          return http.probe(now, signal);
        },
      };
      const runner = startProbeRunner({ targets: [first], prober, intervalMs: o.intervalMs, timeoutMs: o.timeoutMs });
      const opts = {
        origin, target, intervalMs: o.intervalMs, recoveryCount: o.recoveryProbes,
        // the deadline runs from the completion of the move (moves with big databases take long)
        startedAt: runner.startedAt, deadlineAt: Infinity, requireIdentity: true,
      };
      let finished: Promise<AccountProbeResult> | undefined;
      const finish = () => {
        finished ??= runner.stop().then((samples) => {
          const r = computeDowntime(samples, { ...opts, now: performance.timeOrigin + performance.now() });
          return { downtimeMs: r.downtimeMs, recovered: r.recovered, probesSent: r.probesSent, probesFailed: r.probesFailed };
        });
        return finished;
      };
      return {
        stop: finish,
        done: () => new Promise<AccountProbeResult>((resolve, reject) => {
          opts.deadlineAt = performance.timeOrigin + performance.now() + o.deadlineMs;
          const tick = () => {
            const now = performance.timeOrigin + performance.now();
            const r = computeDowntime(runner.samples(), { ...opts, now });
            if (finished || r.recovered || now >= opts.deadlineAt) {
              finish().then(resolve, reject);
              return;
            }
            setTimeout(tick, Math.max(50, o.intervalMs * 5));
          };
          tick();
        }),
      };
    },
  };
}

/**
 * TCP prober: a connect() to address:port (node:net). ok when the handshake completes; the socket
 * is closed at once. TCP cannot tell who answered, so `responder` is never set.
 */
import net from 'node:net';
import { armProbeTimeout, checkPort, checkTarget, checkTimeout, elapsedMs, errorReason, type Prober, type ProbeResult, type ProbeTarget } from './prober.js';

/** Settings of the TCP prober (config: `health.probe: {type: tcp, port}`, `health.timeout_ms`). */
export interface TcpProberOptions {
  port: number;
  timeoutMs: number;
}

/** Creates a TCP connect prober. Throws RangeError on invalid options (never on a probe). */
export function createTcpProber(opts: TcpProberOptions): Prober {
  checkPort(opts.port);
  checkTimeout(opts.timeoutMs);
  const { port, timeoutMs } = opts;
  return {
    type: 'tcp',
    probe(target: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
      const start = performance.now();
      const t = checkTarget(target);
      if (!t) return Promise.resolve({ ok: false, rttMs: 0, reason: 'bad-address' });
      if (signal?.aborted) return Promise.resolve({ ok: false, rttMs: 0, reason: 'aborted' });
      return new Promise<ProbeResult>((resolve) => {
        let done = false;
        let socket: net.Socket | undefined;
        const finish = (r: ProbeResult): void => {
          if (done) return;
          done = true;
          disarm();
          signal?.removeEventListener('abort', onAbort);
          socket?.destroy();
          resolve(r);
        };
        const onAbort = (): void => finish({ ok: false, rttMs: elapsedMs(start), reason: 'aborted' });
        // a stall of the controller past the timeout is not a timeout: see armProbeTimeout
        const disarm = armProbeTimeout(timeoutMs, () => finish({ ok: false, rttMs: elapsedMs(start), reason: 'timeout' }));
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          socket = net.connect({ host: t.address, port, family: t.family, noDelay: true });
          socket.once('connect', () => finish({ ok: true, rttMs: elapsedMs(start) }));
          socket.once('error', (err) => finish({ ok: false, rttMs: elapsedMs(start), reason: errorReason(err) }));
          socket.once('close', () => finish({ ok: false, rttMs: elapsedMs(start), reason: 'reset' }));
        } catch (err) {
          finish({ ok: false, rttMs: elapsedMs(start), reason: errorReason(err) });
        }
      });
    },
  };
}

/**
 * HTTP prober: GET http://address:port/path with node:http and `agent: false` (a fresh connection
 * per probe, `Connection: close`, no keep-alive), so every probe tests the current route. ok for a
 * 2xx/3xx status. `responder` comes from the identity header, or from the first capture group of
 * `bodyPattern` matched against the first 64 KiB of the body (the header wins when both are set).
 * The whole exchange (connect, headers, body when a pattern is set) is bounded by `timeoutMs`.
 */
import http from 'node:http';
import { armProbeTimeout, checkPort, checkTarget, checkTimeout, elapsedMs, errorReason, type Prober, type ProbeResult, type ProbeTarget } from './prober.js';

/** Settings (config: `health.probe: {type: http, port, path, host, identity_header, body_pattern}`). */
export interface HttpProberOptions {
  port: number;
  /** Request path, starting with `/`. */
  path: string;
  /** Host header; default `address:port` (IPv6 in brackets). */
  host?: string;
  timeoutMs: number;
  /** Response header naming who answered, e.g. `x-served-by`. */
  identityHeader?: string;
  /** Regex (source text) with one capture group giving the identity, matched against the body. */
  bodyPattern?: string;
}

/** Bytes of body read when a body pattern is set. */
export const HTTP_BODY_LIMIT = 64 * 1024;

/** Creates an HTTP GET prober. Throws on invalid options (bad port/path/regex), never on a probe. */
export function createHttpProber(opts: HttpProberOptions): Prober {
  checkPort(opts.port);
  checkTimeout(opts.timeoutMs);
  if (typeof opts.path !== 'string' || !opts.path.startsWith('/') || /[\s\u0000-\u001f]/.test(opts.path)) {
    throw new RangeError(`path must start with / and contain no spaces or control characters, not ${JSON.stringify(opts.path)}`);
  }
  if (opts.host !== undefined && (typeof opts.host !== 'string' || !/^[A-Za-z0-9.:\[\]_-]+$/.test(opts.host))) {
    throw new RangeError(`host must be a host name or address, not ${JSON.stringify(opts.host)}`);
  }
  const pattern = opts.bodyPattern !== undefined ? new RegExp(opts.bodyPattern) : undefined; // throws SyntaxError on a bad regex
  const identityHeader = opts.identityHeader?.toLowerCase();
  const { port, path, timeoutMs } = opts;

  return {
    type: 'http',
    probe(target: ProbeTarget, signal?: AbortSignal): Promise<ProbeResult> {
      const start = performance.now();
      const t = checkTarget(target);
      if (!t) return Promise.resolve({ ok: false, rttMs: 0, reason: 'bad-address' });
      if (signal?.aborted) return Promise.resolve({ ok: false, rttMs: 0, reason: 'aborted' });
      const hostHeader = opts.host ?? (t.family === 6 ? `[${t.address}]:${port}` : `${t.address}:${port}`);
      return new Promise<ProbeResult>((resolve) => {
        let done = false;
        let req: http.ClientRequest | undefined;
        const finish = (r: ProbeResult): void => {
          if (done) return;
          done = true;
          disarm();
          signal?.removeEventListener('abort', onAbort);
          req?.destroy();
          resolve(r);
        };
        const onAbort = (): void => finish({ ok: false, rttMs: elapsedMs(start), reason: 'aborted' });
        // a stall of the controller past the timeout is not a timeout: see armProbeTimeout
        const disarm = armProbeTimeout(timeoutMs, () => finish({ ok: false, rttMs: elapsedMs(start), reason: 'timeout' }));
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          req = http.request({
            hostname: t.address,
            family: t.family,
            port,
            path,
            method: 'GET',
            agent: false,
            headers: { host: hostHeader, connection: 'close', 'user-agent': 'failover-controller-probe', accept: '*/*' },
          });
          req.once('error', (err) => finish({ ok: false, rttMs: elapsedMs(start), reason: errorReason(err) }));
          req.once('response', (res) => {
            const status = res.statusCode ?? 0;
            const ok = status >= 200 && status < 400;
            const reason = ok ? undefined : `http-status-${status}`;
            let responder: string | undefined;
            if (identityHeader) {
              const h = res.headers[identityHeader];
              const v = (Array.isArray(h) ? h[0] : h)?.trim();
              if (v) responder = v;
            }
            const result = (): ProbeResult => {
              const r: ProbeResult = { ok, rttMs: elapsedMs(start) };
              if (responder !== undefined) r.responder = responder;
              if (reason) r.reason = reason;
              return r;
            };
            if (!pattern || responder !== undefined) {
              finish(result());
              return;
            }
            const chunks: Buffer[] = [];
            let size = 0;
            const matchBody = (): void => {
              const m = pattern.exec(Buffer.concat(chunks).toString('utf8'));
              const v = m?.[1]?.trim();
              if (v) responder = v;
              finish(result());
            };
            res.on('data', (c: Buffer) => {
              chunks.push(c);
              size += c.length;
              if (size >= HTTP_BODY_LIMIT) matchBody();
            });
            res.once('end', matchBody);
            res.once('error', (err) => finish({ ok: false, rttMs: elapsedMs(start), reason: errorReason(err) === 'error' ? 'reset' : errorReason(err) }));
            res.once('aborted', () => finish({ ok: false, rttMs: elapsedMs(start), reason: 'reset' }));
          });
          req.end();
        } catch (err) {
          finish({ ok: false, rttMs: elapsedMs(start), reason: errorReason(err) });
        }
      });
    },
  };
}

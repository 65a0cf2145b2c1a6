/**
 * The authoritative DNS capability, built from the `dns` config section: the zone directory (with
 * SIGHUP reloads), the responder and its wire cache, the UDP/TCP listeners and their metrics.
 * Zones are loaded by `setupDns`; the listeners open with `listen()`, after the controller has
 * restored any overlay, so the first packet answered already carries it.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { parseAddress, type IpAddress } from '../core/addresses.js';
import type { DnsOverlayPort } from '../core/ports.js';
import { ZoneSet } from './engine/engine.js';
import { createDnsMetrics, type DnsSource } from './metrics.js';
import { createDnsServer, type DnsServer } from './server/dns-server.js';
import { DROP_REASONS, RCODE_LABELS, Responder, TRANSPORTS } from './server/responder.js';
import { ZoneDirectory, type LoadResult, type ZoneLoadError } from './zone/zone-loader.js';

/** What the other capabilities use of DNS. */
export interface DnsCapability {
  readonly responder: Responder;
  /** The composed overlay, active in every answer sent after `apply` returns. */
  readonly overlay: DnsOverlayPort;
  /** Loads the zone directory again (as SIGHUP does); concurrent calls share one load. */
  reload(): Promise<LoadResult>;
  /** The served zones. */
  zones(): { zone: string; serial: number; records: number }[];
  /** The zone files that failed at the last load. */
  zoneErrors(): ZoneLoadError[];
  /** The address the server answers for `host` now (A first), overlays applied. */
  resolve(host: string): { address: string; family: 4 | 6 } | null;
  /** Largest TTL of the A/AAAA records carrying any of these addresses. */
  largestTtl(addresses: string[]): number;
  /** Opens the listeners. */
  listen(): Promise<void>;
  stop(): Promise<void>;
}

export async function setupDns(deps: { config: Config['dns']; registry: Registry; logger: Logger }): Promise<DnsCapability> {
  const { config } = deps;
  const zoneLog = deps.logger.child({ component: 'zones' });
  const dnsLog = deps.logger.child({ component: 'dns' });
  let server: DnsServer | undefined;
  let responder: Responder;
  const source: DnsSource = {
    queries: () => TRANSPORTS.flatMap((transport, t) => RCODE_LABELS.map((rcode, r) => ({ labels: { transport, rcode }, value: responder.stats.queries[t * RCODE_LABELS.length + r] }))),
    dropped: () => DROP_REASONS.map((reason, i) => ({ labels: { reason }, value: responder.stats.dropped[i] })),
    internalErrors: () => responder.stats.internalErrors,
    tcpConnections: () => server?.stats.tcpConnections ?? 0,
    tcpRejected: () => server?.stats.tcpRejected ?? 0,
    cacheEntries: () => responder.cacheSize,
  };
  const metrics = createDnsMetrics(deps.registry, () => source);
  responder = new Responder(new ZoneSet([]), {
    cacheEntries: config.cacheEntries,
    latency: (s) => metrics.queryDuration.observe(s),
    onError: (err, query) => dnsLog.error({ err, query: query.subarray(0, 512).toString('base64') }, 'internal error answering a query'),
  });

  const zoneDir = new ZoneDirectory(config.zones, { maxZoneBytes: config.maxZoneFileBytes });
  let lastErrors: ZoneLoadError[] = [];
  const applyLoad = (r: LoadResult): void => {
    for (const e of r.errors) {
      zoneLog.error({ file: e.file, line: e.line, reason: e.reason, keptPrevious: e.keptPrevious },
        e.keptPrevious ? 'zone file rejected; the previous version stays served' : 'zone file rejected; zone not served');
      metrics.zoneLoadErrors.inc({ zone: zoneLabel(e.file) });
    }
    for (const w of r.warnings) zoneLog.warn({ file: w.file }, w.message);
    for (const f of r.removed) zoneLog.info({ file: f }, 'zone file removed; zone no longer served');
    lastErrors = r.errors;
    if (r.parsed.length > 0 || r.removed.length > 0 || responder.zoneSet.size !== r.zones.length) {
      responder.update({ zones: new ZoneSet(r.zones) });
    }
    metrics.zonesLoaded.set(r.zones.length);
    metrics.zoneSerial.reset();
    let records = 0;
    for (const z of r.zones) {
      metrics.zoneSerial.set({ zone: z.origin }, z.serial);
      records += z.recordCount;
    }
    metrics.recordsLoaded.set(records);
    metrics.zoneReloads.inc({ result: r.errors.length > 0 ? 'partial' : 'ok' });
    zoneLog.info({ zones: r.zones.length, records, parsed: r.parsed.length, errors: r.errors.length }, 'zones loaded');
  };

  let reloading: Promise<LoadResult> | null = null;
  let again = false;
  const reload = (): Promise<LoadResult> => {
    if (reloading) {
      again = true;
      return reloading;
    }
    reloading = (async () => {
      let r: LoadResult;
      do {
        again = false;
        r = await zoneDir.load();
        applyLoad(r);
      } while (again);
      return r;
    })().finally(() => (reloading = null));
    return reloading;
  };
  await reload();

  return {
    responder,
    overlay: { apply: (overlay) => responder.update({ overlay }) },
    reload,
    zones: () => [...responder.zoneSet.zones()].map((z) => ({ zone: z.origin, serial: z.serial, records: z.recordCount })),
    zoneErrors: () => lastErrors,
    resolve: (host) => responder.resolve(host),
    largestTtl: (addresses) => responder.zoneSet.largestAddressTtl(addresses.map((a) => parseAddress(a)).filter((a): a is IpAddress => typeof a !== 'string')),
    async listen() {
      server = createDnsServer({
        listen: [...config.listen],
        responder,
        logger: dnsLog,
        tcpIdleTimeoutMs: config.tcpIdleTimeoutMs,
        tcpMaxConnections: config.tcpMaxConnections,
      });
      await server.start();
    },
    async stop() {
      await server?.stop();
    },
  };
}

/** The metric label of a zone file: its name without `.zone`. */
function zoneLabel(file: string): string {
  const base = file.split('/').pop() ?? file;
  return base.endsWith('.zone') ? base.slice(0, -5) : base;
}

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
import { zonesChangedBy } from './engine/snapshot.js';
import { createDnsMetrics, type DnsMetrics, type DnsSource } from './metrics.js';
import { createDnsServer, type DnsServer } from './server/dns-server.js';
import { DROP_REASONS, RCODE_LABELS, Responder, TRANSPORTS } from './server/responder.js';
import { ZoneDirectory, type LoadResult, type ZoneLoadError } from './zone/zone-loader.js';
import type { Zone } from './zone/zone.js';
import { catalogZone } from './xfr/catalog.js';
import { createJournalFiles } from './xfr/journal-files.js';
import { Notifier, tsigNotifySigner } from './xfr/notify.js';
import { PropagationTracker } from './xfr/propagation.js';
import { tsigKey, type TsigKey } from './xfr/tsig.js';
import { TransferService } from './xfr/xfr-service.js';
import { HELPER_THREAD_NICE, yieldToServingThread } from './server/thread-priority.js';

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

export async function setupDns(deps: { config: Config['dns']; registry: Registry; logger: Logger; env?: NodeJS.ProcessEnv }): Promise<DnsCapability> {
  const { config } = deps;
  const env = deps.env ?? process.env;
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

  const transfers = createTransfers(config, env, responder, metrics, deps.logger.child({ component: 'xfr' }));
  /** Versions are recorded from listen() on: what is served once stored overlays are restored. */
  let live = false;
  const catalog = config.catalog;
  let catalogSerial = Math.floor(Date.now() / 1000) >>> 0;
  let catalogMembers = '';
  /** The served zones, with the catalog zone when configured (its serial rises when its members change). */
  const withCatalog = (zones: Zone[]): Zone[] => {
    if (!catalog) return zones;
    if (zones.some((z) => z.origin === catalog)) {
      zoneLog.error({ catalog }, 'dns.catalog names a served zone; no catalog zone is served');
      return zones;
    }
    const members = zones.map((z) => z.origin).sort().join(' ');
    if (catalogMembers !== '' && members !== catalogMembers) catalogSerial = Math.max(catalogSerial + 1, Math.floor(Date.now() / 1000)) >>> 0;
    catalogMembers = members;
    return [...zones, catalogZone(catalog, zones.map((z) => z.origin), catalogSerial)];
  };

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
    if (r.parsed.length > 0 || r.removed.length > 0 || responder.zoneSet.size !== r.zones.length + (catalog ? 1 : 0)) {
      responder.update({ zones: new ZoneSet(withCatalog(r.zones)) });
      if (live) void transfers?.changed();
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

  let priorityReported = false;
  /** Helper threads behind the serving one; again after each load (libuv starts its pool lazily). */
  const preferServing = (): void => {
    const r = yieldToServingThread();
    if (priorityReported || (r.changed === 0 && r.failed === 0 && r.unsupported === null)) return;
    priorityReported = true;
    if (r.unsupported !== null || r.failed > 0) dnsLog.warn({ failed: r.failed, reason: r.unsupported ?? undefined }, 'helper threads could not be set behind the serving thread: a busy CPU may delay answers during reloads');
    else dnsLog.info({ threads: r.changed, nice: HELPER_THREAD_NICE }, 'helper threads run behind the serving thread');
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
      preferServing();
      return r;
    })().finally(() => (reloading = null));
    return reloading;
  };
  await reload();

  return {
    responder,
    overlay: {
      apply: (overlay) => {
        responder.update({ overlay });
        if (live) void transfers?.changed();
      },
      propagation: () => transfers?.propagation().catch(() => null) ?? Promise.resolve(null),
      zonesChangedBy: (delta) => zonesChangedBy(responder.zoneSet, delta),
    },
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
        transfers,
      });
      live = true;
      void transfers?.changed(); // transfers asked meanwhile wait for it
      await server.start();
      await transfers?.startNotifying();
    },
    async stop() {
      await server?.stop();
      await transfers?.stop();
    },
  };
}

/** The metric label of a zone file: its name without `.zone`. */
function zoneLabel(file: string): string {
  const base = file.split('/').pop() ?? file;
  return base.endsWith('.zone') ? base.slice(0, -5) : base;
}

/**
 * The hidden primary's transfer service, when secondaries are configured: TSIG keys from the
 * environment (checked with the config), NOTIFY to the secondaries, metrics.
 */
function createTransfers(config: Config['dns'], env: NodeJS.ProcessEnv, responder: Responder, metrics: DnsMetrics, log: Logger): (TransferService & { stop(): Promise<void> }) | undefined {
  if (config.secondaries.length === 0 && config.tsigKeys.length === 0) return undefined;
  const keys = new Map<string, TsigKey>(config.tsigKeys.map((k) => [k.name, tsigKey(k.name, k.algorithm, env[k.secretEnv] ?? '')]));
  const now = () => Math.floor(Date.now() / 1000);
  const secondaries = config.secondaries.map((s) => ({ name: s.name, address: s.address, key: s.tsig ? keys.get(s.tsig)! : null, notify: s.notify }));
  // every series exists from the start, so that increase() sees the first event of each
  for (const secondary of [...secondaries.map((s) => s.name), 'other']) {
    for (const kind of ['axfr', 'ixfr', 'ixfr_full', 'soa', 'query'] as const) {
      for (const result of ['ok', 'refused', 'notauth', 'failed'] as const) metrics.transfers.inc({ secondary, kind, result }, 0);
    }
  }
  for (const s of secondaries.filter((x) => x.notify)) {
    for (const result of ['acked', 'retried', 'refused', 'gave_up'] as const) metrics.notifies.inc({ secondary: s.name, result }, 0);
  }
  const notifier = new Notifier({
    targets: secondaries.filter((s) => s.notify).map((s) => ({ name: s.name, address: s.address, signer: s.key ? tsigNotifySigner(s.key, now) : undefined })),
    logger: log,
    source: notifySource(config.listen),
    onResult: (secondary, result) => metrics.notifies.inc({ secondary, result }),
  });
  const tracker = new PropagationTracker({
    secondaries,
    logger: log,
    now,
    onServed: (secondary, _zone, _serial, seconds) => metrics.propagation.observe({ secondary }, seconds),
    onSerial: (secondary, zone, serial, behind) => {
      if (serial !== null) metrics.secondarySerial.set({ secondary, zone }, serial);
      metrics.secondaryBehind.set({ secondary, zone }, behind ? 1 : 0);
    },
  });
  const service = new TransferService({
    secondaries,
    keys,
    responder,
    served: () => ({ zones: responder.zoneSet, overlay: responder.currentOverlay }),
    notifier,
    tracker,
    catalog: config.catalog,
    journals: createJournalFiles(config.journalDir),
    logger: log,
    now,
    onTransfer: (secondary, kind, result) => metrics.transfers.inc({ secondary, kind, result }),
  });
  return Object.assign(service, {
    stop: async () => {
      notifier.close();
      tracker.close();
      await service.flushJournals();
    },
  });
}

/** Where NOTIFYs leave from: the first listen address of each family that is not a wildcard. */
function notifySource(listen: readonly { host: string; family: 4 | 6 }[]): { 4?: string; 6?: string } {
  const pick = (family: 4 | 6) => listen.find((l) => l.family === family && l.host !== '0.0.0.0' && l.host !== '::')?.host;
  return { 4: pick(4), 6: pick(6) };
}

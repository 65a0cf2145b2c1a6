/**
 * Composition root: config → logger → metrics → zones → responder → DNS listeners → API.
 * Handles SIGHUP (zone reload) and SIGTERM/SIGINT (graceful stop).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import pino, { type Logger } from 'pino';
import { Registry } from 'prom-client';
import { createApiApp } from './api/app.js';
import type { Config } from './config/config.js';
import { ZoneSet } from './dns/engine/engine.js';
import { createDnsServer, type DnsServer } from './dns/server/dns-server.js';
import { DROP_REASONS, RCODE_LABELS, Responder, TRANSPORTS } from './dns/server/responder.js';
import { ZoneDirectory, type LoadResult, type ZoneLoadError } from './dns/zone/zone-loader.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { CutoverService } from './controller/cutover-service.js';
import { OverlayComposer, type DnsAnswerLookup } from './controller/overlay-composer.js';
import { MigrationService } from './controller/migration-service.js';
import { applyStoredEdits, InventoryService } from './controller/inventory-service.js';
import { addressBytes } from './core/addresses.js';
import { billableDays } from './core/billing.js';
import { MIGRATION_STATES, isFinished as migrationFinished } from './core/migration.js';
import { profileOf } from './core/inventory.js';
import type { Inventory } from './core/inventory.js';
import type { StateStore } from './core/ports.js';
import { createRouteBackend } from './routing/create-backend.js';
import { withRetry } from './routing/retrying-backend.js';
import { SwappableBackend } from './routing/swappable-backend.js';
import { openSqliteStore } from './store/sqlite-store.js';
import { createDowntimeMeter } from './health/downtime-meter.js';
import { createAccountProber } from './health/account-probe.js';
import { createMxAuditor } from './audit/mx-audit.js';

/** A running controller. */
export interface Controller {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly responder: Responder;
  /** Absent when the config has no servers. */
  readonly cutover?: CutoverService;
  readonly migrations?: MigrationService;
  /** Reloads the zone directory (as SIGHUP does). */
  reload(): Promise<LoadResult>;
  stop(): Promise<void>;
}

/** Returns the API token: from the environment, or generated and written to a 0600 file. */
function apiToken(config: Config, log: Logger): string {
  const fromEnv = process.env[config.api.tokenEnv];
  if (fromEnv && fromEnv.length > 0) {
    if (fromEnv.length < 16) log.warn({ env: config.api.tokenEnv }, 'the API token is shorter than 16 characters');
    return fromEnv;
  }
  const token = randomBytes(32).toString('base64url');
  writeFileSync(config.api.tokenFile, token + '\n', { mode: 0o600 });
  chmodSync(config.api.tokenFile, 0o600);
  log.warn({ env: config.api.tokenEnv, file: config.api.tokenFile },
    'API token env var is unset: generated a token and wrote it to a file readable only by this user');
  return token;
}

/** Builds and starts everything. Rejects when a listener cannot bind or the zone directory cannot be read. */
export async function startController(config: Config, logger?: Logger): Promise<Controller> {
  const log = logger ?? pino({ level: config.log.level, base: { service: 'failover-controller' } });
  const mainLog = log.child({ component: 'main' });
  const zoneLog = log.child({ component: 'zones' });
  const dnsLog = log.child({ component: 'dns' });
  const apiLog = log.child({ component: 'api' });
  const registry = new Registry();
  const metrics = createMetrics(registry);
  const token = apiToken(config, mainLog);

  let ready = false;
  let lastErrors: ZoneLoadError[] = [];
  const zoneDir = new ZoneDirectory(config.dns.zones, { maxZoneBytes: config.dns.maxZoneFileBytes });

  const responder = new Responder(new ZoneSet([]), {
    cacheEntries: config.dns.cacheEntries,
    latency: (s) => metrics.dnsQueryDuration.observe(s),
    onError: (err, query) => dnsLog.error({ err, query: query.subarray(0, 512).toString('base64') }, 'internal error answering a query'),
  });

  const applyLoad = (r: LoadResult): void => {
    for (const e of r.errors) {
      zoneLog.error({ file: e.file, line: e.line, reason: e.reason, keptPrevious: e.keptPrevious },
        e.keptPrevious ? 'zone file rejected; the previous version stays served' : 'zone file rejected; zone not served');
      metrics.dnsZoneLoadErrors.inc({ zone: zoneLabel(e.file) });
    }
    for (const w of r.warnings) zoneLog.warn({ file: w.file }, w.message);
    for (const f of r.removed) zoneLog.info({ file: f }, 'zone file removed; zone no longer served');
    lastErrors = r.errors;
    if (r.parsed.length > 0 || r.removed.length > 0 || responder.zoneSet.size !== r.zones.length) {
      responder.update({ zones: new ZoneSet(r.zones) });
    }
    metrics.dnsZonesLoaded.set(r.zones.length);
    metrics.dnsZoneSerial.reset();
    let records = 0;
    for (const z of r.zones) {
      metrics.dnsZoneSerial.set({ zone: z.origin }, z.serial);
      records += z.recordCount;
    }
    metrics.dnsRecordsLoaded.set(records);
    metrics.dnsZoneReloads.inc({ result: r.errors.length > 0 ? 'partial' : 'ok' });
    zoneLog.info({ zones: r.zones.length, records, parsed: r.parsed.length, errors: r.errors.length }, 'zones loaded');
  };

  let reloading: Promise<LoadResult> | null = null;
  let again = false;
  const reload = async (): Promise<LoadResult> => {
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

  const t0 = Date.now();
  await reload();

  // cutover: state first, so that DNS answers carry any active overlay from the first packet on
  let store: StateStore | undefined;
  let cutover: CutoverService | undefined;
  let migrations: MigrationService | undefined;
  let inventoryService: InventoryService | undefined;
  let dnsAnswers: (() => DnsAnswerLookup) | undefined;
  if (config.servers.length > 0) {
    const ctlLog = log.child({ component: 'cutover' });
    store = openSqliteStore(config.state.path);
    let effective: Config;
    try {
      effective = applyStoredEdits(config, store);
    } catch (err) {
      store.close();
      throw err;
    }
    const routeLog = log.child({ component: 'routing' });
    const routes = new SwappableBackend(createRouteBackend(effective.routing, routeLog));
    const inventorySvc = new InventoryService({
      config: effective,
      store,
      // an edit that changes a host's routing settings gets a backend built from them
      prepare: (next) => {
        const built = JSON.stringify(next.routing) === JSON.stringify(effective.routing) ? null : createRouteBackend(next.routing, routeLog);
        return () => {
          effective = next;
          if (built) routes.swap(built);
        };
      },
      inUse: (kind, name) => {
        if (kind === 'servers') {
          if (cutover?.status(name).overlay.active) return 'it is cut over';
          const m = migrations?.active(name);
          return m ? `its migration is ${m.state}` : null;
        }
        if (kind === 'transits') {
          const s = cutover?.statusAll().find((x) => x.overlay.active && x.overlay.transit === name);
          if (s) return `it stands in for ${s.name}`;
          const m = migrations?.all().find((x) => x.transit === name && migrations?.active(x.server));
          return m ? `it is held by the migration of ${m.server}` : null;
        }
        const acc = inventory.accounts?.get(name);
        const m = acc ? migrations?.active(acc.server) : null;
        const loc = m?.accounts.find((a) => a.name === name)?.location;
        return loc && loc !== 'home' ? `it is ${loc.replace(/_/g, ' ')}` : null;
      },
    });
    inventoryService = inventorySvc;
    const inventory: Inventory = inventorySvc.live;
    const backend = withRetry(routes, {
      deadlineMs: config.routing.retry.deadlineMs,
      minTimeoutMs: config.routing.retry.minDelayMs,
      maxTimeoutMs: config.routing.retry.maxDelayMs,
      onRetry: ({ attempt, error }) => routeLog.warn({ attempt, err: error.message, address: error.address }, 'routing attempt failed; retrying'),
    });

    const composer = new OverlayComposer({ dns: { apply: (overlay) => responder.update({ overlay }) }, store, ttlCap: config.cutoverTtl });
    dnsAnswers = () => composer.answers();
    const clock = { now: () => Date.now(), monotonic: () => performance.now() };
    const mig = new MigrationService({
      inventory: () => inventory,
      store,
      overlays: composer,
      clock,
      logger: log.child({ component: 'migration' }),
      cutoverTtl: config.cutoverTtl,
      ttlMarginS: config.ttlMarginS,
      freeDays: config.billing.freeDays,
      currency: config.billing.currency,
      largestTtl: (addresses) => largestTtl(responder.zoneSet, addresses),
      accountProber: createAccountProber({
        resolve: (host) => responder.resolve(host),
        intervalMs: config.health.intervalMs,
        timeoutMs: config.health.timeoutMs,
        deadlineMs: config.health.deadlineMs,
        recoveryProbes: config.health.recoveryProbes,
      }),
      transitsInCutover: () => new Map(cutover?.statusAll().flatMap((s) => (s.overlay.active ? [[s.overlay.transit, s.name] as [string, string]] : [])) ?? []),
      observer: {
        accountMoved: (direction, downtimeMs) => {
          if (downtimeMs !== null) metrics.accountMoveDowntime.observe({ direction }, downtimeMs / 1000);
        },
      },
    });
    migrations = mig;
    metrics.sources.migration = {
      transitsFree: () => {
        const t = mig.transits();
        return [...new Set([...inventory.transits.values()].map(profileOf))].map((profile) => ({
          labels: { profile }, value: t.transits.filter((x) => x.profile === profile && x.held_by === null).length,
        }));
      },
      queueLength: () => {
        const t = mig.transits();
        return [...new Set([...inventory.servers.values()].map(profileOf))].map((profile) => ({ labels: { profile }, value: t.queue.filter((q) => q.profile === profile).length }));
      },
      migrations: () => MIGRATION_STATES.map((state) => ({ labels: { state }, value: mig.all().filter((m) => m.state === state).length })),
      billableDays: () => mig.all().filter((m) => !migrationFinished(m) && m.assignedAt !== null)
        .map((m) => ({ labels: { server: m.server }, value: billableDays(m.assignedAt!, Date.now(), config.billing.freeDays) })),
    };
    cutover = new CutoverService({
      inventory,
      store,
      backend,
      overlays: composer,
      ttlCap: config.cutoverTtl,
      clock,
      hooks: {
        beforeCutover: (server, transit, force) => mig.checkCutover(server, transit, force),
        cutoverAccepted: (server, force) => mig.cutoverAccepted(server, force),
        cutbackSucceeded: (server) => mig.cutbackSucceeded(server),
      },
      logger: ctlLog,
      meter: config.health.probe
        ? createDowntimeMeter({
          probe: config.health.probe,
          intervalMs: config.health.intervalMs,
          timeoutMs: config.health.timeoutMs,
          deadlineMs: config.health.deadlineMs,
          recoveryProbes: config.health.recoveryProbes,
          onProbe: (server, address, ok) => metrics.probeSuccess.set({ server, address }, ok ? 1 : 0),
        })
        : undefined,
      observer: {
        operationFinished(op) {
          metrics.operations.inc({ direction: op.direction, result: op.state });
          if (op.durationsMs.recovery !== null) metrics.operationDuration.observe({ direction: op.direction, phase: 'recovery' }, op.durationsMs.recovery / 1000);
          for (const a of op.addresses) {
            if (a.downtimeMs === null || a.recovered === null) continue;
            metrics.ipDowntime.observe({ direction: op.direction, backend: op.backend }, a.downtimeMs / 1000);
            metrics.ipLastDowntime.set({ server: op.server, address: a.address, direction: op.direction }, a.downtimeMs / 1000);
            metrics.ipRecovered.set({ server: op.server, address: a.address, direction: op.direction }, a.recovered ? 1 : 0);
          }
          if (op.durationsMs.dnsSwitch !== null) metrics.operationDuration.observe({ direction: op.direction, phase: 'dns' }, op.durationsMs.dnsSwitch / 1000);
          if (op.durationsMs.routing !== null) metrics.operationDuration.observe({ direction: op.direction, phase: 'routing' }, op.durationsMs.routing / 1000);
        },
        routingError(backendName) {
          metrics.routingErrors.inc({ backend: backendName });
        },
        overlaysChanged(overlays, routes) {
          const transitNames = new Set(inventory.transits.keys());
          for (const s of inventory.servers.values()) {
            const o = overlays.find((x) => x.server === s.name);
            metrics.overlayActive.set({ server: s.name }, o ? 1 : 0);
            if (o) metrics.overlaySince.set({ server: s.name }, o.since / 1000);
            else metrics.overlaySince.remove({ server: s.name });
          }
          for (const s of inventory.servers.values()) {
            for (const a of s.addresses) metrics.addressOnTransit.set({ server: s.name, address: a.address }, transitNames.has(routes.get(a.address) ?? '') ? 1 : 0);
          }
        },
      },
    });
    metrics.overlayMaxAge.set(config.health.overlayMaxDays * 86400);
    cutover.resume();
    mig.resume();
    mainLog.info({ servers: config.servers.length, transits: config.transits.length, backend: backend.name, state: config.state.path, measured: config.health.probe?.type ?? 'no' }, 'cutover service ready');
  }
  mainLog.info({ ms: Date.now() - t0 }, 'initial zone load finished');

  const dns: DnsServer = createDnsServer({
    listen: [...config.dns.listen],
    responder,
    logger: dnsLog,
    tcpIdleTimeoutMs: config.dns.tcpIdleTimeoutMs,
    tcpMaxConnections: config.dns.tcpMaxConnections,
  });
  metrics.sources.dns = {
    queries: () => {
      const out = [];
      for (let t = 0; t < TRANSPORTS.length; t++) {
        for (let r = 0; r < RCODE_LABELS.length; r++) {
          out.push({ labels: { transport: TRANSPORTS[t], rcode: RCODE_LABELS[r] }, value: responder.stats.queries[t * RCODE_LABELS.length + r] });
        }
      }
      return out;
    },
    dropped: () => DROP_REASONS.map((reason, i) => ({ labels: { reason }, value: responder.stats.dropped[i] })),
    internalErrors: () => responder.stats.internalErrors,
    tcpConnections: () => dns.stats.tcpConnections,
    tcpRejected: () => dns.stats.tcpRejected,
    cacheEntries: () => responder.cacheSize,
  };
  await dns.start();

  const app = createApiApp({
    registry,
    logger: apiLog,
    token,
    ready: () => ready,
    zones: () => [...responder.zoneSet.zones()].map((z) => ({ zone: z.origin, serial: z.serial, records: z.recordCount })),
    zoneErrors: () => lastErrors,
    cutover,
    migrations,
    inventory: inventoryService,
    dnsAnswers,
    mxAuditor: createMxAuditor(config.mxAudit),
    onMxVerdict: (verdict) => metrics.mxAudits.inc({ verdict }),
  });
  const http: Server = await new Promise((res, rej) => {
    const s = app.listen(config.api.listen.port, config.api.listen.host, (err?: Error) => (err ? rej(err) : res(s)));
    s.once('error', rej);
  });
  http.requestTimeout = 30_000;
  http.headersTimeout = 10_000;
  apiLog.info({ address: config.api.listen.host, port: config.api.listen.port }, 'api listening');
  ready = true;
  mainLog.info('ready');

  return {
    logger: log,
    metrics,
    responder,
    cutover,
    migrations,
    reload,
    async stop() {
      ready = false;
      const closed = new Promise<void>((res) => http.close(() => res()));
      http.closeAllConnections();
      await closed;
      await dns.stop();
      if (cutover) {
        // let routing in flight finish briefly; what does not is resumed at the next start
        await Promise.race([cutover.idle(), new Promise((r) => setTimeout(r, 5000).unref())]);
      }
      migrations?.stop();
      store?.close();
      mainLog.info('stopped');
    },
  };
}

/** Largest TTL of the A/AAAA records served with any of these addresses (0 when none). */
function largestTtl(zones: ZoneSet, addresses: string[]): number {
  const wanted = new Set(addresses.map((a) => addressBytes({ address: a, family: a.includes(':') ? 6 : 4 }).toString('latin1')));
  let max = 0;
  for (const z of zones.zones()) {
    for (const sets of z.nodes.values()) {
      for (const set of sets) {
        if ((set.type === 1 || set.type === 28) && set.ttl > max && set.rdata.some((d) => wanted.has(d.toString('latin1')))) max = set.ttl;
      }
    }
  }
  return max;
}

function zoneLabel(file: string): string {
  const base = file.split('/').pop() ?? file;
  return base.endsWith('.zone') ? base.slice(0, -5) : base;
}

/**
 * The controller's use cases, built from the inventory, billing and TTL settings and the ports
 * the adapters provide: inventory edits, the overlay composer (what DNS answers), migrations and
 * cutovers, with their metrics. Stored inventory edits are applied over the file first; the
 * stored overlays are restored before this returns, so DNS answers them from its first packet.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config, InventoryKind, RoutingConfig } from '../config/config.js';
import { billableDays } from '../core/billing.js';
import { profileOf, type Host, type Inventory } from '../core/inventory.js';
import { mailAuditCounts } from '../core/mail-audit.js';
import { isFinished as migrationFinished, MIGRATION_STATES } from '../core/migration.js';
import { RouteError, type AccountProber, type Clock, type DesiredRoute, type DnsOverlayPort, type DowntimeMeter, type Leadership, type MailDomainAuditor, type RouteBackend, type StateStore } from '../core/ports.js';
import type { Operation } from '../core/operation.js';
import { CutoverService } from './cutover-service.js';
import { applyStoredEdits, InventoryService } from './inventory-service.js';
import { createControllerMetrics, type MigrationSource } from './metrics.js';
import { MigrationService } from './migration-service.js';
import { OverlayComposer } from './overlay-composer.js';
import { RouteReconciler } from './route-reconciler.js';
import { CommitLane } from './commit-lane.js';
import { RoutingLane } from './routing-lane.js';
import type { ReconcileObserver } from '../core/routing-plan.js';

export interface ControllerCapability {
  readonly cutover: CutoverService;
  readonly migrations: MigrationService;
  readonly inventory: InventoryService;
  readonly composer: OverlayComposer;
  /** The routing reconcile loop (runs only while this replica leads). */
  readonly reconciler: RouteReconciler;
  /**
   * Starts acting once DNS listens: while this replica leads, the reconcile loop (its first pass
   * before this resolves) and the timers; when it stops leading, they stop. A replica that does
   * not lead follows the leader's commits.
   */
  start(): Promise<void>;
  /** Lets routing in flight finish briefly, stops the timers; what does not finish resumes at the next start. */
  stop(): Promise<void>;
}

export function setupController(deps: {
  config: Config;
  store: StateStore;
  /** Who acts (with one process: this one, always). */
  leadership: Leadership;
  registry: Registry;
  logger: Logger;
  clock: Clock;
  dns: DnsOverlayPort & { largestTtl(addresses: string[]): number };
  routing: {
    backend: RouteBackend;
    reader: RouteBackend;
    repairer: RouteBackend;
    reconcile: RoutingConfig['reconcile'];
    reconcileObserver: ReconcileObserver;
    prepare(next: RoutingConfig): () => void;
    routingError(backend: string): void;
  };
  health: { meter?: DowntimeMeter; accountProber: AccountProber; operationMeasured(op: Operation): void };
  /** The MX audit of migrating servers' mail domains (absent: none). */
  mailAudit?: { auditor: MailDomainAuditor; deadlineMs: number };
}): ControllerCapability {
  const { store, clock } = deps;
  const effective = applyStoredEdits(deps.config, store);
  let migrations: MigrationService | undefined;
  let cutover: CutoverService | undefined;
  // one lane for every stage → commit → apply of the services below
  const commits = new CommitLane();
  const inventoryService: InventoryService = new InventoryService({
    config: effective,
    base: deps.config,
    store,
    commits,
    prepare: (next) => deps.routing.prepare(next.routing),
    inUse: (kind, name): string | null => inUse(kind, name, inventoryService.live, cutover!, migrations!),
  });
  const inventory = inventoryService.live;
  let migrationSource: MigrationSource | undefined;
  const metrics = createControllerMetrics(deps.registry, () => migrationSource);
  const composer = new OverlayComposer({ dns: deps.dns, store, ttlCap: effective.cutoverTtl });
  migrations = new MigrationService({
    inventory: () => inventory,
    store,
    commits,
    overlays: composer,
    clock,
    logger: deps.logger.child({ component: 'migration' }),
    cutoverTtl: effective.cutoverTtl,
    ttlMarginS: effective.ttlMarginS,
    freeDays: effective.billing.freeDays,
    currency: effective.billing.currency,
    largestTtl: (addresses) => deps.dns.largestTtl(addresses),
    accountProber: deps.health.accountProber,
    mailAuditor: deps.mailAudit?.auditor,
    mailAuditDeadlineMs: deps.mailAudit?.deadlineMs,
    transitsInCutover: () => new Map(cutover!.statusAll().flatMap((s) => (s.overlay.active ? [[s.overlay.transit, s.name] as [string, string]] : []))),
    observer: {
      accountMoved: (direction, downtimeMs) => {
        if (downtimeMs !== null) metrics.accountMoveDowntime.observe({ direction }, downtimeMs / 1000);
      },
    },
  });
  const mig = migrations;
  const lane = new RoutingLane();
  const leadership = deps.leadership;
  cutover = new CutoverService({
    lane,
    commits,
    inventory,
    store,
    backend: leaderOnly(deps.routing.backend, leadership, () => reconciler.resumed()),
    overlays: composer,
    ttlCap: effective.cutoverTtl,
    clock,
    hooks: {
      beforeCutover: (server, transit, force) => mig.checkCutover(server, transit, force),
      cutoverAccepted: (server, force) => mig.cutoverAccepted(server, force),
      cutbackSucceeded: (server) => mig.cutbackSucceeded(server),
    },
    logger: deps.logger.child({ component: 'cutover' }),
    meter: deps.health.meter,
    observer: {
      operationFinished(op) {
        metrics.operations.inc({ direction: op.direction, result: op.state });
        for (const phase of ['dns', 'routing', 'recovery'] as const) {
          const ms = op.durationsMs[phase === 'dns' ? 'dnsSwitch' : phase];
          if (ms !== null) metrics.operationDuration.observe({ direction: op.direction, phase }, ms / 1000);
        }
        deps.health.operationMeasured(op);
      },
      routingError: (backend) => deps.routing.routingError(backend),
      overlaysChanged(overlays, routes) {
        const transitNames = new Set(inventory.transits.keys());
        for (const s of inventory.servers.values()) {
          const o = overlays.find((x) => x.server === s.name);
          metrics.overlayActive.set({ server: s.name }, o ? 1 : 0);
          if (o) metrics.overlaySince.set({ server: s.name }, o.since / 1000);
          else metrics.overlaySince.remove({ server: s.name });
          for (const a of s.addresses) metrics.addressOnTransit.set({ server: s.name, address: a.address }, transitNames.has(routes.get(a.address) ?? '') ? 1 : 0);
        }
      },
    },
  });
  migrationSource = migrationMetrics(mig, inventory, effective.billing.freeDays, clock);
  metrics.overlayMaxAge.set(effective.health.overlayMaxDays * 86400);
  // a replica that does not lead publishes what is stored and follows the leader's commits
  mig.setActing(leadership.isLeader());
  cutover.restore();
  mig.resume();
  const cut = cutover;
  const reconciler: RouteReconciler = new RouteReconciler({
    servers: () => inventory.servers.values(),
    transits: () => inventory.transits.keys(),
    overlays: () => cut.activeOverlays(),
    store,
    reader: deps.routing.reader,
    repairer: leaderOnly(deps.routing.repairer, leadership, () => Promise.resolve()),
    lane,
    commits,
    clock,
    logger: deps.logger.child({ component: 'reconcile' }),
    intervalMs: deps.routing.reconcile.intervalMs,
    mode: deps.routing.reconcile.mode,
    maxBackoffMs: deps.routing.reconcile.maxBackoffMs,
    observer: deps.routing.reconcileObserver,
  });
  // Before anything routes: the backend's daemon (bgp: gobgpd) is given the whole desired state
  // (applies wait for it); again each time this replica starts leading.
  let resumedAsLeader = false;
  const resumeDaemon = () => {
    resumedAsLeader = true;
    void reconciler.resume('start');
  };
  if (leadership.isLeader()) {
    resumeDaemon();
    cutover.resumeOperations();
  }
  const log = deps.logger.child({ component: 'replica' });
  /** Takes everything as stored (inventory edits, overlays, migrations, serial bumps) and publishes what DNS answers, when it changed. */
  const follow = () => commits.run(() => {
    inventoryService.reload();
    const servers = cut.reload();
    const { accounts, lowered } = mig.reload();
    composer.follow({ servers, accounts, lowered });
  }).catch((err: unknown) => log.error({ err: (err as Error).message }, 'the stored state could not be followed'));
  let started = false;
  let unsubscribe: (() => void)[] = [];
  /** Starts or stops acting as leadership comes and goes (and once at start, whatever changed since setup). */
  const lead = async (leading: boolean) => {
    if (!started) return;
    if (leading) {
      // a replica takes what the one before it committed (one process on SQLite has it all)
      if (store.onChange) await follow();
      mig.setActing(true);
      if (!resumedAsLeader) resumeDaemon();
      cut.resumeOperations();
      await reconciler.start();
    } else {
      mig.setActing(false);
      resumedAsLeader = false;
      await reconciler.stop();
    }
  };
  return {
    cutover: cut,
    migrations: mig,
    inventory: inventoryService,
    composer,
    reconciler,
    async start() {
      started = true;
      unsubscribe = [
        leadership.onChange((leading) => void lead(leading)),
        ...(store.onChange ? [store.onChange(() => {
          if (!leadership.isLeader()) void follow();
        })] : []),
      ];
      await lead(leadership.isLeader());
    },
    async stop() {
      for (const u of unsubscribe) u();
      await Promise.race([Promise.all([cut.idle(), reconciler.stop()]), new Promise((r) => setTimeout(r, 5000).unref())]);
      mig.stop();
    },
  };
}

/**
 * The backend, refusing to act on a replica that does not lead (checked right before every
 * change); apply() first waits for `resumed` (the daemon's replay of the whole desired state).
 */
function leaderOnly(backend: RouteBackend, leadership: Leadership, resumed: () => Promise<void>): RouteBackend {
  const notLeader = () => new RouteError(`${leadership.self.name} does not lead the replicas any more: routing left to the leader`, false);
  return {
    name: backend.name,
    async apply(desired) {
      await resumed();
      if (!leadership.isLeader()) throw notLeader();
      return backend.apply(desired);
    },
    current: (addresses) => backend.current(addresses),
    get resume() {
      const resume = backend.resume;
      return resume
        ? (desired: DesiredRoute[]) => {
            if (!leadership.isLeader()) return Promise.reject(notLeader());
            return resume.call(backend, desired);
          }
        : undefined;
    },
  };
}

/** Why an inventory entry cannot change now (an active cutover, a migration, an account away), or null. */
export function inUse(kind: InventoryKind, name: string, inventory: Inventory, cutover: CutoverService, migrations: MigrationService): string | null {
  if (kind === 'servers') {
    if (cutover.status(name).overlay.active) return 'it is cut over';
    const m = migrations.active(name);
    return m ? `its migration is ${m.state}` : null;
  }
  if (kind === 'transits') {
    const s = cutover.statusAll().find((x) => x.overlay.active && x.overlay.transit === name);
    if (s) return `it stands in for ${s.name}`;
    const m = migrations.all().find((x) => x.transit === name && migrations.active(x.server));
    return m ? `it is held by the migration of ${m.server}` : null;
  }
  const acc = inventory.accounts?.get(name);
  const m = acc ? migrations.active(acc.server) : null;
  const loc = m?.accounts.find((a) => a.name === name)?.location;
  return loc && loc !== 'home' ? `it is ${loc.replace(/_/g, ' ')}` : null;
}

/** The migration lifecycle as metrics read it at scrape time. */
function migrationMetrics(mig: MigrationService, inventory: Inventory, freeDays: number, clock: Clock): MigrationSource {
  const profiles = (hosts: Iterable<Host>) => [...new Set([...hosts].map(profileOf))];
  return {
    transitsFree: () => {
      const t = mig.transits();
      return profiles(inventory.transits.values()).map((profile) => ({ labels: { profile }, value: t.transits.filter((x) => x.profile === profile && x.held_by === null).length }));
    },
    queueLength: () => {
      const t = mig.transits();
      return profiles(inventory.servers.values()).map((profile) => ({ labels: { profile }, value: t.queue.filter((q) => q.profile === profile).length }));
    },
    migrations: () => MIGRATION_STATES.map((state) => ({ labels: { state }, value: mig.all().filter((m) => m.state === state).length })),
    billableDays: () => mig.all().filter((m) => !migrationFinished(m) && m.assignedAt !== null)
      .map((m) => ({ labels: { server: m.server }, value: billableDays(m.assignedAt!, clock.now(), freeDays) })),
    reinstallAt: () => mig.all().filter((m) => !migrationFinished(m) && m.reinstallAt !== null && m.reinstalledAt === null)
      .map((m) => ({ labels: { server: m.server }, value: m.reinstallAt! / 1000 })),
    mxAuditDomains: () => mig.all().filter((m) => !migrationFinished(m) && m.mxAudit && m.mxAudit.auditedAt !== null)
      .flatMap((m) => Object.entries(mailAuditCounts(m.mxAudit!)).map(([verdict, value]) => ({ labels: { server: m.server, verdict }, value }))),
  };
}

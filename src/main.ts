/**
 * Composition root: what the controller is made of, in the order it starts (and stops in reverse).
 * Each capability builds itself from its config section and the ports it needs (its setup.ts).
 *
 *   dns         zones loaded; listeners open last, once any stored overlay is restored
 *   store       the state: the SQLite file, or etcd shared by replicas (who leads, in sync) (only
 *               with servers in the inventory)
 *   routing     the backend, retried; rebuilt when an inventory edit changes a host's settings
 *   health      the downtime meter and account probes
 *   audit       the MX audit (the API's, and the migrations' audit of their mail domains)
 *   controller  inventory, overlays, migrations, cutovers; restores overlays, resumes operations;
 *               acts while this replica leads (the reconcile loop's first pass once DNS listens,
 *               before the API), else follows the leader's commits
 *   api         /v1, /metrics, /healthz, /readyz
 */
import pino, { type Logger } from 'pino';
import { setupApi } from './api/setup.js';
import { setupAudit } from './audit/setup.js';
import type { Config } from './config/config.js';
import { setupController, type ControllerCapability } from './controller/setup.js';
import { setupDns } from './dns/setup.js';
import type { LoadResult } from './dns/zone/zone-loader.js';
import { setupHealth } from './health/setup.js';
import { createRegistry } from './metrics/registry.js';
import { setupRouting } from './routing/setup.js';
import { setupStore, type StateCapability } from './store/setup.js';

/** A running controller. */
export interface Controller {
  readonly logger: Logger;
  /** Reloads the zone directory (as SIGHUP does). */
  reload(): Promise<LoadResult>;
  stop(): Promise<void>;
}

/** Builds and starts everything. Rejects when a listener cannot bind, the zones directory or the state file cannot be used. */
export async function startController(config: Config, logger?: Logger): Promise<Controller> {
  const log = logger ?? pino({ level: config.log.level, base: { service: 'failover-controller' } });
  const mainLog = log.child({ component: 'main' });
  const registry = createRegistry();
  const clock = { now: () => Date.now(), monotonic: () => performance.now() };
  const t0 = Date.now();
  let ready = false;

  const dns = await setupDns({ config: config.dns, registry, logger: log });
  const audit = setupAudit({ config: config.mxAudit, registry });
  let state: StateCapability | undefined;
  let controller: ControllerCapability | undefined;
  if (config.servers.length > 0) {
    state = await setupStore({ config, registry, logger: log, clock }).catch(async (err: unknown) => {
      await dns.stop();
      throw err;
    });
    const { store, leadership } = state;
    try {
      const routing = setupRouting({ config: config.routing, registry, logger: log });
      const health = setupHealth({ config: config.health, registry, resolve: dns.resolve });
      controller = setupController({
        config, store, leadership, registry, logger: log, clock,
        dns: { ...dns.overlay, largestTtl: dns.largestTtl },
        routing: { ...routing, routingError: (b) => routing.metrics.routingErrors.inc({ backend: b }) },
        health: { meter: health.meter, accountProber: health.accountProber, operationMeasured: health.metrics.operationMeasured },
        mailAudit: { auditor: audit.mailAuditor, deadlineMs: config.mxAudit.migration_deadline_s * 1000 },
      });
      mainLog.info({
        servers: config.servers.length, transits: config.transits.length, backend: routing.backend.name, measured: config.health.probe?.type ?? 'no',
        state: config.state.backend === 'etcd' ? `etcd ${config.state.etcd?.endpoints.join(',')}` : config.state.path,
        replica: leadership.self.name, leading: leadership.isLeader(),
      }, 'cutover service ready');
    } catch (err) {
      await state.close();
      await dns.stop();
      throw err;
    }
  }
  mainLog.info({ ms: Date.now() - t0 }, 'initial zone load finished');
  const undo = async () => {
    await dns.stop();
    await controller?.stop();
    await state?.close();
  };
  const api = await dns.listen().then(() => controller?.start()).then(() => setupApi({
    config: config.api, registry, logger: log,
    ready: () => ready,
    zones: dns.zones,
    zoneErrors: dns.zoneErrors,
    cutover: controller?.cutover,
    migrations: controller?.migrations,
    inventory: controller?.inventory,
    dnsAnswers: controller ? () => controller!.composer.answers() : undefined,
    routing: controller?.reconciler,
    cluster: state && config.state.backend === 'etcd' ? { leadership: state.leadership, inSync: state.inSync, revision: state.revision } : undefined,
    mxAuditor: audit.auditor,
    onMxVerdict: audit.audited,
  })).catch(async (err: unknown) => {
    await undo();
    throw err;
  });
  ready = true;
  mainLog.info('ready');

  return {
    logger: log,
    reload: dns.reload,
    async stop() {
      ready = false;
      await api.stop();
      await undo();
      mainLog.info('stopped');
    },
  };
}

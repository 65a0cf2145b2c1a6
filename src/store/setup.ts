/**
 * The state capability, built from the `state` and `cluster` config sections: the StateStore
 * (SQLite, or etcd shared by replicas), who leads, and whether this replica's copy is in sync.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import type { Clock, Leadership, ReplicaInfo, StateChange, StateStore } from '../core/ports.js';
import { joinEtcdElection } from './etcd-leadership.js';
import { createEtcdClient, openEtcdStore } from './etcd-store.js';
import { createStateMetrics } from './metrics.js';
import { openSqliteStore } from './sqlite-store.js';

export interface StateCapability {
  store: StateStore;
  leadership: Leadership;
  /** Whether this replica serves the state as it is (always with SQLite). */
  inSync(): boolean;
  /** The revision this replica serves from (0 with SQLite). */
  revision(): number;
  /** Leaves the election (another replica takes over at once), then closes the store. */
  close(): Promise<void>;
}

/** How often a replica checks that its copy follows etcd. */
const SYNC_CHECK_MS = 1000;
/** Checks in a row that find the copy behind before the watch is rebuilt. */
const STALLED_AFTER = 3;

/** Opens the state store (and joins the election with etcd); rejects with a clear message when it cannot. */
export async function setupStore(deps: { config: Config; registry: Registry; logger: Logger; clock: Clock }): Promise<StateCapability> {
  const { config, clock } = deps;
  const log = deps.logger.child({ component: 'state' });
  let leadership: Leadership | undefined;
  let syncedAt = clock.monotonic();
  let inSync = true;
  let revision = () => 0;
  const metrics = createStateMetrics(deps.registry, {
    isLeader: () => leadership?.isLeader() ?? false,
    revision: () => revision(),
    lagSeconds: () => (inSync ? 0 : (clock.monotonic() - syncedAt) / 1000),
  });

  const etcd = config.state.backend === 'etcd' ? config.state.etcd : undefined;
  if (!etcd || !config.cluster) {
    const store = counted(openSqliteStore(config.state.path), metrics.errors);
    const self: ReplicaInfo = { name: hostname(), api: `http://${config.api.listen.family === 6 ? `[${config.api.listen.host}]` : config.api.listen.host}:${config.api.listen.port}` };
    leadership = soleLeadership(self);
    return { store, leadership, inSync: () => true, revision: () => 0, close: async () => store.close() };
  }

  const tls = etcd.tls && {
    ca: readFileSync(etcd.tls.ca),
    ...(etcd.tls.cert && etcd.tls.key ? { cert: readFileSync(etcd.tls.cert), key: readFileSync(etcd.tls.key) } : {}),
  };
  const client = createEtcdClient({ endpoints: etcd.endpoints, tls, callTimeoutMs: etcd.call_timeout_ms });
  const store = await openEtcdStore({ client, endpoints: etcd.endpoints, prefix: etcd.prefix, tls, callTimeoutMs: etcd.call_timeout_ms, logger: log });
  revision = () => store.revision();
  const self = { name: config.cluster.name, api: config.cluster.advertise_api };
  try {
    leadership = await joinEtcdElection({
      client, store, prefix: etcd.prefix, self, ttlS: etcd.lease_ttl_s, callTimeoutMs: etcd.call_timeout_ms, clock, logger: log,
      onRenewalFailed: () => metrics.errors.inc({ op: 'election' }),
      onLeaderChange: (leader) => {
        metrics.leaderChanges.inc();
        log.info({ leader: leader?.name ?? null }, leader ? 'leader seen' : 'no leader');
      },
    });
  } catch (err) {
    store.close();
    throw new Error(`state on etcd: cannot join the leader election at ${etcd.endpoints.join(', ')}: ${(err as Error).message}`);
  }

  // a stalled watch (a member frozen, a stream silently gone) is found by reading the last commit
  let behind = 0;
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    store.inSync().then((ok) => {
      if (ok) {
        inSync = true;
        syncedAt = clock.monotonic();
        behind = 0;
        return;
      }
      metrics.errors.inc({ op: 'sync_check' });
      inSync = false;
      if (++behind === STALLED_AFTER) store.resync(`the copy has been behind etcd (or etcd unreachable) for ${STALLED_AFTER} checks`);
    }).finally(() => {
      checking = false;
    });
  }, SYNC_CHECK_MS);
  timer.unref();
  const lead = leadership;
  return {
    store: counted(store, metrics.errors),
    leadership: lead,
    inSync: () => inSync,
    revision: () => store.revision(),
    async close() {
      clearInterval(timer);
      await lead.stop();
      store.close();
    },
  };
}

/** The leadership of a single process (state in SQLite): it always leads. */
function soleLeadership(self: ReplicaInfo): Leadership {
  return { self, isLeader: () => true, leader: () => self, replicas: () => [self], onChange: () => () => undefined, stop: async () => undefined };
}

/** The store with failed commits counted (op "commit"); every other method as it is. */
function counted(store: StateStore, errors: { inc(labels: { op: string }): void }): StateStore {
  return {
    load: () => store.load(),
    getOperation: (id) => store.getOperation(id),
    listOperations: (server, limit) => store.listOperations(server, limit),
    routes: () => store.routes(),
    async commit(change: StateChange) {
      try {
        await store.commit(change);
      } catch (err) {
        errors.inc({ op: 'commit' });
        throw err;
      }
    },
    getMeta: (key) => store.getMeta(key),
    metaEntries: (prefix) => store.metaEntries(prefix),
    migrations: () => store.migrations(),
    inventoryEdits: () => store.inventoryEdits(),
    ...(store.onChange ? { onChange: (listener: () => void) => store.onChange!(listener) } : {}),
    close: () => store.close(),
  };
}

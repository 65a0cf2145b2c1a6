/** The state capability's metrics (listed in src/store/README.md). */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface StateMetrics {
  isLeader: Gauge;
  leaderChanges: Counter;
  revision: Gauge;
  watchLag: Gauge;
  errors: Counter<'op'>;
}

/** `revision()`: the state revision this replica's copy reflects; `lagSeconds()`: how long it has been behind. */
export function createStateMetrics(registry: Registry, read: { isLeader(): boolean; revision(): number; lagSeconds(): number }): StateMetrics {
  return {
    isLeader: new Gauge({
      name: 'failover_cluster_is_leader',
      help: '1 while this replica leads (acts: operations, reconcile, timers), else 0. A single process on SQLite always leads.',
      registers: [registry],
      collect() {
        this.set(read.isLeader() ? 1 : 0);
      },
    }),
    leaderChanges: new Counter({
      name: 'failover_cluster_leader_changes_total',
      help: 'Changes of the leading replica seen by this replica (including to none).',
      registers: [registry],
    }),
    revision: new Gauge({
      name: 'failover_state_revision',
      help: 'The state revision (etcd revision) this replica serves from; 0 with SQLite.',
      registers: [registry],
      collect() {
        this.set(read.revision());
      },
    }),
    watchLag: new Gauge({
      name: 'failover_state_watch_lag_seconds',
      help: 'How long this replica\'s copy of the state has been found behind etcd (0 when in sync at the last check, every second).',
      registers: [registry],
      collect() {
        this.set(read.lagSeconds());
      },
    }),
    errors: new Counter({
      name: 'failover_state_errors_total',
      help: 'State store calls that failed, by op (commit, sync_check, election).',
      labelNames: ['op'] as const,
      registers: [registry],
    }),
  };
}

/** Config sections `state` (the state store) and `cluster` (this replica, with state on etcd). */
import { z } from 'zod';
import { httpUrl, int, nonEmptyList, oneOf, section, text, valid } from '../core/config-fields.js';

/** Where etcd runs, and how the state lives in it. */
const etcdSchema = section({
  /** Client URLs of the cluster's members. */
  endpoints: nonEmptyList(httpUrl(), (iss) => (iss.input === undefined ? 'is required' : 'must be a non-empty list of http(s) URLs (the members\' client URLs)'), 16),
  /** Every key of the controller is under it. */
  prefix: text().check(valid((v) => v.startsWith('/') && v.endsWith('/'), (v) => `${JSON.stringify(v)} must start and end with "/" (e.g. "/failover/")`)).default('/failover/'),
  /** The leader's lease: a replica that stops renewing it is replaced after about this long. */
  lease_ttl_s: int(2, 60).default(5),
  /** Deadline of every call to etcd (a frozen member never hangs the controller). */
  call_timeout_ms: int(100, 60_000).default(2000),
  /** TLS to etcd: the CA of the members' certificates; a client certificate and key when they ask for one (paths relative to the config file). */
  tls: section({ ca: text(), cert: text().optional(), key: text().optional() })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), { error: 'cert and key go together (both or neither)' })
    .optional(),
});

export const stateConfigSchema = section({
  /** sqlite: one process, one file (the default); etcd: replicas sharing state on an etcd cluster. */
  backend: oneOf(['sqlite', 'etcd']).default('sqlite'),
  /** The SQLite state file, relative to the config file (created with its directory). */
  path: text().default('./var/state.db'),
  etcd: etcdSchema.optional(),
}).prefault({}).superRefine((s, ctx) => {
  if (s.backend === 'etcd' && !s.etcd) ctx.addIssue({ code: 'custom', path: ['etcd'], message: 'is required with backend etcd (endpoints, prefix, lease_ttl_s)' });
  if (s.backend === 'sqlite' && s.etcd) ctx.addIssue({ code: 'custom', path: ['backend'], message: 'is sqlite while state.etcd is set: say backend: etcd to use it, or remove state.etcd' });
});

/** This replica: how the others know it. */
export const clusterConfigSchema = section({
  /** Unique among the replicas. */
  name: text().check(valid((v) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(v), (v) => `${JSON.stringify(v)} is not a replica name (lowercase letters, digits and "-", at most 63)`)),
  /** Where the other replicas reach this one's API (requests a follower takes are sent to the leader there). */
  advertise_api: httpUrl(),
}).optional();

export type StateSection = z.output<typeof stateConfigSchema>;
export type ClusterSection = z.output<typeof clusterConfigSchema>;

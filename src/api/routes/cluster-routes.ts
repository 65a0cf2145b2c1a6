/**
 * Replicas (state on etcd):
 *   GET /v1/cluster   this replica, the leader, every replica with its state revision and lag
 * and the forwarding of mutating calls: a replica that does not lead sends every /v1 call that
 * changes state (and GET /v1/routing: the reconcile loop's observations exist on the leader only)
 * to the leader's API (cluster.advertise_api) and answers with the leader's answer,
 * so that a client needs to know one replica only (no redirect: clients drop the Authorization
 * header on a redirect to another host).
 */
import { type NextFunction, type Request, type Response, Router } from 'express';
import type { Logger } from 'pino';
import type { Leadership, ReplicaInfo } from '../../core/ports.js';
import { ApiError } from '../errors.js';
import { routeOf } from '../route-catalog.js';

/** What the API reads of the replicas. */
export interface ClusterView {
  leadership: Leadership;
  /** Whether this replica serves the state as stored now. */
  inSync(): boolean;
  /** The state revision this replica serves from. */
  revision(): number;
}

/** The header a forwarded call carries (the forwarding replica's name): a replica that does not lead never forwards it again. */
export const FORWARDED_BY = 'x-failover-forwarded-by';
/** On a forwarded call's answer: the replica that took it. */
export const SERVED_BY = 'x-failover-served-by';
/** How long a peer's /readyz may take in GET /v1/cluster. */
const PEER_TIMEOUT_MS = 1000;

/** What /readyz says of a replica (also read by the other replicas for GET /v1/cluster). */
export function readyJson(ready: boolean, cluster: ClusterView | undefined) {
  if (!cluster) return { status: ready ? 'ready' : 'starting' };
  const inSync = cluster.inSync();
  return {
    status: !ready ? 'starting' : inSync ? 'ready' : 'out_of_sync',
    replica: cluster.leadership.self.name,
    leader: cluster.leadership.leader()?.name ?? null,
    revision: cluster.revision(),
    in_sync: inSync,
  };
}

/** Whether a call goes to the leader: it changes state, or reads what only the leader observes (the route catalogue says; a call no route serves: unless it reads). */
function forLeader(req: Request): boolean {
  return routeOf(req.method, req.path)?.leader ?? (req.method !== 'GET' && req.method !== 'HEAD');
}

/** Middleware (under /v1, after authentication and body parsing): hands calls that change state to the leader. */
export function forwardToLeader(cluster: ClusterView, logger: Logger) {
  return async (req: Request, res: Response, next: NextFunction) => {
    if (!forLeader(req) || cluster.leadership.isLeader()) {
      next();
      return;
    }
    const leader = cluster.leadership.leader();
    if (!leader || leader.name === cluster.leadership.self.name || req.headers[FORWARDED_BY] !== undefined) {
      next(new ApiError('STATE_UNAVAILABLE', leader ? `no replica leads now (${leader.name} is being replaced); nothing was changed, send the request again` : 'no replica leads now (etcd unreachable, or an election is under way); nothing was changed, send the request again'));
      return;
    }
    const url = new URL(req.originalUrl, leader.api.endsWith('/') ? leader.api : `${leader.api}/`);
    const wait = Number(req.query.wait);
    const timeoutMs = (Number.isFinite(wait) && wait > 0 ? wait * 1000 : 0) + 30_000;
    const body = req.method !== 'GET' && req.method !== 'HEAD' && req.body !== undefined ? JSON.stringify(req.body) : undefined;
    try {
      const answer = await fetch(url, {
        method: req.method,
        headers: {
          authorization: req.headers.authorization ?? '',
          accept: 'application/json',
          [FORWARDED_BY]: cluster.leadership.self.name,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await answer.text();
      res.status(answer.status);
      res.setHeader(SERVED_BY, leader.name);
      for (const h of ['content-type', 'location', 'retry-after']) {
        const v = answer.headers.get(h);
        if (v) res.setHeader(h, v);
      }
      res.send(text);
    } catch (err) {
      logger.warn({ leader: leader.name, api: leader.api, method: req.method, path: req.path, err: (err as Error).message }, 'forwarding to the leader failed');
      next(new ApiError('STATE_UNAVAILABLE', `the leader ${leader.name} (${leader.api}) could not be reached: ${(err as Error).message}; the request may or may not have been taken: read the state before sending it again`));
    }
  };
}

/** GET /v1/cluster. */
export function clusterRoutes(cluster: ClusterView, ready: () => boolean): Router {
  const r = Router();
  r.get('/cluster', async (_req, res) => {
    const self = cluster.leadership.self;
    const leader = cluster.leadership.leader();
    const peers = await Promise.all(cluster.leadership.replicas().map(async (replica) => {
      if (replica.name === self.name) return { replica, state: readyJson(ready(), cluster) as PeerState, reachable: true };
      return { replica, ...(await peerState(replica)) };
    }));
    const head = Math.max(0, ...peers.map((p) => p.state?.revision ?? 0));
    res.json({
      replica: self.name,
      leader: leader ? { name: leader.name, api: leader.api } : null,
      revision: cluster.revision(),
      in_sync: cluster.inSync(),
      replicas: peers.map((p) => ({
        name: p.replica.name,
        api: p.replica.api,
        leader: p.replica.name === leader?.name,
        reachable: p.reachable,
        revision: p.state?.revision ?? null,
        lag: p.state?.revision !== undefined ? head - p.state.revision : null,
        in_sync: p.state?.in_sync ?? null,
        status: p.state?.status ?? null,
      })),
    });
  });
  return r;
}

interface PeerState {
  status?: string;
  revision?: number;
  in_sync?: boolean;
}

/** A peer's /readyz, or unreachable. */
async function peerState(replica: ReplicaInfo): Promise<{ state: PeerState | null; reachable: boolean }> {
  try {
    const answer = await fetch(new URL('/readyz', replica.api), { signal: AbortSignal.timeout(PEER_TIMEOUT_MS) });
    const body = (await answer.json()) as PeerState;
    return { state: typeof body === 'object' && body !== null ? body : null, reachable: true };
  } catch {
    return { state: null, reachable: false };
  }
}

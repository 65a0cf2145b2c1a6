/**
 * Routes for the routing reconcile loop:
 *   GET  /v1/routing                     every managed address: desired, confirmed and observed host, drift, repairs
 *   POST /v1/routing/reconcile           runs a pass now: 202; [?wait=SECONDS] 200 with the pass once it ended
 */
import { Router } from 'express';
import type { AddressRouting, ReconcilePass, RouteReconciler } from '../../controller/route-reconciler.js';
import { waitParam } from '../params.js';
import { emptyBody, parseBody } from '../schemas.js';

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
/** The API form of one pass. */
export function passJson(p: ReconcilePass) {
  return {
    id: p.id, trigger: p.trigger, mode: p.mode,
    started: iso(p.startedAt), ended: iso(p.endedAt), duration_ms: Math.round(p.durationMs * 1000) / 1000,
    checked: p.checked, in_sync: p.inSync, drifted: p.drifted, unknown: p.unknown,
    left_to_operation: p.leftToOperations, held: p.held, repaired: p.repaired, repairs_failed: p.repairsFailed,
    read_error: p.readError,
  };
}

/** The API form of one address (also under each address of GET /v1/servers/{server}). */
export function addressRoutingJson(a: AddressRouting) {
  return {
    address: a.address,
    family: a.family,
    server: a.server,
    desired: a.desired,
    state: a.state,
    reason: a.reason,
    confirmed: a.confirmed,
    observed: a.observed ? { host: a.observed.host, problems: a.observed.problems, at: iso(a.observed.at) } : null,
    drift_since: iso(a.driftSince),
    repairs: a.repairs,
    last_repair: a.lastRepair ? { at: iso(a.lastRepair.at), result: a.lastRepair.result, error: a.lastRepair.error } : null,
    next_repair_at: iso(a.nextRepairAt),
  };
}


export function routingRoutes(reconciler: RouteReconciler): Router {
  const r = Router();
  r.get('/routing', (_req, res) => {
    const addresses = reconciler.view();
    const count = (s: AddressRouting['state']) => addresses.filter((a) => a.state === s).length;
    const last = reconciler.lastPass();
    res.json({
      backend: reconciler.backend,
      mode: reconciler.mode,
      interval_s: reconciler.intervalMs / 1000,
      last_pass: last ? passJson(last) : null,
      summary: {
        addresses: addresses.length, in_sync: count('in_sync'), drifted: count('drifted'), unknown: count('unknown'),
        left_to_operation: count('left_to_operation'), held: count('held'), not_checked: count('not_checked'),
      },
      addresses: addresses.map(addressRoutingJson),
    });
  });
  r.post('/routing/reconcile', async (req, res) => {
    const wait = waitParam(req);
    parseBody(req, emptyBody);
    const pass = reconciler.reconcile('request');
    let done: ReconcilePass | null = null;
    if (wait > 0) {
      let timer: NodeJS.Timeout | undefined;
      done = await Promise.race([pass, new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), wait * 1000); })]);
      clearTimeout(timer);
    }
    if (done) res.status(200).json({ status: 'done', pass: passJson(done) });
    else res.status(202).location('/v1/routing').json({ status: 'running', last_pass: reconciler.lastPass() ? passJson(reconciler.lastPass()!) : null });
  });
  return r;
}

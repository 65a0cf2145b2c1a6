/**
 * Routes for reinstall jobs: cutover, cutback, operations, server status.
 *   POST /v1/servers/:server/cutover   {"transit":"transit-3"}  [?wait=SECONDS[&until=propagated]]
 *   POST /v1/servers/:server/cutback                            [?wait=SECONDS[&until=propagated]]
 *   GET  /v1/operations/:id
 *   POST /v1/operations/:id/retry                               [?wait=SECONDS]
 *   GET  /v1/servers/:server
 *   GET  /v1/servers
 * A server's status says per address what DNS answers and why (see DnsView) and, with the
 * reconcile loop, where it must be routed and where it was seen (`routing`, as in GET /v1/routing).
 */
import { Router, type Request, type Response } from 'express';
import { HOST_NAME } from '../../core/inventory.js';
import { isFinished, type Operation } from '../../core/operation.js';
import { ServiceError, type CutoverService, type ServerStatus } from '../../controller/cutover-service.js';
import type { MailAuditWarning } from '../../core/mail-audit.js';
import type { DnsAnswer, DnsAnswerLookup } from '../../controller/overlay-composer.js';
import { MigrationError } from '../../controller/migration-service.js';
import type { AddressRouting } from '../../controller/route-reconciler.js';
import { ApiError, routeWith } from '../errors.js';
import { callerOf } from '../auth.js';
import { waitParam } from '../params.js';
import { addressRoutingJson } from './routing-routes.js';
import { describeValue } from '../json-body.js';
import { cutoverBody, emptyBody, OPERATION_ID, parseBody } from '../schemas.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const round3 = (ms: number | null) => (ms === null ? null : Math.round(ms * 1000) / 1000);

/** The API form of an operation (snake_case, ISO timestamps). */
export function operationJson(op: Operation) {
  return {
    id: op.id,
    server: op.server,
    transit: op.transit,
    direction: op.direction,
    state: op.state,
    phase: op.phase,
    backend: op.backend,
    attempts: op.attempts,
    timestamps: {
      accepted: iso(op.times.accepted),
      dns_switched: iso(op.times.dnsSwitched),
      routes_applied: iso(op.times.routesApplied),
      finished: iso(op.times.finished),
    },
    durations_ms: {
      dns_switch: round3(op.durationsMs.dnsSwitch), routing: round3(op.durationsMs.routing), recovery: round3(op.durationsMs.recovery ?? null),
    },
    addresses: op.addresses.map((a) => ({
      address: a.address, family: a.family, transit_address: a.transitAddress,
      routed_to: a.routedTo, result: a.result, error: a.error,
      downtime_ms: round3(a.downtimeMs ?? null), recovered: a.recovered ?? null,
      probes_sent: a.probesSent ?? 0, probes_failed: a.probesFailed ?? 0,
    })),
    measurement: op.measurement
      ? { probe: op.measurement.probe, interval_ms: op.measurement.intervalMs, restarted: op.measurement.restarted, max_downtime_ms: round3(op.measurement.maxDowntimeMs) }
      : null,
    error: op.error,
    requested_by: op.requestedBy ?? null,
    dns_propagated: op.dnsPropagated ? Object.fromEntries(Object.entries(op.dnsPropagated).map(([k, t]) => [k, iso(t)])) : null,
  };
}

/** Where the status reads what DNS answers: the composed overlay DNS serves, and each server's accounts. */
export interface DnsView {
  answers(): DnsAnswerLookup;
  /** The accounts whose home is `server`, with their zone keys ("acme.test."). */
  accountsOf(server: string): { name: string; zones: readonly string[] }[];
}

const dnsJson = (d: DnsAnswer) => ({ answer: d.answer, reason: d.reason, transit: d.transit, ttl_cap: d.ttlCap });

/**
 * Per address: `dns_answer` and `dns` (answer, reason, transit, ttl_cap) for records in zones of no
 * account of the server, and `dns.accounts[]` with the same for each account's zones. Without a
 * DnsView (no composer), only the server overlay is known.
 */
function addressesJson(s: ServerStatus, view?: DnsView, routes?: Map<string, AddressRouting>) {
  const lookup = view?.answers();
  const accounts = view?.accountsOf(s.name) ?? [];
  return s.addresses.map((a) => {
    const general: DnsAnswer = lookup?.(a)
      ?? (a.transitAddress
        ? { answer: a.transitAddress, reason: 'server_overlay', transit: s.overlay.active ? s.overlay.transit : null, ttlCap: s.overlay.active ? s.overlay.ttlCap : null }
        : { answer: a.address, reason: 'base_zone', transit: null, ttlCap: null });
    return {
      address: a.address,
      family: a.family,
      routed_to: a.routedTo,
      dns_answer: general.answer,
      dns: {
        ...dnsJson(general),
        accounts: accounts.map((acc) => ({
          account: acc.name,
          zones: acc.zones.map((z) => (z.endsWith('.') && z.length > 1 ? z.slice(0, -1) : z)),
          ...dnsJson(lookup && acc.zones.length > 0 ? lookup(a, acc.zones[0]) : general),
        })),
      },
      ...(routes ? { routing: routingOf(routes.get(a.address)) } : {}),
    };
  });
}

/** What the reconcile loop knows of each address, by address (GET /v1/routing's entries). */
export type RoutingView = () => Map<string, AddressRouting>;

/** An address's routing entry without the fields the server view already gives. */
function routingOf(a: AddressRouting | undefined) {
  if (!a) return null;
  const { address: _a, family: _f, server: _s, ...rest } = addressRoutingJson(a);
  return rest;
}

function statusJson(s: ServerStatus, view?: DnsView, routes?: Map<string, AddressRouting>) {
  return {
    name: s.name,
    addresses: addressesJson(s, view, routes),
    overlay: s.overlay.active
      ? { active: true, transit: s.overlay.transit, since: iso(s.overlay.since), operation: s.overlay.operationId, ttl_cap: s.overlay.ttlCap }
      : { active: false },
    operations: s.operations.map(operationJson),
  };
}

const STATUS: Record<string, number> = {
  SERVER_NOT_FOUND: 404, TRANSIT_NOT_FOUND: 404, OPERATION_NOT_FOUND: 404,
  ALREADY_CUT_OVER: 409, NOT_CUT_OVER: 409, OPERATION_IN_PROGRESS: 409, TRANSIT_IN_USE: 409,
  TRANSIT_TOO_SMALL: 409, NOT_RETRYABLE: 409,
};

function fromService(err: unknown): unknown {
  if (err instanceof ServiceError) return new ApiError(err.code as never, err.message, STATUS[err.code] ?? 409);
  // refusals of the migration lifecycle (e.g. ACCOUNTS_NOT_ON_TRANSIT) carry their own status and details
  if (err instanceof MigrationError) return new ApiError(err.code as never, err.message, err.status, err.details);
  return err;
}

/** A server or transit name from the path; 400 when it cannot be a name. */
function nameParam(req: Request, key: string): string {
  const v = req.params[key];
  if (typeof v !== 'string' || !HOST_NAME.test(v)) {
    throw new ApiError('BAD_REQUEST', `${key} ${describeValue(v)} is not a valid name (lower-case letters, digits and hyphens)`, 400);
  }
  return v;
}


/** ?until=: what ?wait= waits for: the operation's end (`done`, the default) or its DNS change served by every secondary (`propagated`). */
function untilParam(req: Request): 'done' | 'propagated' {
  const u = req.query.until;
  if (u === undefined || u === 'done') return 'done';
  if (u === 'propagated') return 'propagated';
  throw new ApiError('BAD_REQUEST', `until must be "done" or "propagated", not ${describeValue(u)}`, 400);
}

/**
 * Answers with an accepted operation: waits when asked (for its end, or with until=propagated
 * until every secondary serves its DNS change); 202 while that has not happened, 200 once it has
 * (or when the operation was already there).
 */
async function respondAccepted(res: Response, svc: CutoverService, op: Operation, created: boolean, wait: number, until: 'done' | 'propagated' = 'done', extra: Record<string, unknown> = {}) {
  let out = op;
  let reached: boolean;
  if (until === 'propagated') {
    const r = await svc.waitForPropagation(op.id, wait * 1000);
    out = r.operation;
    reached = r.propagated;
  } else {
    if (wait > 0 && !isFinished(op)) out = await svc.waitFor(op.id, wait * 1000);
    reached = isFinished(out);
  }
  const status = !created || reached ? 200 : 202;
  res.status(status).location(`/v1/operations/${out.id}`).json({ ...operationJson(svc.withKnownPropagation(out)), ...extra });
}

/** What a cutover of a server is warned about (the migration's MX audit: domains still sending mail to it). */
export type CutoverWarnings = (server: string) => MailAuditWarning[];

/** The API form of a cutover warning. */
export function warningJson(w: MailAuditWarning) {
  return { code: w.code, account: w.account, domain: w.domain, fixes: w.fixes, audited_at: new Date(w.auditedAt).toISOString(), message: w.message };
}

/** The router for cutover use cases. */
export function cutoverRoutes(svc: CutoverService, dns?: DnsView, routing?: RoutingView, warnings?: CutoverWarnings): Router {
  const r = Router();
  const wrap = routeWith(fromService);
  r.post('/servers/:server/cutover', wrap(async (req, res) => {
    const server = nameParam(req, 'server');
    const wait = waitParam(req);
    const b = parseBody(req, cutoverBody);
    const until = untilParam(req);
    const { operation, created } = await svc.cutover(server, b.transit, { force: b.force === true, requestedBy: callerOf(res)?.name });
    // from the last MX audit recorded: never waits for DNS lookups, never refuses
    await respondAccepted(res, svc, operation, created, wait, until, { warnings: (warnings?.(server) ?? []).map(warningJson) });
  }));
  r.post('/servers/:server/cutback', wrap(async (req, res) => {
    const server = nameParam(req, 'server');
    const wait = waitParam(req);
    const until = untilParam(req);
    parseBody(req, emptyBody);
    const { operation, created } = await svc.cutback(server, { requestedBy: callerOf(res)?.name });
    await respondAccepted(res, svc, operation, created, wait, until);
  }));
  r.get('/servers', wrap((_req, res) => {
    const routes = routing?.();
    res.json({ servers: svc.statusAll().map((s) => statusJson(s, dns, routes)) });
  }));
  r.get('/servers/:server', wrap((req, res) => {
    const status = svc.status(nameParam(req, 'server'));
    res.json(statusJson(status, dns, routing?.()));
  }));
  r.get('/operations/:id', wrap((req, res) => {
    const id = String(req.params.id);
    if (!OPERATION_ID.test(id)) throw new ApiError('BAD_REQUEST', 'id is not a valid operation id', 400);
    res.json(operationJson(svc.withKnownPropagation(svc.getOperation(id))));
  }));
  r.post('/operations/:id/retry', wrap(async (req, res) => {
    const id = String(req.params.id);
    if (!OPERATION_ID.test(id)) throw new ApiError('BAD_REQUEST', 'id is not a valid operation id', 400);
    const wait = waitParam(req);
    parseBody(req, emptyBody);
    await respondAccepted(res, svc, await svc.retry(id), true, wait);
  }));
  return r;
}

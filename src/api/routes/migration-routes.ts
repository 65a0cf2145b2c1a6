/**
 * Routes of the migration lifecycle:
 *   POST   /v1/servers/:server/migration      {"reinstall_at": ISO 8601}?   assign a transit or queue
 *   GET    /v1/servers/:server/migration      state, transit, queue position, billing, accounts, MX audit
 *   DELETE /v1/servers/:server/migration      cancel (409 while accounts are on the transit or a cutover is active)
 *   POST   /v1/servers/:server/reinstalled    from the reinstall job
 *   POST   /v1/accounts/:account/move         {"to":"transit"|"home","phase":"started"|"completed"|"failed"}
 *   GET    /v1/accounts/:account              where the account is
 *   GET    /v1/transits                       the pool and the queue per profile
 */
import { Router, type Request, type Response } from 'express';
import { HOST_NAME } from '../../core/inventory.js';
import type { Migration } from '../../core/migration.js';
import { mailAuditCounts, type MigrationMailAudit } from '../../core/mail-audit.js';
import { MigrationError, type MigrationService, type MigrationView } from '../../controller/migration-service.js';
import { ApiError, routeWith } from '../errors.js';
import { describeValue } from '../json-body.js';
import { emptyBody, migrationBody, moveBody, parseBody } from '../schemas.js';

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** The API form of a migration. */
export function migrationJson(m: Migration, v?: MigrationView) {
  return {
    server: m.server,
    profile: m.profile,
    state: m.state,
    transit: m.transit,
    queue_position: v?.queuePosition ?? null,
    requested_at: iso(m.requestedAt),
    assigned_at: iso(m.assignedAt),
    free_until: iso(v?.freeUntil ?? null),
    billing: v?.billing
      ? {
        currency: v.billing.currency,
        billable_days: v.billing.billableDays,
        amount: v.billing.amount,
        amount_exact: v.billing.amountExact,
        months: v.billing.months.map((x) => ({ month: x.month, days: x.days, days_in_month: x.daysInMonth, amount: x.amount })),
      }
      : null,
    reinstall_at: iso(m.reinstallAt),
    ttl_plan: m.ttlPlan
      ? {
        max_ttl: m.ttlPlan.maxTtl, lowered_ttl: m.ttlPlan.loweredTtl, lower_from: iso(m.ttlPlan.lowerFrom),
        cache_safe_at: iso(m.ttlPlan.cacheSafeAt), late: m.ttlPlan.late,
      }
      : null,
    cutover: m.cutover
      ? {
        at: iso(m.cutover.at), forced: m.cutover.forced, accounts_not_on_transit: m.cutover.accountsNotOnTransit,
        stale_until: iso(m.cutover.staleUntil), stale_for_ms: m.cutover.staleForMs, cache_safe: m.cutover.cacheSafe,
      }
      : null,
    reinstalled_at: iso(m.reinstalledAt),
    cutback_at: iso(m.cutbackAt),
    finished_at: iso(m.finishedAt),
    accounts: m.accounts.map((a) => ({
      name: a.name,
      location: a.location,
      moves: a.moves.map((mv) => ({
        direction: mv.direction, started_at: iso(mv.startedAt), completed_at: iso(mv.completedAt),
        downtime_ms: mv.downtimeMs ?? (mv.completedAt !== null ? mv.completedAt - mv.startedAt : null),
        failed_at: iso(mv.failedAt), error: mv.error,
        probe: mv.probe
          ? { downtime_ms: mv.probe.downtimeMs, recovered: mv.probe.recovered, probes_sent: mv.probe.probesSent, probes_failed: mv.probe.probesFailed }
          : null,
      })),
    })),
    mx_audit: m.mxAudit ? mxAuditJson(m.mxAudit) : null,
    allowed: v?.allowed ?? [],
    history: m.history.map((h) => ({ at: iso(h.at), event: h.event, from: h.from, to: h.to, ...(h.account ? { account: h.account } : {}), ...(h.forced ? { forced: true } : {}) })),
  };
}

/**
 * The API form of a migration's MX audit: the state of the latest audit started (running, done,
 * missing with its reason) and the results of the last one that gave some, per domain in the
 * audit's JSON shape with its account.
 */
export function mxAuditJson(a: MigrationMailAudit) {
  return {
    state: a.state,
    trigger: a.trigger,
    started_at: iso(a.startedAt),
    reason: a.reason,
    audited_at: iso(a.auditedAt),
    counts: mailAuditCounts(a),
    domains: a.domains.map((d) => ({ account: d.account, domain: d.domain, verdict: d.verdict, checks: d.checks, ...(d.error ? { error: d.error } : {}) })),
  };
}

function name(req: Request, key: string): string {
  const v = req.params[key];
  if (typeof v !== 'string' || !HOST_NAME.test(v)) throw new ApiError('BAD_REQUEST', `${key} ${describeValue(v)} is not a valid name`, 400);
  return v;
}

/** The router for the migration lifecycle. */
export function migrationRoutes(svc: MigrationService): Router {
  const r = Router();
  const wrap = routeWith((err) => (err instanceof MigrationError ? new ApiError(err.code as never, err.message, err.status, err.details) : err));
  const show = (res: Response, server: string, status = 200) => res.status(status).json(migrationJson(svc.view(server).migration, svc.view(server)));

  r.post('/servers/:server/migration', wrap(async (req, res) => {
    const server = name(req, 'server');
    const b = parseBody(req, migrationBody);
    const reinstallAt = typeof b.reinstall_at === 'string' ? Date.parse(b.reinstall_at) : null;
    const { created } = await svc.request(server, reinstallAt);
    show(res, server, created ? 201 : 200);
  }));
  r.get('/servers/:server/migration', wrap((req, res) => {
    show(res, name(req, 'server'));
  }));
  r.delete('/servers/:server/migration', wrap(async (req, res) => {
    const server = name(req, 'server');
    await svc.cancel(server);
    show(res, server);
  }));
  r.post('/servers/:server/reinstalled', wrap(async (req, res) => {
    const server = name(req, 'server');
    parseBody(req, emptyBody);
    await svc.reinstalled(server);
    show(res, server);
  }));
  r.post('/accounts/:account/move', wrap(async (req, res) => {
    const account = name(req, 'account');
    const b = parseBody(req, moveBody);
    const m = await svc.move(account, b.to, b.phase, { downtimeMs: b.downtime_ms, error: b.error });
    const entry = m.accounts.find((a) => a.name === account)!;
    res.json({ account, server: m.server, location: entry.location, migration_state: m.state, transit: m.transit });
  }));
  r.get('/accounts/:account', wrap((req, res) => {
    const st = svc.accountStatus(name(req, 'account'));
    res.json({
      account: st.account.name, server: st.account.server, zones: st.account.zones.map((z) => z.slice(0, -1)),
      location: st.location, transit: st.migration?.transit ?? null, migration_state: st.migration?.state ?? null,
    });
  }));
  r.get('/transits', wrap((_req, res) => {
    const t = svc.transits();
    res.json({
      transits: t.transits.map((x) => ({ ...x, since: iso(x.since) })),
      profiles: t.profiles,
      queue: t.queue.map((q) => ({ ...q, requested_at: iso(q.requested_at) })),
    });
  }));
  return r;
}

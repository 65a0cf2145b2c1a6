/**
 * The HTTP API (express 5): /healthz, /readyz and /metrics without authentication; everything
 * under /v1 behind a bearer token compared in constant time. Errors are JSON with stable codes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CutoverService } from '../controller/cutover-service.js';
import { StateFencedError, StateUnavailableError } from '../core/ports.js';
import { ApiError, errorBody, ERROR_STATUS } from './errors.js';
import { jsonBody } from './json-body.js';
import { cutoverRoutes } from './routes/cutover-routes.js';
import { mxAuditRoutes } from './routes/mx-audit-routes.js';
import { migrationRoutes } from './routes/migration-routes.js';
import type { MigrationService } from '../controller/migration-service.js';
import type { InventoryService } from '../controller/inventory-service.js';
import { inventoryRoutes } from './routes/inventory-routes.js';
import type { MxAuditor } from '../audit/mx-audit.js';
import type { DnsAnswerLookup } from '../controller/overlay-composer.js';
import type { RouteReconciler } from '../controller/route-reconciler.js';
import { routingRoutes } from './routes/routing-routes.js';
import { clusterRoutes, forwardToLeader, readyJson, type ClusterView } from './routes/cluster-routes.js';

/** What the API reads from the running controller. */
export interface ApiDeps {
  registry: Registry;
  logger: Logger;
  /** The bearer token required under /v1. */
  token: string;
  /** Ready: zones loaded and listeners bound. */
  ready(): boolean;
  /** Served zones, for GET /v1/zones. */
  zones(): { zone: string; serial: number; records: number }[];
  /** Zone files that failed at the last load. */
  zoneErrors(): { file: string; line?: number; reason: string; keptPrevious: boolean }[];
  /** Cutover use cases (absent when no inventory is configured). */
  cutover?: CutoverService;
  /** The MX audit, and a hook for each verdict (metrics). */
  mxAuditor?: MxAuditor;
  migrations?: MigrationService;
  inventory?: InventoryService;
  onMxVerdict?: (verdict: string) => void;
  /** What DNS answers per address and why, from the composed overlay DNS serves (GET /v1/servers). */
  dnsAnswers?: () => DnsAnswerLookup;
  /** The routing reconcile loop (GET /v1/routing, POST /v1/routing/reconcile, and each server's addresses). */
  routing?: RouteReconciler;
  /** Replicas sharing state on etcd: GET /v1/cluster, /readyz in sync, mutating calls handed to the leader. */
  cluster?: ClusterView;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Express middleware: 401 unless `Authorization: Bearer <token>` matches exactly. */
export function bearerAuth(token: string) {
  const expected = digest(token);
  return (req: Request, _res: Response, next: NextFunction) => {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer ([^\s]+)$/.exec(h) : null;
    // hash both sides so the comparison takes the same time whatever the length
    if (!m || !timingSafeEqual(digest(m[1]), expected)) {
      next(new ApiError('UNAUTHORIZED', 'a valid bearer token is required'));
      return;
    }
    next();
  };
}

/** Builds the express application (not listening). */
export function createApiApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const body = readyJson(deps.ready(), deps.cluster);
    res.status(body.status === 'ready' ? 200 : 503).json(body);
  });
  app.get('/metrics', async (_req, res, next) => {
    try {
      const body = await deps.registry.metrics();
      res.type(deps.registry.contentType).send(body);
    } catch (err) {
      next(err);
    }
  });

  const v1 = express.Router();
  v1.use(bearerAuth(deps.token));
  // bodies: 1 MiB, except bulk MX audits (10,000 names); UTF-8, nesting checked before parsing
  const jsonSmall = jsonBody('1mb');
  const jsonLarge = jsonBody('4mb');
  v1.use((req, res, next) => (req.path === '/mx-audit' ? jsonLarge : jsonSmall)(req, res, next));
  if (deps.cluster) {
    v1.use(forwardToLeader(deps.cluster, deps.logger.child({ component: 'api' })));
    v1.use(clusterRoutes(deps.cluster, deps.ready));
  }
  v1.get('/zones', (_req, res) => {
    res.json({ zones: deps.zones(), errors: deps.zoneErrors() });
  });
  if (deps.inventory) v1.use(inventoryRoutes(deps.inventory));
  if (deps.migrations) v1.use(migrationRoutes(deps.migrations));
  if (deps.cutover) {
    const answers = deps.dnsAnswers;
    const dnsView = answers
      ? {
        answers,
        accountsOf: (server: string) => [...(deps.inventory?.live.accounts?.values() ?? [])].filter((a) => a.server === server),
      }
      : undefined;
    const routing = deps.routing;
    const migrations = deps.migrations;
    v1.use(cutoverRoutes(deps.cutover, dnsView, routing ? () => new Map(routing.view().map((a) => [a.address, a])) : undefined,
      migrations ? (server) => migrations.cutoverWarnings(server) : undefined));
  }
  if (deps.routing) v1.use(routingRoutes(deps.routing));
  if (deps.mxAuditor) v1.use(mxAuditRoutes(deps.mxAuditor, deps.onMxVerdict));
  app.use('/v1', v1);

  app.use((req, _res, next) => next(new ApiError('NOT_FOUND', `no route for ${req.method} ${req.path}`)));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let status: number = ERROR_STATUS.INTERNAL;
    let code = 'INTERNAL';
    let message = 'internal error';
    let details: Record<string, unknown> | undefined;
    if (err instanceof ApiError) {
      status = err.status;
      code = err.code;
      message = err.message;
      details = err.details;
    } else if (err instanceof StateFencedError) {
      // a replica that lost its leadership while taking the request: nothing was written
      status = ERROR_STATUS.STATE_UNAVAILABLE;
      code = 'STATE_UNAVAILABLE';
      message = `this replica is no longer the leader; nothing was changed, send the request again: ${err.message}`;
    } else if (err instanceof StateUnavailableError) {
      // storage full or failing: the change was not committed, so nothing changed; the same request can be sent again
      status = ERROR_STATUS.STATE_UNAVAILABLE;
      code = 'STATE_UNAVAILABLE';
      message = `the state store is unavailable (storage full or failing); nothing was changed, try again later: ${err.message}`;
      deps.logger.error({ err: err.message, method: req.method, path: req.path }, 'api request refused: the state store is unavailable');
    } else if (isHttpError(err)) {
      status = err.status;
      code = err.type === 'entity.too.large' ? 'PAYLOAD_TOO_LARGE' : status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST';
      message = err.type === 'entity.parse.failed' ? 'the body is not valid JSON' : err.message;
    } else {
      deps.logger.error({ err, method: req.method, path: req.path }, 'api internal error');
    }
    if (status >= 500 || status === 401) deps.logger.warn({ method: req.method, path: req.path, status, code }, 'api request failed');
    res.status(status).json(errorBody(code, message, details));
  });
  return app;
}

function isHttpError(e: unknown): e is { status: number; type?: string; message: string } {
  return typeof e === 'object' && e !== null && typeof (e as { status?: unknown }).status === 'number' && (e as { status: number }).status < 500;
}

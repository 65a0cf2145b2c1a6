/**
 * The HTTP API (express 5): /healthz, /readyz, /metrics, /openapi.json and the page at /ui without authentication; everything
 * under /v1 behind bearer tokens with roles (compared in constant time; the role checked before a
 * call is handed to the leader). Errors are JSON with stable codes.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CutoverService } from '../controller/cutover-service.js';
import { StateFencedError, StateUnavailableError } from '../core/ports.js';
import { ApiError, errorBody, ERROR_STATUS } from './errors.js';
import { authenticate, authorize, callerOf } from './auth.js';
import type { ApiToken } from './config-schema.js';
import { roleFor } from './route-catalog.js';
import { openApiDocument } from './openapi.js';
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
import { uiRoutes } from './ui.js';

/** What the API reads from the running controller. */
export interface ApiDeps {
  registry: Registry;
  logger: Logger;
  /** The bearer tokens accepted under /v1, with their names and roles. */
  tokens: readonly ApiToken[];
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

/**
 * Middleware: one log line per /v1 call once answered, with the token's name (never the token):
 * `info` for calls that change state, `warn` for refusals (401, 403) and failures (5xx), `debug` for reads.
 */
function requestLog(logger: Logger) {
  return (req: Request, res: Response, next: NextFunction) => {
    const t0 = process.hrtime.bigint();
    res.on('finish', () => {
      const status = res.statusCode;
      const level = status >= 500 || status === 401 || status === 403 ? 'warn' : roleFor(req.method, req.path) !== 'read' ? 'info' : 'debug';
      const ms = Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100;
      const code = res.locals.errorCode as string | undefined;
      logger[level]({ method: req.method, path: req.baseUrl + req.path, status, ...(code ? { code } : {}), token: callerOf(res)?.name ?? null, ms }, 'api request');
    });
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
  app.get('/openapi.json', (_req, res) => {
    res.json(openApiDocument());
  });
  app.get('/metrics', async (_req, res, next) => {
    try {
      const body = await deps.registry.metrics();
      res.type(deps.registry.contentType).send(body);
    } catch (err) {
      next(err);
    }
  });

  // the page: static files, no token (its data comes from /v1 with the user's token)
  app.use('/ui', uiRoutes());

  const v1 = express.Router();
  v1.use(requestLog(deps.logger));
  v1.use(authenticate(deps.tokens));
  // before a follower hands the call to the leader (which checks it again): a read token never changes state through a follower
  v1.use(authorize(roleFor));
  // bodies: 1 MiB, except bulk MX audits (10,000 names); UTF-8, nesting checked before parsing
  const jsonSmall = jsonBody('1mb');
  const jsonLarge = jsonBody('4mb');
  v1.use((req, res, next) => (req.path === '/mx-audit' ? jsonLarge : jsonSmall)(req, res, next));
  if (deps.cluster) {
    v1.use(forwardToLeader(deps.cluster, deps.logger.child({ component: 'api' })));
    v1.use(clusterRoutes(deps.cluster, deps.ready));
  }
  v1.get('/whoami', (_req, res) => {
    res.json(callerOf(res));
  });
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
    res.locals.errorCode = code; // for the request's log line
    res.status(status).json(errorBody(code, message, details));
  });
  return app;
}

function isHttpError(e: unknown): e is { status: number; type?: string; message: string } {
  return typeof e === 'object' && e !== null && typeof (e as { status?: unknown }).status === 'number' && (e as { status: number }).status < 500;
}

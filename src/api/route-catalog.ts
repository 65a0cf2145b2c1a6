/**
 * Every /v1 route: method, path (express form, under /v1), the role it needs, its query
 * parameters, request body (a zod schema of schemas.ts), answers and the error codes it returns
 * besides those every route may return (see commonErrors). The role check (before a call is
 * handed to the leader) and the OpenAPI document (openapi.ts) read it; a test walks the express
 * router against it and makes each route return each documented code.
 */
import type { z } from 'zod';
import type { Role } from './config-schema.js';
import { cutoverBody, cutoverResponse, emptyBody, migrationBody, migrationResponse, moveBody, moveResponse, mxAuditBody, operationResponse, whoamiResponse } from './schemas.js';

export type Method = 'get' | 'post' | 'put' | 'delete';
export type QueryParam = 'wait' | 'until';

/** One /v1 route. */
export interface RouteSpec {
  method: Method;
  /** Under /v1, express form: `/servers/:server/cutover`. */
  path: string;
  role: Role;
  summary: string;
  /** The OpenAPI tag (the README's grouping). */
  tag: string;
  query: QueryParam[];
  /** The request body's schema; `inventory:<kind>` for an inventory entry (validated as the config file is). */
  body?: z.ZodObject | `inventory:${'servers' | 'transits' | 'accounts'}`;
  /** Success answers: status and what it means. */
  ok: Record<number, string>;
  /** The schema of the success answers' body, where one is documented. */
  answer?: z.ZodType;
  /** Error codes of this route beyond commonErrors. */
  errors: string[];
  /** Only a replica that leads answers it (a follower hands it to the leader). */
  leader: boolean;
}

interface Extra { query?: QueryParam[]; body?: RouteSpec['body']; ok?: Record<number, string>; answer?: z.ZodType; errors?: string[]; leader?: boolean }

const route = (method: Method, path: string, role: Role, tag: string, summary: string, x: Extra = {}): RouteSpec => ({
  method, path, role, summary, tag,
  query: x.query ?? [], body: x.body, ok: x.ok ?? { 200: 'OK' }, answer: x.answer, errors: x.errors ?? [],
  // every call that is not a read is the leader's; GET /v1/routing is what the leader's loop observed
  leader: x.leader ?? (role !== 'read'),
});

const OPERATION = { 200: 'The operation, finished (or it was there already)', 202: 'The operation, accepted and running (Location: /v1/operations/{id})' };
const CUTOVER_ERRORS = ['SERVER_NOT_FOUND', 'TRANSIT_NOT_FOUND', 'ALREADY_CUT_OVER', 'TRANSIT_IN_USE', 'TRANSIT_TOO_SMALL', 'OPERATION_IN_PROGRESS',
  'TRANSIT_MISMATCH', 'ACCOUNTS_NOT_ON_TRANSIT', 'INVALID_TRANSITION'];

/** The routes, in the README's order. */
export const ROUTES: readonly RouteSpec[] = [
  route('get', '/whoami', 'read', 'tokens', "The caller's token: its name and role", { answer: whoamiResponse }),
  route('get', '/cluster', 'read', 'replicas', 'This replica, the leader and every replica (state on etcd)'),
  route('get', '/zones', 'read', 'dns', 'The served zones and the zone files that failed at the last load'),
  route('post', '/servers/:server/cutover', 'operate', 'operations', 'Cut a server over to a transit: DNS before the answer, routing after',
    { query: ['wait', 'until'], body: cutoverBody, ok: OPERATION, answer: cutoverResponse, errors: CUTOVER_ERRORS }),
  route('post', '/servers/:server/cutback', 'operate', 'operations', 'Cut a server back from its transit',
    { query: ['wait', 'until'], body: emptyBody, ok: OPERATION, answer: operationResponse, errors: ['SERVER_NOT_FOUND', 'NOT_CUT_OVER', 'OPERATION_IN_PROGRESS'] }),
  route('get', '/operations/:id', 'read', 'operations', 'An operation (cutover or cutback)', { answer: operationResponse, errors: ['OPERATION_NOT_FOUND'] }),
  route('post', '/operations/:id/retry', 'operate', 'operations', 'Run a failed operation again',
    { query: ['wait'], body: emptyBody, ok: OPERATION, answer: operationResponse, errors: ['OPERATION_NOT_FOUND', 'NOT_RETRYABLE'] }),
  route('get', '/servers', 'read', 'servers', 'Every server with its addresses, overlay and last operations'),
  route('get', '/servers/:server', 'read', 'servers', 'A server: its addresses, where DNS answers and routing deliver them, its last operations',
    { errors: ['SERVER_NOT_FOUND'] }),
  route('get', '/routing', 'read', 'routing', 'Where every server address must be delivered and where it was found', { leader: true }),
  route('post', '/routing/reconcile', 'operate', 'routing', 'Run a reconcile pass now',
    { query: ['wait'], body: emptyBody, ok: { 200: 'The pass, ended', 202: 'The pass, running' } }),
  route('post', '/servers/:server/migration', 'operate', 'migrations', 'Request a migration: assign a transit or queue',
    { body: migrationBody, ok: { 200: 'The migration already requested', 201: 'The migration, requested' }, answer: migrationResponse, errors: ['SERVER_NOT_FOUND', 'NO_TRANSIT_FOR_PROFILE'] }),
  route('get', '/servers/:server/migration', 'read', 'migrations', "A server's migration", { answer: migrationResponse, errors: ['MIGRATION_NOT_FOUND'] }),
  route('delete', '/servers/:server/migration', 'operate', 'migrations', 'Cancel a migration',
    { answer: migrationResponse, errors: ['NO_MIGRATION', 'CANCEL_BLOCKED'] }),
  route('post', '/servers/:server/reinstalled', 'operate', 'migrations', 'Report the reinstall done',
    { body: emptyBody, answer: migrationResponse, errors: ['NO_MIGRATION', 'INVALID_TRANSITION'] }),
  route('post', '/accounts/:account/move', 'operate', 'migrations', "Report an account move's progress",
    { body: moveBody, answer: moveResponse, errors: ['ACCOUNT_NOT_FOUND', 'NO_MIGRATION', 'UNKNOWN_ACCOUNT', 'MOVE_NOT_ALLOWED', 'ACCOUNT_NOT_MOVABLE', 'ACCOUNT_NOT_MOVING', 'INVALID_TRANSITION'] }),
  route('get', '/accounts/:account', 'read', 'migrations', 'Where an account is', { errors: ['ACCOUNT_NOT_FOUND'] }),
  route('get', '/transits', 'read', 'migrations', 'The transits, who holds each since when, the queue per profile'),
  route('get', '/inventory', 'read', 'inventory', 'The inventory (servers, transits, accounts) with the stored edits applied'),
  ...(['servers', 'transits', 'accounts'] as const).flatMap((kind) => [
    route('put', `/${kind}/:name`, 'admin', 'inventory', `Create or replace a ${kind.slice(0, -1)} of the inventory`,
      { body: `inventory:${kind}`, ok: { 200: 'Replaced', 201: 'Created' }, errors: ['INVALID_INVENTORY', 'IN_USE'] }),
    route('delete', `/${kind}/:name`, 'admin', 'inventory', `Remove a ${kind.slice(0, -1)} from the inventory`,
      { ok: { 204: 'Removed' }, errors: [`${kind.slice(0, -1).toUpperCase()}_NOT_FOUND`, 'IN_USE'] }),
  ]),
  route('get', '/mx-audit/:domain', 'read', 'mx-audit', "Audit a domain's MX records"),
  route('post', '/mx-audit', 'read', 'mx-audit', 'Audit up to 10,000 domains', { body: mxAuditBody, leader: false }),
];

/**
 * The error codes every route may return besides its own: 401 without a valid token, 400/413/415
 * for a body that is not JSON, too large or not UTF-8, 403 where the route needs more than read,
 * 503 STATE_UNAVAILABLE where only the leader answers (no leader, or the store failing). INTERNAL
 * (500, a defect) is documented once for all.
 */
export function commonErrors(r: RouteSpec): string[] {
  return ['BAD_REQUEST', 'UNAUTHORIZED', ...(r.role !== 'read' ? ['FORBIDDEN'] : []), 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE',
    ...(r.leader ? ['STATE_UNAVAILABLE'] : [])];
}

/** A path pattern as a regular expression over a request's path under /v1. */
function pattern(path: string): RegExp {
  // case-insensitive and with an optional trailing slash, as express matches
  return new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z_]+/g, '[^/]+')}/?$`, 'i');
}

const MATCHERS = ROUTES.map((r) => ({ r, re: pattern(r.path) }));

/** The route a call reaches (HEAD as GET), or undefined. */
export function routeOf(method: string, path: string): RouteSpec | undefined {
  const m = (method === 'HEAD' ? 'GET' : method).toLowerCase();
  return MATCHERS.find((x) => x.r.method === m && x.re.test(path))?.r;
}

/**
 * The role a call needs: its route's; for a call no route serves (404), `read` to read and
 * `admin` for anything else, so that a path express would match but this table does not can
 * never let a lesser role change state.
 */
export function roleFor(method: string, path: string): Role {
  return routeOf(method, path)?.role ?? (method === 'GET' || method === 'HEAD' ? 'read' : 'admin');
}

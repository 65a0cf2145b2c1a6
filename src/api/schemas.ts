/**
 * The request bodies and path parameters of the /v1 routes, as zod schemas: the routes validate
 * with them (parseBody) and the OpenAPI document is generated from them (openapi.ts), so the two
 * cannot disagree. Also the answers documented with a schema (operations, migrations, moves), which a test checks
 * real answers against. Every refusal is 400 BAD_REQUEST listing every problem as `field: reason`,
 * values described without walking them.
 */
import type { Request } from 'express';
import { z } from 'zod';
import { HOST_NAME } from '../core/inventory.js';
import { MIGRATION_EVENTS, MIGRATION_STATES, type MigrationEventType, type MigrationState } from '../core/migration.js';
import { MAIL_AUDIT_VERDICTS } from '../core/mail-audit.js';
import { ApiError } from './errors.js';
import { describeValue, fieldName } from './json-body.js';

/** An operation id in a path. */
export const OPERATION_ID = /^[A-Za-z0-9_-]{1,80}$/;
/** Longest `error` text accepted on a failed move. */
export const MAX_MOVE_ERROR = 2000;
/** Most domains accepted by one POST /v1/mx-audit. */
export const MAX_AUDIT_DOMAINS = 10_000;

type Issue = z.core.$ZodRawIssue;
/** "is required" when absent, else `${what}, not <value>`. */
const expected = (what: string) => (iss: Issue) => (iss.input === undefined ? 'is required' : `${what}, not ${describeValue(iss.input)}`);

/** A host name (server, transit, account) in a body. */
const hostName = () => z.string({ error: expected('must be a string') })
  .regex(HOST_NAME, { error: (iss) => `${describeValue(iss.input)} is not a valid name` });

/** POST /v1/servers/{server}/cutover. */
export const cutoverBody = z.strictObject({
  transit: hostName().meta({ description: 'the transit standing in for the server', examples: ['transit-3'] }),
  force: z.boolean({ error: expected('must be a boolean') }).optional()
    .meta({ description: "a migration's cutover although accounts are not on the transit yet" }),
});

/** A body with no fields (`{}`, or none at all). */
export const emptyBody = z.strictObject({});

/** POST /v1/servers/{server}/migration. */
export const migrationBody = z.strictObject({
  reinstall_at: z.string({ error: expected('must be an ISO 8601 date-time (e.g. 2026-12-01T06:00:00Z)') })
    .refine((v) => /^\d{4}-\d\d-\d\dT/.test(v) && Number.isFinite(Date.parse(v)), { error: (iss) => `${describeValue(iss.input)} is not an ISO 8601 date-time (e.g. 2026-12-01T06:00:00Z)` })
    .nullable().optional()
    .meta({ format: 'date-time', description: 'when the reinstall starts: TTLs are lowered ahead of it' }),
});

/** POST /v1/accounts/{account}/move. */
export const moveBody = z.strictObject({
  to: z.enum(['transit', 'home'], { error: (iss) => `must be "transit" or "home", not ${describeValue(iss.input)}` }),
  phase: z.enum(['started', 'completed', 'failed'], { error: (iss) => `must be "started", "completed" or "failed", not ${describeValue(iss.input)}` }),
  downtime_ms: z.number({ error: expected('must be a number of milliseconds (0 or more)') })
    .min(0, { error: (iss) => `must be a number of milliseconds (0 or more), not ${describeValue(iss.input)}` }).optional()
    .meta({ description: 'the downtime the move measured' }),
  error: z.string({ error: expected(`must be a string of at most ${MAX_MOVE_ERROR} characters`) })
    .max(MAX_MOVE_ERROR, { error: (iss) => `must be a string of at most ${MAX_MOVE_ERROR} characters, not ${describeValue(iss.input)}` }).optional()
    .meta({ description: 'why a move failed (phase "failed")' }),
});

/**
 * POST /v1/mx-audit. An item that is not a domain name (or not a string) comes back as an INVALID
 * result; other members of the body are ignored.
 */
export const mxAuditBody = z.object({
  domains: z.array(z.unknown().meta({ description: 'a domain name', type: 'string' }), { error: () => 'must be an array of domain names' })
    .min(1, { error: () => 'is empty' })
    .max(MAX_AUDIT_DOMAINS, { error: (iss) => `at most ${MAX_AUDIT_DOMAINS} domains per request (got ${(iss.input as unknown[]).length})` }),
}, { error: () => 'the body must be a JSON object {"domains":[...]}' });

/** Path parameters by name: how each is checked and documented. */
export const PATH_PARAMS: Record<string, { pattern: RegExp; description: string }> = {
  server: { pattern: HOST_NAME, description: 'a server of the inventory' },
  account: { pattern: HOST_NAME, description: 'an account of the inventory' },
  name: { pattern: HOST_NAME, description: 'the name of the inventory entry' },
  id: { pattern: OPERATION_ID, description: 'an operation id' },
  domain: { pattern: /^.{1,255}$/, description: 'a domain name' },
};

/** A problem of a zod issue as the API words it: `field: reason` (one per unknown field). */
function problems(iss: z.core.$ZodIssue, allowed: string[]): string[] {
  const field = iss.path.length > 0 ? `${iss.path.map((p) => fieldName(String(p))).join('.')}: ` : '';
  if (iss.code === 'unrecognized_keys') return iss.keys.map((k) => `${field}${fieldName(k)}: unknown field (allowed: ${allowed.join(', ') || 'none'})`);
  return [`${field}${iss.message}`];
}

/**
 * The body parsed by `schema` (absent: `{}`), or 400 BAD_REQUEST: "the body must be a JSON
 * object" when it is not one, else every problem (`transit: must be a string, not 3; colour:
 * unknown field (allowed: transit, force)`).
 */
export function parseBody<S extends z.ZodObject>(req: Request, schema: S): z.output<S> {
  const b: unknown = req.body ?? {};
  const r = schema.safeParse(b);
  if (r.success) return r.data;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) {
    throw new ApiError('BAD_REQUEST', r.error.issues[0]?.path.length === 0 && r.error.issues[0].message.startsWith('the body') ? r.error.issues[0].message : 'the body must be a JSON object', 400);
  }
  const allowed = Object.keys(schema.shape);
  throw new ApiError('BAD_REQUEST', r.error.issues.flatMap((i) => problems(i, allowed)).join('; '), 400);
}

const time = () => z.string().meta({ format: 'date-time' }).nullable();
const ms = () => z.number().nullable();

/** An operation as the API answers it (cutover, cutback, retry, GET /v1/operations/{id}). */
export const operationResponse = z.strictObject({
  id: z.string(),
  server: z.string(),
  transit: z.string(),
  direction: z.enum(['cutover', 'cutback']),
  state: z.enum(['pending', 'running', 'succeeded', 'failed']),
  phase: z.enum(['dns_switched', 'routing', 'measuring', 'done']),
  backend: z.string(),
  attempts: z.int(),
  timestamps: z.strictObject({ accepted: time(), dns_switched: time(), routes_applied: time(), finished: time() }),
  durations_ms: z.strictObject({ dns_switch: ms(), routing: ms(), recovery: ms() }).meta({ description: 'from the request, on a monotonic clock' }),
  addresses: z.array(z.strictObject({
    address: z.string(), family: z.union([z.literal(4), z.literal(6)]), transit_address: z.string(),
    routed_to: z.string().nullable(), result: z.enum(['pending', 'ok', 'failed']), error: z.string().nullable(),
    downtime_ms: ms(), recovered: z.boolean().nullable(), probes_sent: z.int(), probes_failed: z.int(),
  })),
  measurement: z.strictObject({ probe: z.string(), interval_ms: z.number(), restarted: z.boolean(), max_downtime_ms: ms() }).nullable(),
  error: z.strictObject({ code: z.string(), message: z.string() }).nullable(),
  requested_by: z.string().nullable().meta({ description: 'the name of the API token that asked for it' }),
  dns_propagated: z.record(z.string(), time()).nullable().meta({ description: 'per secondary, when it first served the change' }),
});

/** One check of a domain, in the MX audit's JSON shape. */
const mailCheck = z.strictObject({ check: z.string(), verdict: z.string(), evidence: z.string(), fix: z.string().nullable() });

/** A cutover's answer: the operation, and the mail domains that still send mail to the server (from the migration's last MX audit). */
export const cutoverResponse = operationResponse.extend({
  warnings: z.array(z.strictObject({
    code: z.literal('FORBIDDEN_MX'), account: z.string(), domain: z.string(), fixes: z.array(z.string()), audited_at: time(), message: z.string(),
  })).meta({ description: "domains of the server's accounts whose MX still points at it: the records to delete; the cutover is not refused" }),
});

/** The MX audit kept on a migration: the mail domains of the server's accounts. */
const migrationMailAudit = z.strictObject({
  state: z.enum(['running', 'done', 'missing']),
  trigger: z.enum(['request', 'cutover']),
  started_at: time(),
  reason: z.string().nullable(),
  audited_at: time(),
  counts: z.record(z.enum(MAIL_AUDIT_VERDICTS), z.int()),
  domains: z.array(z.strictObject({
    account: z.string(), domain: z.string(), verdict: z.string(), checks: z.array(mailCheck),
    error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
  })).meta({ description: 'per domain its verdict and, of its checks, those that are not OK with the exact record to change' }),
});

const migrationState = z.enum(MIGRATION_STATES as [MigrationState, ...MigrationState[]]);
const location = z.enum(['home', 'moving_to_transit', 'transit', 'moving_home']);

/** A migration as the API answers it (the migration routes). */
export const migrationResponse = z.strictObject({
  server: z.string(),
  profile: z.string(),
  state: migrationState,
  transit: z.string().nullable(),
  queue_position: z.int().nullable(),
  requested_at: time(),
  assigned_at: time(),
  free_until: time(),
  billing: z.strictObject({
    currency: z.string(), billable_days: z.int(), amount: z.string(), amount_exact: z.string(),
    months: z.array(z.strictObject({ month: z.string(), days: z.int(), days_in_month: z.int(), amount: z.string() })),
  }).nullable().meta({ description: 'free for billing.free_days, then per started day; amounts as decimal strings' }),
  reinstall_at: time(),
  ttl_plan: z.strictObject({ max_ttl: z.int(), lowered_ttl: z.int(), lower_from: time(), cache_safe_at: time(), late: z.boolean() }).nullable(),
  cutover: z.strictObject({
    at: time(), forced: z.boolean(), accounts_not_on_transit: z.array(z.string()), stale_until: time(), stale_for_ms: ms(), cache_safe: z.boolean().nullable(),
  }).nullable(),
  reinstalled_at: time(),
  cutback_at: time(),
  finished_at: time(),
  accounts: z.array(z.strictObject({
    name: z.string(),
    location,
    moves: z.array(z.strictObject({
      direction: z.enum(['transit', 'home']), started_at: time(), completed_at: time(), downtime_ms: ms(), failed_at: time(), error: z.string().nullable(),
      probe: z.strictObject({ downtime_ms: z.number(), recovered: z.boolean(), probes_sent: z.int(), probes_failed: z.int() }).nullable(),
    })),
  })),
  mx_audit: migrationMailAudit.nullable(),
  allowed: z.array(z.enum(MIGRATION_EVENTS as [MigrationEventType, ...MigrationEventType[]])).meta({ description: 'the events accepted next' }),
  history: z.array(z.strictObject({
    at: time(), event: z.string(), from: migrationState.nullable(), to: migrationState, account: z.string().optional(), forced: z.literal(true).optional(),
  })),
});

/** GET /v1/whoami's answer: the caller's token name and role. */
export const whoamiResponse = z.strictObject({ name: z.string(), role: z.enum(['read', 'operate', 'admin']) });

/** POST /v1/accounts/{account}/move's answer. */
export const moveResponse = z.strictObject({
  account: z.string(), server: z.string(), location, migration_state: migrationState, transit: z.string().nullable(),
});

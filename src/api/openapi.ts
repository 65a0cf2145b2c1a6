/**
 * The OpenAPI 3.1 document of the /v1 API, generated from the route catalogue and the zod
 * schemas the routes validate bodies with (served at /openapi.json without a token).
 */
import { z } from 'zod';
import { inventoryEntrySchemas } from '../controller/inventory-schema.js';
import { ERROR_STATUS } from './errors.js';
import { MAX_WAIT_S } from './params.js';
import { commonErrors, ROUTES, type RouteSpec } from './route-catalog.js';
import { cutoverResponse, migrationResponse, moveResponse, operationResponse, PATH_PARAMS, whoamiResponse } from './schemas.js';

type Json = Record<string, unknown>;

/** A zod schema as the JSON Schema (2020-12, OpenAPI 3.1's dialect) of what a client sends. */
function jsonSchema(schema: z.ZodType): Json {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  return rest;
}

/** The body schema of a route. */
function bodySchema(body: NonNullable<RouteSpec['body']>): Json {
  if (typeof body !== 'string') return jsonSchema(body);
  const kind = body.slice('inventory:'.length) as keyof typeof inventoryEntrySchemas;
  const s = jsonSchema(inventoryEntrySchemas[kind]);
  // the name is the path's (a name in the body must be the same)
  return { ...s, required: ((s.required as string[] | undefined) ?? []).filter((k) => k !== 'name'), description: `The ${kind.slice(0, -1)} in the config file's form, validated exactly as the file is` };
}

/** The HTTP status of each code routes return besides the common ones (a test checks each against real answers). */
const ROUTE_ERROR_STATUS: Record<string, number> = {
  SERVER_NOT_FOUND: 404, TRANSIT_NOT_FOUND: 404, ACCOUNT_NOT_FOUND: 404, OPERATION_NOT_FOUND: 404, MIGRATION_NOT_FOUND: 404, UNKNOWN_ACCOUNT: 404,
  INVALID_INVENTORY: 400,
  ALREADY_CUT_OVER: 409, NOT_CUT_OVER: 409, OPERATION_IN_PROGRESS: 409, TRANSIT_IN_USE: 409, TRANSIT_TOO_SMALL: 409, NOT_RETRYABLE: 409,
  TRANSIT_MISMATCH: 409, ACCOUNTS_NOT_ON_TRANSIT: 409, INVALID_TRANSITION: 409, NO_TRANSIT_FOR_PROFILE: 409, NO_MIGRATION: 409,
  CANCEL_BLOCKED: 409, MOVE_NOT_ALLOWED: 409, ACCOUNT_NOT_MOVABLE: 409, ACCOUNT_NOT_MOVING: 409, IN_USE: 409,
};

/** The HTTP status of an error code. */
export function statusOf(code: string): number {
  const s = code in ERROR_STATUS ? ERROR_STATUS[code as keyof typeof ERROR_STATUS] : ROUTE_ERROR_STATUS[code];
  if (s === undefined) throw new Error(`error code ${code} has no status`);
  return s;
}

const QUERY: Record<string, Json> = {
  wait: { name: 'wait', in: 'query', required: false, description: 'seconds to wait for what the call started (0 to 900): 200 once it ended, 202 at the limit', schema: { type: 'string', pattern: '^[0-9]+(\\.[0-9]+)?$', examples: ['30'] } },
  until: { name: 'until', in: 'query', required: false, description: 'what wait= waits for: the operation\'s end (done) or its DNS change served by every secondary (propagated)', schema: { type: 'string', enum: ['done', 'propagated'], default: 'done' } },
};

/** `/servers/:server/cutover` → `/v1/servers/{server}/cutover`. */
export function openApiPath(path: string): string {
  return `/v1${path.replace(/:([A-Za-z_]+)/g, '{$1}')}`;
}

/** The codes a route documents, by HTTP status. */
export function documentedErrors(r: RouteSpec): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const code of [...commonErrors(r), ...r.errors]) by.set(statusOf(code), [...(by.get(statusOf(code)) ?? []), code]);
  return by;
}

function operation(r: RouteSpec): Json {
  const params = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map(([, name]) => ({
    name, in: 'path', required: true, description: PATH_PARAMS[name].description, schema: { type: 'string', pattern: PATH_PARAMS[name].pattern.source },
  }));
  const responses: Json = {};
  for (const [status, description] of Object.entries(r.ok)) {
    const schema = r.answer ? { $ref: `#/components/schemas/${answerName(r.answer)}` } : { type: 'object' };
    responses[status] = Number(status) === 204 ? { description } : { description, content: { 'application/json': { schema } } };
  }
  for (const [status, codes] of [...documentedErrors(r)].sort((a, b) => a[0] - b[0])) {
    responses[String(status)] = {
      description: codes.join(', '),
      content: { 'application/json': { schema: { allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { error: { properties: { code: { enum: codes } } } } }] } } },
    };
  }
  responses['500'] = { $ref: '#/components/responses/Internal' };
  const body = r.body ? bodySchema(r.body) : undefined;
  return {
    operationId: `${r.method}${r.path.replace(/\/:?([a-z-]+)/g, (_m, w: string) => w[0].toUpperCase() + w.slice(1).replace(/-([a-z])/g, (_x, c: string) => c.toUpperCase()))}`,
    summary: r.summary,
    tags: [r.tag],
    description: `Role: ${r.role}.${r.leader ? ' Answered by the leading replica (a replica that does not lead hands it over).' : ''}`,
    'x-role': r.role,
    ...(params.length + r.query.length > 0 ? { parameters: [...params, ...r.query.map((q) => QUERY[q])] } : {}),
    ...(body ? { requestBody: { required: ((body.required as string[] | undefined) ?? []).length > 0, content: { 'application/json': { schema: body } } } } : {}),
    responses,
  };
}

/** The answers documented with a schema, by their component name. */
const ANSWERS = new Map<z.ZodType, string>([[operationResponse, 'Operation'], [cutoverResponse, 'Cutover'], [migrationResponse, 'Migration'], [moveResponse, 'AccountMove'], [whoamiResponse, 'Caller']]);

function answerName(schema: z.ZodType): string {
  const name = ANSWERS.get(schema);
  if (!name) throw new Error('an answer schema without a component name');
  return name;
}

let cached: Json | undefined;

/** The document (built once). */
export function openApiDocument(): Json {
  if (cached) return cached;
  const paths: Record<string, Json> = {};
  for (const r of ROUTES) (paths[openApiPath(r.path)] ??= {})[r.method] = operation(r);
  cached = {
    openapi: '3.1.0',
    info: {
      title: 'failover-controller API',
      version: '1',
      description: `Bearer tokens with roles (read < operate < admin). Errors: {"error":{"code","message"}} with stable codes. ?wait= at most ${MAX_WAIT_S} seconds.`,
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token of api.tokens (or api.token_env)' } },
      schemas: {
        ...Object.fromEntries([...ANSWERS].map(([schema, name]) => [name, jsonSchema(schema)])),
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object', required: ['code', 'message'],
              properties: { code: { type: 'string' }, message: { type: 'string' }, role_needed: { type: 'string' }, problems: { type: 'array', items: { type: 'string' } } },
              additionalProperties: true,
            },
          },
        },
      },
      responses: {
        Internal: { description: 'INTERNAL (a defect: reported in the log)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    },
  };
  return cached;
}

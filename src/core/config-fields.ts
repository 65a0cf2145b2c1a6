/**
 * Building blocks of the config schemas (zod 4): each capability writes the schema of its config
 * section with these, so every field refuses a value with the same message everywhere
 * (`must be an integer from 1 to 100000, not "lots"`). Strict mappings: an unknown key is an
 * error naming the allowed ones. Pure.
 */
import { z } from 'zod';
import { parseAddress, parseHostPort, type HostPort, type IpAddress } from './addresses.js';

/** A path into config data: keys and list indexes. */
export type ConfigPath = (string | number)[];

/**
 * A problem found in config data: where (`path`) and why. `after` lists it after what is found
 * at that path instead of at its own place (a host's missing next hop is listed with the
 * backend's next hops, where the older form gives it).
 */
export interface FieldProblem {
  path: ConfigPath;
  message: string;
  after?: ConfigPath;
}

/** How a refused value is named in a message: `"text"`, `42`, `null`, `a list`, `a mapping`. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

/** `dns.listen[1]` */
export function formatPath(path: readonly (string | number)[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${p}` : p;
  return s;
}

/** A plain mapping (not a list). */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The problems of a failed parse, one per unknown key, under `at`. */
export function problemsOf(error: z.ZodError | undefined, at: ConfigPath = []): FieldProblem[] {
  return (error?.issues ?? []).flatMap((iss) => {
    const path = [...at, ...(iss.path as ConfigPath)];
    return iss.code === 'unrecognized_keys' ? iss.keys.map((k) => ({ path: [...path, k], message: iss.message })) : [{ path, message: iss.message }];
  });
}

/** The value `schema` reads from `v`, or undefined when it refuses it (its problems are reported elsewhere). */
export function readOr<T>(schema: z.ZodType<T>, v: unknown): T | undefined {
  const r = schema.safeParse(v);
  return r.success ? r.data : undefined;
}

type RawIssue = z.core.$ZodRawIssue;

/** The message of a refused value: "is required" when absent, else `${what}, not X`. */
function expected(what: string) {
  return (iss: RawIssue) => (iss.input === undefined ? 'is required' : `${what}, not ${describe(iss.input)}`);
}

/**
 * A mapping with exactly the keys of `shape`, in that order (the order of the README table and
 * of the messages). Absent (or empty, `key:`): "is required" unless made optional.
 */
export function section<S extends z.core.$ZodLooseShape>(shape: S, opts: { unknownKey?: string } = {}) {
  const unknownKey = opts.unknownKey ?? `unknown key (allowed: ${Object.keys(shape).join(', ')})`;
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? unknownKey : iss.input == null ? 'is required' : `must be a mapping, not ${describe(iss.input)}`),
  });
}

/** A mapping by name whose values the cross-field rules read (a host map of a routing backend). */
export function byName() {
  return z.record(z.string(), z.unknown(), { error: expected('must be a mapping') });
}

/**
 * A length check that runs only on values of its type (zod runs length checks on anything with a
 * length, so a string given for a list would get a second message).
 */
function only(is: (v: unknown) => boolean): object {
  return { when: (payload: { value: unknown }) => is(payload.value) };
}

/** A non-empty list (of at most `max` entries); `error` for anything else. */
export function nonEmptyList<T extends z.ZodType>(element: T, error: string | ((iss: RawIssue) => string), max?: number) {
  const list = z.array(element, { error }).min(1, { error, ...only(Array.isArray) });
  return max === undefined ? list : list.max(max, { error, ...only(Array.isArray) });
}

/** An integer from min to max. */
export function int(min: number, max: number) {
  const error = expected(`must be an integer from ${min} to ${max}`);
  return z.int({ error }).min(min, { error, abort: true }).max(max, { error, abort: true });
}

/** A non-empty string. */
export function text() {
  const error = (iss: RawIssue) => (iss.input == null ? 'is required' : `must be a non-empty string, not ${describe(iss.input)}`);
  return z.string({ error }).min(1, { error, abort: true, ...only((v) => typeof v === 'string') });
}

/** true or false. */
export function flag() {
  return z.boolean({ error: expected('must be true or false') });
}

/** One of the given words. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const list = values.join(', ');
  return z.enum(values, { error: (iss) => (iss.input === undefined ? `is required (one of ${list})` : `must be one of ${list}, not ${describe(iss.input)}`) });
}

/** A refinement of a string field: `why(value)` when `ok(value)` is false. */
export function valid(ok: (v: string) => boolean, why: (v: string) => string) {
  return z.refine<string>(ok, { error: (iss) => why(iss.input as string) });
}

/** A string that `parse` reads (it returns a message for what it refuses); a number is read as its text, anything else refused. */
export function parsedBy<T extends object>(parse: (text: string) => T | string) {
  return z.unknown().transform((v, ctx) => {
    if (typeof v !== 'string' && typeof v !== 'number') {
      ctx.issues.push({ code: 'custom', message: `must be a string, not ${describe(v)}`, input: v });
      return z.NEVER;
    }
    const r = parse(typeof v === 'string' ? v : String(v));
    if (typeof r !== 'string') return r;
    ctx.issues.push({ code: 'custom', message: r, input: v });
    return z.NEVER;
  });
}

/** An environment variable's name. */
export function envName() {
  return text().check(valid((v) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(v), (v) => `${JSON.stringify(v)} is not an environment variable name`));
}

/** An IPv4 or IPv6 address, normalised (`2001:DB8:0::10` → `2001:db8::10`). */
export function ipAddress(): z.ZodType<IpAddress, unknown> {
  return parsedBy(parseAddress);
}

/** "IPv4:port" or "[IPv6]:port" (IP literals only). */
export function hostPort(): z.ZodType<HostPort, unknown> {
  return z.string({ error: expected('must be a "host:port" string') }).transform((v, ctx) => {
    const hp = parseHostPort(v);
    if (typeof hp !== 'string') return hp;
    ctx.issues.push({ code: 'custom', message: hp, input: v });
    return z.NEVER;
  });
}

/** A command and its arguments, run without a shell. */
export function argv() {
  return z.custom<string[]>((v) => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0), {
    error: 'must be a non-empty list of strings (a command and its arguments, no shell)',
  });
}

/** An http(s) URL. */
export function httpUrl(pattern = /^https?:\/\/[^\s]+$/) {
  return text().check(valid((v) => pattern.test(v), (v) => `${JSON.stringify(v)} is not an http(s) URL`));
}

/**
 * Bearer tokens with roles. `authenticate` finds the caller among the configured tokens (401
 * UNAUTHORIZED when none matches) and `authorize` refuses a call the caller's role does not allow
 * (403 FORBIDDEN naming the role needed). The caller's name (never the token) is then on
 * `res.locals.caller` for the log line and for what the call records (`requested_by`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { ROLES, type ApiToken, type Role } from './config-schema.js';
import { ApiError } from './errors.js';

/** Who made a call: the token's name and role. */
export interface Caller {
  name: string;
  role: Role;
}

/** Whether `have` allows what `need` allows (read < operate < admin). */
export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Middleware: sets `res.locals.caller` from `Authorization: Bearer <token>`, or 401. Every
 * configured token is compared (in constant time, on SHA-256 digests so lengths do not show),
 * also after a match: the time taken says nothing about which token, or how much of one, matched.
 */
export function authenticate(tokens: readonly ApiToken[]) {
  const known = tokens.map((t) => ({ caller: { name: t.name, role: t.role } as Caller, digest: digest(t.token) }));
  return (req: Request, res: Response, next: NextFunction) => {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer ([^\s]+)$/.exec(h) : null;
    const given = digest(m ? m[1] : '');
    let found: Caller | undefined;
    for (const k of known) {
      const same = timingSafeEqual(given, k.digest);
      found = same && m ? k.caller : found;
    }
    if (!found) {
      next(new ApiError('UNAUTHORIZED', 'a valid bearer token is required'));
      return;
    }
    res.locals.caller = found;
    next();
  };
}

/** The caller of an authenticated call (set by {@link authenticate}). */
export function callerOf(res: Response): Caller | undefined {
  return res.locals.caller as Caller | undefined;
}

/**
 * Middleware after {@link authenticate}: 403 FORBIDDEN unless the caller's role allows what
 * `roleFor` says the call needs.
 */
export function authorize(roleFor: (method: string, path: string) => Role) {
  return (req: Request, res: Response, next: NextFunction) => {
    const need = roleFor(req.method, req.path);
    const caller = callerOf(res);
    if (!caller || !roleAllows(caller.role, need)) {
      next(new ApiError('FORBIDDEN', `this call needs the ${need} role; token "${caller?.name}" has the ${caller?.role} role`, undefined, { role_needed: need }));
      return;
    }
    next();
  };
}

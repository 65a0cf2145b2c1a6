/** Query parameters shared by the API's routes. */
import type { Request } from 'express';
import { ApiError } from './errors.js';

/** Longest `?wait=` accepted, seconds. */
export const MAX_WAIT_S = 900;

/** `?wait=SECONDS`: how long to wait for what the request started (0 when absent); 400 when malformed. */
export function waitParam(req: Request): number {
  const w = req.query.wait;
  if (w === undefined) return 0;
  if (typeof w !== 'string' || !/^[0-9]+(\.[0-9]+)?$/.test(w) || Number(w) > MAX_WAIT_S) {
    throw new ApiError('BAD_REQUEST', `wait must be a number of seconds from 0 to ${MAX_WAIT_S}`, 400);
  }
  return Number(w);
}

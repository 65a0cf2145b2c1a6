/** The API's error catalogue: stable codes, one HTTP status each. Bodies: {"error":{"code","message"}}. */
import type { Request, Response } from 'express';

export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  /** A known token whose role does not allow the call (`role_needed` names the role). */
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
  NOT_READY: 503,
  /** The state store cannot be written or read now (storage full or failing); nothing was changed. */
  STATE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error that the API reports as-is; `details` are added to the error object (state, allowed...). */
export class ApiError extends Error {
  constructor(readonly code: ErrorCode, message: string, readonly status: number = ERROR_STATUS[code], readonly details?: Record<string, unknown>) {
    super(message);
  }
}

/** The JSON body of an error response. */
export function errorBody(code: string, message: string, details?: Record<string, unknown>): { error: { code: string; message: string } } {
  return { error: { code, message, ...(details ?? {}) } };
}

/**
 * A route handler maker: the handler awaits `fn`, and whatever it throws goes through `map` first
 * (a service's own errors become ApiErrors; anything else passes as it is).
 */
export function routeWith(map: (err: unknown) => unknown) {
  return (fn: (req: Request, res: Response) => Promise<void> | void) => async (req: Request, res: Response): Promise<void> => {
    try {
      await fn(req, res);
    } catch (err) {
      throw map(err);
    }
  };
}

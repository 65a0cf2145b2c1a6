/**
 * The thin API client behind `failoverctl cutover|cutback|status`: JSON over HTTP with the bearer
 * token from the environment. Errors carry the API's code and message.
 */

/** An API error response, or a transport failure (code CONNECTION). */
export class ApiClientError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export interface ApiClient {
  request<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: T }>;
}

/** A client for `baseUrl` (e.g. http://127.0.0.1:8080) with a bearer token. */
export function createApiClient(baseUrl: string, token: string, timeoutMs = 30_000): ApiClient {
  const base = baseUrl.replace(/\/+$/, '');
  return {
    async request(method, path, body) {
      let res: Response;
      try {
        res = await fetch(base + path, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        throw new ApiClientError(0, 'CONNECTION', `cannot reach the API at ${base}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`);
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        throw new ApiClientError(res.status, 'BAD_RESPONSE', `the API answered ${res.status} with a body that is not JSON`);
      }
      if (res.status >= 400) {
        const e = (parsed as { error?: { code?: string; message?: string } })?.error;
        throw new ApiClientError(res.status, e?.code ?? 'HTTP_' + res.status, e?.message ?? `HTTP ${res.status}`);
      }
      return { status: res.status, body: parsed as never };
    },
  };
}

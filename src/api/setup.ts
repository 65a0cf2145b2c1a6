/**
 * The HTTP API capability, built from the `api` config section: the bearer tokens (`api.tokens`,
 * each from its environment variable or file; else one admin token from the environment, or
 * generated into a 0600 file whose path is logged, never the token) and the express application,
 * listening on `api.listen`.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { createApiApp, type ApiDeps } from './app.js';
import { readTokenSecret, SINGLE_TOKEN_NAME, type ApiToken } from './config-schema.js';

export interface ApiCapability {
  stop(): Promise<void>;
}

/** The configured tokens with their secrets; throws when one cannot be read (the config check reads them first). */
function apiTokens(config: Config['api'], log: Logger, env: NodeJS.ProcessEnv): ApiToken[] {
  if (!config.tokens) return [{ name: SINGLE_TOKEN_NAME, role: 'admin', token: singleToken(config, log, env) }];
  return config.tokens.map((t) => {
    const r = readTokenSecret(t, env);
    if ('problem' in r) throw new Error(`api.tokens: token ${JSON.stringify(t.name)}: ${r.problem}`);
    if (r.token.length < 16) log.warn({ token: t.name }, 'an API token is shorter than 16 characters');
    return { name: t.name, role: t.role, token: r.token };
  });
}

/** The single (admin) token: from the environment, or generated and written to a 0600 file. */
function singleToken(config: Config['api'], log: Logger, env: NodeJS.ProcessEnv): string {
  const fromEnv = env[config.tokenEnv];
  if (fromEnv && fromEnv.length > 0) {
    if (fromEnv.length < 16) log.warn({ env: config.tokenEnv }, 'the API token is shorter than 16 characters');
    return fromEnv;
  }
  const token = randomBytes(32).toString('base64url');
  writeFileSync(config.tokenFile, token + '\n', { mode: 0o600 });
  chmodSync(config.tokenFile, 0o600);
  log.warn({ env: config.tokenEnv, file: config.tokenFile },
    'API token env var is unset: generated a token and wrote it to a file readable only by this user');
  return token;
}

/** Listens; rejects when the address cannot be bound. */
export async function setupApi(deps: Omit<ApiDeps, 'tokens' | 'logger'> & { config: Config['api']; logger: Logger; env?: NodeJS.ProcessEnv }): Promise<ApiCapability> {
  const { config } = deps;
  const log = deps.logger.child({ component: 'api' });
  const tokens = apiTokens(config, log, deps.env ?? process.env);
  const app = createApiApp({ ...deps, logger: log, tokens });
  const http: Server = await new Promise((res, rej) => {
    const s = app.listen(config.listen.port, config.listen.host, (err?: Error) => (err ? rej(err) : res(s)));
    s.once('error', rej);
  });
  http.requestTimeout = 30_000;
  http.headersTimeout = 10_000;
  log.info({ address: config.listen.host, port: config.listen.port, tokens: tokens.map((t) => `${t.name} (${t.role})`) }, 'api listening');
  return {
    async stop() {
      const closed = new Promise<void>((res) => http.close(() => res()));
      http.closeAllConnections();
      await closed;
    },
  };
}

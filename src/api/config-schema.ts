/**
 * Config section `api`: where the HTTP API listens and its bearer tokens. Either one admin token
 * (`token_env`, generated into `token_file` when the variable is unset) or `tokens`: named tokens
 * with roles, each read from an environment variable or a file. apiTokenProblems checks the
 * tokens' secrets with the file and line, as dnsSecretProblems does for TSIG.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { envName, hostPort, isMapping, nonEmptyList, oneOf, section, text, valid, type FieldProblem } from '../core/config-fields.js';

/** The roles of API tokens, each allowing what the ones before it allow. */
export const ROLES = ['read', 'operate', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** The name of the admin token of `api.token_env` (logs, `requested_by`). */
export const SINGLE_TOKEN_NAME = 'admin';

/** A token's name: what logs and operations show for it. */
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const tokenSchema = section({
  /** Shown in logs and in an operation's `requested_by` (never the token). */
  name: text().check(valid((v) => TOKEN_NAME.test(v), (v) => `${JSON.stringify(v)} is not a token name (letters, digits, '_', '.', '-'; at most 64)`)),
  role: oneOf(ROLES),
  token_env: envName().optional(),
  /** Relative to the config file; no permission for others (mode o-rwx). */
  token_file: text().optional(),
}).superRefine((t, ctx) => {
  if ((t.token_env === undefined) === (t.token_file === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'needs exactly one of token_env and token_file', input: t });
  }
}).transform((t) => ({ name: t.name, role: t.role, tokenEnv: t.token_env ?? null, tokenFile: t.token_file ?? null }));

export const apiConfigSchema = section({
  listen: hostPort(),
  /** Environment variable holding the (admin) bearer token for /v1 when `tokens` is not given. */
  token_env: envName().default('FAILOVER_API_TOKEN'),
  /** Where a generated token is written when the variable is unset (relative to the config file). */
  token_file: text().default('api-token'),
  /** Named tokens with roles (instead of token_env / token_file). */
  tokens: nonEmptyList(tokenSchema, (iss) => (iss.input === undefined ? 'is required' : 'must be a non-empty list of tokens ({name, role, token_env | token_file})')).optional(),
}).transform((a) => ({ listen: a.listen, tokenEnv: a.token_env, tokenFile: a.token_file, tokens: a.tokens ?? null }));

export type ApiSection = z.output<typeof apiConfigSchema>;
export type ApiTokenConfig = NonNullable<ApiSection['tokens']>[number];

/** A token as the API compares it. */
export interface ApiToken {
  name: string;
  role: Role;
  token: string;
}

/** Reads one configured token's secret: the token, or why it cannot be used. `file` is absolute. */
export function readTokenSecret(t: { tokenEnv: string | null; tokenFile: string | null }, env: NodeJS.ProcessEnv): { token: string } | { problem: string } {
  if (t.tokenEnv !== null) {
    const v = env[t.tokenEnv];
    if (v === undefined || v === '') return { problem: `environment variable ${t.tokenEnv} is not set` };
    return checkedToken(v.trim(), `environment variable ${t.tokenEnv}`);
  }
  const file = t.tokenFile!;
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) return { problem: `${file} is not a file` };
    // like ssh's private keys: a token other users can read is not a secret (a group may read it)
    if ((st.mode & 0o007) !== 0) return { problem: `${file} is open to other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); allow no access to others (chmod o-rwx)` };
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { problem: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  return checkedToken(text.trim(), file);
}

function checkedToken(token: string, where: string): { token: string } | { problem: string } {
  if (token === '') return { problem: `${where} is empty` };
  if (/\s/.test(token)) return { problem: `${where} holds white space inside the token (a bearer token is one word)` };
  return { token };
}

/**
 * Problems of `api.tokens` that the schema cannot see: a name or a token given twice, a secret
 * that cannot be read (`env` null: secrets not read, like the TSIG secrets), and `token_env` /
 * `token_file` beside `tokens`. `base` is the config file's directory.
 */
export function apiTokenProblems(api: unknown, env: NodeJS.ProcessEnv | null, base: string): FieldProblem[] {
  if (!isMapping(api) || !Array.isArray(api.tokens)) return [];
  const out: FieldProblem[] = [];
  for (const k of ['token_env', 'token_file']) {
    if (api[k] !== undefined) out.push({ path: ['api', k], message: 'is not used with api.tokens (list that token there, with role admin)' });
  }
  const names = new Map<string, number>();
  const secrets = new Map<string, number>();
  api.tokens.forEach((t, i) => {
    if (!isMapping(t)) return;
    const at = ['api', 'tokens', i];
    if (typeof t.name === 'string') {
      const first = names.get(t.name);
      if (first !== undefined) out.push({ path: [...at, 'name'], message: `${JSON.stringify(t.name)} is already used by api.tokens[${first}]` });
      else names.set(t.name, i);
    }
    if (env === null) return;
    const envOk = typeof t.token_env === 'string' && t.token_file === undefined;
    const fileOk = typeof t.token_file === 'string' && t.token_file !== '' && t.token_env === undefined;
    if (!envOk && !fileOk) return; // the schema says so
    const r = readTokenSecret({ tokenEnv: envOk ? t.token_env as string : null, tokenFile: fileOk ? resolve(base, t.token_file as string) : null }, env);
    const path = [...at, envOk ? 'token_env' : 'token_file'];
    if ('problem' in r) {
      out.push({ path, message: r.problem });
      return;
    }
    const first = secrets.get(r.token);
    if (first !== undefined) out.push({ path, message: `holds the same token as api.tokens[${first}] (each token must be its own)` });
    else secrets.set(r.token, i);
  });
  return out;
}

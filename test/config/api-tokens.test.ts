/** Config `api.tokens`: named tokens with roles, their secrets checked at start with file and line. */
import { afterAll, describe, expect, test } from '@jest/globals';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/config.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, 'config.yaml');
const secret = (name: string, text: string, mode = 0o600) => {
  writeFileSync(join(dir, name), text);
  chmodSync(join(dir, name), mode);
};
secret('ops.token', 'admin-token-from-a-file-0123\n');
secret('open.token', 'open-token-0123456789', 0o644);
secret('group.token', 'group-token-0123456789', 0o640);
secret('empty.token', '  \n');
secret('two-words.token', 'two words');
const ENV = { READ_TOKEN: 'read-token-0123456789', JOBS_TOKEN: 'jobs-token-0123456789', SAME_AS_FILE: 'admin-token-from-a-file-0123' };

const HEAD = `dns:
  listen: ["127.0.0.1:5300"]
  zones: ./zones
api:
  listen: "127.0.0.1:8080"
`;
const tokens = (...lines: string[]) => `${HEAD}  tokens:\n${lines.map((l) => `    - ${l}\n`).join('')}`;

function problems(text: string, env: NodeJS.ProcessEnv = ENV): string[] {
  try {
    parseConfig(text, file, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('api.tokens', () => {
  test('without tokens: the single token_env, as before (one admin token)', () => {
    const c = parseConfig(HEAD, file, {});
    expect(c.api).toMatchObject({ tokenEnv: 'FAILOVER_API_TOKEN', tokenFile: join(dir, 'api-token'), tokens: null });
  });

  test('tokens from the environment and from files (relative to the config file; a group may read them)', () => {
    const c = parseConfig(tokens(
      '{name: support, role: read, token_env: READ_TOKEN}',
      '{name: jobs, role: operate, token_env: JOBS_TOKEN}',
      '{name: ops, role: admin, token_file: ops.token}',
      '{name: ci, role: read, token_file: group.token}',
    ), file, ENV);
    expect(c.api.tokens).toEqual([
      { name: 'support', role: 'read', tokenEnv: 'READ_TOKEN', tokenFile: null },
      { name: 'jobs', role: 'operate', tokenEnv: 'JOBS_TOKEN', tokenFile: null },
      { name: 'ops', role: 'admin', tokenEnv: null, tokenFile: join(dir, 'ops.token') },
      { name: 'ci', role: 'read', tokenEnv: null, tokenFile: join(dir, 'group.token') },
    ]);
  });

  test.each([
    ['an unknown role', tokens('{name: support, role: superuser, token_env: READ_TOKEN}'),
      [`${file}:7: api.tokens[0].role: must be one of read, operate, admin, not "superuser"`]],
    ['neither env nor file', tokens('{name: support, role: read}'),
      [`${file}:7: api.tokens[0]: needs exactly one of token_env and token_file`]],
    ['both env and file', tokens('{name: support, role: read, token_env: READ_TOKEN, token_file: ops.token}'),
      [`${file}:7: api.tokens[0]: needs exactly one of token_env and token_file`]],
    ['an unknown key', tokens('{name: support, role: read, token_env: READ_TOKEN, scope: all}'),
      [`${file}:7: api.tokens[0].scope: unknown key (allowed: name, role, token_env, token_file)`]],
    ['a bad name', tokens('{name: "sup port", role: read, token_env: READ_TOKEN}'),
      [`${file}:7: api.tokens[0].name: "sup port" is not a token name (letters, digits, '_', '.', '-'; at most 64)`]],
    ['an empty list', `${HEAD}  tokens: []\n`,
      [`${file}:6: api.tokens: must be a non-empty list of tokens ({name, role, token_env | token_file})`]],
    ['a name twice', tokens('{name: support, role: read, token_env: READ_TOKEN}', '{name: support, role: operate, token_env: JOBS_TOKEN}'),
      [`${file}:8: api.tokens[1].name: "support" is already used by api.tokens[0]`]],
    ['the same token twice (env and file)', tokens('{name: ops, role: admin, token_file: ops.token}', '{name: jobs, role: operate, token_env: SAME_AS_FILE}'),
      [`${file}:8: api.tokens[1].token_env: holds the same token as api.tokens[0] (each token must be its own)`]],
    ['an unset variable', tokens('{name: support, role: read, token_env: NOT_SET_HERE}'),
      [`${file}:7: api.tokens[0].token_env: environment variable NOT_SET_HERE is not set`]],
    ['a missing file', tokens('{name: ops, role: admin, token_file: missing.token}'),
      [`${file}:7: api.tokens[0].token_file: cannot read ${join(dir, 'missing.token')}: ENOENT`]],
    ['a file others may read', tokens('{name: ops, role: admin, token_file: open.token}'),
      [`${file}:7: api.tokens[0].token_file: ${join(dir, 'open.token')} is open to other users (mode 0644); allow no access to others (chmod o-rwx)`]],
    ['an empty file', tokens('{name: ops, role: admin, token_file: empty.token}'),
      [`${file}:7: api.tokens[0].token_file: ${join(dir, 'empty.token')} is empty`]],
    ['a file of two words', tokens('{name: ops, role: admin, token_file: two-words.token}'),
      [`${file}:7: api.tokens[0].token_file: ${join(dir, 'two-words.token')} holds white space inside the token (a bearer token is one word)`]],
    ['a directory', tokens(`{name: ops, role: admin, token_file: "${dir}"}`),
      [`${file}:7: api.tokens[0].token_file: ${dir} is not a file`]],
    ['token_env beside tokens', `${HEAD}  token_env: FAILOVER_API_TOKEN\n  tokens:\n    - {name: support, role: read, token_env: READ_TOKEN}\n`,
      [`${file}:6: api.token_env: is not used with api.tokens (list that token there, with role admin)`]],
  ])('%s', (_n, text, want) => {
    expect(problems(text)).toEqual(want);
  });

  test('secrets are not read when the command uses none', () => {
    expect(() => parseConfig(tokens('{name: support, role: read, token_env: NOT_SET_HERE}'), file, {}, { secrets: false })).not.toThrow();
  });
});

/**
 * `failoverctl serve` and its state file: an existing file that is empty, not SQLite, or of
 * another schema version is refused (exit 1, one clear line naming the file, the file left as it
 * was); a new one is created only where no file exists. Uses the build in dist/.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { CLI, freePort, REPO_ROOT, startController } from '../support/controller.js';

const tmp = mkdtempSync(join(tmpdir(), 'fc-statecli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
const sections = (state: string) => ({
  servers: [{ name: 'srv-42', addresses: ['203.0.113.10'] }],
  transits: [{ name: 'transit-3', addresses: ['198.51.100.20'] }],
  state: { path: state },
  routing: { backend: 'dry-run' },
});

/** Runs `failoverctl serve` on a state that must be refused (a file, or other sections); resolves with exit code and output. */
async function serve(state: string | Record<string, unknown>): Promise<{ code: number | null; stderr: string }> {
  const config = join(tmp, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(config, stringify({
    dns: { listen: [`127.0.0.1:${await freePort()}`], zones: ZONES },
    api: { listen: `127.0.0.1:${await freePort()}`, token_env: 'FC_TEST_TOKEN' },
    log: { level: 'warn' },
    ...(typeof state === 'string' ? sections(state) : { ...sections(''), ...state }),
  }));
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'serve', '--config', config], { env: { ...process.env, FC_TEST_TOKEN: 'state-file-test-token' }, timeout: 30_000 },
      (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }));
  });
}

const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function database(name: string, init: string): string {
  const file = join(tmp, name);
  const db = new Database(file);
  db.exec(init);
  db.close();
  return file;
}

describe('failoverctl serve and its state file', () => {
  test.each([
    ['empty (truncated to 0 bytes)', () => {
      const f = join(tmp, 'empty.db');
      writeFileSync(f, '');
      return f;
    }, 'is empty (0 bytes)'],
    ['not SQLite', () => {
      const f = join(tmp, 'text.db');
      writeFileSync(f, 'this is not a database\n'.repeat(10));
      return f;
    }, 'is not an SQLite database'],
    ['of another schema version', () => database('v2.db', "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema', '2');"),
      'has schema version 2; this controller reads version 1'],
    ['an SQLite database without a schema version', () => database('foreign.db', 'CREATE TABLE notes (body TEXT);'), 'is an SQLite database without a schema version'],
  ])('a state file %s: exit 1 with one clear message, file untouched', async (_name, make, message) => {
    const file = make();
    const before = digest(file);
    const r = await serve(file);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`failoverctl: state file ${file} ${message}`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(digest(file)).toBe(before);
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  test('no state file: a new one is created and used; after a stop it is opened again', async () => {
    const dir = mkdtempSync(join(tmp, 'fresh-'));
    const file = join(dir, 'var', 'state.db');
    const first = await startController({ zonesDir: ZONES, dir, sections: sections(file) });
    try {
      expect(statSync(file).size).toBeGreaterThan(0);
      const r = await first.post('/v1/servers/srv-42/cutover', { transit: 'transit-3' });
      expect(r.status).toBe(202);
      await first.waitOperation(JSON.parse(r.body).id);
    } finally {
      await first.stop();
    }
    const second = await startController({ zonesDir: ZONES, dir, sections: sections(file) });
    try {
      const s = JSON.parse((await second.get('/v1/servers/srv-42')).body);
      expect(s.overlay).toMatchObject({ active: true, transit: 'transit-3' });
    } finally {
      await second.stop();
    }
  });

  test('state on etcd that cannot be reached: exit 1 with one clear message naming the endpoints', async () => {
    const port = await freePort(); // nothing listens there
    const r = await serve({
      state: { backend: 'etcd', etcd: { endpoints: [`http://127.0.0.1:${port}`], call_timeout_ms: 500 } },
      cluster: { name: 'r1', advertise_api: 'http://127.0.0.1:8080' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`failoverctl: the etcd state store cannot be read at http://127.0.0.1:${port}`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

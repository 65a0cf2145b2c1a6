/**
 * The SQLite state store: which files it accepts (a state file of its schema version, or none at
 * all) and what a full disk does to a commit (StateUnavailableError, nothing changed, and the same
 * commit goes through once space is back), on a real tmpfs.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Operation } from '../../src/core/operation.js';
import { StateUnavailableError } from '../../src/core/ports.js';
import { openSqliteStore, StateFileError } from '../../src/store/sqlite-store.js';
import { mountTmpfs, type Tmpfs } from '../support/tmpfs.js';

const tmp = mkdtempSync(join(tmpdir(), 'fc-store-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** A database that is not a state file of this controller: `init` runs on it. */
function sqliteFile(name: string, init: string): string {
  const file = join(tmp, name);
  const db = new Database(file);
  db.exec(init);
  db.close();
  return file;
}

const operation = (id: string, n: number): Operation => ({
  id, server: 'srv-42', transit: 'transit-3', direction: 'cutover', state: 'running', phase: 'dns_switched', backend: 'dry-run', attempts: 0,
  times: { accepted: n, dnsSwitched: n, routesApplied: null, finished: null },
  durationsMs: { dnsSwitch: null, routing: null, recovery: null },
  addresses: [], measurement: null, error: null, padding: 'x'.repeat(2000),
} as unknown as Operation);

describe('state file', () => {
  test('created where no file exists, complete with its schema version; opened again as it is', async () => {
    const file = join(tmp, 'new', 'state.db');
    const store = openSqliteStore(file);
    await store.commit({ meta: { soa_serial_bump: '7' } });
    store.close();
    expect(readdirSync(join(tmp, 'new')).filter((f) => f.startsWith('.'))).toEqual([]); // no temporary file left
    const db = new Database(file, { readonly: true });
    expect(db.prepare("SELECT value FROM meta WHERE key = 'schema'").pluck().get()).toBe('1');
    db.close();
    const again = openSqliteStore(file);
    expect(again.getMeta('soa_serial_bump')).toBe('7');
    again.close();
  });

  test.each([
    ['an empty file', () => {
      const f = join(tmp, 'empty.db');
      writeFileSync(f, '');
      return f;
    }, /is empty \(0 bytes\): refusing to start without the overlays, operations and migrations it should hold/],
    ['a text file', () => {
      const f = join(tmp, 'text.db');
      writeFileSync(f, 'servers:\n  - name: srv-42\n'.repeat(20));
      return f;
    }, /is not an SQLite database/],
    ['a short file', () => {
      const f = join(tmp, 'short.db');
      writeFileSync(f, 'SQLite format 3\0');
      return f;
    }, /is not an SQLite database/],
    ['an SQLite header over garbage', () => {
      const f = join(tmp, 'garbage.db');
      writeFileSync(f, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4080, 0xa5)]));
      return f;
    }, /is not a readable SQLite database/],
    ['another schema version', () => sqliteFile('v2.db', "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema', '2');"),
      /has schema version 2; this controller reads version 1/],
    ['a database of another program', () => sqliteFile('other.db', 'CREATE TABLE t (x); INSERT INTO t VALUES (1);'), /without a schema version/],
    ['a meta table without the schema row', () => sqliteFile('noversion.db', "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('soa_serial_bump', '3');"),
      /without a schema version/],
    ['a directory', () => {
      const f = join(tmp, 'dir.db');
      mkdirSync(f);
      return f;
    }, /is not a regular file/],
  ])('%s is refused, naming the file, and left as it was', (_name, make, message) => {
    const file = make();
    const before = existsSync(file) && !file.endsWith('dir.db') ? digest(file) : null;
    let err: unknown;
    try {
      openSqliteStore(file).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateFileError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(message);
    if (before !== null) expect(digest(file)).toBe(before);
  });
});

describe('meta values', () => {
  test('metaEntries gives every value under a prefix, and only those; null deletes', async () => {
    const store = openSqliteStore(join(tmp, 'meta', 'state.db'));
    try {
      await store.commit({ meta: { soa_serial_bump: '3', 'soa_serial_bump:a.test.': '1', 'soa_serial_bump:b.test.': '2', 'soa_serial_bump;': 'x', soa_serial_bumpz: 'y' } });
      expect(store.metaEntries('soa_serial_bump:')).toEqual(new Map([['soa_serial_bump:a.test.', '1'], ['soa_serial_bump:b.test.', '2']]));
      await store.commit({ meta: { 'soa_serial_bump:a.test.': null } });
      expect([...store.metaEntries('soa_serial_bump:').keys()]).toEqual(['soa_serial_bump:b.test.']);
      expect(store.metaEntries('nothing:').size).toBe(0);
    } finally {
      store.close();
    }
  });
});

describe('a full disk', () => {
  let fs: Tmpfs;
  beforeAll(async () => {
    fs = await mountTmpfs(1 << 20);
  });
  afterAll(async () => {
    await fs?.unmount();
  });

  test('a commit that does not fit rejects with StateUnavailableError, changes nothing, and goes through once space is back', async () => {
    const store = openSqliteStore(join(fs.dir, 'state.db'));
    try {
      await store.commit({ operation: operation('op-1', 1), meta: { soa_serial_bump: '1' } });
      let refused = 0;
      let n = 2;
      // commits of ~3 pages each until the disk is full: every one is all or nothing
      fs.setFree(0);
      for (; n < 200; n++) {
        const change = { operation: operation(`op-${n}`, n), overlay: { server: `srv-${n}`, value: null }, meta: { soa_serial_bump: String(n) } };
        try {
          await store.commit(change);
        } catch (err) {
          expect(err).toBeInstanceOf(StateUnavailableError);
          expect((err as Error).message).toMatch(/SQLITE_FULL|SQLITE_IOERR/);
          refused++;
          break;
        }
      }
      expect(refused).toBe(1);
      expect(store.getOperation(`op-${n}`)).toBeUndefined();
      expect(store.getMeta('soa_serial_bump')).toBe(String(n - 1));
      expect(store.getOperation(`op-${n - 1}`)?.id).toBe(`op-${n - 1}`);
      fs.release();
      await store.commit({ operation: operation(`op-${n}`, n), meta: { soa_serial_bump: String(n) } });
      expect(store.getOperation(`op-${n}`)?.id).toBe(`op-${n}`);
      expect(store.getMeta('soa_serial_bump')).toBe(String(n));
    } finally {
      store.close();
      fs.release();
    }
    // and the file is intact
    const again = openSqliteStore(join(fs.dir, 'state.db'));
    expect(again.getOperation('op-1')?.id).toBe('op-1');
    again.close();
  });
});

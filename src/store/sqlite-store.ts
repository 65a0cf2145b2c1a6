/**
 * The embedded StateStore: one SQLite file (better-sqlite3), WAL, synchronous=FULL so a commit
 * survives a crash or power loss, and an exclusive lock so that a second controller on the same
 * file refuses to start instead of corrupting it.
 *
 * The file is trusted only when it proves to be a state file: an existing file must be an SQLite
 * database with this controller's schema version in its `meta` table, checked at every open; an
 * empty file, another kind of file, or another version is refused (StateFileError), never
 * initialised over. A new file is created only where no file exists, complete (schema and version)
 * before it appears under its name, so a crash during creation never leaves an empty state file.
 *
 * Storage failures (disk full, I/O errors) surface as StateUnavailableError; a commit that throws
 * it was rolled back entirely.
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readSync, statSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Operation } from '../core/operation.js';
import type { ServerOverlay } from '../core/overlay.js';
import { StateUnavailableError, type StateChange, type StateStore } from '../core/ports.js';

/** The state file is held by another process. */
export class StateLockedError extends Error {
  override name = 'StateLockedError';
}

/** The state file exists but is not a state file this controller can use (empty, not SQLite, no or another schema version). */
export class StateFileError extends Error {
  override name = 'StateFileError';
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operations (
  id TEXT PRIMARY KEY, server TEXT NOT NULL, accepted INTEGER NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS operations_server ON operations (server, accepted DESC);
CREATE TABLE IF NOT EXISTS overlays (server TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS routes (address TEXT PRIMARY KEY, host TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS migrations (server TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inventory (kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT, at INTEGER NOT NULL, PRIMARY KEY (kind, name));
`;
const SCHEMA_VERSION = '1';
/** The meta key holding the schema version: the store's own, neither readable nor writable through the port. */
const RESERVED_META = 'schema';
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');
const REMEDY = 'restore it from a backup, or move it away to start with no state';

/** SQLite result codes that mean the storage failed (not a bug in a statement). */
const STORAGE_FAILURE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|BUSY|LOCKED|NOMEM|CORRUPT|NOTADB|PROTOCOL|NOLFS|PERM)/;

/** A storage failure as StateUnavailableError; anything else unchanged. */
function unavailable(err: unknown, what: string): unknown {
  // by its code, not by class: the native addon keeps one error constructor per process
  const { code, message } = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && STORAGE_FAILURE.test(code)) {
    return new StateUnavailableError(`the state store cannot ${what}: ${String(message)} (${code})`, { cause: err });
  }
  return err;
}

/**
 * Opens the state file, creating it only when no file exists. Throws StateLockedError when
 * another process holds it, StateFileError when the file is not a usable state file.
 */
export function openSqliteStore(path: string): StateStore {
  mkdirSync(dirname(path), { recursive: true });
  if (!checkExisting(path)) createStateFile(path);
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 0, fileMustExist: true });
  } catch (err) {
    throw new StateFileError(`state file ${path} cannot be opened: ${(err as Error).message}`);
  }
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // take the exclusive lock now and keep it for the life of the connection (writes nothing)
    db.exec('BEGIN EXCLUSIVE; COMMIT;');
    // before anything is written to it (the WAL switch rewrites the header)
    checkSchema(db, path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // tables added within this schema version (CREATE IF NOT EXISTS: no write when they exist)
    db.exec(SCHEMA);
  } catch (err) {
    db.close();
    if (err instanceof StateFileError) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new StateLockedError(`state file ${path} is in use by another controller process; only one controller may use a state file`);
    }
    if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) throw new StateFileError(`state file ${path} is not a readable SQLite database (${(err as Error).message}); ${REMEDY}`);
    throw err;
  }

  const putOp = db.prepare('INSERT INTO operations (id, server, accepted, state, body) VALUES (@id, @server, @accepted, @state, @body) ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body');
  const getOp = db.prepare('SELECT body FROM operations WHERE id = ?').pluck();
  const listOps = db.prepare('SELECT body FROM operations WHERE server = ? ORDER BY accepted DESC, rowid DESC LIMIT ?').pluck();
  const openOps = db.prepare("SELECT body FROM operations WHERE state IN ('pending', 'running') ORDER BY accepted").pluck();
  const putOverlay = db.prepare('INSERT INTO overlays (server, body) VALUES (?, ?) ON CONFLICT(server) DO UPDATE SET body = excluded.body');
  const delOverlay = db.prepare('DELETE FROM overlays WHERE server = ?');
  const allOverlays = db.prepare('SELECT body FROM overlays').pluck();
  const putRoute = db.prepare('INSERT INTO routes (address, host, at) VALUES (?, ?, ?) ON CONFLICT(address) DO UPDATE SET host = excluded.host, at = excluded.at');
  const allRoutes = db.prepare('SELECT address, host FROM routes');
  const putMeta = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
  const delMeta = db.prepare('DELETE FROM meta WHERE key = ?');
  const getMeta = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
  const metaRange = db.prepare('SELECT key, value FROM meta WHERE key >= @start AND (@end IS NULL OR key < @end)');
  const putMigration = db.prepare('INSERT INTO migrations (server, body) VALUES (?, ?) ON CONFLICT(server) DO UPDATE SET body = excluded.body');
  const allMigrations = db.prepare('SELECT body FROM migrations').pluck();
  // a new row (new rowid) for an edit again: it sorts after every edit stored before it, also within one ms
  const putInventory = db.prepare('INSERT OR REPLACE INTO inventory (kind, name, body, at) VALUES (?, ?, ?, ?)');
  const allInventory = db.prepare('SELECT kind, name, body, at FROM inventory ORDER BY at, rowid');

  const commit = db.transaction((change: StateChange) => {
    if (change.operation) {
      const op = change.operation;
      putOp.run({ id: op.id, server: op.server, accepted: op.times.accepted, state: op.state, body: JSON.stringify(op) });
    }
    if (change.overlay) {
      if (change.overlay.value) putOverlay.run(change.overlay.server, JSON.stringify(change.overlay.value));
      else delOverlay.run(change.overlay.server);
    }
    for (const r of change.routes ?? []) putRoute.run(r.address, r.host, Date.now());
    for (const [k, v] of Object.entries(change.meta ?? {})) {
      if (k === RESERVED_META) throw new Error(`meta key "${RESERVED_META}" is reserved`);
      if (v === null) delMeta.run(k);
      else putMeta.run(k, v);
    }
    for (const m of change.migrations ?? []) putMigration.run(m.server, JSON.stringify(m.value));
    if (change.inventory) {
      const v = change.inventory.value;
      putInventory.run(change.inventory.kind, change.inventory.name, v === null ? null : JSON.stringify(v), Date.now());
    }
  });

  /** Runs a read or write, turning storage failures into StateUnavailableError. */
  const guard = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw unavailable(err, what);
    }
  };

  return {
    load() {
      return guard('be read', () => ({
        overlays: (allOverlays.all() as string[]).map((b) => JSON.parse(b) as ServerOverlay),
        operations: (openOps.all() as string[]).map((b) => JSON.parse(b) as Operation),
      }));
    },
    getOperation(id) {
      const b = guard('be read', () => getOp.get(id) as string | undefined);
      return b === undefined ? undefined : (JSON.parse(b) as Operation);
    },
    listOperations(server, limit) {
      return guard('be read', () => (listOps.all(server, limit) as string[]).map((b) => JSON.parse(b) as Operation));
    },
    routes() {
      return guard('be read', () => new Map((allRoutes.all() as { address: string; host: string }[]).map((r) => [r.address, r.host])));
    },
    // the transaction runs (and is durable) before this returns; the promise only reports it
    async commit(change) {
      guard('be written', () => commit(change));
    },
    metaEntries(prefix) {
      const rows = guard('be read', () => metaRange.all({ start: prefix, end: afterPrefix(prefix) }) as { key: string; value: string }[]);
      return new Map(rows.filter((r) => r.key.startsWith(prefix) && r.key !== RESERVED_META).map((r) => [r.key, r.value]));
    },
    getMeta(key) {
      return key === RESERVED_META ? undefined : guard('be read', () => getMeta.get(key) as string | undefined);
    },
    inventoryEdits() {
      return guard('be read', () => (allInventory.all() as { kind: string; name: string; body: string | null; at: number }[]).map((r) => ({
        kind: r.kind, name: r.name, value: r.body === null ? null : (JSON.parse(r.body) as Record<string, unknown>), at: r.at,
      })));
    },
    migrations() {
      return guard('be read', () => (allMigrations.all() as string[]).map((b) => JSON.parse(b) as unknown));
    },
    close() {
      db.close();
    },
  };
}

/** The least string above every string starting with `prefix` (SQLite compares keys by code point); null when there is none. */
function afterPrefix(prefix: string): string | null {
  const points = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (points.length > 0) {
    const next = points.pop()! + 1;
    // no key holds a surrogate code point: the next one is U+E000
    if (next <= 0x10ffff) return String.fromCodePoint(...points, next === 0xd800 ? 0xe000 : next);
  }
  return null;
}

/**
 * Checks an existing state file before SQLite opens it: false when there is none, true when it
 * looks like an SQLite database; throws StateFileError otherwise (empty, not a file, not SQLite).
 */
function checkExisting(path: string): boolean {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new StateFileError(`state file ${path} is not a regular file`);
    size = st.size;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return false;
    if (err instanceof StateFileError) throw err;
    throw new StateFileError(`state file ${path} cannot be read: ${(err as Error).message}`);
  }
  if (size === 0) {
    throw new StateFileError(`state file ${path} is empty (0 bytes): refusing to start without the overlays, operations and migrations it should hold; ${REMEDY}`);
  }
  const head = Buffer.alloc(SQLITE_HEADER.length);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    readSync(fd, head, 0, head.length, 0);
  } catch (err) {
    throw new StateFileError(`state file ${path} cannot be read: ${(err as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (size < 100 || !head.equals(SQLITE_HEADER)) {
    throw new StateFileError(`state file ${path} is not an SQLite database (${size} bytes without the SQLite header); ${REMEDY}`);
  }
  return true;
}

/** Refuses a database without this controller's schema version. */
function checkSchema(db: Database.Database, path: string): void {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
  const version = hasMeta ? (db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get('schema') as string | undefined) : undefined;
  if (version === undefined) {
    throw new StateFileError(`state file ${path} is an SQLite database without a schema version (no meta 'schema' row): it is not a state file of this controller; ${REMEDY}`);
  }
  if (version !== SCHEMA_VERSION) {
    throw new StateFileError(`state file ${path} has schema version ${version}; this controller reads version ${SCHEMA_VERSION}`);
  }
}

/**
 * Creates a new state file where none exists: built complete (schema and version) under a
 * temporary name in the same directory, then linked to `path` (which fails if a file appeared
 * there meanwhile: that file is then checked as any existing one).
 */
function createStateFile(path: string): void {
  const tmp = `${dirname(path)}/.${basename(path)}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const db = new Database(tmp);
    try {
      db.pragma('synchronous = FULL');
      db.transaction(() => {
        db.exec(SCHEMA);
        db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
      })();
    } finally {
      db.close();
    }
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      checkExisting(path);
      return;
    }
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (err) {
    if (err instanceof StateFileError) throw err;
    throw new StateFileError(`state file ${path} cannot be created: ${(err as Error).message}`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* not created */
    }
  }
}

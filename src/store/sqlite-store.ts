/**
 * The embedded StateStore: one SQLite file (better-sqlite3), WAL, synchronous=FULL so a commit
 * survives a crash or power loss, and an exclusive lock so that a second controller on the same
 * file refuses to start instead of corrupting it.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Operation } from '../core/operation.js';
import type { ServerOverlay } from '../core/overlay.js';
import type { StateChange, StateStore } from '../core/ports.js';

/** The state file is held by another process. */
export class StateLockedError extends Error {
  override name = 'StateLockedError';
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

/** Opens (creating when missing) the state file. Throws StateLockedError when another process holds it. */
export function openSqliteStore(path: string): StateStore {
  mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // take the exclusive lock now and keep it for the life of the connection
    db.exec('BEGIN EXCLUSIVE; COMMIT;');
  } catch (err) {
    db.close();
    const code = (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new StateLockedError(`state file ${path} is in use by another controller process; only one controller may use a state file`);
    }
    throw err;
  }
  db.exec(SCHEMA);
  const version = db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get('schema') as string | undefined;
  if (version === undefined) db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
  else if (version !== SCHEMA_VERSION) {
    db.close();
    throw new Error(`state file ${path} has schema version ${version}; this controller reads version ${SCHEMA_VERSION}`);
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
  const putMigration = db.prepare('INSERT INTO migrations (server, body) VALUES (?, ?) ON CONFLICT(server) DO UPDATE SET body = excluded.body');
  const allMigrations = db.prepare('SELECT body FROM migrations').pluck();
  const putInventory = db.prepare('INSERT INTO inventory (kind, name, body, at) VALUES (?, ?, ?, ?) ON CONFLICT(kind, name) DO UPDATE SET body = excluded.body, at = excluded.at');
  const allInventory = db.prepare('SELECT kind, name, body FROM inventory ORDER BY at, rowid');

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
      if (k === 'schema') throw new Error('meta key "schema" is reserved');
      if (v === null) delMeta.run(k);
      else putMeta.run(k, v);
    }
    if (change.migration) putMigration.run(change.migration.server, JSON.stringify(change.migration.value));
    if (change.inventory) {
      const v = change.inventory.value;
      putInventory.run(change.inventory.kind, change.inventory.name, v === null ? null : JSON.stringify(v), Date.now());
    }
  });

  return {
    load() {
      return {
        overlays: (allOverlays.all() as string[]).map((b) => JSON.parse(b) as ServerOverlay),
        operations: (openOps.all() as string[]).map((b) => JSON.parse(b) as Operation),
      };
    },
    getOperation(id) {
      const b = getOp.get(id) as string | undefined;
      return b === undefined ? undefined : (JSON.parse(b) as Operation);
    },
    listOperations(server, limit) {
      return (listOps.all(server, limit) as string[]).map((b) => JSON.parse(b) as Operation);
    },
    routes() {
      return new Map((allRoutes.all() as { address: string; host: string }[]).map((r) => [r.address, r.host]));
    },
    commit(change) {
      commit(change);
    },
    getMeta(key) {
      return getMeta.get(key) as string | undefined;
    },
    inventoryEdits() {
      return (allInventory.all() as { kind: string; name: string; body: string | null }[]).map((r) => ({
        kind: r.kind, name: r.name, value: r.body === null ? null : (JSON.parse(r.body) as Record<string, unknown>),
      }));
    },
    migrations() {
      return (allMigrations.all() as string[]).map((b) => JSON.parse(b) as unknown);
    },
    close() {
      db.close();
    },
  };
}

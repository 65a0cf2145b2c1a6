/** The StateStore contract, run against the SQLite store: one new state file per test, in a temporary directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { describeStateStoreContract } from './state-store-contract.js';

const root = mkdtempSync(join(tmpdir(), 'fc-store-contract-'));
let n = 0;
let last = '';

describeStateStoreContract('SQLite', {
  open: () => openSqliteStore((last = join(root, `state-${++n}.db`))),
  reopen: () => openSqliteStore(last),
  cleanup: () => rmSync(root, { recursive: true, force: true }),
  refused: [{ name: 'the meta key "schema", which the SQLite store keeps for itself', change: { meta: { a: '1', schema: '2' } } }],
});

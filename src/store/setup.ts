/** The state capability, built from the `state` config section: the embedded SQLite StateStore. */
import type { Config } from '../config/config.js';
import type { StateStore } from '../core/ports.js';
import { openSqliteStore } from './sqlite-store.js';

/** Opens the state file (refusing one that is not this controller's); throws with a clear message. */
export function setupStore(config: Config['state']): StateStore {
  return openSqliteStore(config.path);
}

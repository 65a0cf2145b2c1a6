/**
 * Servers, transits and accounts edited through the API. The config file seeds the inventory;
 * edits are validated exactly as the file is (the same checks, the same messages), committed to
 * the state store, and applied at once. At start the stored edits are applied over the file.
 */
import { ConfigError, INVENTORY_KEYS, withInventoryEdits, type Config, type InventoryEdit, type InventoryKind } from '../config/config.js';
import type { Inventory } from '../core/inventory.js';
import type { StateStore } from '../core/ports.js';
import { CommitLane } from './commit-lane.js';

/** A refused edit: code, HTTP status, message, and the problems found (path: reason). */
export class InventoryError extends Error {
  override name = 'InventoryError';
  constructor(readonly code: string, readonly status: number, message: string, readonly problems?: string[]) {
    super(message);
  }
}

/** The inventory of a validated config. */
export function inventoryOf(config: Config): Inventory {
  return {
    servers: new Map(config.servers.map((s) => [s.name, s])),
    transits: new Map(config.transits.map((t) => [t.name, t])),
    accounts: new Map(config.accounts.map((a) => [a.name, a])),
  };
}

/** The config with the stored edits applied. Throws ConfigError when they no longer fit the file. */
export function applyStoredEdits(config: Config, store: StateStore): Config {
  const edits = store.inventoryEdits().filter((e): e is InventoryEdit & { at: number } =>
    e.kind === 'servers' || e.kind === 'transits' || e.kind === 'accounts');
  return edits.length === 0 ? config : withInventoryEdits(config, edits);
}

export class InventoryService {
  private config: Config;
  private current: Inventory;
  /** An Inventory whose maps always reflect the latest edit (hand it to the other services). */
  readonly live: Inventory;
  private readonly commits: CommitLane;

  constructor(private readonly deps: {
    config: Config;
    /** The config file as read, before stored edits (reload() applies them to it again; default: config). */
    base?: Config;
    store: StateStore;
    /** Why an entry cannot change now (active cutover, migration...), or null. */
    inUse: (kind: InventoryKind, name: string) => string | null;
    /**
     * Prepares what depends on the config (the routing backend's host settings) for the edited
     * config, before the edit is stored; throws to refuse it. The returned function makes it
     * current once the edit is stored.
     */
    prepare?: (next: Config) => () => void;
    /** Serialises stage → commit → apply with the other services' (default: a lane of its own). */
    commits?: CommitLane;
  }) {
    this.config = deps.config;
    this.commits = deps.commits ?? new CommitLane();
    this.current = inventoryOf(deps.config);
    const self = this;
    this.live = {
      get servers() { return self.current.servers; },
      get transits() { return self.current.transits; },
      get accounts() { return self.current.accounts; },
    };
  }

  /**
   * Takes the inventory edits as stored (a replica that does not lead, following the leader):
   * the file's inventory with them applied; what depends on it (routing settings) follows.
   */
  reload(): void {
    let next: Config;
    try {
      next = applyStoredEdits(this.deps.base ?? this.deps.config, this.deps.store);
    } catch (err) {
      // the leader validated every edit it stored against the same file: only a different file gets here
      throw new Error(`the inventory edits stored by the leader do not apply to this replica's config file: ${(err as Error).message}`);
    }
    const activate = this.deps.prepare?.(next);
    this.config = next;
    this.current = inventoryOf(next);
    activate?.();
  }

  /** The entries in the config's form. */
  list(): Record<InventoryKind, unknown[]> {
    const raw = (k: InventoryKind) => (Array.isArray(this.config.raw[k]) ? (this.config.raw[k] as unknown[]) : []);
    return { servers: raw('servers'), transits: raw('transits'), accounts: raw('accounts') };
  }

  /** Creates or replaces an entry; resolves with whether it was created. */
  put(kind: InventoryKind, name: string, value: unknown): Promise<boolean> {
    return this.commits.run(() => this.putNow(kind, name, value));
  }

  private async putNow(kind: InventoryKind, name: string, value: unknown): Promise<boolean> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InventoryError('BAD_REQUEST', 400, 'the body must be a JSON object');
    const body = { ...(value as Record<string, unknown>) };
    if (body.name !== undefined && body.name !== name) throw new InventoryError('BAD_REQUEST', 400, `name: ${JSON.stringify(body.name)} differs from the name in the path (${name})`);
    const unknown = Object.keys(body).filter((k) => !INVENTORY_KEYS[kind].includes(k));
    if (unknown.length > 0) throw new InventoryError('BAD_REQUEST', 400, unknown.map((k) => `${k}: unknown field (allowed: ${INVENTORY_KEYS[kind].join(', ')})`).join('; '));
    delete body.name;
    const exists = this.exists(kind, name);
    if (exists) {
      const why = this.deps.inUse(kind, name);
      if (why) throw new InventoryError('IN_USE', 409, `${name} cannot change now: ${why}`);
    }
    await this.apply({ kind, name, value: body });
    return !exists;
  }

  /** Removes an entry. */
  remove(kind: InventoryKind, name: string): Promise<void> {
    return this.commits.run(() => this.removeNow(kind, name));
  }

  private async removeNow(kind: InventoryKind, name: string): Promise<void> {
    if (!this.exists(kind, name)) throw new InventoryError(`${kind.slice(0, -1).toUpperCase()}_NOT_FOUND`, 404, `no ${kind.slice(0, -1)} named "${name}"`);
    const why = this.deps.inUse(kind, name);
    if (why) throw new InventoryError('IN_USE', 409, `${name} cannot be removed now: ${why}`);
    if (kind === 'servers') {
      const owners = this.config.accounts.filter((a) => a.server === name).map((a) => a.name);
      if (owners.length > 0) throw new InventoryError('IN_USE', 409, `${name} is the home of account(s) ${owners.join(', ')}; move or remove them first`);
    }
    await this.apply({ kind, name, value: null });
  }

  private exists(kind: InventoryKind, name: string): boolean {
    return kind === 'servers' ? this.current.servers.has(name) : kind === 'transits' ? this.current.transits.has(name) : !!this.current.accounts?.has(name);
  }

  private async apply(edit: InventoryEdit): Promise<void> {
    let next: Config;
    let activate: (() => void) | undefined;
    try {
      next = withInventoryEdits(this.config, [edit]);
      activate = this.deps.prepare?.(next);
    } catch (err) {
      if (err instanceof ConfigError) {
        const problems = err.problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message));
        throw new InventoryError('INVALID_INVENTORY', 400, problems.join('; '), problems);
      }
      // the backend refused the edited settings (a rule the config does not know)
      const message = `routing: ${(err as Error).message}`;
      throw new InventoryError('INVALID_INVENTORY', 400, message, [message]);
    }
    await this.deps.store.commit({ inventory: edit });
    this.config = next;
    this.current = inventoryOf(next);
    activate?.();
  }
}

/**
 * The `dry-run` routing backend: validates like a real backend, then only records and logs what it
 * would do. It touches nothing; current() answers what it last applied (null for addresses it has
 * never been asked to route), so a dry run of a whole failover reads back consistently.
 */
import { parseAddress, parsePrefix } from '../core/addresses.js';
import type { Logger } from 'pino';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';

/** Options of DryRunBackend. */
export interface DryRunBackendOptions {
  /** Where "would route" lines go (info for changes, debug for unchanged). Optional. */
  logger?: Logger;
}

/** One apply() the dry-run backend saw. */
export interface DryRunRecord {
  /** When apply() was called. */
  at: Date;
  /** A copy of what was asked. */
  desired: DesiredRoute[];
  /** What it answered: addresses it would have moved, and those already where asked. */
  changed: string[];
  unchanged: string[];
}

/** A backend that changes nothing and remembers what it would have done. */
export class DryRunBackend implements RouteBackend {
  readonly name = 'dry-run';
  /** Every apply() in order (oldest first). */
  readonly history: DryRunRecord[] = [];
  /** normalised address → host it was last routed to. */
  private readonly routes = new Map<string, string>();
  private readonly logger?: Logger;

  constructor(opts: DryRunBackendOptions = {}) {
    this.logger = opts.logger?.child({ backend: 'dry-run' });
  }

  /** Records and logs the moves; the same desired state twice is unchanged the second time. */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    const keys = desired.map((d) => normalise(d.address, d.family));
    const result: ApplyResult = { changed: [], unchanged: [] };
    desired.forEach((d, i) => {
      const was = this.routes.get(keys[i]) ?? null;
      if (was === d.to) {
        result.unchanged.push(d.address);
        this.logger?.debug({ address: d.address, to: d.to }, 'dry-run: %s already routed to %s', d.address, d.to);
        return;
      }
      this.routes.set(keys[i], d.to);
      result.changed.push(d.address);
      this.logger?.info({ address: d.address, from: d.from, to: d.to, was }, 'dry-run: would route %s to %s (from %s)', d.address, d.to, was ?? d.from);
    });
    this.history.push({ at: new Date(), desired: desired.map((d) => ({ ...d })), changed: [...result.changed], unchanged: [...result.unchanged] });
    return result;
  }

  /**
   * What the last apply() set for each address, null where none did: the one backend whose
   * current() answers what it remembers (there is no real state to read). Never `problems` or
   * `unknown`, so a reconcile pass over a dry run finds drift only where apply() was never called.
   */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    const keys = addresses.map((a) => normalise(a));
    return addresses.map((address, i) => ({ address, to: this.routes.get(keys[i]) ?? null }));
  }
}

/** The normalised address (prefix kept when given, core/addresses' rule); invalid → a final RouteError, as a real backend would. */
function normalise(address: string, family?: 4 | 6): string {
  const text = typeof address === 'string' ? address : '';
  const p = text.includes('/') ? parsePrefix(text) : parseAddress(text);
  if (typeof p === 'string') throw new RouteError(`dry-run: ${JSON.stringify(address)} is not an IP address`, false, String(address));
  if (family !== undefined && family !== p.family) throw new RouteError(`dry-run: ${address} is not an IPv${family} address`, false, address);
  return 'prefixLength' in p ? `${p.address}/${p.prefixLength}` : p.address;
}

/**
 * The contract every routing backend implements (as MetalLB's speakers do): it is given the full
 * desired state for the addresses it is asked about, makes it so, and can read back what is.
 * Applying the same desired state twice is harmless; a resumed operation applies it again and
 * only what is missing changes.
 */

/** Where one service address must be delivered. Host names are inventory names (srv-42, transit-3). */
export interface DesiredRoute {
  /** The service address that moves, normalised (ip-address correctForm). */
  address: string;
  family: 4 | 6;
  /** The host that must receive traffic for `address` once applied. */
  to: string;
  /** The other host of the pair (where the address comes from); make-before-break removes it there last. */
  from: string;
}

/** Where one address is delivered now, as far as the backend can tell. */
export interface CurrentRoute {
  address: string;
  /** The host receiving it, or null when the backend cannot tell (no route, unknown next hop). */
  to: string | null;
}

/** What apply() did. */
export interface ApplyResult {
  /** Addresses whose delivery changed. */
  changed: string[];
  /** Addresses that were already delivered as desired. */
  unchanged: string[];
}

/** A failure of apply() or current(); `retryable` says whether trying again may help. */
export class RouteError extends Error {
  override name = 'RouteError';
  constructor(message: string, readonly retryable: boolean, readonly address?: string) {
    super(message);
  }
}

/** A routing backend. Implementations are named by technology: LinuxRouteBackend, HttpFailoverBackend. */
export interface RouteBackend {
  /** The backend's config name: linux-route, linux-address, http, dry-run. */
  readonly name: string;
  /** Makes every address in `desired` delivered to its `to` host. Throws RouteError. */
  apply(desired: DesiredRoute[]): Promise<ApplyResult>;
  /** Reads where each address is delivered now. Throws RouteError. */
  current(addresses: string[]): Promise<CurrentRoute[]>;
}

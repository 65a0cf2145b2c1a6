/**
 * A RouteBackend whose implementation can be replaced while the controller runs: inventory edits
 * change a host's routing settings (next hop, main IP, on-link host), and the backend built from
 * the edited config takes over for every later call. Calls in flight finish on the one they began on.
 */
import type { ApplyResult, CurrentRoute, DesiredRoute, RouteBackend } from '../core/ports.js';

export class SwappableBackend implements RouteBackend {
  constructor(private inner: RouteBackend) {}

  get name(): string {
    return this.inner.name;
  }

  /** Makes `next` the backend of every later call. */
  swap(next: RouteBackend): void {
    this.inner = next;
  }

  apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    return this.inner.apply(desired);
  }

  current(addresses: string[]): Promise<CurrentRoute[]> {
    return this.inner.current(addresses);
  }

  /** The resume() of the backend in place now (absent when it has none). */
  get resume(): ((desired: DesiredRoute[]) => Promise<void>) | undefined {
    const inner = this.inner;
    return inner.resume ? (desired) => inner.resume!(desired) : undefined;
  }
}

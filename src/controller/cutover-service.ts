/**
 * Cutover and cutback use cases. DNS first, synchronously: the overlay is committed to the state
 * store and made active before the call returns. Routing then runs in the background through the
 * backend (already wrapped with retries); its outcome is committed before it is reported. After a
 * restart, `resume()` re-activates the stored overlays and re-runs unfinished operations (the
 * backends are idempotent, so only what is missing changes).
 *
 * Every change is one commit: the operation, the overlay, the SOA serial bump and the migration's
 * part (from the hooks) together, applied in memory and in DNS only after that commit succeeded.
 * A request whose commit fails (StateUnavailableError) changes nothing; a background step whose
 * commit fails is neither applied nor reported and is tried again until the store takes it.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { pairAddresses, type AddressPair, type Inventory } from '../core/inventory.js';
import {
  isFinished, measured, newOperation, routingFailed, routingStarted, routingSucceeded, sourceHost, targetHost,
  type AddressDowntime, type Direction, type Operation,
} from '../core/operation.js';
import type { ServerOverlay } from '../core/overlay.js';
import { mergeStaged, StateFencedError, type Clock, type DowntimeMeter, type MeterRun, type Propagated, type ServerOverlaySink, type StagedChange, type StateStore } from '../core/ports.js';
import { CommitLane, commitStaged } from './commit-lane.js';
import { commitWhenPossible, type CommitRetryOptions } from './commit-retry.js';
import { RouteError, type RouteBackend } from '../core/ports.js';
import { RoutingLane } from './routing-lane.js';

/** A refusal with a stable code (mapped to an HTTP status by the API). */
export class ServiceError extends Error {
  constructor(readonly code: ServiceErrorCode, message: string, readonly details?: unknown) {
    super(message);
  }
}

export type ServiceErrorCode =
  | 'SERVER_NOT_FOUND' | 'TRANSIT_NOT_FOUND' | 'OPERATION_NOT_FOUND'
  | 'ALREADY_CUT_OVER' | 'NOT_CUT_OVER' | 'OPERATION_IN_PROGRESS' | 'TRANSIT_IN_USE'
  | 'TRANSIT_TOO_SMALL' | 'NOT_RETRYABLE';

/** What the service reports to metrics. */
export interface CutoverObserver {
  operationFinished?(op: Operation): void;
  routingError?(backend: string, err: unknown): void;
  overlaysChanged?(overlays: ServerOverlay[], routes: Map<string, string>): void;
}

export interface CutoverServiceDeps {
  inventory: Inventory;
  store: StateStore;
  backend: RouteBackend;
  /** Receives the active server overlays (DNS answers them before the call returns). */
  overlays: ServerOverlaySink;
  /** TTL cap of rewritten records (dns.cutover_ttl). */
  ttlCap: number;
  clock: Clock;
  logger: Logger;
  observer?: CutoverObserver;
  newId?: () => string;
  /** Measures each address's downtime; without it operations are not measured. */
  meter?: DowntimeMeter;
  /** The migration lifecycle's say on cutovers (guard) and what it hears back. */
  hooks?: CutoverHooks;
  /** Backoff of background commits while the store is unavailable. */
  commitRetry?: CommitRetryOptions;
  /** Serialises routing changes with the reconcile loop's repairs (default: a lane of its own). */
  lane?: RoutingLane;
  /** Serialises stage → commit → apply with the other services' (default: a lane of its own). */
  commits?: CommitLane;
}

/**
 * Hooks for the migration lifecycle. `beforeCutover` throws to refuse. The others stage the
 * migration's part of the change, committed in the same transaction as the operation and the
 * overlay (null: no part); they change nothing themselves.
 */
export interface CutoverHooks {
  beforeCutover?(server: string, transit: string, force: boolean): void;
  cutoverAccepted?(server: string, force: boolean): StagedChange | null | void;
  cutbackSucceeded?(server: string): StagedChange | null | void;
}

/** The result of a cutover/cutback request: the operation and whether this call started it. */
export interface Accepted {
  operation: Operation;
  created: boolean;
}

/** Where a server stands. */
export interface ServerStatus {
  name: string;
  addresses: { address: string; family: 4 | 6; routedTo: string | null; transitAddress: string | null }[];
  overlay: { active: false } | { active: true; transit: string; since: number; operationId: string; ttlCap: number };
  operations: Operation[];
}

export class CutoverService {
  private readonly overlays = new Map<string, ServerOverlay>();
  /** Operations whose routing is running in this process, by id. */
  private readonly running = new Map<string, Promise<void>>();
  /** Monotonic start time of operations accepted by this process. */
  private readonly startedAt = new Map<string, number>();
  /** Running measurements, by operation id. */
  private readonly meters = new Map<string, MeterRun>();
  private readonly events = new EventEmitter();
  private readonly log: Logger;
  private readonly lane: RoutingLane;
  private readonly commits: CommitLane;
  /** When the secondaries served each operation's DNS change, as soon as known (stored with the operation). */
  private readonly propagated = new Map<string, Propagated>();
  /** Operations whose DNS change had no secondary to reach. */
  private readonly noSecondaries = new Set<string>();

  constructor(private readonly deps: CutoverServiceDeps) {
    this.log = deps.logger;
    this.lane = deps.lane ?? new RoutingLane();
    this.commits = deps.commits ?? new CommitLane();
    this.events.setMaxListeners(0);
  }

  /** The active server overlays, by server (what the routing of each server's addresses follows). */
  activeOverlays(): ReadonlyMap<string, ServerOverlay> {
    return new Map(this.overlays);
  }

  /** Activates stored overlays and resumes unfinished operations. Call once at start, before serving DNS. */
  resume(): void {
    this.restore();
    this.resumeOperations();
  }

  /** Activates stored overlays (publishes them to DNS without a serial bump). */
  restore(): void {
    const overlays = this.reload();
    this.deps.overlays.restoreServers(overlays);
    if (overlays.length > 0) this.log.info({ servers: overlays.map((o) => o.server) }, 'cutover overlays restored');
  }

  /** Takes the overlays as stored (a replica that does not lead, following the leader); returns them. */
  reload(): ServerOverlay[] {
    this.overlays.clear();
    for (const o of this.deps.store.load().overlays) this.overlays.set(o.server, o);
    this.observeOverlays();
    return [...this.overlays.values()];
  }

  /** Resumes the stored operations not finished (pending, running) that this process does not run yet: at start, or when this replica starts leading. */
  resumeOperations(): void {
    for (let op of this.deps.store.load().operations) {
      if (this.running.has(op.id)) continue;
      this.log.warn({ operation: op.id, server: op.server, direction: op.direction, state: op.state, phase: op.phase }, 'resuming an unfinished operation');
      op = this.startMeasurement(op, true);
      this.launch(op);
    }
  }

  /** Cuts a server over to a transit: DNS now (switched when this resolves), routing in the background. */
  cutover(serverName: string, transitName: string, opts: { force?: boolean; requestedBy?: string } = {}): Promise<Accepted> {
    return this.commits.run(() => this.cutoverNow(serverName, transitName, opts));
  }

  private async cutoverNow(serverName: string, transitName: string, opts: { force?: boolean; requestedBy?: string }): Promise<Accepted> {
    const t0 = this.deps.clock.monotonic();
    const server = this.server(serverName);
    const transit = this.deps.inventory.transits.get(transitName);
    if (!transit) throw new ServiceError('TRANSIT_NOT_FOUND', `no transit named "${transitName}"`);
    const last = this.deps.store.listOperations(serverName, 1)[0];
    const active = this.overlays.get(serverName);
    // also once a cutback has lifted the overlay and measures the way back: one operation per server at a time
    if (last && last.direction === 'cutback' && !isFinished(last)) {
      throw new ServiceError('OPERATION_IN_PROGRESS', `a cutback of ${serverName} is running (${last.id}, ${last.phase}); wait for it to finish`);
    }
    if (active) {
      if (active.transit !== transitName) {
        throw new ServiceError('ALREADY_CUT_OVER', `${serverName} is cut over to ${active.transit}; cut back first`);
      }
      if (last && last.direction === 'cutover' && last.transit === transitName) {
        if (last.state === 'failed') return { operation: await this.retryNow(last.id), created: true };
        return { operation: last, created: false };
      }
      if (last && last.direction === 'cutback' && last.state === 'failed') {
        throw new ServiceError('OPERATION_IN_PROGRESS', `the last cutback of ${serverName} failed (${last.id}); retry it or cut back again`);
      }
    }
    for (const o of this.overlays.values()) {
      if (o.transit === transitName && o.server !== serverName) {
        throw new ServiceError('TRANSIT_IN_USE', `${transitName} already stands in for ${o.server}`);
      }
    }
    const pairs = pairAddresses(server, transit);
    if (typeof pairs === 'string') throw new ServiceError('TRANSIT_TOO_SMALL', pairs);
    this.deps.hooks?.beforeCutover?.(serverName, transitName, opts.force === true);
    const now = this.deps.clock.now();
    let op = newOperation({ id: this.newId(), server: serverName, transit: transitName, direction: 'cutover', backend: this.deps.backend.name, pairs, now, requestedBy: opts.requestedBy });
    const overlay: ServerOverlay = { server: serverName, transit: transitName, operationId: op.id, since: now, pairs };
    // DNS first: durable (operation, overlay, serial bump and migration in one commit), then active, then answered
    op = { ...op, state: 'running', times: { ...op.times, dnsSwitched: now } };
    op = this.startMeasurement(op, false); // probes start before anything changes
    const accepted = op;
    await this.commitOrUndo(op.id, () => {
      const next = new Map(this.overlays).set(serverName, overlay);
      return mergeStaged(
        { change: { operation: accepted, overlay: { server: serverName, value: overlay } }, apply: () => this.overlays.set(serverName, overlay) },
        this.deps.overlays.stageServers([...next.values()]),
        this.deps.hooks?.cutoverAccepted?.(serverName, opts.force === true),
        { change: {}, apply: () => this.observeOverlays() },
      );
    });
    // stored with the next progress step (routing started), committed before this call returns
    op = { ...op, durationsMs: { ...op.durationsMs, dnsSwitch: this.deps.clock.monotonic() - t0 } };
    this.startedAt.set(op.id, t0);
    this.log.info({ operation: op.id, server: serverName, transit: transitName, addresses: pairs.length, dnsSwitchMs: op.durationsMs.dnsSwitch }, 'cutover: DNS switched');
    this.trackPropagation(op.id);
    this.launch(op);
    return { operation: op, created: true };
  }

  /** Routes a server's addresses back, then lifts the overlay. */
  cutback(serverName: string, opts: { requestedBy?: string } = {}): Promise<Accepted> {
    return this.commits.run(() => this.cutbackNow(serverName, opts));
  }

  private async cutbackNow(serverName: string, opts: { requestedBy?: string }): Promise<Accepted> {
    const t0 = this.deps.clock.monotonic();
    this.server(serverName);
    const active = this.overlays.get(serverName);
    const last = this.deps.store.listOperations(serverName, 1)[0];
    if (last && !isFinished(last)) {
      if (last.direction === 'cutback') return { operation: last, created: false };
      throw new ServiceError('OPERATION_IN_PROGRESS', `a cutover of ${serverName} is running (${last.id}); wait for it to finish`);
    }
    if (!active) {
      throw new ServiceError('NOT_CUT_OVER', `${serverName} is not cut over`);
    }
    if (last && last.direction === 'cutback' && last.state === 'failed') return { operation: await this.retryNow(last.id), created: true };
    const now = this.deps.clock.now();
    let op = newOperation({ id: this.newId(), server: serverName, transit: active.transit, direction: 'cutback', backend: this.deps.backend.name, pairs: active.pairs, now, requestedBy: opts.requestedBy });
    op = { ...op, state: 'running', phase: 'routing' };
    op = this.startMeasurement(op, false);
    const accepted = op;
    await this.commitOrUndo(op.id, () => ({ change: { operation: accepted }, apply() {} }));
    this.startedAt.set(op.id, t0);
    this.log.info({ operation: op.id, server: serverName, transit: active.transit }, 'cutback accepted');
    this.launch(op);
    return { operation: op, created: true };
  }

  /** Runs a failed operation again (it must be the server's latest). */
  retry(id: string): Promise<Operation> {
    return this.commits.run(() => this.retryNow(id));
  }

  private async retryNow(id: string): Promise<Operation> {
    const op = this.getOperation(id);
    const latest = this.deps.store.listOperations(op.server, 1)[0];
    if (op.state !== 'failed') throw new ServiceError('NOT_RETRYABLE', `operation ${id} is ${op.state}; only a failed operation can be retried`);
    if (latest && latest.id !== id) throw new ServiceError('NOT_RETRYABLE', `operation ${id} is not the latest of ${op.server} (${latest.id} is)`);
    if (op.direction === 'cutover' && this.overlays.get(op.server)?.operationId !== id) {
      throw new ServiceError('NOT_RETRYABLE', `operation ${id} no longer owns ${op.server}'s overlay`);
    }
    let again: Operation = { ...op, state: 'running', error: null, times: { ...op.times, finished: null } };
    again = this.startMeasurement(again, false);
    const accepted = again;
    await this.commitOrUndo(id, () => ({ change: { operation: accepted }, apply() {} }));
    this.startedAt.set(id, this.deps.clock.monotonic());
    this.launch(again);
    return again;
  }

  getOperation(id: string): Operation {
    const op = this.deps.store.getOperation(id);
    if (!op) throw new ServiceError('OPERATION_NOT_FOUND', `no operation with id "${id}"`);
    return op;
  }

  /** Resolves with the operation once finished, or as it is after `ms`. */
  async waitFor(id: string, ms: number): Promise<Operation> {
    const op = this.getOperation(id);
    if (isFinished(op) || ms <= 0) return op;
    return new Promise((resolve) => {
      const done = (o: Operation) => {
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        this.events.off(id, done);
        resolve(this.getOperation(id));
      }, ms);
      this.events.once(id, done);
    });
  }

  /**
   * Resolves with the operation once every secondary serves its DNS change (or as it is after
   * `ms`, or at once when there are no secondaries).
   */
  async waitForPropagation(id: string, ms: number): Promise<{ operation: Operation; propagated: boolean }> {
    const done = (o: Operation) => this.noSecondaries.has(o.id) || (!!o.dnsPropagated && Object.values(o.dnsPropagated).every((t) => t !== null));
    const op = this.withKnownPropagation(this.getOperation(id));
    if (done(op) || ms <= 0 || !this.deps.overlays.propagation) return { operation: op, propagated: done(op) };
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.events.off(`${id}:propagated`, finish);
        const o = this.withKnownPropagation(this.getOperation(id));
        resolve({ operation: o, propagated: done(o) });
      };
      const timer = setTimeout(finish, ms);
      this.events.once(`${id}:propagated`, finish);
    });
  }

  /** The operation with what is known of its propagation (stored or not yet). */
  withKnownPropagation(op: Operation): Operation {
    const known = this.propagated.get(op.id);
    return known && !op.dnsPropagated ? { ...op, dnsPropagated: known } : op;
  }

  /** Watches the secondaries serve the DNS change just published for the operation `id`. */
  private trackPropagation(id: string): void {
    const wait = this.deps.overlays.propagation?.();
    if (!wait) return;
    void wait.then((result) => {
      if (!result) {
        // no secondaries: nothing to wait for
        this.noSecondaries.add(id);
        if (this.noSecondaries.size > 1000) this.noSecondaries.delete(this.noSecondaries.values().next().value!);
        this.events.emit(`${id}:propagated`);
        return undefined;
      }
      this.propagated.set(id, result);
      if (this.propagated.size > 1000) this.propagated.delete(this.propagated.keys().next().value!);
      this.events.emit(`${id}:propagated`);
      const late = Object.entries(result).filter(([, t]) => t === null).map(([s]) => s);
      if (late.length > 0) this.log.warn({ operation: id, secondaries: late }, 'DNS change not served by every secondary within the wait');
      // a finished operation has no step left to store it with: store it now
      const stored = this.deps.store.getOperation(id);
      if (stored && isFinished(stored)) return this.persist(stored, 'propagation', () => ({ change: { operation: stored }, apply() {} }));
      return undefined;
    }).catch((err: unknown) => this.log.warn({ operation: id, err: (err as Error).message }, 'propagation not recorded'));
  }

  status(serverName: string): ServerStatus {
    const server = this.server(serverName);
    const overlay = this.overlays.get(serverName);
    const routes = this.deps.store.routes();
    return {
      name: serverName,
      addresses: server.addresses.map((a) => ({
        address: a.address,
        family: a.family,
        routedTo: routes.get(a.address) ?? null,
        transitAddress: overlay?.pairs.find((p) => p.address === a.address)?.transitAddress ?? null,
      })),
      overlay: overlay
        ? { active: true, transit: overlay.transit, since: overlay.since, operationId: overlay.operationId, ttlCap: this.deps.ttlCap }
        : { active: false },
      operations: this.deps.store.listOperations(serverName, 10),
    };
  }

  /** Every server's status. */
  statusAll(): ServerStatus[] {
    return [...this.deps.inventory.servers.keys()].map((s) => this.status(s));
  }

  /** Waits for the routing runs of this process (for a graceful stop and for tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  private server(name: string) {
    const s = this.deps.inventory.servers.get(name);
    if (!s) throw new ServiceError('SERVER_NOT_FOUND', `no server named "${name}"`);
    return s;
  }

  private newId(): string {
    return this.deps.newId?.() ?? `op-${randomUUID()}`;
  }

  /** Tells the observer (metrics); runs after a commit, so it never throws: the change is made already. */
  private observeOverlays(): void {
    try {
      this.deps.observer?.overlaysChanged?.([...this.overlays.values()], this.deps.store.routes());
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'overlay metrics not updated');
    }
  }

  /**
   * Commits a request's change and applies it (in the commit lane). When staging or the commit
   * throws, nothing was changed: the measurement started for it is stopped, and the error goes to
   * the caller.
   */
  private async commitOrUndo(opId: string, build: () => StagedChange): Promise<void> {
    try {
      await commitStaged(this.deps.store, build);
    } catch (err) {
      this.meters.get(opId)?.stop().catch(() => undefined);
      this.meters.delete(opId);
      throw err;
    }
  }

  /** Commits a background step and applies it; while the store is unavailable it waits and tries again. */
  private persist(op: Operation, what: string, build: () => StagedChange | null): Promise<void> {
    const withPropagation = (): StagedChange | null => {
      const staged = build();
      const known = staged?.change.operation && this.propagated.get(staged.change.operation.id);
      if (!staged || !known) return staged;
      return { change: { ...staged.change, operation: { ...staged.change.operation!, dnsPropagated: known } }, apply: () => staged.apply() };
    };
    return commitWhenPossible(this.deps.store, this.commits, withPropagation, {
      logger: this.log, what: `${op.direction} ${what}`, context: { operation: op.id, server: op.server }, retry: this.deps.commitRetry,
    });
  }

  /** Starts probing the operation's addresses (when a meter is configured). */
  private startMeasurement(op: Operation, restarted: boolean): Operation {
    const meter = this.deps.meter;
    if (!meter) return op;
    this.meters.get(op.id)?.stop().catch(() => undefined);
    const run = meter.start({
      addresses: op.addresses.map((a) => ({ address: a.address, family: a.family })),
      origin: sourceHost(op),
      target: targetHost(op),
      server: op.server,
    });
    this.meters.set(op.id, run);
    return { ...op, measurement: { probe: meter.description, intervalMs: meter.intervalMs, restarted, maxDowntimeMs: null } };
  }

  private async stopMeasurement(id: string): Promise<AddressDowntime[] | null> {
    const run = this.meters.get(id);
    if (!run) return null;
    this.meters.delete(id);
    return run.stop().catch(() => null);
  }

  private launch(op: Operation): void {
    const run = this.route(op)
      .catch((err) => {
        const deposed = err instanceof StateFencedError;
        this.log.error({ operation: op.id, server: op.server, err: (err as Error).message },
          deposed ? `${op.direction}: stopped, this replica no longer leads; the leader resumes it` : `${op.direction}: stopped; it resumes at the next start`);
      })
      .finally(() => this.running.delete(op.id));
    this.running.set(op.id, run);
  }

  private async route(op: Operation): Promise<void> {
    op = routingStarted(op);
    const started = op;
    await this.persist(op, 'routing started', () => ({ change: { operation: started }, apply() {} }));
    const to = targetHost(op);
    const from = sourceHost(op);
    const desired = op.addresses.map((a: AddressPair) => ({ address: a.address, family: a.family, to, from }));
    let result: Awaited<ReturnType<RouteBackend['apply']>>;
    try {
      result = await this.lane.run(() => this.deps.backend.apply(desired));
    } catch (err) {
      this.deps.observer?.routingError?.(this.deps.backend.name, err);
      const message = err instanceof Error ? err.message : String(err);
      let failed = routingFailed(op, this.deps.clock.now(), { code: 'ROUTING_FAILED', message }, err instanceof RouteError ? err.address : undefined);
      const partial = await this.stopMeasurement(op.id);
      if (partial) failed = { ...failed, addresses: failed.addresses.map((a) => ({ ...a, ...pick(partial, a.address) })) };
      const stored = failed;
      await this.persist(op, 'routing failed', () => ({ change: { operation: stored }, apply() {} }));
      this.log.error({ operation: op.id, server: op.server, direction: op.direction, err: message }, `${op.direction}: routing failed; the DNS overlay stays as it is`);
      this.finish(failed);
      return;
    }
    const now = this.deps.clock.now();
    const startedAt = this.startedAt.get(op.id);
    const routingMs = startedAt !== undefined ? this.deps.clock.monotonic() - startedAt : null;
    this.meters.get(op.id)?.routed(now);
    const routed = routingSucceeded(op, now, routingMs, this.meters.has(op.id));
    const routes = desired.map((d) => ({ address: d.address, host: to }));
    if (op.direction === 'cutback') {
      // routes are back: lift the overlay (durably, with the serial bump and the migration's part, then in DNS)
      await this.persist(op, 'routes applied', () => {
        const next = new Map(this.overlays);
        next.delete(op.server);
        return mergeStaged(
          { change: { operation: routed, overlay: { server: op.server, value: null }, routes }, apply: () => this.overlays.delete(op.server) },
          this.deps.overlays.stageServers([...next.values()]),
          this.deps.hooks?.cutbackSucceeded?.(op.server),
          { change: {}, apply: () => this.observeOverlays() },
        );
      });
      this.trackPropagation(op.id);
    } else {
      await this.persist(op, 'routes applied', () => ({ change: { operation: routed, routes }, apply: () => this.observeOverlays() }));
    }
    this.log.info({ operation: op.id, server: op.server, direction: op.direction, changed: result.changed.length, unchanged: result.unchanged.length, routingMs }, `${op.direction}: routes applied`);
    const run = this.meters.get(routed.id);
    if (!run) {
      this.finish(routed);
      return;
    }
    const results = await run.done().catch((err) => {
      this.log.error({ operation: op.id, err: (err as Error).message }, 'measurement failed');
      return [] as AddressDowntime[];
    });
    this.meters.delete(routed.id);
    const t0 = this.startedAt.get(op.id);
    const done = measured(routed, this.deps.clock.now(), results, t0 !== undefined ? this.deps.clock.monotonic() - t0 : null);
    await this.persist(op, 'measurement ended', () => ({ change: { operation: done }, apply() {} }));
    this.log.info({
      operation: op.id, server: op.server, direction: op.direction, state: done.state,
      downtimeMs: Object.fromEntries(done.addresses.map((a) => [a.address, a.downtimeMs])),
    }, `${op.direction}: measurement ended`);
    this.finish(done);
  }

  private finish(op: Operation): void {
    this.startedAt.delete(op.id);
    this.deps.observer?.operationFinished?.(op);
    this.events.emit(op.id, op);
  }
}

/** The measured fields of one address from a partial measurement. */
function pick(results: AddressDowntime[], address: string) {
  const r = results.find((x) => x.address === address);
  return r ? { downtimeMs: r.downtimeMs, recovered: r.recovered, probesSent: r.probesSent, probesFailed: r.probesFailed } : {};
}

export type { Direction };

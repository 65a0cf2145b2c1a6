/**
 * Cutover and cutback use cases. DNS first, synchronously: the overlay is committed to the state
 * store and made active before the call returns. Routing then runs in the background through the
 * backend (already wrapped with retries); its outcome is committed before it is reported. After a
 * restart, `resume()` re-activates the stored overlays and re-runs unfinished operations (the
 * backends are idempotent, so only what is missing changes).
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
import type { Clock, DowntimeMeter, MeterRun, ServerOverlaySink, StateStore } from '../core/ports.js';
import { RouteError, type RouteBackend } from '../routing/route-backend.js';

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
}

/** Hooks for the migration lifecycle. `beforeCutover` throws to refuse. */
export interface CutoverHooks {
  beforeCutover?(server: string, transit: string, force: boolean): void;
  cutoverAccepted?(server: string, force: boolean): void;
  cutbackSucceeded?(server: string): void;
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

  constructor(private readonly deps: CutoverServiceDeps) {
    this.log = deps.logger;
    this.events.setMaxListeners(0);
  }

  /** Activates stored overlays and resumes unfinished operations. Call once at start, before serving DNS. */
  resume(): void {
    const { overlays, operations } = this.deps.store.load();
    for (const o of overlays) this.overlays.set(o.server, o);
    this.publishOverlay(true);
    if (overlays.length > 0) this.log.info({ servers: overlays.map((o) => o.server) }, 'cutover overlays restored');
    for (let op of operations) {
      this.log.warn({ operation: op.id, server: op.server, direction: op.direction, state: op.state, phase: op.phase }, 'resuming an unfinished operation');
      op = this.startMeasurement(op, true);
      this.launch(op);
    }
  }

  /** Cuts a server over to a transit: DNS now, routing in the background. */
  cutover(serverName: string, transitName: string, opts: { force?: boolean } = {}): Accepted {
    const t0 = this.deps.clock.monotonic();
    const server = this.server(serverName);
    const transit = this.deps.inventory.transits.get(transitName);
    if (!transit) throw new ServiceError('TRANSIT_NOT_FOUND', `no transit named "${transitName}"`);
    const last = this.deps.store.listOperations(serverName, 1)[0];
    const active = this.overlays.get(serverName);
    if (active) {
      if (active.transit !== transitName) {
        throw new ServiceError('ALREADY_CUT_OVER', `${serverName} is cut over to ${active.transit}; cut back first`);
      }
      if (last && last.direction === 'cutover' && last.transit === transitName) {
        if (last.state === 'failed') return { operation: this.retry(last.id), created: true };
        return { operation: last, created: false };
      }
      if (last && last.direction === 'cutback' && !isFinished(last)) {
        throw new ServiceError('OPERATION_IN_PROGRESS', `a cutback of ${serverName} is running (${last.id})`);
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
    let op = newOperation({ id: this.newId(), server: serverName, transit: transitName, direction: 'cutover', backend: this.deps.backend.name, pairs, now });
    const overlay: ServerOverlay = { server: serverName, transit: transitName, operationId: op.id, since: now, pairs };
    // DNS first: durable, then active, then answered
    op = { ...op, state: 'running', times: { ...op.times, dnsSwitched: now } };
    op = this.startMeasurement(op, false); // probes start before anything changes
    this.deps.store.commit({ operation: op, overlay: { server: serverName, value: overlay } });
    this.overlays.set(serverName, overlay);
    this.publishOverlay();
    op = { ...op, durationsMs: { ...op.durationsMs, dnsSwitch: this.deps.clock.monotonic() - t0 } };
    this.deps.store.commit({ operation: op });
    this.startedAt.set(op.id, t0);
    this.log.info({ operation: op.id, server: serverName, transit: transitName, addresses: pairs.length, dnsSwitchMs: op.durationsMs.dnsSwitch }, 'cutover: DNS switched');
    this.deps.hooks?.cutoverAccepted?.(serverName, opts.force === true);
    this.launch(op);
    return { operation: op, created: true };
  }

  /** Routes a server's addresses back, then lifts the overlay. */
  cutback(serverName: string): Accepted {
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
    if (last && last.direction === 'cutback' && last.state === 'failed') return { operation: this.retry(last.id), created: true };
    const now = this.deps.clock.now();
    let op = newOperation({ id: this.newId(), server: serverName, transit: active.transit, direction: 'cutback', backend: this.deps.backend.name, pairs: active.pairs, now });
    op = { ...op, state: 'running', phase: 'routing' };
    op = this.startMeasurement(op, false);
    this.deps.store.commit({ operation: op });
    this.startedAt.set(op.id, t0);
    this.log.info({ operation: op.id, server: serverName, transit: active.transit }, 'cutback accepted');
    this.launch(op);
    return { operation: op, created: true };
  }

  /** Runs a failed operation again (it must be the server's latest). */
  retry(id: string): Operation {
    const op = this.getOperation(id);
    const latest = this.deps.store.listOperations(op.server, 1)[0];
    if (op.state !== 'failed') throw new ServiceError('NOT_RETRYABLE', `operation ${id} is ${op.state}; only a failed operation can be retried`);
    if (latest && latest.id !== id) throw new ServiceError('NOT_RETRYABLE', `operation ${id} is not the latest of ${op.server} (${latest.id} is)`);
    if (op.direction === 'cutover' && this.overlays.get(op.server)?.operationId !== id) {
      throw new ServiceError('NOT_RETRYABLE', `operation ${id} no longer owns ${op.server}'s overlay`);
    }
    let again: Operation = { ...op, state: 'running', error: null, times: { ...op.times, finished: null } };
    again = this.startMeasurement(again, false);
    this.deps.store.commit({ operation: again });
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

  private publishOverlay(restore = false): void {
    this.deps.overlays.setServers([...this.overlays.values()], { restore });
    this.deps.observer?.overlaysChanged?.([...this.overlays.values()], this.deps.store.routes());
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
    const run = this.route(op).finally(() => this.running.delete(op.id));
    this.running.set(op.id, run);
  }

  private async route(op: Operation): Promise<void> {
    op = routingStarted(op);
    this.deps.store.commit({ operation: op });
    const to = targetHost(op);
    const from = sourceHost(op);
    const desired = op.addresses.map((a: AddressPair) => ({ address: a.address, family: a.family, to, from }));
    let routed: Operation;
    try {
      const result = await this.deps.backend.apply(desired);
      const now = this.deps.clock.now();
      const t0 = this.startedAt.get(op.id);
      const routingMs = t0 !== undefined ? this.deps.clock.monotonic() - t0 : null;
      const run = this.meters.get(op.id);
      run?.routed(now);
      routed = routingSucceeded(op, now, routingMs, run !== undefined);
      const routes = desired.map((d) => ({ address: d.address, host: to }));
      if (op.direction === 'cutback') {
        // routes are back: lift the overlay (durably, then in DNS)
        this.deps.store.commit({ operation: routed, overlay: { server: op.server, value: null }, routes });
        this.overlays.delete(op.server);
        this.publishOverlay();
        this.deps.hooks?.cutbackSucceeded?.(op.server);
      } else {
        this.deps.store.commit({ operation: routed, routes });
        this.deps.observer?.overlaysChanged?.([...this.overlays.values()], this.deps.store.routes());
      }
      this.log.info({ operation: op.id, server: op.server, direction: op.direction, changed: result.changed.length, unchanged: result.unchanged.length, routingMs }, `${op.direction}: routes applied`);
    } catch (err) {
      this.deps.observer?.routingError?.(this.deps.backend.name, err);
      const message = err instanceof Error ? err.message : String(err);
      let failed = routingFailed(op, this.deps.clock.now(), { code: 'ROUTING_FAILED', message }, err instanceof RouteError ? err.address : undefined);
      const partial = await this.stopMeasurement(op.id);
      if (partial) failed = { ...failed, addresses: failed.addresses.map((a) => ({ ...a, ...pick(partial, a.address) })) };
      this.deps.store.commit({ operation: failed });
      this.log.error({ operation: op.id, server: op.server, direction: op.direction, err: message }, `${op.direction}: routing failed; the DNS overlay stays as it is`);
      this.finish(failed);
      return;
    }
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
    this.deps.store.commit({ operation: done });
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

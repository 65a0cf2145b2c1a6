/**
 * The routing reconcile loop: reads where every managed address is delivered (the backend's
 * current(), the real state), compares it with where the durable state says it must be
 * (core/routing-plan), and repairs what drifted through the retried apply() (mode `repair`) or
 * only reports it (mode `report`). Runs at start (before the API accepts cutovers), every
 * interval, and on request; passes never overlap.
 *
 * Never makes it worse: an address that could not be read is unknown and left alone (after a final
 * read error, such as refused credentials, reads pause one interval, doubling); addresses
 * of a running operation are the operation's; a failed repair waits one interval, doubling, before
 * it is tried again; no backend error stops the loop. Repairs take the routing lane, as operations
 * do, and re-check the desired state inside it.
 */
import type { Logger } from 'pino';
import type { Server } from '../core/inventory.js';
import type { Operation } from '../core/operation.js';
import type { ServerOverlay } from '../core/overlay.js';
import { RouteError, type Clock, type CurrentRoute, type DesiredRoute, type RouteBackend, type StateStore } from '../core/ports.js';
import {
  afterFailedRepair, desiredRouting, judge, repairRoute, resumeRoutes,
  type DesiredAddress, type ReconcileMode, type ReconcileObserver, type ReconcilePass, type RepairBackoff, type RouteVerdict,
} from '../core/routing-plan.js';
import { CommitLane } from './commit-lane.js';
import type { RoutingLane } from './routing-lane.js';

export type { ReconcileMode, ReconcileObserver, ReconcilePass };

export interface ReconcilerDeps {
  servers: () => Iterable<Server>;
  transits: () => Iterable<string>;
  overlays: () => ReadonlyMap<string, ServerOverlay>;
  store: StateStore;
  /** Reads the real state (not retried: a failed read is unknown until the next pass). */
  reader: RouteBackend;
  /** Applies repairs (retried, with a deadline of at most one interval). */
  repairer: RouteBackend;
  lane: RoutingLane;
  /** Serialises its commits with the other services' stage → commit → apply (default: a lane of its own). */
  commits?: CommitLane;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  mode: ReconcileMode;
  maxBackoffMs: number;
  observer?: ReconcileObserver;
}

/** What the controller knows of one managed address. */
export interface AddressRouting {
  address: string;
  family: 4 | 6;
  server: string;
  /** Where it must be delivered now. */
  desired: string;
  /** in_sync, drifted, unknown, left_to_operation, held (last operation failed), not_checked (changed since the last pass). */
  state: RouteVerdict['state'] | 'not_checked';
  reason: string | null;
  /** Where it was last confirmed delivered (durable: routes applied or seen in sync). */
  confirmed: string | null;
  /** What the last successful read saw. */
  observed: { host: string | null; problems: string[]; at: number } | null;
  driftSince: number | null;
  repairs: { ok: number; failed: number };
  lastRepair: { at: number; result: 'ok' | 'failed'; error: string | null } | null;
  /** When a failed repair is tried again (null: at the next pass). */
  nextRepairAt: number | null;
}

interface Track {
  observed: AddressRouting['observed'];
  verdict: RouteVerdict | null;
  /** The desired state the verdict was made against. */
  judgedAgainst: string | null;
  driftSince: number | null;
  repairs: { ok: number; failed: number };
  lastRepair: AddressRouting['lastRepair'];
  backoff: RepairBackoff | undefined;
}

const keyOf = (d: DesiredAddress) => `${d.desired}|${d.other}|${d.leftTo?.operation ?? ''}|${d.leftTo?.kind ?? ''}`;
const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

export class RouteReconciler {
  private readonly tracks = new Map<string, Track>();
  private running: Promise<ReconcilePass> | null = null;
  private queued: Promise<ReconcilePass> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private passes = 0;
  private last: ReconcilePass | null = null;
  /** The last resume() of the backend's daemon (passes and the controller's applies wait for it). */
  private resuming: Promise<void> = Promise.resolve();
  /** Set after a read failed with a final error: reads wait (one interval, doubling). */
  private readPause: { error: string; backoff: RepairBackoff } | null = null;
  private readonly log: Logger;
  private readonly commits: CommitLane;

  constructor(private readonly deps: ReconcilerDeps) {
    this.log = deps.logger;
    this.commits = deps.commits ?? new CommitLane();
  }

  get mode(): ReconcileMode {
    return this.deps.mode;
  }

  get intervalMs(): number {
    return this.deps.intervalMs;
  }

  get backend(): string {
    return this.deps.reader.name;
  }

  /** The last pass that ended, or null before the first. */
  lastPass(): ReconcilePass | null {
    return this.last;
  }

  /** Runs the first pass (resolves once it ended, whatever it found), then one every interval; again after stop(). */
  async start(): Promise<ReconcilePass> {
    this.stopped = false;
    const pass = await this.reconcile('start');
    this.schedule();
    return pass;
  }

  /** Stops the loop; resolves once a pass in flight has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.queued?.catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  /**
   * Runs a pass: at once when none runs, else once the running one ended (requests made meanwhile
   * share that next pass). Never rejects.
   */
  reconcile(trigger: ReconcilePass['trigger'] = 'request'): Promise<ReconcilePass> {
    if (!this.running) {
      this.running = this.pass(trigger).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    if (!this.queued) {
      this.queued = this.running.then(() => {
        this.queued = null;
        return this.reconcile(trigger);
      });
    }
    return this.queued;
  }

  /**
   * Gives the backend's daemon the whole desired state (RouteBackend.resume, through the
   * repairer), when the backend has one: `start` when this replica starts acting, `reset` when a
   * read found the daemon reset. Logged and counted; resolves when it ended, never rejects.
   * Passes wait for it.
   */
  resume(trigger: 'start' | 'reset', why?: string): Promise<void> {
    const backend = this.deps.repairer;
    if (!backend.resume) return this.resuming;
    const run = async () => {
      let routes: DesiredRoute[];
      try {
        const transits = [...this.deps.transits()];
        const servers = [...this.deps.servers()].map((s) => s.name);
        routes = resumeRoutes(this.desired(), this.readConfirmed(), (not) => [...transits, ...servers].find((h) => h !== not) ?? null);
      } catch (err) {
        this.log.error({ backend: backend.name, trigger, err: message(err) }, 'routing daemon not resumed: the desired state cannot be read');
        this.deps.observer?.resumed?.(backend.name, trigger, 'failed');
        return;
      }
      const t0 = this.deps.clock.monotonic();
      try {
        await backend.resume!(routes);
        this.log.warn({ backend: backend.name, trigger, why, addresses: routes.length, ms: Math.round(this.deps.clock.monotonic() - t0) }, 'routing daemon resumed: the whole desired state replayed, its sessions enabled');
        this.deps.observer?.resumed?.(backend.name, trigger, 'ok');
      } catch (err) {
        this.log.error({ backend: backend.name, trigger, why, err: message(err) }, 'routing daemon not resumed; tried again when a pass finds it still waiting');
        this.deps.observer?.resumed?.(backend.name, trigger, 'failed');
      }
    };
    this.resuming = this.resuming.then(run);
    return this.resuming;
  }

  /** Resolves once the last resume() ended. */
  resumed(): Promise<void> {
    return this.resuming;
  }

  /** Every managed address: desired, last confirmed and observed delivery, drift, repairs. */
  view(): AddressRouting[] {
    const confirmed = this.readConfirmed();
    return this.desired().map((d) => {
      const t = this.tracks.get(d.address);
      const current = t && t.judgedAgainst === keyOf(d);
      const verdict = current ? t!.verdict : null;
      const live = d.leftTo ? judge(d, undefined) : null;
      const state: AddressRouting['state'] = live?.state ?? verdict?.state ?? 'not_checked';
      const reason = live ? ('reason' in live ? live.reason : null) : verdict ? ('reason' in verdict ? verdict.reason : null) : t ? 'changed since the last pass' : 'not read yet';
      return {
        address: d.address,
        family: d.family,
        server: d.server,
        desired: d.desired,
        state,
        reason,
        confirmed: confirmed.get(d.address) ?? null,
        observed: t?.observed ?? null,
        driftSince: state === 'drifted' ? t?.driftSince ?? null : null,
        repairs: { ...(t?.repairs ?? { ok: 0, failed: 0 }) },
        lastRepair: t?.lastRepair ?? null,
        nextRepairAt: state === 'drifted' && t?.backoff ? t.backoff.nextAttemptAt : null,
      };
    });
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.reconcile('interval').finally(() => this.schedule());
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  private desired(): DesiredAddress[] {
    return desiredRouting({
      servers: this.deps.servers(),
      overlays: this.deps.overlays(),
      latest: (server) => this.latestOperation(server),
    });
  }

  private latestOperation(server: string): Operation | undefined {
    return this.deps.store.listOperations(server, 1)[0];
  }

  private readConfirmed(): Map<string, string> {
    try {
      return this.deps.store.routes();
    } catch {
      return new Map();
    }
  }

  private track(address: string): Track {
    let t = this.tracks.get(address);
    if (!t) {
      t = { observed: null, verdict: null, judgedAgainst: null, driftSince: null, repairs: { ok: 0, failed: 0 }, lastRepair: null, backoff: undefined };
      this.tracks.set(address, t);
    }
    return t;
  }

  private async pass(trigger: ReconcilePass['trigger']): Promise<ReconcilePass> {
    const { clock } = this.deps;
    const t0 = clock.monotonic();
    const startedAt = clock.now();
    const id = ++this.passes;
    const backend = this.deps.reader.name;
    const out: ReconcilePass = {
      id, trigger, mode: this.deps.mode, startedAt, endedAt: startedAt, durationMs: 0, checked: 0,
      inSync: 0, drifted: 0, unknown: 0, leftToOperations: 0, held: 0, repaired: 0, repairsFailed: 0, readError: null,
    };
    try {
      let wants: DesiredAddress[];
      try {
        wants = this.desired();
      } catch (err) {
        // the state store cannot be read: nothing can be decided this time
        out.readError = `the durable state cannot be read: ${message(err)}`;
        return out;
      }
      const managed = new Set(wants.map((w) => w.address));
      for (const a of [...this.tracks.keys()]) if (!managed.has(a)) this.tracks.delete(a);

      // 1. Read the real state of every managed address (one call; the backend batches it).
      //    After a final read error (bad credentials: the provider locks the client out after a
      //    few failed logins) reads pause, one interval doubling; a requested pass reads anyway.
      const seen = new Map<string, CurrentRoute>();
      const paused = this.readPause && trigger !== 'request' && clock.now() < this.readPause.backoff.nextAttemptAt ? this.readPause : null;
      if (paused) {
        out.readError = `reads paused until ${new Date(paused.backoff.nextAttemptAt).toISOString()} after a final error: ${paused.error}`;
      } else if (wants.length > 0) {
        await this.resuming;
        try {
          const list = await this.deps.reader.current(wants.map((w) => w.address));
          for (const c of list) seen.set(c.address, c);
          this.readPause = null;
        } catch (err) {
          out.readError = message(err);
          this.deps.observer?.readFailed?.(backend, 1);
          const final = err instanceof RouteError && !err.retryable;
          if (final) this.readPause = { error: out.readError, backoff: afterFailedRepair(this.readPause?.backoff, clock.now(), this.deps.intervalMs, this.deps.maxBackoffMs) };
          this.log.warn({ backend, err: out.readError, final }, `reconcile: the routing state cannot be read; nothing is changed${final ? '; reads pause (one interval, doubling)' : ''}`);
        }
      }
      // A daemon that lost its state (restarted) is given all of it again; what was read of it
      // before the replay says nothing: read again at the next pass.
      const reset = [...seen.values()].find((c) => c.needsResume !== undefined)?.needsResume;
      if (reset !== undefined && out.readError === null) {
        if (this.deps.mode === 'repair' && this.deps.repairer.resume) {
          await this.resume('reset', reset);
          out.readError = `the routing daemon was reset (${reset}): the desired state was replayed; read again at the next pass`;
        } else {
          this.log.error({ backend, why: reset, mode: this.deps.mode }, 'reconcile: the routing daemon was reset and waits for the desired state (report mode: not replayed)');
        }
      }
      out.checked = wants.length;
      const now = clock.now();
      const unknownCount = [...seen.values()].filter((c) => c.unknown !== undefined).length;
      if (unknownCount > 0) this.deps.observer?.readFailed?.(backend, unknownCount);

      // 2. Judge each address.
      const drifted: DesiredAddress[] = [];
      for (const w of wants) {
        const c = seen.get(w.address);
        const v = out.readError !== null ? { state: 'unknown' as const, reason: out.readError } : judge(w, c);
        const t = this.track(w.address);
        if (c && c.unknown === undefined && out.readError === null) t.observed = { host: c.to, problems: [...(c.problems ?? [])], at: now };
        t.verdict = v;
        t.judgedAgainst = keyOf(w);
        if (v.state === 'drifted') {
          if (t.driftSince === null) {
            t.driftSince = now;
            this.log.warn({ address: w.address, server: w.server, desired: w.desired, seen: c?.to ?? null, reason: v.reason, mode: this.deps.mode }, 'reconcile: drift found');
          }
          drifted.push(w);
        } else if (v.state === 'in_sync') {
          if (t.driftSince !== null) this.log.info({ address: w.address, desired: w.desired }, 'reconcile: drift gone');
          t.driftSince = null;
          t.backoff = undefined;
        } else if (v.state === 'left_to_operation' || v.state === 'held') {
          t.driftSince = null;
          t.backoff = undefined;
        }
      }

      // 3. Repair what is due.
      if (this.deps.mode === 'repair') {
        const due = drifted.filter((w) => !this.tracks.get(w.address)!.backoff || this.tracks.get(w.address)!.backoff!.nextAttemptAt <= now);
        if (due.length > 0) await this.repair(due, seen, out);
      }

      // 4. Record what was confirmed in sync (durably; only what changed).
      await this.confirm(wants);

      for (const w of wants) {
        const s = this.tracks.get(w.address)!.verdict!.state;
        if (s === 'in_sync') out.inSync++;
        else if (s === 'drifted') out.drifted++;
        else if (s === 'unknown') out.unknown++;
        else if (s === 'left_to_operation') out.leftToOperations++;
        else if (s === 'held') out.held++;
      }
      if (out.drifted > 0 && this.deps.mode === 'report') {
        this.log.warn({ drifted: out.drifted }, 'reconcile: addresses are not where they must be (report mode: nothing changed)');
      }
      return out;
    } catch (err) {
      // a bug must not stop the loop
      out.readError = out.readError ?? `reconcile failed: ${message(err)}`;
      this.log.error({ err: message(err) }, 'reconcile pass failed');
      return out;
    } finally {
      out.endedAt = clock.now();
      out.durationMs = clock.monotonic() - t0;
      this.last = out;
      let oldest = 0;
      for (const t of this.tracks.values()) if (t.verdict?.state === 'drifted' && t.driftSince !== null) oldest = Math.max(oldest, out.endedAt - t.driftSince);
      try {
        this.deps.observer?.passEnded?.(out, oldest);
      } catch (err) {
        this.log.warn({ err: message(err) }, 'reconcile metrics not updated');
      }
      this.log.debug({ pass: out.id, trigger, checked: out.checked, drifted: out.drifted, unknown: out.unknown, repaired: out.repaired, ms: Math.round(out.durationMs) }, 'reconcile pass ended');
    }
  }

  /** Repairs `due` inside the routing lane, against the desired state as it is then. */
  private async repair(due: DesiredAddress[], seen: Map<string, CurrentRoute>, out: ReconcilePass): Promise<void> {
    const backend = this.deps.reader.name;
    await this.deps.lane.run(async () => {
      const nowWanted = new Map(this.desired().map((d) => [d.address, d]));
      const transits = [...this.deps.transits()];
      const servers = new Set([...this.deps.servers()].map((s) => s.name));
      const fallback = (not: string) => [...transits, ...servers].find((h) => h !== not) ?? null;
      const routes: { want: DesiredAddress; route: DesiredRoute }[] = [];
      for (const w of due) {
        const again = nowWanted.get(w.address);
        if (!again || keyOf(again) !== keyOf(w) || again.leftTo) continue; // changed meanwhile: the next pass judges it
        const route = repairRoute(w, seen.get(w.address), fallback);
        if (route) routes.push({ want: w, route });
      }
      if (routes.length === 0) return;
      // one apply for everything; when it fails, one per server, so one broken host does not block the others
      const groups = new Map<string, typeof routes>();
      for (const r of routes) groups.set(r.want.server, [...(groups.get(r.want.server) ?? []), r]);
      const attempts = groups.size > 1 ? [routes] : [];
      const tryApply = async (list: typeof routes): Promise<string | null> => {
        try {
          await this.deps.repairer.apply(list.map((r) => r.route));
          return null;
        } catch (err) {
          return message(err);
        }
      };
      const settle = (list: typeof routes, error: string | null) => {
        const now = this.deps.clock.now();
        for (const { want } of list) {
          const t = this.track(want.address);
          if (error === null) {
            t.repairs.ok++;
            t.lastRepair = { at: now, result: 'ok', error: null };
            t.backoff = undefined;
            t.verdict = { state: 'in_sync' };
            t.driftSince = null;
          } else {
            t.repairs.failed++;
            t.lastRepair = { at: now, result: 'failed', error };
            t.backoff = afterFailedRepair(t.backoff, now, this.deps.intervalMs, this.deps.maxBackoffMs);
          }
        }
        if (error === null) {
          out.repaired += list.length;
          this.log.warn({ addresses: list.map((r) => r.route.address), to: list.map((r) => r.route.to) }, 'reconcile: drift repaired');
        } else {
          out.repairsFailed += list.length;
          this.log.error({ addresses: list.map((r) => r.route.address), err: error }, 'reconcile: repair failed; tried again after a backoff');
        }
        this.deps.observer?.repaired?.(backend, error === null ? 'ok' : 'failed', list.length);
      };
      if (attempts.length > 0) {
        const error = await tryApply(routes);
        if (error === null) {
          settle(routes, null);
          return;
        }
        this.log.warn({ err: error }, 'reconcile: repairing every address at once failed; repairing server by server');
      }
      for (const list of groups.values()) settle(list, await tryApply(list));
    });
  }

  /** Stores where addresses were seen in sync, when that differs from what is stored. */
  private async confirm(wants: DesiredAddress[]): Promise<void> {
    try {
      await this.commits.run(async () => {
        const stored = this.readConfirmed();
        const routes = wants
          .filter((w) => this.tracks.get(w.address)?.verdict?.state === 'in_sync' && stored.get(w.address) !== w.desired)
          .map((w) => ({ address: w.address, host: w.desired }));
        if (routes.length > 0) await this.deps.store.commit({ routes });
      });
    } catch (err) {
      this.log.warn({ err: message(err) }, 'reconcile: confirmed routes not stored; the next pass tries again');
    }
  }
}

/**
 * The migration of a server, step by step: a transit of the same profile is assigned (or the
 * server waits in a first-come-first-served queue per profile), accounts move to it one by one
 * (each account's zones follow it in DNS at the moment its move completes), the cutover is guarded
 * until all accounts are there, then reinstall, cutback, accounts back, and the transit goes to
 * the next server waiting. TTLs are lowered ahead of a scheduled reinstall. Billing is derived.
 * Every change is one commit (the migration records it touches and the SOA serial bump when DNS
 * answers change), applied in memory and in DNS only after it succeeded, and answered after that;
 * a failed commit (StateUnavailableError) changes nothing. The cutover service commits the
 * migration's part of a cutover or cutback with its own change (`cutoverAccepted`,
 * `cutbackSucceeded` only stage it). A TTL lowering that cannot be stored is retried.
 */
import type { Logger } from 'pino';
import { billing, type Billing } from '../core/billing.js';
import { pairAddresses, profileOf, type Account, type Inventory } from '../core/inventory.js';
import {
  allowedEvents, isFinished, newMigration, transition,
  type Migration, type MigrationEvent, type MoveTarget,
} from '../core/migration.js';
import type { AccountOverlay, LoweredTtl } from '../core/overlay.js';
import { mergeStaged, StateUnavailableError, type Clock, type StagedChange, type StateStore } from '../core/ports.js';
import { assign as poolAssign, queuePosition, summary, type Pool, type Queue } from '../core/transit-pool.js';
import { staleness, ttlPlan } from '../core/ttl-plan.js';
import type { OverlayComposer } from './overlay-composer.js';
import { CommitLane, commitStaged } from './commit-lane.js';
import { commitWhenPossible, DEFAULT_COMMIT_RETRY, type CommitRetryOptions } from './commit-retry.js';
import type { AccountProber, AccountProbeRun, MailDomainAuditor } from '../core/ports.js';
import {
  forbiddenMxWarnings, mailAuditDone, mailAuditMissing, mailAuditStarted, mailDomainsOf,
  type MailAuditTrigger, type MailAuditWarning, type MigrationMailAudit,
} from '../core/mail-audit.js';

/** A refusal with a stable code, the current state and what is allowed. */
export class MigrationError extends Error {
  override name = 'MigrationError';
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export interface MigrationObserver {
  changed?(all: Migration[]): void;
  accountMoved?(direction: MoveTarget, downtimeMs: number | null): void;
}

export interface MigrationServiceDeps {
  inventory: () => Inventory;
  store: StateStore;
  /** Account overlays and lowered TTLs are staged there and published after the commit. */
  overlays: Pick<OverlayComposer, 'stage' | 'restore'>;
  clock: Clock;
  logger: Logger;
  cutoverTtl: number;
  ttlMarginS: number;
  freeDays: number;
  currency: string;
  /** Largest TTL (s) of the served records carrying any of these addresses (0 when none). */
  largestTtl: (addresses: string[]) => number;
  /** Transits standing in for a server through an active cutover: transit → server (not free even without a migration). */
  transitsInCutover?: () => Map<string, string>;
  observer?: MigrationObserver;
  /** Probes the site of accounts that have a probe configured during their moves. */
  accountProber?: AccountProber;
  /** Backoff of background commits (TTL lowering, probe results) while the store is unavailable. */
  commitRetry?: CommitRetryOptions;
  /** Serialises stage → commit → apply with the other services' (default: a lane of its own). */
  commits?: CommitLane;
  /** Audits the mail domains of the server's accounts at migration request and at cutover (absent: no audit). */
  mailAuditor?: MailDomainAuditor;
  /** How long an audit may take before it is recorded as missing (default 300 s). */
  mailAuditDeadlineMs?: number;
}

const DEFAULT_MAIL_AUDIT_DEADLINE_MS = 300_000;

/** What GET /v1/servers/{server}/migration shows. */
export interface MigrationView {
  migration: Migration;
  queuePosition: number | null;
  freeUntil: number | null;
  billing: (Billing & { currency: string }) | null;
  allowed: string[];
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class MigrationService {
  private readonly migrations = new Map<string, Migration>();
  private readonly probes = new Map<string, AccountProbeRun>();
  /** Audits in flight: server → when the audit started (its key on the record) and its deadline timer. */
  private readonly audits = new Map<string, { startedAt: number; timer: NodeJS.Timeout }>();
  /** Every audit run not ended yet (a superseded one included), for {@link auditsSettled}. */
  private readonly auditRuns = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  /** When the next TTL lowering is due (Infinity: none). */
  private nextLowering = Infinity;
  private acting = true;
  private stopped = false;
  private readonly log: Logger;
  private readonly commits: CommitLane;

  constructor(private readonly deps: MigrationServiceDeps) {
    this.log = deps.logger;
    this.commits = deps.commits ?? new CommitLane();
    for (const m of deps.store.migrations() as Migration[]) this.migrations.set(m.server, m);
  }

  /** Re-publishes account overlays and lowered TTLs from the stored migrations (at start). */
  resume(): void {
    const composed = this.compose(this.migrations);
    this.deps.overlays.restore({ accounts: composed.accounts, lowered: composed.lowered });
    this.arm(composed.nextLowering);
    this.resumeAudits();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const a of this.audits.values()) clearTimeout(a.timer);
    this.audits.clear();
    for (const r of this.probes.values()) r.stop().catch(() => undefined);
    this.probes.clear();
  }

  /**
   * Re-evaluates time-driven changes (TTL lowering) now; the internal timer calls it when due.
   * When the change cannot be stored it is not applied, and is tried again later.
   */
  async tick(): Promise<void> {
    try {
      await this.commits.run(() => this.save([]));
    } catch (err) {
      if (!(err instanceof StateUnavailableError)) throw err;
      const retry = this.deps.commitRetry ?? DEFAULT_COMMIT_RETRY;
      this.log.warn({ err: err.message, retryInMs: retry.maxMs }, 'TTL lowering not stored (state store unavailable); not applied, retrying');
      this.arm(this.deps.clock.now() + retry.maxMs);
    }
  }

  /** The migration of a server, or null. */
  get(server: string): Migration | null {
    return this.migrations.get(server) ?? null;
  }

  /** Active (not finished) migration of a server, or null. */
  active(server: string): Migration | null {
    const m = this.migrations.get(server);
    return m && !isFinished(m) ? m : null;
  }

  all(): Migration[] {
    return [...this.migrations.values()];
  }

  view(server: string): MigrationView {
    this.server(server);
    const m = this.migrations.get(server);
    if (!m) throw new MigrationError('MIGRATION_NOT_FOUND', `${server} has no migration`, 404);
    const price = this.deps.inventory().servers.get(server)?.monthlyPrice;
    const until = m.finishedAt ?? this.deps.clock.now();
    const b = m.assignedAt !== null && price ? billing({ assignedAt: m.assignedAt, now: until, freeDays: this.deps.freeDays, monthlyPrice: price }) : null;
    const pos = m.state === 'waiting_for_transit' ? queuePosition(this.queue(), server)?.position ?? null : null;
    return {
      migration: m,
      queuePosition: pos,
      freeUntil: m.assignedAt !== null ? m.assignedAt + this.deps.freeDays * 86_400_000 : null,
      billing: b ? { ...b, currency: this.deps.currency } : null,
      allowed: allowedEvents(m),
    };
  }

  /** Requests a migration: assigns a free transit of the server's profile, or queues the server. */
  request(serverName: string, reinstallAt: number | null): Promise<{ migration: Migration; created: boolean }> {
    return this.commits.run(() => this.requestNow(serverName, reinstallAt));
  }

  private async requestNow(serverName: string, reinstallAt: number | null): Promise<{ migration: Migration; created: boolean }> {
    const server = this.server(serverName);
    const existing = this.active(serverName);
    if (existing) return { migration: existing, created: false };
    const now = this.deps.clock.now();
    const inv = this.deps.inventory();
    const accounts = [...(inv.accounts?.values() ?? [])].filter((a) => a.server === serverName).map((a) => a.name);
    const profile = profileOf(server);
    if (![...inv.transits.values()].some((t) => profileOf(t) === profile)) {
      throw new MigrationError('NO_TRANSIT_FOR_PROFILE', `no transit has the profile ${profile} of ${serverName}`, 409);
    }
    const plan = reinstallAt !== null
      ? ttlPlan({ reinstallAt, maxTtl: this.deps.largestTtl(server.addresses.map((a) => a.address)), cutoverTtl: this.deps.cutoverTtl, marginSeconds: this.deps.ttlMarginS, now })
      : null;
    const m = newMigration({ server: serverName, profile, accounts, reinstallAt, ttlPlan: plan, now });
    if (typeof m === 'string') throw new MigrationError('BAD_REQUEST', m, 400);
    let migration = m;
    // a server already cut over (without a migration) keeps the transit it stands on
    const own = [...(this.deps.transitsInCutover?.() ?? new Map<string, string>())].find(([, srv]) => srv === serverName)?.[0];
    if (own) migration = this.apply(migration, { type: 'transit_assigned', transit: own }, now);
    else {
      const res = poolAssign(this.pool(), this.queue(), { server: serverName, profile, at: now });
      if (res.ok && res.outcome.kind === 'assigned') migration = this.apply(migration, { type: 'transit_assigned', transit: res.outcome.transit }, now);
    }
    migration = this.withMailAudit(migration, 'request', now);
    await this.save([migration]);
    this.launchAudit(migration);
    this.log.info({ server: serverName, state: migration.state, transit: migration.transit, reinstallAt }, 'migration requested');
    return { migration, created: true };
  }

  /** An account's move: phase started, then completed (its zones follow it in DNS now). */
  move(accountName: string, to: MoveTarget, phase: 'started' | 'completed' | 'failed', extra: { downtimeMs?: number | null; error?: string } = {}): Promise<Migration> {
    return this.commits.run(() => this.moveNow(accountName, to, phase, extra));
  }

  private async moveNow(accountName: string, to: MoveTarget, phase: 'started' | 'completed' | 'failed', extra: { downtimeMs?: number | null; error?: string }): Promise<Migration> {
    const account = this.account(accountName);
    const m = this.active(account.server);
    if (!m) throw new MigrationError('NO_MIGRATION', `${account.server}, the server of ${accountName}, has no active migration`, 409);
    const now = this.deps.clock.now();
    const event: MigrationEvent = phase === 'started'
      ? { type: 'move_started', account: accountName, to }
      : phase === 'completed'
        ? { type: 'move_completed', account: accountName, to, downtimeMs: extra.downtimeMs ?? null }
        : { type: 'move_failed', account: accountName, to, error: extra.error };
    const next = this.apply(m, event, now);
    const handedOver = this.handOver(m, next, now);
    await this.save([next, ...handedOver]);
    this.probeMove(account, m, to, phase);
    if (phase === 'completed') {
      const mv = next.accounts.find((a) => a.name === accountName)?.moves.at(-1);
      const downtime = mv?.downtimeMs ?? (mv ? (mv.completedAt ?? now) - mv.startedAt : null);
      this.deps.observer?.accountMoved?.(to, downtime);
      this.log.info({ account: accountName, server: account.server, to, state: next.state, downtimeMs: downtime }, 'account moved; its zones follow it in DNS');
    }
    this.logFinish(m, next, handedOver);
    return next;
  }

  /** Guards a cutover: 409 unless every account is on the transit (or force); the transit must be the migration's. */
  checkCutover(server: string, transit: string, force: boolean): void {
    const m = this.active(server);
    if (!m) return; // a cutover of a server with no migration (a plain reinstall job) stays allowed
    if (m.transit !== null && m.transit !== transit) {
      throw new MigrationError('TRANSIT_MISMATCH', `${server}'s migration holds ${m.transit}, not ${transit}`, 409, { state: m.state });
    }
    const res = transition(m, { type: 'cutover', force }, this.deps.clock.now());
    if (!res.ok) {
      throw new MigrationError(res.code, res.message, 409, { state: res.state, allowed: res.allowed, ...(res.details?.accounts ? { accounts: res.details.accounts } : {}) });
    }
  }

  /**
   * Stages the migration's part of an accepted cutover (it moves to reinstalling), for the cutover
   * service to commit with the operation and the overlay; null without an active migration.
   */
  cutoverAccepted(server: string, force: boolean): StagedChange | null {
    const m = this.active(server);
    if (!m || m.state === 'reinstalling') return null;
    const now = this.deps.clock.now();
    const next = this.withMailAudit(this.apply(m, { type: 'cutover', force }, now), 'cutover', now);
    // the audit runs after the commit: the cutover's answer never waits on DNS lookups
    return mergeStaged(this.stage([next]), { change: {}, apply: () => this.launchAudit(next) });
  }

  /**
   * What a cutover of the server is warned about: the domains of its migration's last MX audit
   * that still have a per-server MX (FAIL on forbidden-mx). Never blocks the cutover.
   */
  cutoverWarnings(server: string): MailAuditWarning[] {
    const m = this.migrations.get(server);
    return m && !isFinished(m) ? forbiddenMxWarnings(m.mxAudit, server) : [];
  }

  /** Resolves once no MX audit run is in flight, its result recorded or dropped (tests). */
  async auditsSettled(): Promise<void> {
    while (this.auditRuns.size > 0) await Promise.all([...this.auditRuns]);
  }

  /** The reinstall job says the server is reinstalled. */
  reinstalled(server: string): Promise<Migration> {
    return this.commits.run(() => this.reinstalledNow(server));
  }

  private async reinstalledNow(server: string): Promise<Migration> {
    this.server(server);
    const m = this.active(server);
    if (!m) throw new MigrationError('NO_MIGRATION', `${server} has no active migration`, 409);
    const next = this.apply(m, { type: 'reinstalled' }, this.deps.clock.now());
    await this.save([next]);
    return next;
  }

  /**
   * Stages the migration's part of a cutback that succeeded (accounts may move home; a finished
   * migration hands its transit on), for the cutover service to commit with the operation and
   * the lifted overlay; null when the server has no migration in reinstalling.
   */
  cutbackSucceeded(server: string): StagedChange | null {
    const m = this.active(server);
    if (!m || m.state !== 'reinstalling') return null;
    const now = this.deps.clock.now();
    const next = this.apply(m, { type: 'cutback_succeeded' }, now);
    const handedOver = this.handOver(m, next, now);
    return mergeStaged(this.stage([next, ...handedOver]), { change: {}, apply: () => this.logFinish(m, next, handedOver) });
  }

  /** Cancels a migration while nothing is in the way; the transit goes to the next server waiting. */
  cancel(server: string): Promise<Migration> {
    return this.commits.run(() => this.cancelNow(server));
  }

  private async cancelNow(server: string): Promise<Migration> {
    this.server(server);
    const m = this.active(server);
    if (!m) throw new MigrationError('NO_MIGRATION', `${server} has no active migration`, 409);
    const now = this.deps.clock.now();
    const next = this.apply(m, { type: 'cancel' }, now);
    const handedOver = this.handOver(m, next, now);
    await this.save([next, ...handedOver]);
    this.logFinish(m, next, handedOver);
    return next;
  }

  /** The transit pool and the queue per profile. */
  transits() {
    const pool = this.pool();
    const queue = this.queue();
    const held = new Map<string, Migration>();
    for (const m of this.migrations.values()) if (!isFinished(m) && m.transit) held.set(m.transit, m);
    return {
      transits: pool.map((t) => ({
        name: t.name, profile: t.profile, held_by: t.assignedTo,
        since: t.assignedAt, in_cutover: this.deps.transitsInCutover?.().has(t.name) ?? false,
      })),
      profiles: summary(pool, queue),
      queue: queue.map((q, i) => ({ server: q.server, profile: q.profile, requested_at: q.requestedAt, position: queuePosition(queue, q.server)?.position ?? i + 1 })),
    };
  }

  /** Where an account is: home, moving, or on the transit. */
  accountStatus(name: string) {
    const a = this.account(name);
    const m = this.active(a.server);
    const entry = m?.accounts.find((x) => x.name === name);
    return { account: a, migration: m, location: entry?.location ?? 'home', moves: entry?.moves ?? [] };
  }

  // --- internals -------------------------------------------------------------------------

  /** The record with an MX audit started (when there is an auditor); without mail domains, none. */
  private withMailAudit(m: Migration, trigger: MailAuditTrigger, now: number): Migration {
    if (!this.deps.mailAuditor) return m;
    const domains = mailDomainsOf(this.deps.inventory().accounts?.values() ?? [], m.server);
    if (domains.length === 0) return m.mxAudit ? { ...m, mxAudit: null } : m;
    return { ...m, mxAudit: mailAuditStarted(m.mxAudit, trigger, now) };
  }

  /**
   * Runs the MX audit the record says is running (after its commit), bounded by the deadline;
   * its result (or why there is none) is committed on the migration when it ends, unless a later
   * audit started meanwhile. Never throws: a migration does not depend on its audit.
   */
  private launchAudit(m: Migration): void {
    const audit = m.mxAudit;
    const auditor = this.deps.mailAuditor;
    if (!auditor || !audit || audit.state !== 'running' || !this.acting) return;
    const prev = this.audits.get(m.server);
    if (prev?.startedAt === audit.startedAt) return;
    if (prev) clearTimeout(prev.timer);
    const domains = mailDomainsOf(this.deps.inventory().accounts?.values() ?? [], m.server);
    const deadlineMs = this.deps.mailAuditDeadlineMs ?? DEFAULT_MAIL_AUDIT_DEADLINE_MS;
    let timer!: NodeJS.Timeout;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the audit did not finish within ${deadlineMs >= 1000 ? `${Math.round(deadlineMs / 1000)} s` : `${deadlineMs} ms`}`)), deadlineMs);
      timer.unref();
    });
    const run = Promise.resolve()
      .then(() => Promise.race([auditor.audit(domains.map((d) => d.domain)), deadline]))
      .then(
        (results) => ({ ok: true as const, results }),
        (err: unknown) => ({ ok: false as const, reason: (err as Error)?.message ?? String(err) }),
      );
    const settled = run.then((outcome) => {
      clearTimeout(timer);
      const record = (cur: MigrationMailAudit | null | undefined) => (outcome.ok
        ? mailAuditDone(cur, audit.startedAt, domains, outcome.results, this.deps.clock.now())
        : mailAuditMissing(cur, audit.startedAt, outcome.reason));
      return commitWhenPossible(this.deps.store, this.commits, () => {
        // stopped: the record stays "running" in the store, and the audit runs again at the next start
        const cur = this.stopped ? undefined : this.migrations.get(m.server);
        const next = cur && record(cur.mxAudit);
        if (!cur || !next) return null;
        return mergeStaged(this.stage([{ ...cur, mxAudit: next }]), {
          change: {},
          apply: () => this.log.info({ server: m.server, trigger: audit.trigger, state: next.state, reason: next.reason, domains: next.domains.length }, 'MX audit of the mail domains recorded'),
        });
      }, { logger: this.log, what: 'MX audit result', context: { server: m.server }, retry: this.deps.commitRetry });
    }).catch((err: unknown) => this.log.error({ server: m.server, err: (err as Error).message }, 'MX audit result not recorded'))
      .finally(() => {
        this.auditRuns.delete(settled);
        if (this.audits.get(m.server)?.startedAt === audit.startedAt) this.audits.delete(m.server);
      });
    this.auditRuns.add(settled);
    this.audits.set(m.server, { startedAt: audit.startedAt, timer });
  }

  /** Runs again the audits stored as running that are not in flight here (after a restart, or on becoming leader). */
  private resumeAudits(): void {
    for (const m of this.migrations.values()) if (!isFinished(m)) this.launchAudit(m);
  }

  /** Starts the account's probe at `started`; at `completed` records its gap once measured. */
  private probeMove(account: Account, m: Migration, to: MoveTarget, phase: 'started' | 'completed' | 'failed'): void {
    const prober = this.deps.accountProber;
    if (!prober || !account.probe) return;
    if (phase === 'started') {
      this.probes.get(account.name)?.stop().catch(() => undefined);
      const [origin, target] = to === 'transit' ? [m.server, m.transit] : [m.transit, m.server];
      if (!origin || !target) return;
      const run = prober.start({ url: account.probe.url, identityHeader: account.probe.identityHeader, origin, target });
      if (run) this.probes.set(account.name, run);
      else this.log.warn({ account: account.name, url: account.probe.url }, 'account probe not started: its host does not resolve in our zones (or the URL is not http)');
      return;
    }
    const run = this.probes.get(account.name);
    this.probes.delete(account.name);
    if (!run) return;
    if (phase === 'failed') {
      run.stop().catch(() => undefined);
      return;
    }
    run.done().then((probe) => commitWhenPossible(this.deps.store, this.commits, () => {
      // staged from the record as it is at each attempt
      const cur = this.migrations.get(m.server);
      const acc = cur?.accounts.find((a) => a.name === account.name);
      const mv = acc?.moves.at(-1);
      if (!cur || !acc || !mv || mv.direction !== to) return null;
      const patched: Migration = {
        ...cur,
        accounts: cur.accounts.map((a) => (a === acc ? { ...a, moves: [...a.moves.slice(0, -1), { ...mv, probe }] } : a)),
      };
      return mergeStaged(this.stage([patched]), {
        change: {},
        apply: () => this.log.info({ account: account.name, to, probeDowntimeMs: probe.downtimeMs, recovered: probe.recovered }, 'account move measured by probe'),
      });
    }, { logger: this.log, what: 'account probe result', context: { account: account.name }, retry: this.deps.commitRetry }))
      .catch((err) => this.log.error({ account: account.name, err: (err as Error).message }, 'account probe failed'));
  }

  private server(name: string) {
    const s = this.deps.inventory().servers.get(name);
    if (!s) throw new MigrationError('SERVER_NOT_FOUND', `no server named "${name}"`, 404);
    return s;
  }

  private account(name: string): Account {
    const a = this.deps.inventory().accounts?.get(name);
    if (!a) throw new MigrationError('ACCOUNT_NOT_FOUND', `no account named "${name}"`, 404);
    return a;
  }

  private apply(m: Migration, event: MigrationEvent, now: number): Migration {
    const res = transition(m, event, now);
    if (!res.ok) {
      throw new MigrationError(res.code, res.message, res.code === 'UNKNOWN_ACCOUNT' ? 404 : 409, {
        state: res.state, allowed: res.allowed, ...(res.details ?? {}),
      });
    }
    if (event.type === 'cutover' && res.migration.cutover && m.ttlPlan) {
      const st = staleness(m.ttlPlan, now);
      this.log.info({ server: m.server, cacheSafe: st.cacheSafe, staleForMs: st.staleForMs }, 'cutover during migration');
    }
    return res.migration;
  }

  /**
   * Stages migration records and what DNS answers because of them (account overlays, lowered
   * TTLs, with the serial bump when answers change): commit `change`, then `apply()` takes the
   * records, publishes and re-arms the TTL-lowering timer.
   */
  private stage(updates: Migration[]): StagedChange {
    const next = new Map(this.migrations);
    for (const m of updates) next.set(m.server, m);
    const composed = this.compose(next);
    return mergeStaged(
      {
        change: updates.length > 0 ? { migrations: updates.map((m) => ({ server: m.server, value: m })) } : {},
        apply: () => {
          for (const m of updates) this.migrations.set(m.server, m);
          if (updates.length > 0) this.deps.observer?.changed?.(this.all());
        },
      },
      this.deps.overlays.stage({ accounts: composed.accounts, lowered: composed.lowered }),
      { change: {}, apply: () => this.arm(composed.nextLowering) },
    );
  }

  /** Stages, commits (rejects with StateUnavailableError having changed nothing), applies: inside the commit lane. */
  private async save(updates: Migration[]): Promise<void> {
    await commitStaged(this.deps.store, () => this.stage(updates));
  }

  /** When a migration finishes, its transit goes to the next server waiting for that profile: that server's updated record (not stored yet). */
  private handOver(before: Migration, after: Migration, now: number): Migration[] {
    if (isFinished(before) || !isFinished(after) || before.transit === null) return [];
    const waiting = this.queue().filter((q) => q.profile === after.profile && q.server !== after.server);
    if (waiting.length === 0) return [];
    const next = this.migrations.get(waiting[0].server)!;
    return [this.apply(next, { type: 'transit_assigned', transit: before.transit }, now)];
  }

  private logFinish(before: Migration, after: Migration, handedOver: Migration[]): void {
    if (isFinished(before) || !isFinished(after)) return;
    this.log.info({ server: after.server, state: after.state, transit: before.transit }, 'migration finished; transit released');
    for (const m of handedOver) this.log.info({ server: m.server, transit: m.transit }, 'transit assigned to the next server waiting');
  }

  /**
   * Whether this process acts on time-driven changes (TTL lowering): a replica that does not lead
   * keeps the timer off and follows the leader's commits (reload()).
   */
  setActing(acting: boolean): void {
    const was = this.acting;
    this.acting = acting;
    this.arm(this.nextLowering);
    if (acting && !was) this.resumeAudits();
  }

  /** Takes the migrations as stored (a replica that does not lead, following the leader); returns what they make DNS answer. */
  reload(): { accounts: AccountOverlay[]; lowered: LoweredTtl[] } {
    this.migrations.clear();
    for (const m of this.deps.store.migrations() as Migration[]) this.migrations.set(m.server, m);
    const composed = this.compose(this.migrations);
    this.arm(composed.nextLowering);
    this.deps.observer?.changed?.(this.all());
    return { accounts: composed.accounts, lowered: composed.lowered };
  }

  /** Arms the timer for the next TTL lowering (Infinity: none). */
  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextLowering = at;
    if (at === Infinity || !this.acting) return;
    this.timer = setTimeout(() => {
      this.log.info('lowering TTLs ahead of a scheduled reinstall');
      this.tick().catch((err) => this.log.error({ err: (err as Error).message }, 'TTL lowering failed'));
    }, Math.min(MAX_TIMER_MS, Math.max(0, at - this.deps.clock.now())));
    this.timer.unref();
  }

  private pool(): Pool {
    const inv = this.deps.inventory();
    const holder = new Map<string, Migration>();
    for (const m of this.migrations.values()) if (!isFinished(m) && m.transit) holder.set(m.transit, m);
    const busy = this.deps.transitsInCutover?.() ?? new Map<string, string>();
    return [...inv.transits.values()].map((t) => {
      const h = holder.get(t.name);
      // a transit standing in through a cutover without a migration is not free either
      const user = h?.server ?? busy.get(t.name) ?? null;
      return { name: t.name, profile: profileOf(t), assignedTo: user, assignedAt: h?.assignedAt ?? null };
    });
  }

  private queue(): Queue {
    return [...this.migrations.values()]
      .filter((m) => m.state === 'waiting_for_transit')
      .sort((a, b) => a.requestedAt - b.requestedAt || a.server.localeCompare(b.server))
      .map((m) => ({ server: m.server, profile: m.profile, requestedAt: m.requestedAt }));
  }

  /** What DNS answers because of these migrations (account overlays, lowered TTLs) now, and when the next TTL lowering is due. */
  private compose(migrations: Map<string, Migration>): { accounts: AccountOverlay[]; lowered: LoweredTtl[]; nextLowering: number } {
    const inv = this.deps.inventory();
    const now = this.deps.clock.now();
    const accounts: AccountOverlay[] = [];
    const lowered: LoweredTtl[] = [];
    let nextLowering = Infinity;
    for (const m of migrations.values()) {
      if (isFinished(m)) continue;
      const server = inv.servers.get(m.server);
      const transit = m.transit ? inv.transits.get(m.transit) : undefined;
      if (!server) continue;
      if (transit) {
        const pairs = pairAddresses(server, transit);
        if (typeof pairs !== 'string') {
          for (const a of m.accounts) {
            if (a.location !== 'transit' && a.location !== 'moving_home') continue;
            const acc = inv.accounts?.get(a.name);
            if (acc) accounts.push({ account: a.name, server: m.server, transit: transit.name, zones: [...acc.zones], pairs, since: a.moves.at(-1)?.completedAt ?? now });
          }
        }
      }
      if (m.ttlPlan) {
        if (now >= m.ttlPlan.lowerFrom) {
          lowered.push({ server: m.server, addresses: server.addresses.map((a) => ({ address: a.address, family: a.family })), ttl: m.ttlPlan.loweredTtl });
        } else {
          nextLowering = Math.min(nextLowering, m.ttlPlan.lowerFrom);
        }
      }
    }
    return { accounts, lowered, nextLowering };
  }
}


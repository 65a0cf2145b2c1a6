/**
 * The migration of a server through a transit, as a state machine. Pure: the clock is passed in
 * (ms since the epoch); `transition` returns a new record or a refusal, never throws on a refusal.
 *
 *   waiting_for_transit → transit_assigned → accounts_to_transit → ready_for_reinstall
 *     → reinstalling → accounts_back → completed            (and → cancelled)
 *
 * Decisions (the contract):
 * - A migration starts `waiting_for_transit` (`newMigration`, history event `request`); the
 *   `transit_assigned` event gives it its transit, at once or when one is freed from the queue.
 * - Account moves. To the transit: in transit_assigned and accounts_to_transit, for an account at
 *   home; the first one enters accounts_to_transit. Home: in accounts_to_transit and
 *   ready_for_reinstall too, not only in accounts_back: before the cutover an account can be
 *   taken back (a problem on the transit, a customer's wish), and that is the only way a
 *   migration whose accounts started moving can still be cancelled. Moving one home from
 *   ready_for_reinstall returns to accounts_to_transit. A move ends with `move_completed` or
 *   `move_failed` (the account stays where it was); both are facts and are accepted whenever
 *   that account is moving, in any state but the final ones.
 * - State follows the accounts: in transit_assigned/accounts_to_transit, every account on the
 *   transit → ready_for_reinstall (a server without accounts is ready as soon as it has its
 *   transit); in accounts_back, every account home → completed (at once on the cutback when
 *   all are home already, e.g. after a forced cutover).
 * - `cutover`: from ready_for_reinstall; also from transit_assigned and accounts_to_transit,
 *   but only with `force` while any account is not on the transit (refused otherwise with
 *   ACCOUNTS_NOT_ON_TRANSIT listing them). A forced cutover records the accounts it overrode.
 *   With a TTL plan, the cutover records how long caches may stay stale (src/core/ttl-plan.ts).
 * - `reinstalled` keeps the state `reinstalling` and records `reinstalledAt` once (again →
 *   refused). `cutback_succeeded` is accepted in reinstalling whether or not `reinstalled` was
 *   reported: it is the report of a cutback that happened, and refusing it would make the record
 *   lie; whoever starts a cutback can check `reinstalledAt` first.
 * - `cancel`: in any state but the final ones, allowed only while every account is home (none on
 *   the transit or moving) and no cutover is active; otherwise CANCEL_BLOCKED says what is in
 *   the way. From waiting_for_transit the server leaves the queue (`effects.leaveQueue`).
 * - Completed or cancelled with a transit → the transit is released (`effects.releaseTransit`),
 *   the record keeps its name (billing, history). No event is accepted after.
 * - Every refusal carries the current state and `allowed`: the event types for which some
 *   payload would be accepted now (so `cutover` is listed while a forced one would pass, and
 *   `cancel` only when nothing blocks it). INVALID_TRANSITION means the state never accepts that
 *   event type (or, for `reinstalled`, that it was already reported); the other codes mean it
 *   does but not in this situation; INVALID_EVENT is a malformed event.
 */
import type { MigrationMailAudit } from './mail-audit.js';
import { staleness, type TtlPlan } from './ttl-plan.js';

export type MigrationState =
  | 'waiting_for_transit' | 'transit_assigned' | 'accounts_to_transit' | 'ready_for_reinstall'
  | 'reinstalling' | 'accounts_back' | 'completed' | 'cancelled';

export const MIGRATION_STATES: readonly MigrationState[] = [
  'waiting_for_transit', 'transit_assigned', 'accounts_to_transit', 'ready_for_reinstall',
  'reinstalling', 'accounts_back', 'completed', 'cancelled',
];

export type AccountLocation = 'home' | 'moving_to_transit' | 'transit' | 'moving_home';
/** Where a move goes. */
export type MoveTarget = 'transit' | 'home';

export interface AccountMove {
  direction: MoveTarget;
  startedAt: number;
  completedAt: number | null;
  /** The account's downtime during the move, as measured by whoever moved it. */
  downtimeMs: number | null;
  failedAt: number | null;
  error: string | null;
  /** Measured by the controller's probe of the account's site (when the account has one). */
  probe?: { downtimeMs: number; recovered: boolean; probesSent: number; probesFailed: number } | null;
}

export interface MigrationAccount {
  name: string;
  location: AccountLocation;
  moves: AccountMove[];
}

export interface CutoverRecord {
  at: number;
  /** True when it went ahead although some accounts were not on the transit. */
  forced: boolean;
  /** The accounts not on the transit at the cutover (empty unless forced). */
  accountsNotOnTransit: string[];
  /** From the TTL plan; null without one. */
  staleUntil: number | null;
  staleForMs: number | null;
  cacheSafe: boolean | null;
}

export type MigrationEvent =
  | { type: 'transit_assigned'; transit: string }
  | { type: 'move_started'; account: string; to: MoveTarget }
  | { type: 'move_completed'; account: string; to: MoveTarget; downtimeMs?: number | null }
  | { type: 'move_failed'; account: string; to: MoveTarget; error?: string }
  | { type: 'cutover'; force?: boolean }
  | { type: 'reinstalled' }
  | { type: 'cutback_succeeded' }
  | { type: 'cancel' };

export type MigrationEventType = MigrationEvent['type'];

export const MIGRATION_EVENTS: readonly MigrationEventType[] = [
  'transit_assigned', 'move_started', 'move_completed', 'move_failed', 'cutover', 'reinstalled', 'cutback_succeeded', 'cancel',
];

export interface HistoryEntry {
  at: number;
  /** The event type, or 'request' for the creation. */
  event: MigrationEventType | 'request';
  from: MigrationState | null;
  to: MigrationState;
  account?: string;
  forced?: true;
}

export interface Migration {
  server: string;
  profile: string;
  state: MigrationState;
  /** The transit, once assigned; kept after it is released. */
  transit: string | null;
  requestedAt: number;
  assignedAt: number | null;
  reinstallAt: number | null;
  ttlPlan: TtlPlan | null;
  accounts: MigrationAccount[];
  cutover: CutoverRecord | null;
  reinstalledAt: number | null;
  cutbackAt: number | null;
  /** When it became completed or cancelled (the transit, if any, was released then). */
  finishedAt: number | null;
  history: HistoryEntry[];
  /** The MX audit of the accounts' mail domains (absent in records stored before it existed). */
  mxAudit?: MigrationMailAudit | null;
}

export type TransitionCode =
  | 'INVALID_TRANSITION' | 'INVALID_EVENT' | 'ACCOUNTS_NOT_ON_TRANSIT' | 'CANCEL_BLOCKED'
  | 'UNKNOWN_ACCOUNT' | 'MOVE_NOT_ALLOWED' | 'ACCOUNT_NOT_MOVABLE' | 'ACCOUNT_NOT_MOVING';

/** What the caller must do besides storing the migration. */
export interface TransitionEffects {
  /** A transit to release in the pool (completed or cancelled). */
  releaseTransit: string | null;
  /** Remove the server from the transit queue (cancelled while waiting). */
  leaveQueue: boolean;
}

export interface TransitionRefusal {
  ok: false;
  code: TransitionCode;
  message: string;
  state: MigrationState;
  allowed: MigrationEventType[];
  details?: { accounts?: { name: string; location: AccountLocation }[]; cutoverActive?: boolean };
}

export type TransitionResult = { ok: true; migration: Migration; effects: TransitionEffects } | TransitionRefusal;

/** Event types each state handles at all; anything else is INVALID_TRANSITION. */
const ACCEPTS: Readonly<Record<MigrationState, readonly MigrationEventType[]>> = {
  waiting_for_transit: ['transit_assigned', 'cancel'],
  transit_assigned: ['move_started', 'cutover', 'cancel'],
  accounts_to_transit: ['move_started', 'move_completed', 'move_failed', 'cutover', 'cancel'],
  ready_for_reinstall: ['move_started', 'cutover', 'cancel'],
  reinstalling: ['move_completed', 'move_failed', 'reinstalled', 'cutback_succeeded', 'cancel'],
  accounts_back: ['move_started', 'move_completed', 'move_failed', 'cancel'],
  completed: [],
  cancelled: [],
};

/** Where accounts may move to, per state. */
const MOVES_TO: Readonly<Partial<Record<MigrationState, readonly MoveTarget[]>>> = {
  transit_assigned: ['transit'],
  accounts_to_transit: ['transit', 'home'],
  ready_for_reinstall: ['home'],
  accounts_back: ['home'],
};

/**
 * A new migration, waiting for a transit. Returns a message for a bad request: empty names,
 * duplicate accounts, a reinstall time in the past.
 */
export function newMigration(args: {
  server: string; profile: string; accounts: readonly string[]; reinstallAt?: number | null; ttlPlan?: TtlPlan | null; now: number;
}): Migration | string {
  const { server, profile, accounts, now } = args;
  const reinstallAt = args.reinstallAt ?? null;
  if (typeof server !== 'string' || server === '') return 'a server is required';
  if (typeof profile !== 'string' || profile === '') return 'a profile is required';
  if (!Array.isArray(accounts)) return 'accounts must be a list of names';
  const seen = new Set<string>();
  for (const a of accounts) {
    if (typeof a !== 'string' || a === '') return 'account names must be non-empty strings';
    if (seen.has(a)) return `account ${a} is listed twice`;
    seen.add(a);
  }
  if (reinstallAt !== null && (typeof reinstallAt !== 'number' || !Number.isFinite(reinstallAt))) return 'reinstall_at must be a time';
  if (reinstallAt !== null && reinstallAt < now) return `reinstall_at (${new Date(reinstallAt).toISOString()}) is in the past`;
  return {
    server,
    profile,
    state: 'waiting_for_transit',
    transit: null,
    requestedAt: now,
    assignedAt: null,
    reinstallAt,
    ttlPlan: args.ttlPlan ?? null,
    accounts: accounts.map((name) => ({ name, location: 'home', moves: [] })),
    cutover: null,
    reinstalledAt: null,
    cutbackAt: null,
    finishedAt: null,
    history: [{ at: now, event: 'request', from: null, to: 'waiting_for_transit' }],
  };
}

export function isFinished(m: Migration): boolean {
  return m.state === 'completed' || m.state === 'cancelled';
}

/** The transit the migration holds now (assigned and not yet released), or null. */
export function heldTransit(m: Migration): string | null {
  return isFinished(m) ? null : m.transit;
}

/** Accounts not on the transit (what blocks a cutover without force). */
export function accountsNotOnTransit(m: Migration): { name: string; location: AccountLocation }[] {
  return m.accounts.filter((a) => a.location !== 'transit').map((a) => ({ name: a.name, location: a.location }));
}

/** A cutover happened and no cutback yet. */
export function cutoverActive(m: Migration): boolean {
  return m.cutover !== null && m.cutbackAt === null;
}

/** What blocks a cancel: accounts not home, an active cutover. Null when nothing does. */
export function cancelBlockers(m: Migration): { accounts: { name: string; location: AccountLocation }[]; cutoverActive: boolean } | null {
  const accounts = m.accounts.filter((a) => a.location !== 'home').map((a) => ({ name: a.name, location: a.location }));
  const active = cutoverActive(m);
  return accounts.length > 0 || active ? { accounts, cutoverActive: active } : null;
}

/** Event types for which some payload would be accepted now. */
export function allowedEvents(m: Migration): MigrationEventType[] {
  return MIGRATION_EVENTS.filter((type) => candidates(m, type).some((e) => apply(m, e, m.requestedAt).ok));
}

/** Applies an event at `now`: the new migration and what to do about the pool, or a refusal. */
export function transition(m: Migration, event: MigrationEvent, now: number): TransitionResult {
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new RangeError(`now must be a finite number of ms, got ${now}`);
  const r = apply(m, event, now);
  if (r.ok) return r;
  return { ok: false, code: r.code, message: r.message, state: m.state, allowed: allowedEvents(m), ...(r.details ? { details: r.details } : {}) };
}

type Applied = { ok: true; migration: Migration; effects: TransitionEffects } | { ok: false; code: TransitionCode; message: string; details?: TransitionRefusal['details'] };

function candidates(m: Migration, type: MigrationEventType): MigrationEvent[] {
  const perAccount = (make: (account: string, to: MoveTarget) => MigrationEvent) =>
    m.accounts.flatMap((a) => (['transit', 'home'] as const).map((to) => make(a.name, to)));
  switch (type) {
    case 'transit_assigned': return [{ type, transit: 'any' }];
    case 'move_started': return perAccount((account, to) => ({ type, account, to }));
    case 'move_completed': return perAccount((account, to) => ({ type, account, to }));
    case 'move_failed': return perAccount((account, to) => ({ type, account, to }));
    case 'cutover': return [{ type, force: true }];
    case 'reinstalled': return [{ type }];
    case 'cutback_succeeded': return [{ type }];
    case 'cancel': return [{ type }];
  }
}

const refuse = (code: TransitionCode, message: string, details?: TransitionRefusal['details']): Applied =>
  ({ ok: false, code, message, ...(details ? { details } : {}) });

function listAccounts(accounts: { name: string; location: AccountLocation }[]): string {
  return accounts.map((a) => `${a.name} (${a.location})`).join(', ');
}

function validEvent(event: MigrationEvent): string | null {
  const e = event as unknown as Record<string, unknown>;
  if (typeof e !== 'object' || e === null || !MIGRATION_EVENTS.includes(e.type as MigrationEventType)) {
    return `unknown event ${JSON.stringify((e as { type?: unknown } | null)?.type)}; events are ${MIGRATION_EVENTS.join(', ')}`;
  }
  if (e.type === 'transit_assigned' && (typeof e.transit !== 'string' || e.transit === '')) return 'transit_assigned needs a transit name';
  if (e.type === 'move_started' || e.type === 'move_completed' || e.type === 'move_failed') {
    if (typeof e.account !== 'string' || e.account === '') return `${e.type} needs an account name`;
    if (e.to !== 'transit' && e.to !== 'home') return `${e.type} needs "to": "transit" or "home"`;
  }
  if (e.type === 'move_completed' && e.downtimeMs !== undefined && e.downtimeMs !== null
    && (typeof e.downtimeMs !== 'number' || !Number.isFinite(e.downtimeMs) || e.downtimeMs < 0)) {
    return 'downtimeMs must be a number of ms ≥ 0';
  }
  if (e.type === 'cutover' && e.force !== undefined && typeof e.force !== 'boolean') return 'force must be true or false';
  return null;
}

/** The state implied by the accounts (see the module comment). */
function settle(state: MigrationState, accounts: MigrationAccount[]): MigrationState {
  const allOnTransit = accounts.every((a) => a.location === 'transit');
  if ((state === 'transit_assigned' || state === 'accounts_to_transit') && allOnTransit) return 'ready_for_reinstall';
  if (state === 'ready_for_reinstall' && !allOnTransit) return 'accounts_to_transit';
  if (state === 'accounts_back' && accounts.every((a) => a.location === 'home')) return 'completed';
  return state;
}

function apply(m: Migration, event: MigrationEvent, now: number): Applied {
  const invalid = validEvent(event);
  if (invalid) return refuse('INVALID_EVENT', invalid);
  if (!ACCEPTS[m.state].includes(event.type)) {
    const why = isFinished(m) ? `the migration of ${m.server} is ${m.state}` : `${event.type} is not accepted in state ${m.state}`;
    return refuse('INVALID_TRANSITION', why);
  }
  const noEffects: TransitionEffects = { releaseTransit: null, leaveQueue: false };
  const done = (
    next: Partial<Migration>, state: MigrationState, extra: Omit<HistoryEntry, 'at' | 'event' | 'from' | 'to'> = {}, leaveQueue = false,
  ): Applied => {
    const finished = state === 'completed' || state === 'cancelled';
    const migration: Migration = {
      ...m,
      ...next,
      state,
      ...(finished ? { finishedAt: now } : {}),
      history: [...m.history, { at: now, event: event.type, from: m.state, to: state, ...extra }],
    };
    return {
      ok: true,
      migration,
      effects: finished ? { releaseTransit: m.transit, leaveQueue } : noEffects,
    };
  };

  switch (event.type) {
    case 'transit_assigned':
      return done({ transit: event.transit, assignedAt: now }, settle('transit_assigned', m.accounts));

    case 'move_started': {
      const account = m.accounts.find((a) => a.name === event.account);
      if (!account) return refuse('UNKNOWN_ACCOUNT', `${event.account} is not an account of ${m.server}'s migration`);
      const targets = MOVES_TO[m.state] ?? [];
      if (!targets.includes(event.to)) {
        return refuse('MOVE_NOT_ALLOWED', `in state ${m.state} accounts move only to ${targets.join(' or ')}, not to ${event.to}`);
      }
      const from: AccountLocation = event.to === 'transit' ? 'home' : 'transit';
      if (account.location !== from) {
        return refuse('ACCOUNT_NOT_MOVABLE', `${account.name} is ${account.location}; a move to ${event.to} starts from ${from}`);
      }
      const accounts = m.accounts.map((a) => a === account
        ? {
          ...a,
          location: (event.to === 'transit' ? 'moving_to_transit' : 'moving_home') as AccountLocation,
          moves: [...a.moves, { direction: event.to, startedAt: now, completedAt: null, downtimeMs: null, failedAt: null, error: null }],
        }
        : a);
      const state = m.state === 'transit_assigned' ? 'accounts_to_transit' : settle(m.state, accounts);
      return done({ accounts }, state, { account: account.name });
    }

    case 'move_completed':
    case 'move_failed': {
      const account = m.accounts.find((a) => a.name === event.account);
      if (!account) return refuse('UNKNOWN_ACCOUNT', `${event.account} is not an account of ${m.server}'s migration`);
      const moving: AccountLocation = event.to === 'transit' ? 'moving_to_transit' : 'moving_home';
      if (account.location !== moving) {
        return refuse('ACCOUNT_NOT_MOVING', `${account.name} is ${account.location}, not moving to ${event.to}`);
      }
      const completed = event.type === 'move_completed';
      const last = account.moves[account.moves.length - 1];
      const move: AccountMove = completed
        ? { ...last, completedAt: now, downtimeMs: event.downtimeMs ?? null }
        : { ...last, failedAt: now, error: event.error ?? 'the move failed' };
      const location: AccountLocation = completed ? event.to : event.to === 'transit' ? 'home' : 'transit';
      const accounts = m.accounts.map((a) => a === account ? { ...a, location, moves: [...a.moves.slice(0, -1), move] } : a);
      return done({ accounts }, settle(m.state, accounts), { account: account.name });
    }

    case 'cutover': {
      const missing = accountsNotOnTransit(m);
      if (missing.length > 0 && event.force !== true) {
        return refuse(
          'ACCOUNTS_NOT_ON_TRANSIT',
          `${missing.length} account${missing.length > 1 ? 's are' : ' is'} not on the transit: ${listAccounts(missing)}; finish the moves or force the cutover`,
          { accounts: missing },
        );
      }
      const stale = m.ttlPlan ? staleness(m.ttlPlan, now) : null;
      const cutover: CutoverRecord = {
        at: now,
        forced: missing.length > 0,
        accountsNotOnTransit: missing.map((a) => a.name),
        staleUntil: stale?.staleUntil ?? null,
        staleForMs: stale?.staleForMs ?? null,
        cacheSafe: stale?.cacheSafe ?? null,
      };
      return done({ cutover }, 'reinstalling', missing.length > 0 ? { forced: true } : {});
    }

    case 'reinstalled':
      if (m.reinstalledAt !== null) {
        return refuse('INVALID_TRANSITION', `reinstalled was already reported at ${new Date(m.reinstalledAt).toISOString()}`);
      }
      return done({ reinstalledAt: now }, 'reinstalling');

    case 'cutback_succeeded':
      return done({ cutbackAt: now }, settle('accounts_back', m.accounts));

    case 'cancel': {
      const blockers = cancelBlockers(m);
      if (blockers) {
        const parts: string[] = [];
        if (blockers.cutoverActive) parts.push(`a cutover is active since ${new Date(m.cutover!.at).toISOString()}`);
        if (blockers.accounts.length > 0) parts.push(`accounts are not home: ${listAccounts(blockers.accounts)}`);
        return refuse('CANCEL_BLOCKED', `cannot cancel: ${parts.join('; ')}`, blockers);
      }
      return done({}, 'cancelled', {}, m.state === 'waiting_for_transit');
    }
  }
}

/**
 * Transit servers and the queue of servers waiting for one, per profile (a server only gets a
 * transit of its own configuration). Pure functions over plain data: each returns new values,
 * nothing is changed in place; times are ms since the epoch, passed in.
 *
 * Rules:
 * - First come, first served per profile: the queue is kept in arrival order, and a server is
 *   given a transit only when no server of its profile is waiting before it.
 * - A request gets the first free transit of its profile in pool order (the config's order), else
 *   joins the end of the queue. A profile no transit has is refused: it would wait forever.
 * - A released transit goes at once to the first server waiting for its profile, if any.
 * - Positions are 1-based and per profile.
 */

export interface PoolTransit {
  name: string;
  profile: string;
  /** The server it is assigned to, or null when free. */
  assignedTo: string | null;
  assignedAt: number | null;
}

export interface QueueEntry {
  server: string;
  profile: string;
  requestedAt: number;
}

export type Pool = readonly PoolTransit[];
/** In arrival order: that order, not `requestedAt`, decides who is first. */
export type Queue = readonly QueueEntry[];

export interface TransitRequest {
  server: string;
  profile: string;
  at: number;
}

export interface Assignment {
  server: string;
  transit: string;
  at: number;
}

export type PoolErrorCode =
  | 'NO_TRANSIT_FOR_PROFILE' | 'ALREADY_ASSIGNED' | 'ALREADY_QUEUED' | 'TRANSIT_NOT_FOUND' | 'TRANSIT_NOT_ASSIGNED';

export interface PoolError {
  ok: false;
  code: PoolErrorCode;
  message: string;
}

export type AssignResult =
  | { ok: true; pool: Pool; queue: Queue; outcome: { kind: 'assigned'; transit: string; at: number } | { kind: 'queued'; position: number } }
  | PoolError;

export type ReleaseResult =
  | { ok: true; pool: Pool; queue: Queue; next: Assignment | null }
  | PoolError;

export interface QueuePosition {
  server: string;
  profile: string;
  /** 1 for the next server to get a transit of the profile. */
  position: number;
  requestedAt: number;
}

export interface ProfileSummary {
  profile: string;
  transits: number;
  free: number;
  waiting: number;
}

/** The transit assigned to a server, if any. */
export function transitOf(pool: Pool, server: string): PoolTransit | undefined {
  return pool.find((t) => t.assignedTo === server);
}

/** A server's place in the queue of its profile, or null when it is not waiting. */
export function queuePosition(queue: Queue, server: string): QueuePosition | null {
  const entry = queue.find((e) => e.server === server);
  if (!entry) return null;
  const position = queue.filter((e) => e.profile === entry.profile).findIndex((e) => e.server === server) + 1;
  return { server, profile: entry.profile, position, requestedAt: entry.requestedAt };
}

/** Every waiting server with its position, in arrival order (optionally of one profile). */
export function queuePositions(queue: Queue, profile?: string): QueuePosition[] {
  const seen = new Map<string, number>();
  const out: QueuePosition[] = [];
  for (const e of queue) {
    const position = (seen.get(e.profile) ?? 0) + 1;
    seen.set(e.profile, position);
    if (profile === undefined || e.profile === profile) out.push({ server: e.server, profile: e.profile, position, requestedAt: e.requestedAt });
  }
  return out;
}

/** Transits, free transits and waiting servers per profile, sorted by profile. */
export function summary(pool: Pool, queue: Queue): ProfileSummary[] {
  const by = new Map<string, ProfileSummary>();
  const get = (profile: string) => {
    let s = by.get(profile);
    if (!s) by.set(profile, (s = { profile, transits: 0, free: 0, waiting: 0 }));
    return s;
  };
  for (const t of pool) {
    const s = get(t.profile);
    s.transits++;
    if (t.assignedTo === null) s.free++;
  }
  for (const e of queue) get(e.profile).waiting++;
  return [...by.values()].sort((a, b) => (a.profile < b.profile ? -1 : a.profile > b.profile ? 1 : 0));
}

function assigned(pool: Pool, transit: string, server: string | null, at: number | null): Pool {
  return pool.map((t) => (t.name === transit ? { ...t, assignedTo: server, assignedAt: at } : t));
}

/** Asks for a transit for a server: assigned at once when one is free and nobody of the profile waits, else queued. */
export function assign(pool: Pool, queue: Queue, request: TransitRequest): AssignResult {
  const { server, profile, at } = request;
  const current = transitOf(pool, server);
  if (current) return { ok: false, code: 'ALREADY_ASSIGNED', message: `${server} already has transit ${current.name}` };
  const waiting = queuePosition(queue, server);
  if (waiting) {
    return { ok: false, code: 'ALREADY_QUEUED', message: `${server} is already waiting for a ${waiting.profile} transit (position ${waiting.position})` };
  }
  if (!pool.some((t) => t.profile === profile)) {
    return { ok: false, code: 'NO_TRANSIT_FOR_PROFILE', message: `no transit has profile ${JSON.stringify(profile)}: ${server} would wait forever` };
  }
  const free = pool.find((t) => t.profile === profile && t.assignedTo === null);
  if (free && !queue.some((e) => e.profile === profile)) {
    return { ok: true, pool: assigned(pool, free.name, server, at), queue, outcome: { kind: 'assigned', transit: free.name, at } };
  }
  const next = [...queue, { server, profile, requestedAt: at }];
  return { ok: true, pool, queue: next, outcome: { kind: 'queued', position: queuePosition(next, server)!.position } };
}

/** Frees a transit; it goes at once to the first server waiting for its profile (`next`), if any. */
export function release(pool: Pool, queue: Queue, transit: string, at: number): ReleaseResult {
  const t = pool.find((x) => x.name === transit);
  if (!t) return { ok: false, code: 'TRANSIT_NOT_FOUND', message: `no transit is named ${transit}` };
  if (t.assignedTo === null) return { ok: false, code: 'TRANSIT_NOT_ASSIGNED', message: `transit ${transit} is not assigned` };
  const filled = fill(assigned(pool, transit, null, null), queue, at);
  return { ok: true, pool: filled.pool, queue: filled.queue, next: filled.assigned[0] ?? null };
}

/**
 * Gives every free transit to the first server waiting for its profile. `release` uses it; call
 * it after the pool changes (a transit added to the config).
 */
export function fill(pool: Pool, queue: Queue, at: number): { pool: Pool; queue: Queue; assigned: Assignment[] } {
  let p = pool;
  let q = queue;
  const done: Assignment[] = [];
  for (const t of pool) {
    if (t.assignedTo !== null) continue;
    const head = q.find((e) => e.profile === t.profile);
    if (!head) continue;
    p = assigned(p, t.name, head.server, at);
    q = q.filter((e) => e !== head);
    done.push({ server: head.server, transit: t.name, at });
  }
  return { pool: p, queue: q, assigned: done };
}

/** Removes a server from the queue (its migration was cancelled while waiting); `removed` says whether it was there. */
export function withdraw(queue: Queue, server: string): { queue: Queue; removed: boolean } {
  const next = queue.filter((e) => e.server !== server);
  return { queue: next, removed: next.length !== queue.length };
}

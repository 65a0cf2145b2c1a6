/**
 * A steady stream of UDP queries from one loopback socket, for watching a server keep answering
 * while something else happens (a zone reload). Sends a query about every millisecond while
 * fewer than `window` are unanswered; records when each was sent and answered and, for SOA
 * answers, the serial. Used by test/dns/zone-reload-answering.test.ts and bench:zone-load.
 */
import { createSocket } from 'node:dgram';
import { buildQuery, decode, T } from './tiny-dns.js';

/** One answered query: times from performance.now() (ms). */
export interface Answered {
  sentAt: number;
  answeredAt: number;
  rcode: number;
  /** SOA serial in the answer, when the query was for the SOA. */
  serial?: number;
}

export interface QueryStreamOptions {
  port: number;
  host?: string;
  /** The SOA asked for every `soaEvery`-th query (to follow the serial). */
  zone: string;
  /** Other names asked for (round robin, type A), e.g. hosts of the zone. */
  names: (i: number) => string;
  soaEvery?: number;
  /** Most unanswered queries at once. */
  window?: number;
  /** Most queries sent per timer tick (about a millisecond; default 4). */
  burst?: number;
  /** A query unanswered this long is counted as lost. */
  lostAfterMs?: number;
}

/** A running stream; `stop()` ends it and returns what it saw. */
export class QueryStream {
  readonly answered: Answered[] = [];
  /** Queries unanswered after `lostAfterMs`. */
  lost = 0;
  /** Queries still within `lostAfterMs` when the stream was stopped (neither answered nor lost). */
  inFlightAtStop = 0;
  private readonly sock = createSocket('udp4');
  private readonly pending = new Map<number, { sentAt: number; soa: boolean }>();
  private timer: NodeJS.Timeout | null = null;
  private nextId = 1;
  private i = 0;
  private waiters: { count: number; resolve: () => void }[] = [];

  constructor(private readonly o: QueryStreamOptions) {}

  /** The local UDP port the queries leave from (once started). */
  get localPort(): number {
    return this.sock.address().port;
  }

  /** Binds the socket and starts sending. */
  async start(): Promise<void> {
    await new Promise<void>((res, rej) => {
      this.sock.once('error', rej);
      this.sock.bind(0, '127.0.0.1', () => res());
    });
    this.sock.on('error', () => { /* counted as lost */ });
    this.sock.on('message', (m) => {
      const now = performance.now();
      if (m.length < 12) return;
      const p = this.pending.get(m.readUInt16BE(0));
      if (!p) return;
      this.pending.delete(m.readUInt16BE(0));
      const a: Answered = { sentAt: p.sentAt, answeredAt: now, rcode: m[3] & 0xf };
      if (p.soa) {
        try {
          const soa = decode(m).answers.find((r) => r.type === T.SOA);
          if (soa) a.serial = soa.rdata.readUInt32BE(soa.rdata.length - 20);
        } catch { /* a broken answer has no serial */ }
      }
      this.answered.push(a);
      if (this.waiters.length > 0) {
        const ready = this.waiters.filter((w) => this.answered.length >= w.count);
        this.waiters = this.waiters.filter((w) => this.answered.length < w.count);
        for (const w of ready) w.resolve();
      }
    });
    this.timer = setInterval(() => this.tick(), 1);
  }

  private tick(): void {
    const now = performance.now();
    const lostAfter = this.o.lostAfterMs ?? 5000;
    for (const [id, p] of this.pending) {
      if (now - p.sentAt > lostAfter) {
        this.pending.delete(id);
        this.lost++;
      }
    }
    const window = this.o.window ?? 32;
    // up to 4 per tick: timers fire at most every ~1 ms, the server answers in microseconds
    for (let k = 0; k < (this.o.burst ?? 4) && this.pending.size < window; k++) {
      const id = this.nextId;
      this.nextId = (this.nextId % 0xffff) + 1;
      if (this.pending.has(id)) break;
      const soa = this.i % (this.o.soaEvery ?? 8) === 0;
      const q = soa ? buildQuery(this.o.zone, { id, type: T.SOA }) : buildQuery(this.o.names(this.i), { id, type: T.A });
      this.i++;
      this.pending.set(id, { sentAt: performance.now(), soa });
      this.sock.send(q, this.o.port, this.o.host ?? '127.0.0.1');
    }
  }

  /** Resolves once `n` more queries have been answered; rejects when none come for `limitMs`. */
  waitAnswers(n: number, limitMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`fewer than ${n} answers in ${limitMs} ms`)), limitMs);
      this.waiters.push({ count: this.answered.length + n, resolve: () => { clearTimeout(t); resolve(); } });
    });
  }

  /** The most recent SOA serial answered (undefined before the first). */
  lastSerial(): number | undefined {
    for (let k = this.answered.length - 1; k >= 0; k--) if (this.answered[k].serial !== undefined) return this.answered[k].serial;
    return undefined;
  }

  /** Stops sending and closes the socket (idempotent). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.inFlightAtStop += this.pending.size;
    this.pending.clear();
    try {
      this.sock.close();
    } catch { /* already closed */ }
  }
}

/** What the stream saw between two instants: answers, the longest gap between answers (and when it began), the slowest answer. */
export function answersBetween(answers: Answered[], from: number, to: number): { answered: number; maxGapMs: number; maxGapAt: number; maxLatencyMs: number } {
  let prev = from;
  let maxGap = 0;
  let maxGapAt = from;
  let maxLat = 0;
  let n = 0;
  for (const a of answers) {
    if (a.answeredAt < from || a.answeredAt > to) continue;
    n++;
    if (a.answeredAt - prev > maxGap) {
      maxGap = a.answeredAt - prev;
      maxGapAt = prev;
    }
    maxLat = Math.max(maxLat, a.answeredAt - a.sentAt);
    prev = a.answeredAt;
  }
  if (to - prev > maxGap) {
    maxGap = to - prev;
    maxGapAt = prev;
  }
  return { answered: n, maxGapMs: maxGap, maxGapAt, maxLatencyMs: maxLat };
}

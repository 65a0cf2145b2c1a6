/**
 * Fixed-cadence probing of a set of addresses. Probe n of every address is sent at
 * `startedAt + n * intervalMs` (not "interval after the previous answer"); each probe has its own
 * timeout, so a probe that hangs never delays the next one and several may be in flight. Samples
 * are kept in a bounded, compact per-address ring (`SampleStore`) and streamed to `onResult`.
 */
import { armProbeTimeout, type Prober, type ProbeResult, type ProbeTarget } from './prober.js';

/** One probe of one address, as measured. */
export interface Sample {
  address: string;
  /** Slot number: the probe was due at `startedAt + seq * intervalMs`. Slots missed are skipped. */
  seq: number;
  /**
   * Slots skipped just before this one (never sent: the event loop was late by whole intervals), so
   * the previous probe sent to this address is seq - 1 - skipped. Absent when none.
   */
  skipped?: number;
  /** Send time, ms since the epoch, from the runner's (monotonic-derived) clock. */
  sentAt: number;
  ok: boolean;
  responder?: string;
  rttMs: number;
  reason?: string;
}

/** What a running prober loop offers (startProbeRunner and startIcmpLoop). */
export interface ProbeRunner {
  /** Send time of slot 0 (ms epoch, runner clock). */
  readonly startedAt: number;
  /** Stops sending, waits for the probes in flight (each bounded by its timeout), returns every sample kept. */
  stop(): Promise<Sample[]>;
  /** The samples kept so far, by address then seq (in-flight probes are not included). */
  samples(): Sample[];
  /** Samples dropped from the ring (oldest first) because an address exceeded maxSamplesPerAddress. */
  dropped(): number;
}

/** Options of startProbeRunner (config: `health.interval_ms`, `health.timeout_ms`). */
export interface ProbeRunnerOptions {
  targets: ProbeTarget[];
  prober: Prober;
  /** Probe interval per address, ms; at least 10. */
  intervalMs: number;
  /**
   * Guard timeout per probe, ms: the signal passed to the prober is aborted then, and a prober that
   * still has not settled 50 ms later is recorded as `timeout`; both checks are taken after pending
   * I/O and give back the time a stall of the controller lost past them (armProbeTimeout). Default
   * 10 s; set it to health.timeout_ms.
   */
  timeoutMs?: number;
  /** ms since the epoch; default performance.timeOrigin + performance.now() (monotonic, never steps). */
  clock?: () => number;
  /** Called for every sample as it completes (in completion order, not send order). Exceptions are ignored. */
  onResult?(sample: Sample): void;
  /** Ring size per address; default 65 536 (655 s at 10 ms, i.e. the default 600 s deadline). */
  maxSamplesPerAddress?: number;
}

/** Default ring size per address. */
export const DEFAULT_MAX_SAMPLES_PER_ADDRESS = 65_536;
/** Smallest probe interval supported. */
export const MIN_INTERVAL_MS = 10;

/** The default clock: wall-clock epoch at process start + monotonic time since. */
export const monotonicEpochClock = (): number => performance.timeOrigin + performance.now();

/**
 * Compact bounded storage of samples: per address, a ring of typed arrays (about 24 bytes per
 * sample: sentAt f64, rtt f32, seq i32, skipped u32, flags u8, responder and reason as u16 indexes
 * into shared string tables). When a ring is full the oldest sample is overwritten and counted in `dropped`.
 */
export class SampleStore {
  private readonly rings = new Map<string, Ring>();
  private readonly strings: string[] = [''];
  private readonly stringIndex = new Map<string, number>([['', 0]]);
  private droppedCount = 0;

  constructor(readonly maxPerAddress: number = DEFAULT_MAX_SAMPLES_PER_ADDRESS) {
    if (!Number.isInteger(maxPerAddress) || maxPerAddress < 1) throw new RangeError('maxSamplesPerAddress must be a positive integer');
  }

  /** Adds a sample (strings interned; at most 65 535 distinct responders/reasons, further ones are stored as '?'). */
  add(s: Sample): void {
    let r = this.rings.get(s.address);
    if (!r) {
      r = new Ring(Math.min(this.maxPerAddress, 1024), this.maxPerAddress);
      this.rings.set(s.address, r);
    }
    if (r.push(s.sentAt, s.rttMs, s.seq, s.skipped ?? 0, s.ok ? 1 : 0, this.intern(s.responder), this.intern(s.reason))) this.droppedCount++;
  }

  /** Samples kept, by address (insertion order) then seq. */
  all(): Sample[] {
    const out: Sample[] = [];
    for (const [address, r] of this.rings) {
      const list: Sample[] = [];
      r.forEach((sentAt, rttMs, seq, skipped, flags, resp, reason) => {
        const s: Sample = { address, seq, sentAt, ok: (flags & 1) === 1, rttMs };
        if (skipped > 0) s.skipped = skipped;
        if (resp !== 0) s.responder = this.strings[resp];
        if (reason !== 0) s.reason = this.strings[reason];
        list.push(s);
      });
      list.sort((a, b) => a.seq - b.seq || a.sentAt - b.sentAt);
      out.push(...list);
    }
    return out;
  }

  /** Number of samples kept. */
  size(): number {
    let n = 0;
    for (const r of this.rings.values()) n += r.length;
    return n;
  }

  dropped(): number {
    return this.droppedCount;
  }

  private intern(v: string | undefined): number {
    if (v === undefined || v === '') return 0;
    let i = this.stringIndex.get(v);
    if (i === undefined) {
      if (this.strings.length >= 0xffff) return this.intern('?');
      i = this.strings.length;
      this.strings.push(v);
      this.stringIndex.set(v, i);
    }
    return i;
  }
}

/** A growable ring of samples in typed arrays (grows by doubling up to `max`). */
class Ring {
  private sentAt: Float64Array;
  private rtt: Float32Array;
  private seq: Int32Array;
  private skipped: Uint32Array;
  private flags: Uint8Array;
  private resp: Uint16Array;
  private reason: Uint16Array;
  private start = 0;
  length = 0;

  constructor(
    private cap: number,
    private readonly max: number,
  ) {
    this.sentAt = new Float64Array(cap);
    this.rtt = new Float32Array(cap);
    this.seq = new Int32Array(cap);
    this.skipped = new Uint32Array(cap);
    this.flags = new Uint8Array(cap);
    this.resp = new Uint16Array(cap);
    this.reason = new Uint16Array(cap);
  }

  /** Appends; returns true when the oldest entry was overwritten. */
  push(sentAt: number, rtt: number, seq: number, skipped: number, flags: number, resp: number, reason: number): boolean {
    if (this.length === this.cap && this.cap < this.max) this.grow(Math.min(this.cap * 2, this.max));
    let dropped = false;
    let i: number;
    if (this.length < this.cap) {
      i = (this.start + this.length) % this.cap;
      this.length++;
    } else {
      i = this.start;
      this.start = (this.start + 1) % this.cap;
      dropped = true;
    }
    this.sentAt[i] = sentAt;
    this.rtt[i] = rtt;
    this.seq[i] = seq;
    this.skipped[i] = skipped;
    this.flags[i] = flags;
    this.resp[i] = resp;
    this.reason[i] = reason;
    return dropped;
  }

  forEach(f: (sentAt: number, rtt: number, seq: number, skipped: number, flags: number, resp: number, reason: number) => void): void {
    for (let k = 0; k < this.length; k++) {
      const i = (this.start + k) % this.cap;
      f(this.sentAt[i], Math.round(this.rtt[i] * 1000) / 1000, this.seq[i], this.skipped[i], this.flags[i], this.resp[i], this.reason[i]);
    }
  }

  private grow(cap: number): void {
    const order: number[] = [];
    for (let k = 0; k < this.length; k++) order.push((this.start + k) % this.cap);
    const move = <T extends Float64Array | Float32Array | Int32Array | Uint32Array | Uint8Array | Uint16Array>(a: T, b: T): T => {
      order.forEach((i, k) => (b[k] = a[i]));
      return b;
    };
    this.sentAt = move(this.sentAt, new Float64Array(cap));
    this.rtt = move(this.rtt, new Float32Array(cap));
    this.seq = move(this.seq, new Int32Array(cap));
    this.skipped = move(this.skipped, new Uint32Array(cap));
    this.flags = move(this.flags, new Uint8Array(cap));
    this.resp = move(this.resp, new Uint16Array(cap));
    this.reason = move(this.reason, new Uint16Array(cap));
    this.start = 0;
    this.cap = cap;
  }
}

/** Checks the runner's common options; throws RangeError. */
export function checkRunnerOptions(o: { targets: ProbeTarget[]; intervalMs: number; timeoutMs?: number }): void {
  if (!Array.isArray(o.targets)) throw new RangeError('targets must be an array');
  const seen = new Set<string>();
  for (const t of o.targets) {
    if (seen.has(t.address)) throw new RangeError(`duplicate target ${t.address}`);
    seen.add(t.address);
  }
  if (!Number.isFinite(o.intervalMs) || o.intervalMs < MIN_INTERVAL_MS) throw new RangeError(`intervalMs must be at least ${MIN_INTERVAL_MS}, not ${String(o.intervalMs)}`);
  if (o.timeoutMs !== undefined && (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0)) throw new RangeError(`timeoutMs must be positive, not ${String(o.timeoutMs)}`);
}

/**
 * Starts probing every target at a fixed cadence, immediately (slot 0 at once). When the event
 * loop is late by a whole interval or more, the missed slots are skipped (their seq numbers never
 * appear; the next sample says how many in `skipped`) rather than sent in a burst.
 */
export function startProbeRunner(opts: ProbeRunnerOptions): ProbeRunner {
  checkRunnerOptions(opts);
  const clock = opts.clock ?? monotonicEpochClock;
  const interval = opts.intervalMs;
  const guardMs = opts.timeoutMs ?? 10_000;
  const store = new SampleStore(opts.maxSamplesPerAddress ?? DEFAULT_MAX_SAMPLES_PER_ADDRESS);
  const targets = opts.targets.map((t) => ({ ...t }));
  const inFlight = new Set<Promise<void>>();
  // Scheduling uses performance.now() (never steps) even when an injected clock provides sentAt.
  const mono0 = performance.now();
  const startedAt = clock();
  let nextSlot = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const record = (s: Sample): void => {
    store.add(s);
    try {
      opts.onResult?.(s);
    } catch {
      /* a consumer's error must not stop the measurement */
    }
  };

  const send = (target: ProbeTarget, seq: number, skipped: number): void => {
    const sentAt = clock();
    const ac = new AbortController();
    let disarmHard: (() => void) | undefined;
    let disarmGuard: (() => void) | undefined;
    const guarded = new Promise<ProbeResult>((resolve) => {
      disarmGuard = armProbeTimeout(guardMs, () => {
        ac.abort();
        disarmHard = armProbeTimeout(50, () => resolve({ ok: false, rttMs: guardMs + 50, reason: 'timeout' }));
      });
    });
    let probe: Promise<ProbeResult>;
    try {
      probe = Promise.resolve(opts.prober.probe(target, ac.signal)).catch((): ProbeResult => ({ ok: false, rttMs: 0, reason: 'error' }));
    } catch {
      probe = Promise.resolve({ ok: false, rttMs: 0, reason: 'error' });
    }
    const p = Promise.race([probe, guarded]).then((r) => {
      disarmGuard?.();
      disarmHard?.();
      // An abort by our own guard is a timeout for the caller.
      const reason = r.reason === 'aborted' && ac.signal.aborted ? 'timeout' : r.reason;
      const s: Sample = { address: target.address, seq, sentAt, ok: r.ok === true, rttMs: r.rttMs };
      if (skipped > 0) s.skipped = skipped;
      if (r.responder !== undefined) s.responder = r.responder;
      if (!s.ok) s.reason = reason ?? 'error';
      record(s);
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  const tick = (): void => {
    timer = undefined;
    if (stopped) return;
    const elapsed = performance.now() - mono0;
    const due = Math.floor(elapsed / interval + 1e-9);
    // Skip slots that are more than one interval late (the samples say so); send the current one.
    const skipped = Math.max(0, due - nextSlot);
    nextSlot += skipped;
    for (const t of targets) send(t, nextSlot, skipped);
    nextSlot++;
    const wait = mono0 + nextSlot * interval - performance.now();
    timer = setTimeout(tick, Math.max(0, wait));
  };
  tick();

  return {
    startedAt,
    samples: () => store.all(),
    dropped: () => store.dropped(),
    async stop(): Promise<Sample[]> {
      stopped = true;
      if (timer) clearTimeout(timer);
      while (inFlight.size > 0) await Promise.all([...inFlight]);
      return store.all();
    },
  };
}

/**
 * NOTIFY (RFC 1996): tells each secondary that a zone changed, over UDP, TSIG-signed where the
 * secondary has a key, and sends it again with backoff (1 s doubling, at most `maxDelayMs`, at
 * most `maxTries` tries) until the secondary acknowledges it: a NOERROR reply with the same ID,
 * QR set, opcode NOTIFY, from its address, signed when the request was (an unsigned or forged
 * acknowledgement is ignored). Replies echo the zone in their question, or have none (NSD's TSIG
 * error replies). A newer NOTIFY of the same zone to the same secondary replaces one
 * still waiting. Never throws; outcomes go to `onResult`, one final outcome per NOTIFY (acked,
 * refused, gave_up) plus `retried` per try after the first.
 *
 * Error replies:
 * - with a TSIG error (BADKEY, BADSIG: the secondary has another key; BADTIME: the clocks are
 *   apart): `refused` at once, not sent again (another try gets the same answer). Such replies are
 *   taken unsigned: a secondary cannot sign with a key it does not have (RFC 8945 5.3.2); a forged
 *   one can only end a NOTIFY early, and is counted;
 * - any other (REFUSED, NOTAUTH, NXDOMAIN: the zone is not, or not yet, configured there, e.g.
 *   a zone just added to the catalog; its allow-notify): sent again like an unanswered one; the
 *   outcome is `refused` instead of `gave_up` when no try is acknowledged. For an `optional`
 *   zone (the catalog zone, which NSD and secondaries with listed zones do not serve) the first
 *   such reply ends the NOTIFY, uncounted.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import type { HostPort } from '../../core/addresses.js';
import { Opcode, Rcode, RCODE_NAMES, RRClass, RRType } from '../wire/constants.js';
import { decodeMessage, encodeMessage, type Message } from '../wire/message.js';
import { parseTsigRecord, signRequest, tsigErrorName, verify, type TsigKey } from './tsig.js';

/** Signs a NOTIFY and checks its reply (TSIG), for a secondary with a key. */
export interface NotifySigner {
  /** The message with its TSIG; `verifyReply` checks a reply against it. */
  sign(msg: Buffer): { msg: Buffer; verifyReply(reply: Buffer): string | null };
}

/** Signs NOTIFYs with `key` at `now()` (Unix seconds); a reply must be signed with it over the request's MAC. */
export function tsigNotifySigner(key: TsigKey, now: () => number): NotifySigner {
  return {
    sign(msg) {
      const s = signRequest(msg, key, now());
      return {
        msg: s.message,
        verifyReply: (reply) => {
          const v = verify(reply, key, now(), { requestMac: s.mac });
          return v.ok ? null : `${v.error}: ${v.reason}`;
        },
      };
    },
  };
}

export interface NotifyTarget {
  name: string;
  address: HostPort;
  signer?: NotifySigner;
}

/** acked; retried: sent again; refused: answered with an error (see the file comment); gave_up: never answered. */
export type NotifyResult = 'acked' | 'retried' | 'refused' | 'gave_up';

export interface NotifierOptions {
  targets: NotifyTarget[];
  logger: Logger;
  /** First wait for a reply; doubles per try (default 1000). */
  firstTimeoutMs?: number;
  /** Longest wait between two tries (default 60000). */
  maxDelayMs?: number;
  /** Tries before giving up (default 20: about 15 minutes). */
  maxTries?: number;
  onResult?: (target: string, result: NotifyResult) => void;
  /** The local address NOTIFYs leave from, per family (the secondaries check it); default: the system's choice. */
  source?: { 4?: string; 6?: string };
}

interface Pending {
  id: number;
  target: NotifyTarget;
  zone: string;
  verify: ((reply: Buffer) => string | null) | null;
  /** A zone the secondary may not serve: an error reply ends the NOTIFY, uncounted. */
  optional: boolean;
  /** The last error reply (no TSIG error), while no try is acknowledged. */
  refusal: string | null;
  timer: NodeJS.Timeout | null;
  resolve: () => void;
}

export class Notifier {
  private readonly sockets = new Map<4 | 6, Socket>();
  /** Waiting NOTIFYs by `${target}|${zone}`. */
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  constructor(private readonly opts: NotifierOptions) {}

  /** The secondaries this notifier sends to. */
  get targets(): readonly NotifyTarget[] {
    return this.opts.targets;
  }

  /**
   * Announces the zone's new SOA to every target; resolves once each acknowledged, refused, was
   * replaced by a newer NOTIFY, or was given up. `optional`: see the file comment.
   */
  notify(zone: string, soa: { ttl: number; rdata: Uint8Array }, opts: { optional?: boolean } = {}): Promise<void> {
    return Promise.all(this.opts.targets.map((t) => this.send(t, zone, soa, opts.optional ?? false))).then(() => undefined);
  }

  /** Stops retrying and closes the sockets. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) this.finish(p);
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }

  private socket(family: 4 | 6): Socket {
    let s = this.sockets.get(family);
    if (!s) {
      s = createSocket(family === 6 ? 'udp6' : 'udp4');
      s.on('message', (msg, rinfo) => this.onReply(msg, rinfo.address, rinfo.port));
      s.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'notify socket error'));
      const source = this.opts.source?.[family];
      if (source) s.bind({ address: source, port: 0 }); // sends wait for the bind
      s.unref();
      this.sockets.set(family, s);
    }
    return s;
  }

  private send(target: NotifyTarget, zone: string, soa: { ttl: number; rdata: Uint8Array }, optional: boolean): Promise<void> {
    const key = `${target.name}|${zone}`;
    const prev = this.pending.get(key);
    if (prev) this.finish(prev);
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const id = randomInt(0, 65536);
      const p: Pending = { id, target, zone, verify: null, optional, refusal: null, timer: null, resolve };
      this.pending.set(key, p);
      const maxTries = this.opts.maxTries ?? 20;
      const maxDelay = this.opts.maxDelayMs ?? 60_000;
      const attempt = (n: number, wait: number) => {
        if (this.pending.get(key) !== p || this.closed) return;
        let msg = encodeMessage({
          id,
          opcode: Opcode.NOTIFY,
          flags: { aa: true },
          question: [{ name: zone, type: RRType.SOA, class: RRClass.IN }],
          answer: [{ name: zone, type: RRType.SOA, ttl: soa.ttl, rdata: soa.rdata }],
        });
        if (target.signer) {
          const signed = target.signer.sign(msg);
          msg = signed.msg;
          p.verify = signed.verifyReply;
        }
        if (n > 1) this.opts.onResult?.(target.name, 'retried');
        this.socket(target.address.family).send(msg, target.address.port, target.address.host, (err) => {
          if (err) this.opts.logger.warn({ secondary: target.name, zone, err: err.message }, 'notify not sent');
        });
        p.timer = setTimeout(() => {
          if (n >= maxTries) {
            if (p.refusal) {
              this.opts.logger.error({ secondary: target.name, zone, tries: n, answer: p.refusal }, 'notify refused by the secondary on every try (the zone is not configured there, or its allow-notify does not name the controller)');
              this.opts.onResult?.(target.name, 'refused');
            } else {
              this.opts.logger.error({ secondary: target.name, zone, tries: n }, 'notify: no answer; given up (the secondary still polls at its refresh time)');
              this.opts.onResult?.(target.name, 'gave_up');
            }
            this.finish(p);
            return;
          }
          attempt(n + 1, Math.min(wait * 2, maxDelay));
        }, wait);
        p.timer.unref();
      };
      attempt(1, this.opts.firstTimeoutMs ?? 1000);
    });
  }

  private onReply(msg: Buffer, address: string, port: number): void {
    let m;
    try {
      m = decodeMessage(msg);
    } catch {
      return;
    }
    if (!m.flags.qr || m.opcode !== Opcode.NOTIFY || m.question.length > 1) return;
    const target = this.opts.targets.find((t) => sameHost(t.address.host, address) && t.address.port === port);
    if (!target) return;
    // the zone from the question; NSD's TSIG error replies have none: the ID then (unique among the target's waiting NOTIFYs)
    const q = m.question[0];
    const matching = q
      ? [this.pending.get(`${target.name}|${q.name}`)].filter((x) => x?.id === m.id)
      : [...this.pending.values()].filter((x) => x.target === target && x.id === m.id);
    if (matching.length !== 1) return;
    const p = matching[0]!;
    const bad = p.verify ? p.verify(msg) : null;
    const log = { secondary: p.target.name, zone: p.zone };
    if (m.rcode === Rcode.NOERROR) {
      if (bad) {
        this.opts.logger.warn({ ...log, reason: bad }, 'notify reply refused (TSIG)');
        return; // a forged or broken acknowledgement does not end the retries
      }
      this.opts.onResult?.(p.target.name, 'acked');
      this.finish(p);
      return;
    }
    const tsigError = tsigErrorOf(m);
    const rcode = m.rcode === Rcode.NOTAUTH ? 'NOTAUTH' : (RCODE_NAMES[m.rcode] ?? `rcode ${m.rcode}`);
    const answer = tsigError ? `${rcode} TSIG ${tsigErrorName(tsigError)}` : `${rcode}${bad ? ` (unauthenticated: ${bad})` : ''}`;
    if (tsigError) {
      this.opts.logger.warn({ ...log, answer }, 'notify refused by the secondary: TSIG error (BADKEY, BADSIG: its key differs from dns.tsig_keys; BADTIME: the clocks are apart); not sent again');
      this.opts.onResult?.(p.target.name, 'refused');
      this.finish(p);
      return;
    }
    if (p.optional) {
      this.opts.logger.debug({ ...log, answer }, 'notify of an optional zone answered with an error (the secondary does not serve it)');
      this.finish(p);
      return;
    }
    if (!p.refusal) this.opts.logger.warn({ ...log, answer }, 'notify answered with an error; sent again');
    p.refusal = answer;
  }

  private finish(p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    const key = `${p.target.name}|${p.zone}`;
    if (this.pending.get(key) === p) this.pending.delete(key);
    p.resolve();
  }
}

/** The same IP, IPv4-mapped IPv6 folded. */
function sameHost(a: string, b: string): boolean {
  const strip = (x: string) => x.replace(/^::ffff:/i, '').toLowerCase();
  return strip(a) === strip(b);
}

/** The TSIG Error field of a reply's TSIG record (0: none, or no TSIG). */
function tsigErrorOf(m: Message): number {
  if (!m.tsig) return 0;
  const t = parseTsigRecord(m.tsig);
  return typeof t === 'string' ? 0 : t.error;
}

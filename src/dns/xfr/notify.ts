/**
 * NOTIFY (RFC 1996): tells each secondary that a zone changed, over UDP, TSIG-signed where the
 * secondary has a key, and sends it again with backoff (1 s doubling, at most `maxDelayMs`)
 * until the secondary acknowledges it (a reply with the same ID, QR set, opcode NOTIFY, from its
 * address, signed when the request was). A newer NOTIFY of the same zone to the same secondary
 * replaces one still waiting. Never throws; outcomes go to `onResult`.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import type { HostPort } from '../../core/addresses.js';
import { Opcode, Rcode, RRClass, RRType } from '../wire/constants.js';
import { decodeMessage, encodeMessage } from '../wire/message.js';

/** Signs a NOTIFY and checks its reply (TSIG), for a secondary with a key. */
export interface NotifySigner {
  /** The message with its TSIG; `verifyReply` checks a reply against it. */
  sign(msg: Buffer): { msg: Buffer; verifyReply(reply: Buffer): string | null };
}

export interface NotifyTarget {
  name: string;
  address: HostPort;
  signer?: NotifySigner;
}

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
   * Announces the zone's new SOA to every target; resolves once each acknowledged, was replaced
   * by a newer NOTIFY, or was given up.
   */
  notify(zone: string, soa: { ttl: number; rdata: Uint8Array }): Promise<void> {
    return Promise.all(this.opts.targets.map((t) => this.send(t, zone, soa))).then(() => undefined);
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

  private send(target: NotifyTarget, zone: string, soa: { ttl: number; rdata: Uint8Array }): Promise<void> {
    const key = `${target.name}|${zone}`;
    const prev = this.pending.get(key);
    if (prev) this.finish(prev);
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const id = randomInt(0, 65536);
      const p: Pending = { id, target, zone, verify: null, timer: null, resolve };
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
            this.opts.logger.error({ secondary: target.name, zone, tries: n }, 'notify: no answer; given up (the secondary still polls at its refresh time)');
            this.opts.onResult?.(target.name, 'gave_up');
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
    if (!m.flags.qr || m.opcode !== Opcode.NOTIFY || m.question.length !== 1) return;
    const p = this.pending.get(`${[...this.opts.targets].find((t) => sameHost(t.address.host, address) && t.address.port === port)?.name}|${m.question[0].name}`);
    if (!p || p.id !== m.id) return;
    if (p.verify) {
      const bad = p.verify(msg);
      if (bad) {
        this.opts.logger.warn({ secondary: p.target.name, zone: p.zone, reason: bad }, 'notify reply refused (TSIG)');
        return; // a forged or broken reply does not end the retries
      }
    }
    if (m.rcode !== Rcode.NOERROR) {
      this.opts.logger.warn({ secondary: p.target.name, zone: p.zone, rcode: m.rcode }, 'notify answered with an error');
      this.opts.onResult?.(p.target.name, 'refused');
    } else {
      this.opts.onResult?.(p.target.name, 'acked');
    }
    this.finish(p);
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

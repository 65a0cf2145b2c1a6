/**
 * A small stub-resolver client for the MX audit: its transport, retries and DNSSEC/EDE
 * classification over the shared message codec (dns/wire/message.ts), so that the raw header
 * flags (AA, TC, AD, CD), the rcode (extended by EDNS) and Extended DNS Errors (RFC 8914) are
 * visible, which Node's `dns` module hides.
 *
 * - UDP first (a pool of long-lived sockets, each on its own random source port, shared by all
 *   queries; a random ID per query; `udpSockets: 0` for a fresh socket per query), TCP when the
 *   answer is truncated (TC=1) or when asked;
 * - answers whose ID, QR bit or question do not match are ignored (spoofing / stray packets);
 *   undecodable answers count as MALFORMED;
 * - timeouts, SERVFAIL and MALFORMED are retried with p-retry; the final outcome is returned,
 *   never thrown;
 * - a final SERVFAIL is classified: DNSSEC-bogus when it carries EDE 6/7/9/10, or when the same
 *   question re-asked with CD=1 (checking disabled) gets data.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { addressFromBytes, parseEndpoint } from '../core/addresses.js';
import { Socket as TcpSocket } from 'node:net';
import pRetry from 'p-retry';
import { rdataToText } from '../dns/zone/rdata-text.js';
import { EDE_NAMES, RCODE_NAMES, RRType } from '../dns/wire/constants.js';
import {
  decodeMessage as decodeWire, encodeMessage, type DecodedRecord, type Ede, type Flags,
} from '../dns/wire/message.js';
import { readMx, readNameRdata, readSoa, readTxt } from '../dns/wire/rdata.js';

export { DnsFormatError, type Ede } from '../dns/wire/message.js';

/** A server address. */
export interface ServerAddress {
  host: string;
  port: number;
}

/** Parses "IP", "IP:PORT", "[V6]:PORT" or a bare IPv6 address (core/addresses' rule); throws on anything else. */
export function parseServerAddress(text: string, defaultPort = 53): ServerAddress {
  const hp = parseEndpoint(text, defaultPort);
  if (typeof hp === 'string') throw new Error(`bad server address: ${hp}`);
  return { host: hp.host, port: hp.port };
}

/** EDE codes that mean "DNSSEC validation failed": 6 Bogus, 7 Signature Expired, 9 DNSKEY Missing, 10 RRSIGs Missing. */
export const BOGUS_EDE_CODES: ReadonlySet<number> = new Set([6, 7, 9, 10]);

/** The audit's view of RDATA: addresses and names as text, MX and SOA as objects, TXT as its strings. */
export type RecordData =
  | string
  | { priority: number; exchange: string }
  | { mname: string; rname: string; serial: number }
  | string[];

/** One resource record. Names are lower case, without the trailing dot ("." for the root). */
export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: RecordData;
}

/** Header flags. */
export type DnsFlags = Flags;

/** The audit's view of a decoded message (names as {@link normName}, RDATA as {@link RecordData}). */
export interface DnsMessage {
  id: number;
  opcode: number;
  /** Rcode including the EDNS extended bits. */
  rcode: number;
  flags: DnsFlags;
  question: { name: string; type: number; class: number }[];
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
  /** EDNS present in the answer. */
  edns: boolean;
  ede: Ede[];
}

/** Name without trailing dot, lower case ("." stays "."). */
export function normName(name: string): string {
  const n = name.toLowerCase();
  return n === '.' ? n : n.replace(/\.$/, '');
}

/** Encodes a query: one question of class IN, RD unless `rd: false`, CD when `cd`, EDNS unless `edns: false`. */
export function encodeQuery(
  id: number,
  name: string,
  type: number,
  opts: { rd?: boolean; cd?: boolean; edns?: boolean } = {},
): Buffer {
  return encodeMessage({
    id,
    flags: { rd: opts.rd ?? true, cd: opts.cd ?? false },
    question: [{ name, type }],
    edns: opts.edns ?? true ? {} : undefined,
  });
}

function recordData(type: number, rd: Buffer): RecordData {
  switch (type) {
    case RRType.A:
    case RRType.AAAA:
      return addressFromBytes(rd).address; // the codec checked the length
    case RRType.NS:
    case RRType.CNAME:
    case RRType.PTR:
    case RRType.DNAME:
      return normName(readNameRdata(rd));
    case RRType.MX: {
      const mx = readMx(rd);
      return { priority: mx.preference, exchange: normName(mx.exchange) };
    }
    case RRType.SOA: {
      const soa = readSoa(rd);
      return { mname: normName(soa.mname), rname: normName(soa.rname), serial: soa.serial };
    }
    case RRType.TXT:
      return readTxt(rd).map((t) => Buffer.from(t).toString('latin1'));
    default:
      return rdataToText(type, rd);
  }
}

function record(r: DecodedRecord): DnsRecord {
  return { name: normName(r.name), type: r.type, class: r.class, ttl: r.ttl, data: recordData(r.type, r.rdata) };
}

/**
 * Decodes a whole message with the shared codec into the audit's view; throws
 * {@link DnsFormatError} (only) when it is malformed.
 */
export function decodeMessage(b: Buffer): DnsMessage {
  const m = decodeWire(b);
  return {
    id: m.id,
    opcode: m.opcode,
    rcode: m.rcode,
    flags: m.flags,
    question: m.question.map((q) => ({ name: normName(q.name), type: q.type, class: q.class })),
    answers: m.answer.map(record),
    authority: m.authority.map(record),
    additional: m.additional.map(record),
    edns: m.edns !== undefined,
    ede: m.edns?.ede ?? [],
  };
}

/** Why one attempt produced no usable answer. */
export class DnsAttemptError extends Error {
  constructor(readonly kind: 'TIMEOUT' | 'MALFORMED' | 'NETWORK', message: string) {
    super(message);
  }
}

/** Options of one exchange. */
export interface ExchangeOptions {
  timeoutMs: number;
  rd?: boolean;
  cd?: boolean;
  /** Use TCP from the start. */
  tcp?: boolean;
  /** Message ID (default: random). Fixed IDs are for tests with canned answers only. */
  id?: number;
}

function matches(m: DnsMessage, id: number, name: string, type: number): boolean {
  if (m.id !== id || !m.flags.qr) return false;
  // FORMERR/NOTIMP may come without a question section
  if (m.question.length === 0) return m.rcode !== 0;
  const q = m.question[0];
  return q.type === type && q.name === normName(name);
}

function udpExchange(server: ServerAddress, name: string, type: number, o: ExchangeOptions): Promise<DnsMessage> {
  const id = o.id ?? randomBytes(2).readUInt16BE(0);
  const msg = encodeQuery(id, name, type, o);
  return new Promise((resolve, reject) => {
    const sock: Socket = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | null, m?: DnsMessage) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { sock.close(); } catch { /* closed */ }
      if (err) reject(err);
      else resolve(m!);
    };
    const timer = setTimeout(
      () => finish(new DnsAttemptError('TIMEOUT', `no answer from ${server.host}:${server.port} within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    sock.on('error', (e: NodeJS.ErrnoException) => finish(new DnsAttemptError('NETWORK', e.code === 'ECONNREFUSED'
      ? `nothing listens at ${server.host}:${server.port} (ECONNREFUSED)`
      : `${server.host}:${server.port}: ${e.message}`)));
    sock.on('message', (buf, rinfo) => {
      if (rinfo.port !== server.port) return;
      if (buf.length >= 2 && buf.readUInt16BE(0) !== id) return; // stray or spoofed
      let m: DnsMessage;
      try {
        m = decodeMessage(buf);
      } catch (e) {
        // a truncated (TC) answer may be cut anywhere: fall back to TCP instead of failing
        if (buf.length >= 12 && (buf[2] & 0x82) === 0x82) {
          finish(null, truncatedStub(buf));
          return;
        }
        finish(new DnsAttemptError('MALFORMED', `malformed answer from ${server.host}:${server.port}: ${(e as Error).message}`));
        return;
      }
      if (!matches(m, id, name, type)) return;
      finish(null, m);
    });
    sock.connect(server.port, server.host, (err?: Error) => {
      if (err) finish(new DnsAttemptError('NETWORK', err.message));
      else sock.send(msg, (e) => e && finish(new DnsAttemptError('NETWORK', e.message)));
    });
  });
}

/** A header-only message standing for "truncated, ask again over TCP". */
function truncatedStub(buf: Buffer): DnsMessage {
  return {
    id: buf.readUInt16BE(0), opcode: 0, rcode: buf[3] & 0x0f,
    flags: { qr: true, aa: false, tc: true, rd: false, ra: false, z: false, ad: false, cd: false },
    question: [], answers: [], authority: [], additional: [], edns: false, ede: [],
  };
}

function tcpExchange(server: ServerAddress, name: string, type: number, o: ExchangeOptions): Promise<DnsMessage> {
  const id = o.id ?? randomBytes(2).readUInt16BE(0);
  const q = encodeQuery(id, name, type, o);
  const framed = Buffer.alloc(q.length + 2);
  framed.writeUInt16BE(q.length, 0);
  q.copy(framed, 2);
  return new Promise((resolve, reject) => {
    const sock = new TcpSocket();
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | null, m?: DnsMessage) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(m!);
    };
    const timer = setTimeout(
      () => finish(new DnsAttemptError('TIMEOUT', `no answer over TCP from ${server.host}:${server.port} within ${o.timeoutMs} ms`)),
      o.timeoutMs,
    );
    sock.on('error', (e) => finish(new DnsAttemptError('NETWORK', `TCP ${server.host}:${server.port}: ${e.message}`)));
    sock.on('close', () => finish(new DnsAttemptError('NETWORK', `TCP ${server.host}:${server.port}: connection closed before an answer`)));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const one = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        let m: DnsMessage;
        try {
          m = decodeMessage(one);
        } catch (e) {
          finish(new DnsAttemptError('MALFORMED', `malformed TCP answer from ${server.host}:${server.port}: ${(e as Error).message}`));
          return;
        }
        if (matches(m, id, name, type)) {
          finish(null, m);
          return;
        }
      }
    });
    sock.connect(server.port, server.host, () => sock.write(framed));
  });
}

interface PendingUdp {
  host: string;
  port: number;
  name: string;
  type: number;
  finish: (err: Error | null, m?: DnsMessage) => void;
}

/**
 * A few long-lived UDP sockets (each on its own random source port) shared by all queries,
 * answers matched by ID, source address and question: far cheaper than a socket per query
 * when auditing thousands of domains. Sockets are unref'd (they never keep the process alive).
 */
export class UdpPool {
  private socks: { sock: Socket; pending: Map<number, PendingUdp> }[] = [];
  private next = 0;
  constructor(readonly size: number, readonly family: 'udp4' | 'udp6') {}

  private socket(): { sock: Socket; pending: Map<number, PendingUdp> } {
    if (this.socks.length < this.size) {
      const sock = createSocket(this.family);
      const entry = { sock, pending: new Map<number, PendingUdp>() };
      sock.on('message', (buf, rinfo) => {
        if (buf.length < 2) return;
        const p = entry.pending.get(buf.readUInt16BE(0));
        if (!p || rinfo.port !== p.port || rinfo.address !== p.host) return; // stray or spoofed
        let m: DnsMessage;
        try {
          m = decodeMessage(buf);
        } catch (e) {
          if (buf.length >= 12 && (buf[2] & 0x82) === 0x82) return p.finish(null, truncatedStub(buf));
          return p.finish(new DnsAttemptError('MALFORMED', `malformed answer from ${p.host}:${p.port}: ${(e as Error).message}`));
        }
        if (matches(m, m.id, p.name, p.type)) p.finish(null, m);
      });
      sock.on('error', () => {
        /* per-send errors are reported to the sender; a broken socket just stops answering */
      });
      sock.bind(0);
      sock.unref();
      this.socks.push(entry);
      return entry;
    }
    this.next = (this.next + 1) % this.socks.length;
    return this.socks[this.next];
  }

  /** Sends one query and waits for its answer. */
  query(server: ServerAddress, name: string, type: number, o: ExchangeOptions): Promise<DnsMessage> {
    const entry = this.socket();
    let id = o.id ?? randomBytes(2).readUInt16BE(0);
    if (o.id === undefined) while (entry.pending.has(id)) id = (id + 1) & 0xffff;
    const msg = encodeQuery(id, name, type, o);
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err: Error | null, m?: DnsMessage) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (entry.pending.get(id) === p) entry.pending.delete(id);
        if (err) reject(err);
        else resolve(m!);
      };
      const p: PendingUdp = { host: server.host, port: server.port, name, type, finish };
      const timer = setTimeout(
        () => finish(new DnsAttemptError('TIMEOUT', `no answer from ${server.host}:${server.port} within ${o.timeoutMs} ms`)),
        o.timeoutMs,
      );
      entry.pending.set(id, p);
      entry.sock.send(msg, server.port, server.host, (e) => e && finish(new DnsAttemptError('NETWORK', `${server.host}:${server.port}: ${e.message}`)));
    });
  }

  /** Closes the sockets (pending queries time out). */
  close(): void {
    for (const s of this.socks) {
      try {
        s.sock.close();
      } catch {
        /* closed */
      }
    }
    this.socks = [];
  }
}

/** One question, one answer: UDP (TCP when `tcp` is set or the UDP answer is truncated). */
export async function exchange(
  server: ServerAddress, name: string, type: number, o: ExchangeOptions, pool?: UdpPool,
): Promise<{ message: DnsMessage; transport: 'udp' | 'tcp' }> {
  if (!o.tcp) {
    const m = pool ? await pool.query(server, name, type, o) : await udpExchange(server, name, type, o);
    if (!m.flags.tc) return { message: m, transport: 'udp' };
  }
  return { message: await tcpExchange(server, name, type, o), transport: 'tcp' };
}

/** Outcome status of a lookup: the rcode's name, or why there was no answer. */
export type LookupStatus = 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | 'FORMERR' | 'NOTIMP' | 'TIMEOUT' | 'MALFORMED' | 'NETWORK' | string;

/** The outcome of a lookup after retries; never thrown. */
export interface LookupResult {
  name: string;
  type: number;
  server: string;
  status: LookupStatus;
  /** Answer message when there was one. */
  message?: DnsMessage;
  aa: boolean;
  transport?: 'udp' | 'tcp';
  attempts: number;
  ede: Ede[];
  /** Set on a final SERVFAIL: DNSSEC validation failure (EDE 6/7/9/10, or data with CD=1). */
  dnssecBogus?: boolean;
  /** How bogus-ness was established. */
  bogusReason?: string;
  /** Status of the CD=1 re-ask when it did not show a DNSSEC failure. */
  cdRecheck?: string;
  /** Error text when no answer. */
  error?: string;
}

/** Lookup options. */
export interface LookupOptions {
  rd?: boolean;
  /** Re-ask with CD=1 on a final SERVFAIL to tell DNSSEC failures apart (default: when rd). */
  classifyServfail?: boolean;
  /** Retries (default: the client's). */
  retries?: number;
  /** Retry SERVFAIL (default true). */
  retryServfail?: boolean;
  timeoutMs?: number;
}

/** Client settings. */
export interface DnsClientOptions {
  timeoutMs: number;
  retries: number;
  /** First retry delay, ms (p-retry minTimeout; default 50). */
  retryDelayMs?: number;
  /** Message IDs (default: random). Only tests with canned answers set this. */
  nextId?: () => number;
  /**
   * UDP sockets shared by all queries (default 16, per address family); 0: a fresh connected
   * socket per query (then "nothing listens" is seen at once, from the ICMP error).
   */
  udpSockets?: number;
}

/** Human text for EDE options: "EDE 7 (Signature Expired: ...)". */
export function edeText(ede: Ede[]): string {
  return ede.map((e) => `EDE ${e.code} (${EDE_NAMES[e.code] ?? 'unassigned'}${e.text ? `: ${e.text}` : ''})`).join(', ');
}

class RetryableOutcome extends Error {
  constructor(readonly outcome: LookupResult) {
    super(outcome.error ?? outcome.status);
  }
}

/** A stub client bound to nothing: every call names its server. */
export class DnsClient {
  private pools: Partial<Record<'udp4' | 'udp6', UdpPool>> = {};
  constructor(readonly opts: DnsClientOptions) {}

  private pool(server: ServerAddress): UdpPool | undefined {
    const size = this.opts.udpSockets ?? 16;
    if (size <= 0) return undefined;
    const fam = server.host.includes(':') ? 'udp6' : 'udp4';
    return (this.pools[fam] ??= new UdpPool(size, fam));
  }

  /** Closes the shared sockets. */
  close(): void {
    for (const p of Object.values(this.pools)) p?.close();
    this.pools = {};
  }

  /** Asks `server` one question with retries; always resolves. */
  async lookup(server: ServerAddress, name: string, type: number, lo: LookupOptions = {}): Promise<LookupResult> {
    const rd = lo.rd ?? true;
    const timeoutMs = lo.timeoutMs ?? this.opts.timeoutMs;
    const retryServfail = lo.retryServfail ?? true;
    const srv = `${server.host.includes(':') ? `[${server.host}]` : server.host}:${server.port}`;
    let attempts = 0;
    const once = async (cd: boolean): Promise<LookupResult> => {
      attempts++;
      try {
        const { message, transport } = await exchange(server, name, type, { timeoutMs, rd, cd, id: this.opts.nextId?.() }, this.pool(server));
        const status = RCODE_NAMES[message.rcode] ?? `RCODE${message.rcode}`;
        return { name, type, server: srv, status, message, aa: message.flags.aa, transport, attempts, ede: message.ede };
      } catch (e) {
        const kind = e instanceof DnsAttemptError ? e.kind : 'NETWORK';
        return { name, type, server: srv, status: kind, aa: false, attempts, ede: [], error: (e as Error).message };
      }
    };
    let last: LookupResult | undefined;
    try {
      last = await pRetry(
        async () => {
          const r = await once(false);
          last = r;
          // a SERVFAIL that says "DNSSEC bogus" is deterministic: no point asking again
          const bogus = r.ede.some((x) => BOGUS_EDE_CODES.has(x.code));
          if (r.status === 'TIMEOUT' || r.status === 'MALFORMED' || r.status === 'NETWORK' || (retryServfail && r.status === 'SERVFAIL' && !bogus)) {
            throw new RetryableOutcome(r);
          }
          return r;
        },
        {
          retries: lo.retries ?? this.opts.retries,
          minTimeout: this.opts.retryDelayMs ?? 50,
          factor: 2,
          randomize: true,
        },
      );
    } catch (e) {
      if (!(e instanceof RetryableOutcome)) throw e;
      last = e.outcome;
    }
    const result: LookupResult = { ...last!, attempts };
    if (result.status === 'SERVFAIL' && (lo.classifyServfail ?? rd)) {
      const bogusEde = result.ede.find((x) => BOGUS_EDE_CODES.has(x.code));
      if (bogusEde) {
        result.dnssecBogus = true;
        result.bogusReason = `the resolver says ${edeText([bogusEde])}`;
      } else {
        const cd = await once(true);
        if (cd.status === 'NOERROR' || cd.status === 'NXDOMAIN') {
          result.dnssecBogus = true;
          result.bogusReason = `the resolver answers ${cd.status} when asked again with CD=1 (checking disabled)`;
        } else {
          result.dnssecBogus = false;
          result.cdRecheck = cd.status;
        }
      }
    }
    return result;
  }
}

/** Records of `type` in the answer section owned by `name` (after following CNAMEs). */
export function answerRecords(r: LookupResult, type: number): DnsRecord[] {
  if (!r.message) return [];
  return r.message.answers.filter((a) => a.type === type);
}

/** The CNAME chain at the start of the answer to `name`, e.g. ["alias.example.", "real.example."]. */
export function cnameChain(r: LookupResult): string[] {
  if (!r.message) return [];
  const out: string[] = [];
  let cur = normName(r.name);
  for (let i = 0; i < 16; i++) {
    const c = r.message.answers.find((a) => a.type === RRType.CNAME && a.name === cur);
    if (!c) break;
    cur = c.data as string;
    out.push(cur);
  }
  return out;
}

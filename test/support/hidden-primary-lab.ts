/**
 * The controller as the hidden primary of real secondaries, for the end-to-end test
 * (test/e2e/secondaries.test.ts) and npm run bench:propagation: generated zones, the controller's
 * config sections, a multiplexing DNS client, a TSIG-verified AXFR client and RRset comparison.
 *
 * Contract:
 *  - zoneText(origin, records, serial) is deterministic: the same arguments give the same text,
 *    with exactly `records` records. SERVER's addresses are in about a fifth of them, the rest
 *    elsewhere (192.0.2.0/24, 2001:db8:99::/64); TTLs of SERVER's records are at most 3600.
 *  - DnsClient: one UDP socket for any number of queries in flight (IDs unique among those in
 *    flight), TCP when truncated; `soaSerial` is null for anything but an authoritative NOERROR
 *    answer with the zone's SOA. Never rejects.
 *  - axfr(): the zone as the server transfers it, every message's TSIG verified; throws with the
 *    rcode when refused. It asks from 127.0.0.1 unless `localAddress` says otherwise.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import { RRType } from '../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage, type DecodedRecord, type Message } from '../../src/dns/wire/message.js';
import { signRequest, TsigStreamVerifier, tsigKey, type TsigKey } from '../../src/dns/xfr/tsig.js';
import { tcpQuery } from '../dns/tiny-dns.js';

// ------------------------------------------------------------------------------ inventory ----

export const SERVER = 'srv-42';
export const TRANSIT = 'transit-3';
/** SERVER's addresses and the transit's, n-th of a family for n-th. */
export const SERVER_ADDRESSES = ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] as const;
export const TRANSIT_ADDRESSES = ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] as const;
export const TSIG_NAME = 'fc-transfer.';
export const TSIG_ALGORITHM = 'hmac-sha256';
/** The environment variable the controller reads the TSIG secret from. */
export const TSIG_SECRET_ENV = 'FC_TSIG_SECRET';

/** An account owning zones on SERVER. */
export interface LabAccount {
  name: string;
  zones: string[];
}

/**
 * The controller's config sections for SERVER, TRANSIT and `accounts`, dry-run routing (nothing
 * on the network), the state in the controller's directory.
 */
export function inventorySections(accounts: LabAccount[]): Record<string, unknown> {
  return {
    servers: [{ name: SERVER, profile: 'vps', monthly_price: '29.99', addresses: [...SERVER_ADDRESSES] }],
    transits: [{ name: TRANSIT, profile: 'vps', addresses: [...TRANSIT_ADDRESSES] }],
    accounts: accounts.map((a) => ({ name: a.name, server: SERVER, zones: a.zones.map((z) => z.replace(/\.$/, '')) })),
    state: { path: './state.db' },
    routing: { backend: 'dry-run' },
  };
}

/** A secondary as the controller's config names it. */
export interface LabSecondary {
  name: string;
  host: string;
  port: number;
}

/** The `dns` keys of a hidden primary on 127.0.0.1:dnsPort with `secondaries`, all with the one key. */
export function hiddenPrimaryDns(dnsPort: number, secondaries: LabSecondary[]): Record<string, unknown> {
  return {
    listen: [`127.0.0.1:${dnsPort}`],
    tsig_keys: [{ name: TSIG_NAME, algorithm: TSIG_ALGORITHM, secret_env: TSIG_SECRET_ENV }],
    secondaries: secondaries.map((s) => ({ name: s.name, address: `${s.host}:${s.port}`, tsig: TSIG_NAME })),
  };
}

// ------------------------------------------------------------------------------ zones --------

/**
 * A master file of exactly `records` records (at least 8): SOA (refresh 3600: only NOTIFY makes
 * a secondary follow quickly), two NS with their A, and hosts h0, h1, ... whose kinds cycle:
 * SERVER's A (3600) and A (1800), SERVER's AAAA, another A, CNAME, MX, TXT, a mixed A RRset
 * (SERVER's address and another, 600), SRV, CAA. Plus `dup`: SERVER's and the transit's address
 * in one RRset (the overlay makes them equal: one is dropped). `withServer: false`: the same
 * shape with other addresses in place of SERVER's; `serverNames: N`: SERVER's addresses on the
 * first N names that carry them, other addresses on the rest (a zone a cutover changes a little).
 */
export function zoneText(origin: string, records: number, serial: number, opts: { withServer?: boolean; serverNames?: number } = {}): string {
  if (records < 8) throw new RangeError('a lab zone has at least 8 records');
  const o = origin.endsWith('.') ? origin : `${origin}.`;
  // withServer false: the same shape with none of SERVER's addresses (a zone a cutover does not touch)
  const none = ['192.0.2.210', '192.0.2.211', '2001:db8:99::ffff'];
  const [s0, s1, s6] = opts.withServer === false ? none : SERVER_ADDRESSES;
  // serverNames: SERVER's addresses on that many names only (the first ones), the others' on the rest
  let a0 = s0;
  let a1 = s1;
  let a6 = s6;
  let serverNames = 0;
  const carry = (i: number) => {
    const on = opts.serverNames === undefined || serverNames < opts.serverNames;
    if (on && [0, 1, 2, 7].includes(i % 10)) serverNames++;
    [a0, a1, a6] = on ? [s0, s1, s6] : none;
  };
  const lines = [
    `$ORIGIN ${o}`,
    '$TTL 3600',
    `@ 3600 IN SOA ns1.${o} hostmaster.${o} ${serial} 3600 600 1209600 300`,
    '@ 86400 IN NS ns1',
    '@ 86400 IN NS ns2',
    'ns1 86400 IN A 192.0.2.53',
    'ns2 86400 IN A 192.0.2.54',
    `dup 3600 IN A ${a0}`,
    `dup 3600 IN A ${TRANSIT_ADDRESSES[0]}`,
  ];
  let n = 7;
  const add = (line: string) => {
    if (n < records) {
      lines.push(line);
      n++;
    }
  };
  for (let i = 0; n < records; i++) {
    carry(i);
    const h = `h${i}`;
    const other = `192.0.2.${(i % 250) + 1}`;
    switch (i % 10) {
      case 0: add(`${h} 3600 IN A ${a0}`); break;
      case 1: add(`${h} 1800 IN A ${a1}`); break;
      case 2: add(`${h} 3600 IN AAAA ${a6}`); break;
      case 3: add(`${h} 300 IN A ${other}`); add(`${h} 300 IN AAAA 2001:db8:99::${(i % 65535).toString(16)}`); break;
      case 4: add(`${h} 3600 IN CNAME h${i - 4}`); break;
      case 5: add(`${h} 3600 IN MX 10 h${i - 5}`); add(`${h} 3600 IN MX 20 mx.example.net.`); break;
      case 6: add(`${h} 3600 IN TXT "v=spf1 ip4:${a0} -all" "n=${i}"`); break;
      case 7: add(`${h} 600 IN A ${a0}`); add(`${h} 600 IN A ${other}`); break;
      case 8: add(`_https._tcp.${h} 3600 IN SRV 0 5 443 h${i - 8}`); break;
      default: add(`${h} 3600 IN CAA 0 issue "ca.example.net"`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The zone text with its serial replaced and `extra` lines appended (a zone file edit). */
export function editZone(text: string, serial: number, extra: string[]): string {
  const out = text.replace(/^(@ \d+ IN SOA \S+ \S+ )\d+/m, `$1${serial}`);
  if (out === text) throw new Error('no SOA line to edit');
  return out + extra.map((l) => `${l}\n`).join('');
}

// ------------------------------------------------------------------------------ DNS client ---

type TypeArg = number | keyof typeof RRType;
const typeNumber = (t: TypeArg): number => (typeof t === 'number' ? t : RRType[t]);
const fqdn = (n: string) => (n.endsWith('.') ? n : `${n}.`).toLowerCase();

/** Queries to servers on 127.0.0.1 over one UDP socket, many in flight at once. */
export class DnsClient {
  private readonly sock: UdpSocket;
  private readonly inFlight = new Map<number, (reply: Buffer | null) => void>();
  private next = Math.floor(Math.random() * 0x10000);
  private ready: Promise<void>;

  constructor() {
    this.sock = createSocket('udp4');
    this.sock.on('message', (msg) => {
      if (msg.length >= 12) this.inFlight.get(msg.readUInt16BE(0))?.(msg);
    });
    this.sock.on('error', () => undefined);
    this.ready = new Promise((res) => this.sock.bind(0, '127.0.0.1', () => {
      // thousands of answers may arrive at once: room for them (capped by net.core.rmem_max)
      try {
        this.sock.setRecvBufferSize(8 << 20);
      } catch {
        /* the default buffer: answers may be lost and asked again */
      }
      res();
    }));
  }

  /** The decoded answer to one query (EDNS 1232, TCP when truncated), or null after `timeoutMs`. */
  async ask(port: number, name: string, type: TypeArg, timeoutMs = 1000): Promise<Message | null> {
    await this.ready;
    let id = this.next++ & 0xffff;
    for (let i = 0; this.inFlight.has(id) && i < 0x10000; i++) id = this.next++ & 0xffff;
    const msg = encodeMessage({ id, question: [{ name, type: typeNumber(type) }], edns: { udpPayload: 1232 } });
    const raw = await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => done(null), timeoutMs);
      const done = (reply: Buffer | null) => {
        clearTimeout(timer);
        this.inFlight.delete(id);
        resolve(reply);
      };
      this.inFlight.set(id, done);
      this.sock.send(msg, port, '127.0.0.1', (err) => {
        if (err) done(null);
      });
    });
    let m: Message;
    try {
      if (!raw) return null;
      m = decodeMessage(raw);
    } catch {
      return null;
    }
    if (!m.flags.tc) return m;
    const viaTcp = await tcpQuery(port, msg, timeoutMs * 2).catch(() => null);
    try {
      return viaTcp ? decodeMessage(viaTcp) : null;
    } catch {
      return null;
    }
  }

  /** The SOA serial `port` serves for `zone` (authoritative NOERROR), or null. */
  async soaSerial(port: number, zone: string, timeoutMs = 1000): Promise<number | null> {
    const m = await this.ask(port, zone, 'SOA', timeoutMs);
    if (!m || m.rcode !== 0 || !m.flags.aa) return null;
    const soa = m.answer.find((r) => r.type === RRType.SOA && r.name === fqdn(zone));
    return soa && soa.rdata.length >= 20 ? soa.rdata.readUInt32BE(soa.rdata.length - 20) : null;
  }

  close(): void {
    for (const done of [...this.inFlight.values()]) done(null);
    this.sock.close();
  }
}

// ------------------------------------------------------------------------------ AXFR ---------

/** The lab's TSIG key, checked as the controller checks it. */
export function labKey(secret: string): TsigKey {
  return tsigKey(TSIG_NAME, TSIG_ALGORITHM, secret);
}

/** What a transfer request got: the records (first SOA to last, both included) or the refusal. */
export interface TransferReply {
  rcode: number;
  /** Records of the answer sections, in order. */
  records: DecodedRecord[];
  /** Messages received. */
  messages: number;
  /** Whether every message verified against the request (always true unsigned). */
  verified: boolean;
}

/**
 * Asks `type` of `zone` from 127.0.0.1:port over TCP, signed with `key` when given. AXFR:
 * collects messages until the closing SOA, an error rcode, or the server closes. IXFR (from
 * `ixfrSerial`): the first message only (to see a refusal). Never rejects for the server's
 * behaviour (a timeout counts as closed).
 */
export async function transfer(port: number, zone: string, opts: { key?: TsigKey; type?: 'AXFR' | 'IXFR'; ixfrSerial?: number; localAddress?: string; timeoutMs?: number } = {}): Promise<TransferReply> {
  const type = opts.type ?? 'AXFR';
  const id = Math.floor(Math.random() * 0x10000);
  const authority = type === 'IXFR'
    ? [{ name: zone, type: RRType.SOA, ttl: 0, rdata: soaRdata(zone, opts.ixfrSerial ?? 0) }]
    : [];
  let msg = encodeMessage({ id, question: [{ name: zone, type: RRType[type] }], authority });
  let verifier: TsigStreamVerifier | null = null;
  if (opts.key) {
    const s = signRequest(msg, opts.key, Math.floor(Date.now() / 1000));
    msg = s.message;
    verifier = new TsigStreamVerifier(opts.key, s.mac);
  }
  const framed = Buffer.alloc(2 + msg.length);
  framed.writeUInt16BE(msg.length, 0);
  msg.copy(framed, 2);
  return new Promise<TransferReply>((resolve) => {
    const out: TransferReply = { rcode: 0, records: [], messages: 0, verified: true };
    let soas = 0;
    let buf: Buffer = Buffer.alloc(0);
    let finished = false;
    const sock = connect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(out);
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 30_000);
    sock.on('connect', () => sock.write(framed));
    sock.on('error', finish);
    sock.on('close', finish);
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (!finished && buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const raw = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + raw.length);
        out.messages++;
        let m: Message;
        if (verifier) {
          const v = verifier.verify(raw, Math.floor(Date.now() / 1000));
          if (!v.ok) {
            out.verified = false;
            try {
              m = decodeMessage(raw);
            } catch {
              return finish();
            }
          } else m = v.message;
        } else {
          try {
            m = decodeMessage(raw);
          } catch {
            return finish();
          }
        }
        out.rcode = m.rcode;
        if (m.rcode !== 0) return finish();
        for (const r of m.answer) {
          out.records.push(r);
          if (r.type === RRType.SOA && r.name === fqdn(zone)) soas++;
        }
        // AXFR ends at the second SOA; IXFR is only asked to see it refused (its first message).
        const last = out.records[out.records.length - 1];
        if (type === 'IXFR' || (soas >= 2 && last.type === RRType.SOA)) return finish();
      }
    });
  });
}

/** A SOA RDATA with the given serial (root names), for the IXFR request's authority section. */
function soaRdata(_zone: string, serial: number): Buffer {
  const b = Buffer.alloc(2 + 20);
  // MNAME "." and RNAME ".": one zero byte each
  b.writeUInt32BE(serial >>> 0, 2);
  b.writeUInt32BE(3600, 6);
  b.writeUInt32BE(600, 10);
  b.writeUInt32BE(86400, 14);
  b.writeUInt32BE(300, 18);
  return b;
}

// ------------------------------------------------------------------------------ RRsets -------

/** `${owner}|${type}` of a record. */
export const rrKey = (name: string, type: number) => `${fqdn(name)}|${type}`;

/**
 * The RRsets of a record list (an AXFR without its closing SOA, or one answer section filtered
 * to an owner and type), each as a canonical text: "TTL RDATA-hex" lines sorted.
 */
export function rrsets(records: Iterable<DecodedRecord>): Map<string, string> {
  const sets = new Map<string, string[]>();
  for (const r of records) {
    const k = rrKey(r.name, r.type);
    let s = sets.get(k);
    if (!s) sets.set(k, (s = []));
    s.push(`${r.ttl} ${Buffer.from(r.rdata).toString('hex')}`);
  }
  return new Map([...sets].map(([k, v]) => [k, v.sort().join(',')]));
}

/** An AXFR's records without the closing SOA. */
export function zoneRecords(axfr: TransferReply): DecodedRecord[] {
  return axfr.records.slice(0, -1);
}

/** The canonical RRset `port` answers for `name`/`type` ("" when none), or why it cannot tell. */
export async function answeredRRset(client: DnsClient, port: number, name: string, type: number): Promise<string> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const m = await client.ask(port, name, type, 500 * (attempt + 1));
    if (!m) continue;
    if (m.rcode !== 0) return `rcode ${m.rcode}`;
    if (!m.flags.aa) return 'not authoritative';
    const own = m.answer.filter((r) => r.type === type && r.name === fqdn(name));
    return rrsets(own).get(rrKey(name, type)) ?? '';
  }
  return 'no answer';
}

/** Runs `fn` over `items` with at most `limit` at once; results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Presentation of a percentile of sorted values (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

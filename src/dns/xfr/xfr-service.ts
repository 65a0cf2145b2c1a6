/**
 * The hidden primary: zone transfers to the configured secondaries and NOTIFY to them.
 *
 * - Transfers (RFC 5936 AXFR, RFC 1995 IXFR) are answered only to a configured secondary's
 *   address, and where the secondary has a TSIG key only when signed with it; anything else is
 *   REFUSED, or NOTAUTH with the TSIG error (RFC 8945: BADKEY, BADSIG, BADTIME), and no zone data
 *   is sent. What is transferred is exactly what is answered: snapshots of each zone with the
 *   overlay applied (engine/snapshot.ts). IXFR comes from a journal of the differences between
 *   successive versions; when it does not reach the client's serial, the whole zone in IXFR form
 *   (never an error rcode). IXFR over UDP gets the SOA only. Messages are encoded one at a time,
 *   the event loop served between them (a transfer never stalls answering).
 * - TSIG-signed queries (Knot and BIND sign the SOA query they send before a transfer) are
 *   answered by the responder and the answer signed; one whose TSIG fails gets NOTAUTH with the
 *   TSIG error. Both count as transfer requests of kind `query` (a secondary with a wrong key
 *   stops there, before any transfer).
 * - Every change of what a zone serves (overlay, reload) becomes a journal version, and every
 *   secondary of the zone gets a NOTIFY (at start too), retried until acknowledged or refused
 *   (notify.ts; the catalog zone's is optional: NSD does not serve it).
 *
 * Never throws to the listeners: a failure ends the transfer (the listener closes the connection).
 */
import type { Logger } from 'pino';
import type { HostPort } from '../../core/addresses.js';
import type { AddressOverlay, ZoneSet } from '../engine/engine.js';
import { isTouchingOverlay, nextSnapshotAsync, snapshotZoneAsync, type ZoneSnapshot } from '../engine/snapshot.js';
import { rateLimited, type Remote, type TransferHandler } from '../server/dns-server.js';
import type { Responder } from '../server/responder.js';
import { Rcode, RRClass, RRType } from '../wire/constants.js';
import { decodeMessage, encodeMessage, type Message, type RecordInput } from '../wire/message.js';
import type { Zone } from '../zone/zone.js';
import { Journal, type ZoneDiff } from './journal.js';
import type { JournalStore } from './journal-files.js';
import type { Notifier } from './notify.js';
import type { Propagated, PropagationTracker } from './propagation.js';
import { axfrMessages, ixfrForm, ixfrMessages, paced } from './transfer.js';
import { signResponse, tsigErrorResponse, tsigRecordSize, TsigStreamSigner, verify, type TsigKey } from './tsig.js';

/** A secondary as the service needs it. */
export interface Secondary {
  name: string;
  address: HostPort;
  key: TsigKey | null;
}

/** soa: IXFR answered with the SOA only; query: a TSIG-signed query (the SOA query before a transfer). */
export type TransferKind = 'axfr' | 'ixfr' | 'ixfr_full' | 'soa' | 'query';
export type TransferResult = 'ok' | 'refused' | 'notauth' | 'failed';

export interface TransferServiceOptions {
  secondaries: Secondary[];
  keys: ReadonlyMap<string, TsigKey>;
  responder: Responder;
  /** What is served now: the zones and the overlay. */
  served(): { zones: ZoneSet; overlay: AddressOverlay | undefined };
  notifier?: Notifier;
  /** Asks the secondaries for each new serial until they serve it. */
  tracker?: PropagationTracker;
  /** The catalog zone's name (transferred and NOTIFYed, not watched for propagation). */
  catalog?: string | null;
  /** Keeps the journals across restarts. */
  journals?: JournalStore;
  logger: Logger;
  /** Unix time in seconds (TSIG). */
  now?: () => number;
  onTransfer?: (secondary: string, kind: TransferKind, result: TransferResult) => void;
}

interface Version {
  snapshot: ZoneSnapshot;
  journal: Journal;
  /** What the snapshot was made from: the next one is a step from it when only the overlay changed. */
  zone: Zone;
  overlay: AddressOverlay | undefined;
}

const UNKNOWN = 'other';

export class TransferService implements TransferHandler {
  private readonly versions = new Map<string, Version>();
  /** The running version update, and whether another one was asked meanwhile. */
  private updating: Promise<void> | null = null;
  private again = false;
  /** Zones the running update pass has yet to version, and transfers waiting for one of them. */
  private unsettled = new Set<string>();
  private readonly waiters = new Map<string, (() => void)[]>();
  private readonly log: Logger;
  /** For refusals of single messages (UDP: any source address can send them). */
  private readonly warn: (obj: object, msg: string) => void;
  private readonly now: () => number;
  /** NOTIFY is sent once the listeners are open (`startNotifying`). */
  private notifying = false;
  /** Journals waiting to be stored, and the store loop running. */
  private readonly unsaved = new Map<string, Journal>();
  private saving: Promise<void> | null = null;

  constructor(private readonly opts: TransferServiceOptions) {
    this.log = opts.logger;
    this.warn = rateLimited(opts.logger);
    this.now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  }

  /**
   * What the zones serve changed (overlay applied, zones reloaded), or the controller started:
   * records a journal version for each zone whose content or serial changed and NOTIFYs its
   * secondaries. Calls made while one runs are folded into one more run. Never rejects.
   */
  changed(): Promise<void> {
    if (this.updating) {
      this.again = true;
      return this.updating;
    }
    this.updating = (async () => {
      do {
        this.again = false;
        try {
          await this.update();
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'transfer versions not updated');
        }
      } while (this.again);
    })().finally(() => {
      this.updating = null;
      // a pass that failed half way: nobody waits for a version that will not come
      for (const z of [...this.unsettled, ...this.waiters.keys()]) this.settle(z);
    });
    return this.updating;
  }

  /** The listeners are open: NOTIFYs every zone now (the secondaries learn of a restart) and on every change. */
  async startNotifying(): Promise<void> {
    this.notifying = true;
    if (this.updating) await this.updating;
    for (const v of this.versions.values()) this.announce(v.snapshot);
  }

  /**
   * When each secondary served what is served now (the change just applied, when called right
   * after it): every zone at its current serial. Null without secondaries to ask.
   */
  async propagation(timeoutMs = 60_000): Promise<Propagated | null> {
    if (!this.opts.tracker || this.opts.tracker.secondaries.length === 0) return null;
    if (this.updating) await this.updating;
    const targets = new Map([...this.versions].filter(([z]) => z !== this.opts.catalog).map(([z, v]) => [z, v.snapshot.serial]));
    return this.opts.tracker.waitFor(targets, timeoutMs);
  }

  /** NOTIFY the zone's secondaries and watch them serve its serial. */
  private announce(snapshot: ZoneSnapshot): void {
    const catalog = snapshot.origin === this.opts.catalog;
    void this.opts.notifier?.notify(snapshot.origin, { ttl: snapshot.soa.ttl, rdata: snapshot.soa.rdata }, { optional: catalog });
    // the catalog zone is for Knot and BIND only (NSD has none, Knot refuses queries for it): not watched
    if (snapshot.origin !== this.opts.catalog) this.opts.tracker?.expect(snapshot.origin, snapshot.serial);
  }

  /** The served serial of each zone as transfers give it. */
  serials(): Map<string, number> {
    return new Map([...this.versions].map(([z, v]) => [z, v.snapshot.serial]));
  }

  private async update(): Promise<void> {
    const { zones, overlay } = this.opts.served();
    const seen = new Set<string>();
    // small zones first: a transfer waits only for its own zone's version (settled())
    const order = [...zones.zones()].sort((a, b) => a.recordCount - b.recordCount);
    this.unsettled = new Set(order.map((z) => z.origin));
    for (const zone of order) {
      seen.add(zone.origin);
      try {
        await this.updateZone(zone, overlay, zones);
      } finally {
        this.settle(zone.origin);
      }
    }
    for (const z of [...this.versions.keys()]) if (!seen.has(z)) this.versions.delete(z);
  }

  /** Records `zone`'s version for what is served now, when it changed, and NOTIFYs it. */
  private async updateZone(zone: Zone, overlay: AddressOverlay | undefined, zones: ZoneSet): Promise<void> {
    const prev = this.versions.get(zone.origin);
    const { next, diff } = await this.snapshotOf(zone, overlay, zones, prev);
    if (prev && prev.snapshot.digest === next.digest && prev.snapshot.serial === next.serial) {
      prev.overlay = overlay; // the same content: a snapshot with this overlay too
      return;
    }
    let journal = prev?.journal;
    if (prev && diff) {
      journal!.recordDiff(prev.snapshot, next, diff);
    } else if (prev) {
      await journal!.recordAsync(prev.snapshot, next);
    } else {
      journal = await this.restored(zone.origin, next);
    }
    this.versions.set(zone.origin, { snapshot: next, journal: journal!, zone, overlay });
    if (prev || journal!.length === 0) this.saveJournal(zone.origin, journal!);
    if (prev && prev.snapshot.serial === next.serial) {
      this.log.warn({ zone: zone.origin, serial: next.serial }, 'zone content changed without a serial change: secondaries will not see it (raise the serial in the zone file)');
    }
    if (this.notifying) this.announce(next);
  }

  /** `zone`'s version is up to date for this pass: transfers waiting for it go on. */
  private settle(zone: string): void {
    this.unsettled.delete(zone);
    const waiting = this.waiters.get(zone);
    this.waiters.delete(zone);
    for (const w of waiting ?? []) w();
  }

  /** Resolves once `zone`'s version follows what is served (at once unless an update pass has yet to reach it). */
  private settled(zone: string): Promise<void> {
    if (!this.updating || !this.unsettled.has(zone)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.waiters.get(zone) ?? [];
      list.push(resolve);
      this.waiters.set(zone, list);
    });
  }

  /**
   * What `zone` serves with `overlay`: when only the overlay changed since `prev` (the same zone
   * object, overlays that list what they touch), a step from it with its diff (work for the
   * records the overlays touch only); else (or should the step fail) a full snapshot, the
   * zone's address index built along.
   */
  private async snapshotOf(zone: Zone, overlay: AddressOverlay | undefined, zones: ZoneSet, prev: Version | undefined): Promise<{ next: ZoneSnapshot; diff?: ZoneDiff }> {
    if (prev && prev.zone === zone && isTouchingOverlay(prev.overlay) && isTouchingOverlay(overlay)) {
      try {
        const step = await nextSnapshotAsync(prev.snapshot, zone, prev.overlay, overlay, { zones });
        return { next: step.snapshot, diff: step.diff };
      } catch (err) {
        this.log.error({ zone: zone.origin, err: (err as Error).message }, 'incremental zone snapshot failed; taking a full one');
      }
    }
    return { next: await snapshotZoneAsync(zone, overlay, { zones, index: true }) };
  }

  /**
   * The zone's journal as stored before a restart, when it ends at exactly what is served now
   * (same serial and content); else a new one starting here.
   */
  private async restored(zone: string, now: ZoneSnapshot): Promise<Journal> {
    const bytes = this.opts.journals ? await this.opts.journals.load(zone) : null;
    if (bytes) {
      try {
        const { journal: j } = await Journal.readAsync(bytes);
        if (j.origin === zone && j.serial === now.serial && j.digest === now.digest) {
          this.log.info({ zone, versions: j.length, oldest: j.oldestSerial }, 'transfer journal restored');
          return j;
        }
        this.log.info({ zone, stored: j.serial, served: now.serial }, 'stored transfer journal does not end at what is served; starting a new one');
      } catch (err) {
        this.log.warn({ zone, err: (err as Error).message }, 'stored transfer journal unreadable; starting a new one');
      }
    }
    const j = new Journal(zone);
    j.reset(now);
    return j;
  }

  /** Stores the zone's journal in the background; saves asked meanwhile are folded into the next one. */
  private saveJournal(zone: string, journal: Journal): void {
    if (!this.opts.journals) return;
    this.unsaved.set(zone, journal);
    if (this.saving) return;
    this.saving = (async () => {
      while (this.unsaved.size > 0) {
        const [z, j] = this.unsaved.entries().next().value!;
        this.unsaved.delete(z);
        try {
          await this.opts.journals!.save(z, j);
        } catch (err) {
          this.log.warn({ zone: z, err: (err as Error).message }, 'transfer journal not stored (after a restart a secondary behind gets the whole zone)');
        }
      }
    })().finally(() => (this.saving = null));
  }

  /** Resolves once every journal asked to be stored is (for a clean stop and tests). */
  async flushJournals(): Promise<void> {
    while (this.saving) await this.saving;
  }

  udp(msg: Buffer, remote: Remote): Buffer | null {
    try {
      return this.single(msg, remote, false);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, remote: remote.address }, 'transfer-path message not answered');
      return null;
    }
  }

  async tcp(msg: Buffer, remote: Remote, send: (msg: Buffer) => Promise<void>): Promise<void> {
    let m: Message;
    try {
      m = decodeMessage(msg);
    } catch {
      await send(formErr(msg));
      return;
    }
    const q = m.question[0];
    if (!q || (q.type !== RRType.AXFR && q.type !== RRType.IXFR)) {
      const out = this.single(msg, remote, true, m);
      if (out) await send(out);
      return;
    }
    const secondary = this.secondaryAt(remote.address);
    const who = secondary?.name ?? UNKNOWN;
    const kind: TransferKind = q.type === RRType.AXFR ? 'axfr' : 'ixfr';
    const gate = this.admit(msg, m, secondary);
    if ('reply' in gate) {
      this.opts.onTransfer?.(who, kind, gate.result);
      this.log.warn({ remote: remote.address, secondary: who, zone: q.name, kind, reason: gate.reason }, 'zone transfer refused');
      if (gate.reply) await send(gate.reply);
      return;
    }
    await this.settled(q.name); // the journal follows what is served
    const version = this.versions.get(q.name);
    if (!version || q.class !== RRClass.IN) {
      this.opts.onTransfer?.(who, kind, 'notauth');
      await send(this.sign(encodeMessage(header(m, Rcode.NOTAUTH)), gate.key, gate.mac));
      return;
    }
    const signer = gate.key ? new TsigStreamSigner(gate.key, gate.mac!) : null;
    const opts = {
      id: m.id, question: { name: q.name, type: q.type, class: q.class }, rd: m.flags.rd,
      reserve: gate.key ? tsigRecordSize(gate.key) : 0,
    };
    let messages: Iterable<Buffer>;
    let done: TransferKind = kind;
    if (kind === 'axfr') {
      messages = axfrMessages(version.snapshot, opts);
    } else {
      const clientSerial = clientSoaSerial(m);
      if (clientSerial === null) {
        this.opts.onTransfer?.(who, kind, 'failed');
        await send(this.sign(encodeMessage(header(m, Rcode.FORMERR)), gate.key, gate.mac));
        return;
      }
      const diffs = version.journal.diffsSince(clientSerial);
      const form = ixfrForm(version.snapshot, clientSerial, diffs);
      done = form === 'current' ? 'soa' : form === 'full' ? 'ixfr_full' : 'ixfr';
      messages = ixfrMessages(version.snapshot, clientSerial, diffs, opts);
    }
    const t0 = performance.now();
    let count = 0;
    try {
      for await (const out of paced(messages)) {
        await send(signer ? signer.sign(out, this.now()) : out);
        count++;
      }
    } catch (err) {
      this.opts.onTransfer?.(who, done, 'failed');
      throw err;
    }
    this.opts.onTransfer?.(who, done, 'ok');
    this.log.info({ secondary: who, zone: q.name, kind: done, serial: version.snapshot.serial, messages: count, ms: Math.round(performance.now() - t0) }, 'zone transferred');
  }

  /** One reply: a signed query (counted as kind `query`), or IXFR over UDP (the SOA only), or a refusal. */
  private single(msg: Buffer, remote: Remote, tcp: boolean, decoded?: Message): Buffer | null {
    let m: Message;
    try {
      m = decoded ?? decodeMessage(msg);
    } catch {
      return formErr(msg);
    }
    const q = m.question[0];
    const secondary = this.secondaryAt(remote.address);
    const isXfr = q?.type === RRType.AXFR || q?.type === RRType.IXFR;
    const who = secondary?.name ?? UNKNOWN;
    if (isXfr) {
      const gate = this.admit(msg, m, secondary);
      if ('reply' in gate) {
        this.opts.onTransfer?.(who, 'soa', gate.result);
        this.warn({ remote: remote.address, secondary: who, zone: q.name, kind: 'soa', reason: gate.reason }, 'zone transfer refused');
        return gate.reply;
      }
      const version = this.versions.get(q.name);
      if (q.type === RRType.AXFR || !version) {
        // AXFR needs TCP (RFC 5936 4.2); a zone we do not serve
        this.opts.onTransfer?.(who, q.type === RRType.AXFR ? 'axfr' : 'soa', q.type === RRType.AXFR ? 'refused' : 'notauth');
        return this.sign(encodeMessage(header(m, q.type === RRType.AXFR ? Rcode.REFUSED : Rcode.NOTAUTH)), gate.key, gate.mac);
      }
      // IXFR over UDP: the SOA only; the client then asks over TCP (RFC 1995 2)
      this.opts.onTransfer?.(who, 'soa', 'ok');
      const soa = version.snapshot.soa;
      const answer: RecordInput[] = [{ name: soa.owner, type: RRType.SOA, ttl: soa.ttl, rdata: soa.rdata }];
      return this.sign(encodeMessage({ ...header(m, Rcode.NOERROR), answer }), gate.key, gate.mac);
    }
    // a signed query: verify, answer as the responder does, sign the answer
    if (!m.tsig) return this.opts.responder.respond(msg, tcp);
    const v = verify(msg, this.opts.keys, this.now());
    if (!v.ok) {
      this.opts.onTransfer?.(who, 'query', 'notauth');
      this.warn({ remote: remote.address, secondary: who, zone: q?.name, kind: 'query', reason: `TSIG ${v.error}: ${v.reason}` }, 'signed query refused');
      return tsigErrorResponse(msg, v, this.now()) ?? null;
    }
    const out = this.opts.responder.respond(stripTsig(msg, m), tcp);
    if (!out) {
      this.opts.onTransfer?.(who, 'query', 'failed');
      return null;
    }
    // REFUSED: a name outside the served zones (a secondary asking for a zone not in dns.zones)
    const refused = (out[3] & 0x0f) === Rcode.REFUSED;
    this.opts.onTransfer?.(who, 'query', refused ? 'refused' : 'ok');
    if (refused) this.warn({ remote: remote.address, secondary: who, zone: q?.name, kind: 'query', reason: 'not in a served zone' }, 'signed query refused');
    return signResponse(out, v.key, this.now(), v.mac).message;
  }

  /**
   * Whether a transfer may go to this client: a configured secondary's address, with a valid
   * TSIG of its key when it has one. The refusal carries its reply (null: send nothing).
   */
  private admit(msg: Buffer, m: Message, secondary: Secondary | undefined):
    | { key: TsigKey | null; mac: Buffer | null }
    | { reply: Buffer | null; result: TransferResult; reason: string } {
    let key: TsigKey | null = null;
    let mac: Buffer | null = null;
    if (m.tsig) {
      const v = verify(msg, this.opts.keys, this.now());
      if (!v.ok) return { reply: tsigErrorResponse(msg, v, this.now()) ?? null, result: 'notauth', reason: `TSIG ${v.error}: ${v.reason}` };
      key = v.key;
      mac = v.mac;
    }
    if (!secondary) return { reply: this.sign(encodeMessage(header(m, Rcode.REFUSED)), key, mac), result: 'refused', reason: 'not a configured secondary' };
    if (secondary.key && key?.name !== secondary.key.name) {
      return { reply: this.sign(encodeMessage(header(m, Rcode.REFUSED)), key, mac), result: 'refused', reason: key ? `signed with ${key.name}, not ${secondary.key.name}` : 'not signed (a TSIG key is required)' };
    }
    return { key, mac };
  }

  private sign(out: Buffer, key: TsigKey | null, mac: Buffer | null): Buffer {
    return key && mac ? signResponse(out, key, this.now(), mac).message : out;
  }

  private secondaryAt(address: string): Secondary | undefined {
    const a = address.replace(/^::ffff:/i, '').toLowerCase();
    return this.opts.secondaries.find((s) => s.address.host.toLowerCase() === a);
  }
}

/** A response header echoing the request: ID, opcode, RD, the question; AA; `rcode`. */
function header(m: Message, rcode: number) {
  return {
    id: m.id,
    opcode: m.opcode,
    rcode,
    flags: { qr: true, aa: rcode === Rcode.NOERROR, rd: m.flags.rd },
    question: m.question.slice(0, 1).map((q) => ({ name: q.name, type: q.type, class: q.class })),
  };
}

/** FORMERR for a message that cannot be decoded: its header echoed (ID, opcode, RD), no question. */
function formErr(msg: Buffer): Buffer {
  const h = Buffer.alloc(12);
  if (msg.length >= 2) msg.copy(h, 0, 0, 2);
  if (msg.length >= 3) h[2] = 0x80 | (msg[2] & 0x79);
  h[3] = Rcode.FORMERR;
  return h;
}

/** The serial of the SOA an IXFR request carries in its authority section, or null. */
function clientSoaSerial(m: Message): number | null {
  const soa = m.authority.find((r) => r.type === RRType.SOA);
  if (!soa || soa.rdata.length < 20) return null;
  return Buffer.from(soa.rdata).readUInt32BE(soa.rdata.length - 20);
}

/** The message without its TSIG record (ARCOUNT one less). */
function stripTsig(msg: Buffer, m: Message): Buffer {
  const out = Buffer.from(msg.subarray(0, m.tsig!.offset));
  out.writeUInt16BE(out.readUInt16BE(10) - 1, 10);
  return out;
}


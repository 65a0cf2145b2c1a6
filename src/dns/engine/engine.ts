/**
 * The DNS engine: question → answer, for the zones we serve. Pure (no I/O) and the only place
 * with DNS semantics: RFC 1034 4.3.2 lookup, CNAME chains across our zones, wildcards (RFC 4592),
 * referrals with glue, negative answers with the SOA (RFC 2308), ANY (RFC 8482), and the
 * cutover overlay on A/AAAA data.
 */
import { addressBytes, type IpAddress } from '../../core/addresses.js';
import { ancestorKeys, isAtOrBelow, labelsToKey } from '../name.js';
import { Rcode, RRType } from '../wire/constants.js';
import type { Answer, WireRecord } from '../wire/encoder.js';
import { findSet, negativeTtl, type RRset, type Zone } from '../zone/zone.js';

/** Rewrites served data during cutovers and migrations (see core/overlay.ts). */
export interface AddressOverlay {
  /** The replacement for a 4- or 16-byte address in a record of `zone` (origin key), or undefined. */
  replacement(address: Buffer, zone: string): Buffer | undefined;
  /** Cap on the TTL of rewritten records. */
  readonly ttlCap: number;
  /** A TTL cap for a record carrying this address that is not rewritten (TTLs lowered ahead of a reinstall). */
  ttlCapFor?(address: Buffer): number | undefined;
  /** Added to the served SOA serial of `zone` (origin key; serial arithmetic, RFC 1982) so secondaries see every change. */
  serialBump?(zone: string): number;
}

/** The set of zones served, looked up by the closest enclosing origin. */
export class ZoneSet {
  private readonly byOrigin: Map<string, Zone>;

  constructor(zones: Iterable<Zone>) {
    this.byOrigin = new Map([...zones].map((z) => [z.origin, z]));
  }

  get size(): number {
    return this.byOrigin.size;
  }

  zones(): IterableIterator<Zone> {
    return this.byOrigin.values();
  }

  get(origin: string): Zone | undefined {
    return this.byOrigin.get(origin);
  }

  /** Largest TTL of the A/AAAA records served with any of these addresses (0 when none). */
  largestAddressTtl(addresses: readonly IpAddress[]): number {
    const wanted = new Set(addresses.map((a) => addressBytes(a).toString('latin1')));
    let max = 0;
    for (const z of this.byOrigin.values()) {
      for (const sets of z.nodes.values()) {
        for (const set of sets) {
          if ((set.type === RRType.A || set.type === RRType.AAAA) && set.ttl > max && set.rdata.some((d) => wanted.has(d.toString('latin1')))) max = set.ttl;
        }
      }
    }
    return max;
  }

  /** The zone whose apex is the longest suffix of `name`. */
  find(name: string): Zone | undefined {
    const z = this.byOrigin.get(name);
    if (z) return z;
    for (const anc of ancestorKeys(name)) {
      const a = this.byOrigin.get(anc);
      if (a) return a;
    }
    return undefined;
  }
}

/** Longest CNAME chain followed (as NSD and Knot bound it). */
export const MAX_CNAME_CHAIN = 8;

export interface LookupOptions {
  /** ANY over TCP gets every RRset; over UDP one (RFC 8482 4.1). */
  tcp: boolean;
  overlay?: AddressOverlay;
}

function nameOf(rdata: Buffer, offset: number): string {
  const labels: Uint8Array[] = [];
  let o = offset;
  while (rdata[o] !== 0 && o < rdata.length) {
    labels.push(rdata.subarray(o + 1, o + 1 + rdata[o]));
    o += 1 + rdata[o];
  }
  return labelsToKey(labels);
}

function push(out: WireRecord[], owner: string, set: RRset): void {
  for (const rdata of set.rdata) out.push({ owner, type: set.type, ttl: set.ttl, rdata });
}

function addNegative(ans: Answer, zone: Zone): void {
  ans.authority.push({ owner: zone.origin, type: RRType.SOA, ttl: negativeTtl(zone), rdata: zone.soa.rdata[0] });
}

/** The highest delegation point at or above `name` in `zone` (a DS query at the cut itself is the parent's). */
function findCut(zone: Zone, name: string, qtype: number): string | undefined {
  if (zone.cuts.size === 0 || name === zone.origin) return undefined;
  const chain = [name];
  for (const anc of ancestorKeys(name)) {
    if (anc === zone.origin) break;
    chain.push(anc);
  }
  for (let i = chain.length - 1; i >= 0; i--) {
    const k = chain[i];
    if (zone.cuts.has(k) && !(i === 0 && qtype === RRType.DS)) return k;
  }
  return undefined;
}

function referral(ans: Answer, zone: Zone, cut: string): void {
  const ns = findSet(zone.nodes.get(cut), RRType.NS)!;
  push(ans.authority, cut, ns);
  const seen = new Set<string>();
  for (const rd of ns.rdata) {
    const target = nameOf(rd, 0);
    if (seen.has(target) || !isAtOrBelow(target, zone.origin)) continue;
    seen.add(target);
    const sets = zone.nodes.get(target);
    const a = findSet(sets, RRType.A);
    const aaaa = findSet(sets, RRType.AAAA);
    if (a) push(ans.additional, target, a);
    if (aaaa) push(ans.additional, target, aaaa);
  }
}

function closestEncloser(zone: Zone, name: string): string {
  for (const anc of ancestorKeys(name)) {
    if (zone.nodes.has(anc)) return anc;
    if (anc === zone.origin) break;
  }
  return zone.origin;
}

/** Answers one question. `qname` is a canonical key. */
export function lookup(zones: ZoneSet, qname: string, qtype: number, opts: LookupOptions): Answer {
  const ans: Answer = { rcode: Rcode.NOERROR, aa: true, answer: [], authority: [], additional: [] };
  let zone = zones.find(qname);
  if (!zone) return { ...ans, rcode: Rcode.REFUSED, aa: false };
  if (qtype === RRType.DS && zone.origin === qname && qname !== '.') {
    // DS lives in the parent zone (RFC 4035 3.1.4.1): answer from it when we serve it too
    const parent = zones.find(ancestorKeys(qname)[0]);
    if (parent) zone = parent;
  }
  let name = qname;
  const visited = new Set<string>();
  for (let hop = 0; ; hop++) {
    const cut = findCut(zone, name, qtype);
    if (cut) {
      // a referral; after a CNAME the answer stays authoritative and the referral follows it
      if (hop === 0) ans.aa = false;
      referral(ans, zone, cut);
      break;
    }
    let sets = zone.nodes.get(name);
    if (sets === undefined) {
      const wild = zone.nodes.get('*.' + closestEncloser(zone, name));
      if (wild === undefined) {
        ans.rcode = Rcode.NXDOMAIN;
        addNegative(ans, zone);
        break;
      }
      sets = wild;
    }
    const cname = findSet(sets, RRType.CNAME);
    if (cname && qtype !== RRType.CNAME && qtype !== RRType.ANY) {
      push(ans.answer, name, cname);
      visited.add(name);
      const target = nameOf(cname.rdata[0], 0);
      const next = zones.find(target);
      if (!next || visited.has(target) || hop + 1 >= MAX_CNAME_CHAIN) break;
      zone = next;
      name = target;
      continue;
    }
    if (qtype === RRType.ANY && sets.length > 0) {
      const chosen = opts.tcp ? sets : [sets.reduce((a, b) => (b.type < a.type ? b : a))];
      for (const s of chosen) push(ans.answer, name, s);
      break;
    }
    const set = findSet(sets, qtype);
    if (set) push(ans.answer, name, set);
    else addNegative(ans, zone);
    break;
  }
  if (opts.overlay) applyOverlay(ans, opts.overlay, zones);
  return ans;
}

/** Rewrites A/AAAA data and TTLs and bumps SOA serials in every section; duplicates created by a rewrite are dropped. */
function applyOverlay(ans: Answer, overlay: AddressOverlay, zones: ZoneSet): void {
  for (const section of [ans.answer, ans.authority, ans.additional]) {
    let changed = false;
    for (let i = 0; i < section.length; i++) {
      const rr = section[i];
      if (rr.type === RRType.SOA) {
        const bump = overlay.serialBump?.(rr.owner) ?? 0;
        if (bump === 0) continue;
        const rd = Buffer.from(rr.rdata);
        const at = rd.length - 20;
        rd.writeUInt32BE((rd.readUInt32BE(at) + bump) % 0x100000000, at);
        section[i] = { ...rr, rdata: rd };
        continue;
      }
      if (rr.type !== RRType.A && rr.type !== RRType.AAAA) continue;
      const repl = overlay.replacement(rr.rdata, zones.find(rr.owner)?.origin ?? '');
      if (repl) {
        section[i] = { ...rr, rdata: repl, ttl: Math.min(rr.ttl, overlay.ttlCap) };
        changed = true;
        continue;
      }
      const cap = overlay.ttlCapFor?.(rr.rdata);
      if (cap !== undefined && cap < rr.ttl) {
        section[i] = { ...rr, ttl: cap };
        changed = true;
      }
    }
    if (changed) {
      const seen = new Set<string>();
      const kept = section.filter((rr) => {
        const k = rr.owner + '/' + rr.type + '/' + rr.rdata.toString('hex');
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
      section.length = 0;
      section.push(...kept);
      // an RRset's records share one TTL (RFC 2181 5.2): use the lowest
      const ttl = new Map<string, number>();
      for (const rr of section) ttl.set(rr.owner + '/' + rr.type, Math.min(ttl.get(rr.owner + '/' + rr.type) ?? rr.ttl, rr.ttl));
      for (let i = 0; i < section.length; i++) {
        const t = ttl.get(section[i].owner + '/' + section[i].type)!;
        if (t !== section[i].ttl) section[i] = { ...section[i], ttl: t };
      }
    }
  }
}

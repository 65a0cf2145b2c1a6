/**
 * The in-memory zone: every owner name with its RRsets, empty non-terminals, delegation points.
 * `buildZone` applies the checks an authoritative server makes at load (RFC 1034/1035/2181);
 * a zone that fails them is rejected whole.
 */
import { isAtOrBelow, parentKey } from '../name.js';
import { RRType, typeName } from '../wire/constants.js';
import type { ParsedZone, ZoneRecord } from './types.js';

/** Records of one owner and type. */
export interface RRset {
  type: number;
  ttl: number;
  rdata: Buffer[];
}

/** A zone ready to be served. Immutable once built. */
export interface Zone {
  /** Canonical key of the apex. */
  readonly origin: string;
  /**
   * Owner key → its RRsets; empty non-terminals map to an empty array. A Map when built here; a
   * packed form when it came from the parser process (zone-transfer.ts), whose get() returns
   * fresh arrays each time (same content).
   */
  readonly nodes: ReadonlyMap<string, RRset[]>;
  /** Delegation points: names below the apex that own an NS RRset. */
  readonly cuts: ReadonlySet<string>;
  readonly soa: RRset;
  readonly serial: number;
  readonly recordCount: number;
  /** Non-fatal findings (e.g. TTLs that differ inside an RRset). */
  readonly warnings: string[];
}

/** A zone that fails the load checks; `line` when one record is to blame. */
export class ZoneCheckError extends Error {
  override name = 'ZoneCheckError';
  constructor(readonly reason: string, readonly line?: number) {
    super(line ? `line ${line}: ${reason}` : reason);
  }
}

/** Finds the RRset of a type at a node. */
export function findSet(sets: RRset[] | undefined, type: number): RRset | undefined {
  if (!sets) return undefined;
  for (const s of sets) if (s.type === type) return s;
  return undefined;
}

const CNAME_COMPANIONS = new Set<number>([RRType.RRSIG, RRType.NSEC]);

/** Builds and checks a zone from parsed records. Throws ZoneCheckError. */
export function buildZone(parsed: ParsedZone): Zone {
  const origin = parsed.origin;
  const nodes = new Map<string, RRset[]>();
  const warnings: string[] = [];
  let count = 0;
  let lastOwner = '';
  let sets: RRset[] = [];
  for (const rr of parsed.records) {
    if (rr.owner !== lastOwner) {
      if (!isAtOrBelow(rr.owner, origin)) {
        throw new ZoneCheckError(`out-of-zone record ${rr.owner} ${typeName(rr.type)} (zone is ${origin})`, rr.line);
      }
      let found = nodes.get(rr.owner);
      if (!found) {
        found = [];
        nodes.set(rr.owner, found);
      }
      sets = found;
      lastOwner = rr.owner;
    }
    if (rr.type === RRType.OPT || rr.type === RRType.AXFR || rr.type === RRType.IXFR || rr.type === RRType.ANY) {
      throw new ZoneCheckError(`type ${typeName(rr.type)} cannot appear in a zone`, rr.line);
    }
    let set = findSet(sets, rr.type);
    if (!set) {
      set = { type: rr.type, ttl: rr.ttl, rdata: [] };
      sets.push(set);
    } else if (set.rdata.some((d) => d.equals(rr.rdata))) {
      continue; // duplicate record: kept once, as other servers do
    } else if (set.ttl !== rr.ttl) {
      warnings.push(`line ${rr.line}: TTL ${rr.ttl} differs from ${set.ttl} in the ${rr.owner} ${typeName(rr.type)} RRset; using the lower`);
      set.ttl = Math.min(set.ttl, rr.ttl);
    }
    set.rdata.push(rr.rdata);
    count++;
  }
  checkApex(origin, nodes);
  const cuts = new Set<string>();
  for (const [owner, sets] of nodes) {
    // the line of the first record of a type at this owner (only looked up for an error)
    const line = (t: number) => parsed.records.find((r) => r.owner === owner && r.type === t)?.line;
    if (owner !== origin && findSet(sets, RRType.SOA)) {
      throw new ZoneCheckError(`SOA record at ${owner}, below the apex`, line(RRType.SOA));
    }
    const cname = findSet(sets, RRType.CNAME);
    if (cname) {
      if (owner === origin) throw new ZoneCheckError(`CNAME at the zone apex ${origin}`, line(RRType.CNAME));
      if (cname.rdata.length > 1) throw new ZoneCheckError(`more than one CNAME at ${owner}`, line(RRType.CNAME));
      const other = sets.find((s) => s.type !== RRType.CNAME && !CNAME_COMPANIONS.has(s.type));
      if (other) {
        throw new ZoneCheckError(`CNAME and other data (${typeName(other.type)}) at ${owner}`, line(RRType.CNAME));
      }
    }
    if (owner !== origin && findSet(sets, RRType.NS)) cuts.add(owner);
  }
  // empty non-terminals: every ancestor of an owner, down from the apex, exists as a node
  for (const owner of [...nodes.keys()]) {
    if (owner === origin) continue;
    for (let anc = parentKey(owner); anc !== origin && !nodes.has(anc); anc = parentKey(anc)) {
      nodes.set(anc, []);
    }
  }
  const soa = findSet(nodes.get(origin), RRType.SOA)!;
  return {
    origin, nodes, cuts, soa,
    serial: soa.rdata[0].readUInt32BE(soa.rdata[0].length - 20),
    recordCount: count,
    warnings,
  };
}

function checkApex(origin: string, nodes: Map<string, RRset[]>): void {
  const apex = nodes.get(origin);
  const soa = findSet(apex, RRType.SOA);
  if (!soa) throw new ZoneCheckError(`no SOA record at the zone apex ${origin}`);
  if (soa.rdata.length !== 1) throw new ZoneCheckError(`${soa.rdata.length} SOA records at the apex; exactly one is allowed`);
  if (!findSet(apex, RRType.NS)) throw new ZoneCheckError(`no NS records at the zone apex ${origin}`);
}

/** Negative-answer TTL (RFC 2308 5): min(SOA TTL, SOA MINIMUM). */
export function negativeTtl(zone: Zone): number {
  const rd = zone.soa.rdata[0];
  return Math.min(zone.soa.ttl, rd.readUInt32BE(rd.length - 4));
}

export type { ZoneRecord };

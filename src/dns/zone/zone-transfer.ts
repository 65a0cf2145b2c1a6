/**
 * Moving a built {@link Zone} from the parser process to the serving thread without stopping it.
 *
 * Rebuilding the zone's objects (a Map of arrays of objects holding Buffers) on the serving
 * thread would cost seconds of garbage collection for a 1,000,000-record zone, even in slices.
 * Instead the parser packs the zone into typed arrays, with an open-addressing hash table of the
 * owner keys; their bytes cross the pipe (zone-parse-child.ts) and the serving thread wraps them
 * as they are ({@link packedZone}, O(1)) and serves from them. A lookup hashes the key, probes the
 * table, compares bytes, and decodes that node's RRsets (RDATA Buffers are views on the one
 * buffer). The packed form is also several times smaller than the object form. The parser also
 * sorts the owner names in canonical order (RFC 4034 6.1), which transfer snapshots walk the zone
 * in (../engine/snapshot.ts): that sort is not done again on the serving thread.
 */
import { canonicalSortKey } from '../engine/snapshot.js';
import { keyHash } from '../hash.js';
import { RRType } from '../wire/constants.js';
import type { RRset, Zone } from './zone.js';

/** A zone packed for the hand-over: metadata and typed arrays (zone-parse-child.ts frames them). */
export interface PackedZone {
  origin: string;
  serial: number;
  recordCount: number;
  warnings: string[];
  nodeCount: number;
  cutCount: number;
  /** Owner keys (printable ASCII), one after the other. */
  names: Uint8Array;
  /** Per node: the end of its key in `names` (it starts where the previous one ends). */
  nameEnds: Uint32Array;
  /** Per node: keyHash() of its key. */
  hashes: Uint32Array;
  /** Open addressing, linear probing, a power of two over twice the node count: node + 1, 0 when empty. */
  table: Uint32Array;
  /** Per node: where its entry starts in `index`. */
  nodeStarts: Uint32Array;
  /** Per node: RRset count; per RRset: type, TTL, RDATA count, start of its first RDATA in `rdata`, end of each RDATA. */
  index: Uint32Array;
  /** Per node: 1 when it is a delegation point (owns NS, below the apex). */
  cuts: Uint8Array;
  /** Every RDATA, one after the other. */
  rdata: Uint8Array;
  /** The node numbers in canonical order of their keys (RFC 4034 6.1). */
  canonical: Uint32Array;
}

/** Packs a zone (in the worker). Throws when it is too large for 32-bit offsets or a key is not printable ASCII. */
export function packZone(zone: Zone): PackedZone {
  const n = zone.nodes.size;
  let nameBytes = 0;
  let indexLen = 0;
  let rdataBytes = 0;
  for (const [owner, sets] of zone.nodes) {
    nameBytes += owner.length;
    indexLen += 1;
    for (const s of sets) {
      indexLen += 4 + s.rdata.length;
      for (const d of s.rdata) rdataBytes += d.length;
    }
  }
  if (rdataBytes > 0xffffffff || nameBytes > 0xffffffff || indexLen > 0xffffffff || n > 0x7fffffff) {
    throw new Error(`zone ${zone.origin} is too large to hand over (${n} names, ${rdataBytes} bytes of RDATA)`);
  }
  let tableSize = 2;
  while (tableSize < 2 * n) tableSize *= 2;
  const names = new Uint8Array(nameBytes);
  const nameEnds = new Uint32Array(n);
  const hashes = new Uint32Array(n);
  const table = new Uint32Array(tableSize);
  const nodeStarts = new Uint32Array(n);
  const index = new Uint32Array(indexLen);
  const cuts = new Uint8Array(n);
  const rdata = new Uint8Array(rdataBytes);
  const mask = tableSize - 1;
  let node = 0;
  let no = 0;
  let io = 0;
  let ro = 0;
  for (const [owner, sets] of zone.nodes) {
    for (let i = 0; i < owner.length; i++) {
      const c = owner.charCodeAt(i);
      if (c < 0x21 || c > 0x7e) throw new Error(`owner key ${JSON.stringify(owner)} is not printable ASCII`);
      names[no++] = c;
    }
    nameEnds[node] = no;
    const h = keyHash(owner);
    hashes[node] = h;
    let slot = h & mask;
    while (table[slot] !== 0) slot = (slot + 1) & mask;
    table[slot] = node + 1;
    if (zone.cuts.has(owner)) cuts[node] = 1;
    nodeStarts[node] = io;
    index[io++] = sets.length;
    for (const s of sets) {
      index[io++] = s.type;
      index[io++] = s.ttl;
      index[io++] = s.rdata.length;
      index[io++] = ro;
      for (const d of s.rdata) {
        rdata.set(d, ro);
        ro += d.length;
        index[io++] = ro;
      }
    }
    node++;
  }
  return {
    origin: zone.origin, serial: zone.serial, recordCount: zone.recordCount, warnings: zone.warnings,
    nodeCount: n, cutCount: zone.cuts.size, names, nameEnds, hashes, table, nodeStarts, index, cuts, rdata,
    canonical: canonicalOrder([...zone.nodes.keys()]),
  };
}

/** The positions of `keys` in canonical order of the names. */
function canonicalOrder(keys: string[]): Uint32Array {
  const sortKeys = keys.map(canonicalSortKey);
  const order = Uint32Array.from(keys, (_, i) => i);
  return order.sort((a, b) => (sortKeys[a] < sortKeys[b] ? -1 : sortKeys[a] > sortKeys[b] ? 1 : 0));
}

/** The nodes of a packed zone as a read-only Map: owner key → RRsets, decoded at each lookup. */
export class PackedNodes implements ReadonlyMap<string, RRset[]> {
  private readonly rdata: Buffer;
  private readonly mask: number;

  private readonly names: Buffer;

  constructor(private readonly p: PackedZone) {
    this.rdata = Buffer.from(p.rdata.buffer, p.rdata.byteOffset, p.rdata.byteLength);
    this.names = Buffer.from(p.names.buffer, p.names.byteOffset, p.names.byteLength);
    this.mask = p.table.length - 1;
  }

  get size(): number {
    return this.p.nodeCount;
  }

  /** Bytes of RDATA of all the nodes. */
  get rdataBytes(): number {
    return this.p.rdata.byteLength;
  }

  /** The node number of a key, -1 when absent. */
  find(key: string): number {
    const { table, hashes, nameEnds, names } = this.p;
    const len = key.length;
    const h = keyHash(key);
    for (let slot = h & this.mask; ; slot = (slot + 1) & this.mask) {
      const e = table[slot];
      if (e === 0) return -1;
      const node = e - 1;
      if (hashes[node] !== h) continue;
      const start = node === 0 ? 0 : nameEnds[node - 1];
      if (nameEnds[node] - start !== len) continue;
      let j = 0;
      while (j < len && names[start + j] === key.charCodeAt(j)) j++;
      if (j === len) return node;
    }
  }

  has(key: string): boolean {
    return this.find(key) >= 0;
  }

  get(key: string): RRset[] | undefined {
    const node = this.find(key);
    return node < 0 ? undefined : this.setsAt(node);
  }

  /** The key of node `node`. */
  keyAt(node: number): string {
    const start = node === 0 ? 0 : this.p.nameEnds[node - 1];
    return this.names.toString('latin1', start, this.p.nameEnds[node]);
  }

  /**
   * The packed layout, for walks that read records without decoding RRsets: the keys (`names`,
   * `nameEnds`), node numbers in canonical order, per node its entry in `index` (RRset count; per RRset type, TTL, RDATA
   * count, start of its first RDATA, end of each), and the RDATA buffer.
   */
  get raw(): {
    readonly names: Uint8Array; readonly nameEnds: Uint32Array; readonly canonical: Uint32Array;
    readonly nodeStarts: Uint32Array; readonly index: Uint32Array; readonly rdata: Buffer;
  } {
    const p = this.p;
    return { names: p.names, nameEnds: p.nameEnds, canonical: p.canonical, nodeStarts: p.nodeStarts, index: p.index, rdata: this.rdata };
  }

  /** The RRsets of node `node` (fresh arrays; the RDATA are views on the packed buffer). */
  setsAt(node: number): RRset[] {
    const index = this.p.index;
    let io = this.p.nodeStarts[node];
    const count = index[io++];
    const sets: RRset[] = new Array(count);
    for (let s = 0; s < count; s++) {
      const type = index[io++];
      const ttl = index[io++];
      const n = index[io++];
      let start = index[io++];
      const list: Buffer[] = new Array(n);
      for (let k = 0; k < n; k++) {
        const end = index[io++];
        list[k] = this.rdata.subarray(start, end);
        start = end;
      }
      sets[s] = { type, ttl, rdata: list };
    }
    return sets;
  }

  /** Whether node `node` is a delegation point. */
  isCut(node: number): boolean {
    return this.p.cuts[node] === 1;
  }

  *entries(): MapIterator<[string, RRset[]]> {
    for (let i = 0; i < this.p.nodeCount; i++) yield [this.keyAt(i), this.setsAt(i)];
  }

  *keys(): MapIterator<string> {
    for (let i = 0; i < this.p.nodeCount; i++) yield this.keyAt(i);
  }

  *values(): MapIterator<RRset[]> {
    for (let i = 0; i < this.p.nodeCount; i++) yield this.setsAt(i);
  }

  [Symbol.iterator](): MapIterator<[string, RRset[]]> {
    return this.entries();
  }

  forEach(fn: (value: RRset[], key: string, map: ReadonlyMap<string, RRset[]>) => void, thisArg?: unknown): void {
    for (let i = 0; i < this.p.nodeCount; i++) fn.call(thisArg, this.setsAt(i), this.keyAt(i), this);
  }
}

/** The delegation points of a packed zone as a read-only Set of keys. */
export class PackedCuts implements ReadonlySet<string> {
  constructor(private readonly nodes: PackedNodes, readonly size: number) {}

  has(key: string): boolean {
    if (this.size === 0) return false;
    const node = this.nodes.find(key);
    return node >= 0 && this.nodes.isCut(node);
  }

  *values(): SetIterator<string> {
    if (this.size === 0) return;
    for (let i = 0; i < this.nodes.size; i++) if (this.nodes.isCut(i)) yield this.nodes.keyAt(i);
  }

  keys(): SetIterator<string> {
    return this.values();
  }

  *entries(): SetIterator<[string, string]> {
    for (const k of this.values()) yield [k, k];
  }

  [Symbol.iterator](): SetIterator<string> {
    return this.values();
  }

  forEach(fn: (value: string, key: string, set: ReadonlySet<string>) => void, thisArg?: unknown): void {
    for (const k of this.values()) fn.call(thisArg, k, k, this);
  }
}

/** The zone served straight from its packed form (on the serving thread): O(1), nothing is rebuilt. */
export function packedZone(p: PackedZone): Zone {
  const nodes = new PackedNodes(p);
  const soa = nodes.get(p.origin)?.find((s) => s.type === RRType.SOA);
  if (!soa) throw new Error(`zone ${p.origin} arrived without its SOA`);
  return {
    origin: p.origin, nodes, cuts: new PackedCuts(nodes, p.cutCount), soa,
    serial: p.serial, recordCount: p.recordCount, warnings: p.warnings,
  };
}

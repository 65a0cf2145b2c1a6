/**
 * The owner names of a snapshot, packed: their keys (ASCII, see ../name.ts) as bytes, with no
 * string per owner. A 1,000,000-record zone has about 600,000 owners; as strings they were most
 * of the serving thread's heap objects, which every major garbage collection traces and every
 * new version copied out of the young generation. Immutable once built.
 */

/** Owner keys by position. */
export class OwnerList {
  /**
   * Owner `k`'s key is `bytes[starts[k], ends[k])`. `bytes` may be shared (a zone from the parser
   * process lends its names, in the canonical order the snapshot walks).
   */
  constructor(
    private readonly bytes: Buffer,
    private readonly starts: Uint32Array,
    private readonly ends: Uint32Array,
    readonly length: number,
  ) {}

  /** Owner `k`'s key (a new string: for what is not on a hot path). */
  at(k: number): string {
    return this.bytes.toString('latin1', this.starts[k], this.ends[k]);
  }

  /** Every key, in order (new strings). */
  *[Symbol.iterator](): IterableIterator<string> {
    for (let k = 0; k < this.length; k++) yield this.at(k);
  }

  /** Owner `k`'s key as bytes (a view, valid while the list lives). */
  bytesAt(k: number): Buffer {
    return this.bytes.subarray(this.starts[k], this.ends[k]);
  }

  /** Whether owner `k`'s key is `key`, compared in place. */
  is(k: number, key: string): boolean {
    const start = this.starts[k];
    if (this.ends[k] - start !== key.length) return false;
    for (let i = 0; i < key.length; i++) if (this.bytes[start + i] !== key.charCodeAt(i)) return false;
    return true;
  }

  /** Whether owner `k` here and owner `j` of `other` have the same key, compared in place. */
  same(k: number, other: OwnerList, j: number): boolean {
    const a = this.starts[k];
    const n = this.ends[k] - a;
    const b = other.starts[j];
    if (other.ends[j] - b !== n) return false;
    if (this.bytes === other.bytes && a === b) return true;
    return this.bytes.compare(other.bytes, b, b + n, a, a + n) === 0;
  }
}

/** Builds an {@link OwnerList} owner by owner. */
export class OwnerListBuilder {
  private bytes: Buffer;
  private length = 0;
  private starts: Uint32Array;
  private ends: Uint32Array;
  private count = 0;
  /** When every owner so far is a range of `lent`: the list then shares it (no copy). */
  private lent: Buffer | null | undefined = undefined;

  constructor(expected = 64) {
    this.starts = new Uint32Array(Math.max(16, expected));
    this.ends = new Uint32Array(this.starts.length);
    this.bytes = Buffer.allocUnsafe(0);
  }

  get size(): number {
    return this.count;
  }

  /** Appends a key (ASCII). */
  push(key: string): void {
    this.own();
    this.reserve(key.length);
    const start = this.length;
    this.length += this.bytes.write(key, start, 'latin1');
    this.add(start, this.length);
  }

  /** Appends the key `source[start, end)`; a list whose every key is a range of one buffer shares that buffer. */
  pushRange(source: Buffer, start: number, end: number): void {
    if (this.lent === undefined) this.lent = source;
    if (this.lent === source) {
      this.add(start, end);
      return;
    }
    this.own();
    this.reserve(end - start);
    source.copy(this.bytes, this.length, start, end);
    const at = this.length;
    this.length += end - start;
    this.add(at, this.length);
  }

  /** The list; the builder is not used after. */
  build(): OwnerList {
    const bytes = this.lent ?? this.bytes.subarray(0, this.length);
    return new OwnerList(bytes, this.starts.subarray(0, this.count), this.ends.subarray(0, this.count), this.count);
  }

  private add(start: number, end: number): void {
    if (this.count === this.starts.length) {
      const starts = new Uint32Array(this.starts.length * 2);
      starts.set(this.starts);
      const ends = new Uint32Array(starts.length);
      ends.set(this.ends);
      this.starts = starts;
      this.ends = ends;
    }
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.count++;
  }

  /** Keys from now on go into the builder's own bytes (those lent so far are copied first). */
  private own(): void {
    if (this.lent === null) return;
    const lent = this.lent;
    this.lent = null;
    if (!lent) return;
    let total = 0;
    for (let k = 0; k < this.count; k++) total += this.ends[k] - this.starts[k];
    this.bytes = Buffer.allocUnsafe(Math.max(256, total * 2));
    for (let k = 0; k < this.count; k++) {
      const n = this.ends[k] - this.starts[k];
      lent.copy(this.bytes, this.length, this.starts[k], this.ends[k]);
      this.starts[k] = this.length;
      this.length += n;
      this.ends[k] = this.length;
    }
  }

  private reserve(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const bytes = Buffer.allocUnsafe(Math.max(256, (this.length + n) * 2));
    this.bytes.copy(bytes, 0, 0, this.length);
    this.bytes = bytes;
  }
}

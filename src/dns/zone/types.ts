/** What the master-file parser produces and the zone tree consumes. */

/** One resource record of class IN, as read from a master file. */
export interface ZoneRecord {
  /** Canonical key of the owner (see dns/name.ts): lower-cased, absolute. */
  owner: string;
  /** RR type number. */
  type: number;
  /** TTL in seconds. */
  ttl: number;
  /** RDATA in uncompressed wire form; names inside keep the case written in the file. */
  rdata: Buffer;
  /** 1-based line of the file where the record starts. */
  line: number;
}

/** A parsed master file. */
export interface ParsedZone {
  /** Canonical key of the zone origin. */
  origin: string;
  records: ZoneRecord[];
}

/** A master file that cannot be parsed: file, line and reason. */
export class ZoneParseError extends Error {
  override name = 'ZoneParseError';
  constructor(readonly file: string, readonly line: number, readonly reason: string) {
    super(`${file}:${line}: ${reason}`);
  }
}

/**
 * The catalog zone (RFC 9432, schema version 2): one zone listing every served zone, which Knot
 * and BIND secondaries consume to add and drop member zones by themselves. Members are PTR
 * records under `zones.<catalog>`, each at a label derived from the member's name (stable across
 * restarts and reloads). Built as an ordinary zone, served and transferred like the others.
 */
import { createHash } from 'node:crypto';
import { parseMasterFile } from '../zone/master-file.js';
import { buildZone, type Zone } from '../zone/zone.js';

/** The member label of a zone: the first 16 hex digits of SHA-256 of its canonical name. */
export function memberLabel(zone: string): string {
  return createHash('sha256').update(zone.toLowerCase()).digest('hex').slice(0, 16);
}

/** The catalog `name` (canonical key, "catalog.invalid.") listing `members` (canonical keys) at `serial`. */
export function catalogZone(name: string, members: readonly string[], serial: number): Zone {
  const lines = [
    `$ORIGIN ${name}`,
    `@ 0 IN SOA invalid. invalid. ${serial >>> 0} 3600 600 2147483646 0`,
    '@ 0 IN NS invalid.',
    'version 0 IN TXT "2"',
    ...[...new Set(members)].filter((m) => m !== name).sort().map((m) => `${memberLabel(m)}.zones 0 IN PTR ${m}`),
  ];
  return buildZone(parseMasterFile(lines.join('\n') + '\n', { origin: name, file: `${name}catalog` }));
}

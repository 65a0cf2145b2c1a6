/**
 * Zones and an overlay for the snapshot, journal and transfer tests: wildcards, a delegation with
 * glue and occluded data, a child zone we also serve, CNAMEs, a server cut over (global), an
 * account moved (its zones only), lowered TTLs, rewrites that collide with existing records.
 */
import { compileOverlay, type CompiledOverlay, type OverlayInput } from '../../../src/core/overlay.js';
import { ZoneSet } from '../../../src/dns/engine/engine.js';
import { parseMasterFile } from '../../../src/dns/zone/master-file.js';
import { buildZone, type Zone } from '../../../src/dns/zone/zone.js';
import { packedZone, packZone } from '../../../src/dns/zone/zone-transfer.js';

export const EXAMPLE = `$ORIGIN example.test.
$TTL 3600
@ SOA ns1 hostmaster 41 7200 900 1209600 300
@ NS ns1
@ NS ns.elsewhere.test.
@ A 192.0.2.1
@ AAAA 2001:db8::1
@ MX 10 mail
@ TXT "v=spf1 -all"
ns1 A 192.0.2.53
mail A 192.0.2.25
www CNAME web
web 600 A 192.0.2.80
web 600 A 192.0.2.81
web AAAA 2001:db8::80
*.wild A 192.0.2.1
*.wild MX 10 mail
x.wild TXT "blocks the wildcard"
*.cnw CNAME web
sub NS ns.sub
sub NS ns.elsewhere.test.
sub DS 12345 8 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ns.sub A 192.0.2.1
ns.sub AAAA 2001:db8::54
deep.sub TXT "occluded below the cut"
deep.sub A 192.0.2.1
child NS ns.child
ns.child A 192.0.2.60
dup A 192.0.2.1
dup A 198.51.100.1
dupr A 198.51.100.1
dupr A 192.0.2.1
acct A 203.0.113.10
a.b.c AAAA 2001:db8::1
srv._tcp SRV 0 5 443 web
Mixed TXT "Case"
`;

export const SECOND = `$ORIGIN second.test.
$TTL 600
@ SOA ns1.example.test. hostmaster.example.test. 7 3600 600 86400 60
@ NS ns1.example.test.
host A 203.0.113.10
host A 192.0.2.80
host2 A 192.0.2.80
`;

export const CHILD = `$ORIGIN child.example.test.
$TTL 60
@ SOA ns1.example.test. hostmaster.example.test. 3 3600 600 86400 30
@ NS ns
ns A 192.0.2.60
www A 192.0.2.1
`;

/** A server cut over, an account moved (second.test. and child.example.test.), a lowered TTL. */
export const OVERLAY_INPUT: OverlayInput = {
  servers: [
    {
      server: 's1', transit: 't1', operationId: 'op1', since: 0,
      pairs: [
        { address: '192.0.2.1', transitAddress: '198.51.100.1', family: 4 },
        { address: '2001:db8::1', transitAddress: '2001:db8:ffff::1', family: 6 },
      ],
    },
  ],
  accounts: [
    {
      account: 'acct', server: 's2', transit: 't1', since: 0, zones: ['second.test.', 'child.example.test.'],
      pairs: [
        { address: '203.0.113.10', transitAddress: '198.51.100.10', family: 4 },
        { address: '192.0.2.60', transitAddress: '198.51.100.60', family: 4 },
      ],
    },
  ],
  lowered: [{ server: 's3', addresses: [{ address: '192.0.2.80', family: 4 }], ttl: 120 }],
  ttlCap: 60,
  serialBump: 5,
};

export const overlay = (input: Partial<OverlayInput> = {}): CompiledOverlay => compileOverlay({ ...OVERLAY_INPUT, ...input })!;

export function zoneOf(text: string, origin: string, packed = false): Zone {
  const z = buildZone(parseMasterFile(text, { origin, file: `${origin}zone` }));
  return packed ? packedZone(packZone(z)) : z;
}

/** The three zones, built or packed (as the server holds them). */
export function fixtureZones(packed = false): { zones: ZoneSet; example: Zone; second: Zone; child: Zone } {
  const example = zoneOf(EXAMPLE, 'example.test.', packed);
  const second = zoneOf(SECOND, 'second.test.', packed);
  const child = zoneOf(CHILD, 'child.example.test.', packed);
  return { zones: new ZoneSet([example, second, child]), example, second, child };
}

/** A zone of about `n` records: names under `origin`, A/AAAA/TXT/MX/CNAME mixed, deterministic. */
export function bigZoneText(origin: string, n: number, serial = 1): string {
  const lines = [`$ORIGIN ${origin}`, '$TTL 3600', `@ SOA ns1 hostmaster ${serial} 7200 900 1209600 300`, '@ NS ns1', '@ NS ns2', 'ns1 A 192.0.2.53', 'ns2 A 192.0.2.54'];
  for (let i = 0; lines.length < n + 2; i++) {
    const h = `host${i}`;
    switch (i % 5) {
      case 0:
        lines.push(`${h} A 192.0.2.${i % 250}`, `${h} A 198.51.100.${i % 250}`);
        break;
      case 1:
        lines.push(`${h} AAAA 2001:db8::${(i % 65535).toString(16)}`);
        break;
      case 2:
        lines.push(`${h} TXT "record ${i} of a large zone"`);
        break;
      case 3:
        lines.push(`${h} MX 10 mail${i % 7}`);
        break;
      default:
        lines.push(`${h}.deep.label CNAME host${i - 1}`);
    }
  }
  return lines.join('\n') + '\n';
}

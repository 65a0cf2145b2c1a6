/**
 * Our transfer messages read by a real client: a tiny loopback TCP server serves them to
 * `dig AXFR` / `dig IXFR=N` (bind9-dnsutils). The AXFR that dig prints and the snapshot (written
 * in RFC 3597 generic form, so our own text code is not involved) are both canonicalized by
 * `named-compilezone` and must be equal; the IXFR records dig prints are the RFC 1995 sequence.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotRecords, snapshotZone, type SnapshotRecord, type ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import { parseMasterFile } from '../../../src/dns/zone/master-file.js';
import { Journal } from '../../../src/dns/xfr/journal.js';
import { bigZoneText, EXAMPLE, fixtureZones, overlay, zoneOf } from './fixture.js';
import { startPrimary, type Primary, type PrimaryState } from './tiny-primary.js';

const DIG = '/usr/bin/dig';
const COMPILE = '/usr/bin/named-compilezone';

function run(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) =>
    execFile(bin, args, { maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? rej(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}\n${stdout.slice(0, 2000)}`)) : res({ stdout, stderr }),
    ),
  );
}

/** RFC 3597 generic text of a record: independent of our presentation code. */
const generic = (r: SnapshotRecord) => `${r.owner} ${r.ttl} IN TYPE${r.type} \\# ${r.rdata.length} ${r.rdata.toString('hex')}`.trimEnd();

describe('transfers read by dig', () => {
  let dir = '';
  let primary: Primary | undefined;
  let port = 0;
  let served: PrimaryState;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-xfr-dig-'));
    primary = await startPrimary({ reserve: 100 });
    port = primary.port;
    served = primary.state;
  });
  afterAll(async () => {
    await primary?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** named-compilezone's canonical text of a zone file, lines sorted. */
  async function canonical(origin: string, file: string): Promise<string[]> {
    const out = `${file}.canonical`;
    await run(COMPILE, ['-q', '-i', 'none', '-k', 'ignore', '-m', 'ignore', '-n', 'ignore', '-r', 'ignore', '-M', 'ignore', '-S', 'ignore', '-W', 'ignore', '-s', 'full', '-o', out, origin, file]);
    const { stdout } = await run('/bin/cat', [out]);
    return stdout.split('\n').filter(Boolean).sort();
  }

  async function digAxfr(origin: string): Promise<string> {
    const { stdout } = await run(DIG, [`@127.0.0.1`, '-p', String(port), origin, 'AXFR', '+nocmd', '+nocomments', '+nostats', '+onesoa', '+tries=1', '+time=20']);
    expect(stdout).not.toMatch(/Transfer failed|communications error|connection refused/i);
    return stdout;
  }

  test.each([
    ['the fixture zone with the overlay, 16 KiB messages', 'fixture', 16384],
    ['the fixture zone in 512-byte messages', 'fixture', 512],
    ['100,000 records, 16 KiB messages', 'big', 16384],
  ])('AXFR: %s — dig prints exactly the snapshot', async (_label, which, size) => {
    const origin = which === 'fixture' ? 'example.test.' : 'big.test.';
    let snap: ZoneSnapshot;
    if (which === 'fixture') {
      const { zones, example } = fixtureZones(true);
      snap = snapshotZone(example, overlay(), { zones });
    } else {
      snap = snapshotZone(zoneOf(bigZoneText(origin, 100_000), origin, true), overlay());
    }
    served.snaps.set(origin, snap);
    served.maxMessageSize = size;
    const text = await digAxfr(origin);
    const lines = text.split('\n').filter((l) => l && !l.startsWith(';'));
    expect(lines.length).toBe(snap.count);
    const digFile = join(dir, 'dig.zone');
    writeFileSync(digFile, text);
    const ourFile = join(dir, 'ours.zone');
    writeFileSync(ourFile, [...snapshotRecords(snap)].map(generic).join('\n') + '\n');
    const [fromDig, fromUs] = await Promise.all([canonical(origin, digFile), canonical(origin, ourFile)]);
    expect(fromDig.length).toBe(snap.count);
    expect(fromDig).toEqual(fromUs);
  });

  test('IXFR: dig prints the RFC 1995 sequence; an up-to-date client gets the SOA; an unknown serial the zone', async () => {
    const origin = 'example.test.';
    const V = [41, 42, 43].map((serial, i) =>
      snapshotZone(
        zoneOf(
          EXAMPLE.replace('hostmaster 41 ', `hostmaster ${serial} `)
            .replace('mail A 192.0.2.25', `mail A 192.0.2.${25 + i}`)
            .replace('ns1 A 192.0.2.53', i === 2 ? 'ns1 300 A 192.0.2.53\nextra TXT "v3"' : 'ns1 A 192.0.2.53'),
          origin,
          true,
        ),
        null,
      ),
    );
    const j = new Journal(origin);
    j.record(V[0], V[1]);
    j.record(V[1], V[2]);
    served.snaps.set(origin, V[2]);
    served.journals.set(origin, j);
    served.maxMessageSize = 512;
    const digIxfr = async (serial: number) => {
      const { stdout } = await run(DIG, [`@127.0.0.1`, '-p', String(port), origin, `IXFR=${serial}`, '+tcp', '+nocmd', '+nocomments', '+nostats', '+tries=1', '+time=20']);
      expect(stdout).not.toMatch(/Transfer failed|communications error/i);
      // dig prints master-file lines: read them back into (owner, TTL, type, RDATA) in order
      return parseMasterFile(stdout, { origin, file: 'dig-output' }).records.map((r) => `${r.owner} ${r.ttl} ${r.type} ${r.rdata.toString('hex')}`);
    };
    const rec = (r: SnapshotRecord) => `${r.owner} ${r.ttl} ${r.type} ${r.rdata.toString('hex')}`;
    const [d1, d2] = j.diffsSince(41)!;
    expect(await digIxfr(41)).toEqual([
      rec(V[2].soa),
      rec(d1.fromSoa), ...d1.deleted.map(rec), rec(d1.toSoa), ...d1.added.map(rec),
      rec(d2.fromSoa), ...d2.deleted.map(rec), rec(d2.toSoa), ...d2.added.map(rec),
      rec(V[2].soa),
    ]);
    expect(await digIxfr(43)).toEqual([rec(V[2].soa)]);
    const full = await digIxfr(7);
    expect(full).toHaveLength(V[2].count + 1);
    expect(full[0]).toBe(rec(V[2].soa));
    expect(full[full.length - 1]).toBe(rec(V[2].soa));
  });
});

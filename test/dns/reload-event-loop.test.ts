/**
 * The reload path never holds the serving thread long: a reload of a 200,000-record zone with a
 * transfer service (as with dns.secondaries: a full transfer snapshot with the address index, a
 * journal version from a diff of 20,000 changed records, the journal stored) runs in this
 * process while a timer on this thread ticks every millisecond.
 * - Structural: the walk over the zone's nodes is spread over many turns of the event loop: no
 *   interval between two ticks walks more than a tenth of them (a 4 ms slice walks a few
 *   thousand).
 * - Timing, generous: the thread's own CPU time (Linux schedstat: waiting for a CPU is not
 *   counted) between two ticks stays under a fifth of what a synchronous snapshot of the zone
 *   costs on this machine, and under 250 ms (a slice is about 4 ms, a garbage collection pause
 *   a few tens).
 * The parser process runs from dist/ (npm run build).
 */
import { afterAll, expect, test } from '@jest/globals';
import { existsSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ZoneSet } from '../../src/dns/engine/engine.js';
import { snapshotZone } from '../../src/dns/engine/snapshot.js';
import { Responder } from '../../src/dns/server/responder.js';
import { createJournalFiles } from '../../src/dns/xfr/journal-files.js';
import { TransferService } from '../../src/dns/xfr/xfr-service.js';
import { ZoneDirectory } from '../../src/dns/zone/zone-loader.js';
import type { RRset, Zone } from '../../src/dns/zone/zone.js';

const GROUPS = 50_000; // 4 records each: 200,000 records, 100,000 owners
const tmp = mkdtempSync(join(tmpdir(), 'fc-reload-loop-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The zone: per group h<i> A, AAAA, TXT and w<i> CNAME; `changed` groups have another A. */
function zoneText(serial: number, changed: number): string {
  const parts = [`$ORIGIN big.test.\n$TTL 300\n@ SOA ns host ${serial} 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n`];
  for (let i = 0; i < GROUPS; i++) {
    const last = i < changed ? 200 + (i % 50) : i & 255;
    parts.push(`h${i} A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${last}\nh${i} AAAA 2001:db8::${(i & 0xffff).toString(16)}\nh${i} TXT "host ${i}"\nw${i} CNAME h${i}\n`);
  }
  return parts.join('');
}

/** This thread's CPU time in ms, or null where /proc/thread-self/schedstat does not exist. */
const threadCpu = ((): (() => number) | null => {
  if (!existsSync('/proc/thread-self/schedstat')) return null;
  const fd = openSync('/proc/thread-self/schedstat', 'r');
  const buf = Buffer.alloc(128);
  afterAll(() => closeSync(fd));
  return () => Number(buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0)).split(' ')[0]) / 1e6;
})();

/** The zone with its node walks counted per tick (the same wrapper for the same zone object). */
const wrapped = new WeakMap<Zone, Zone>();
function counting(z: Zone, onNode: () => void): Zone {
  let w = wrapped.get(z);
  if (!w) {
    const nodes = z.nodes;
    const walk = <T>(it: Iterator<T>): IterableIterator<T> => {
      const out: IterableIterator<T> = {
        next: () => {
          onNode();
          return it.next();
        },
        [Symbol.iterator]: () => out,
      };
      return out;
    };
    const counted: ReadonlyMap<string, RRset[]> = {
      get size() {
        return nodes.size;
      },
      get: (k) => nodes.get(k),
      has: (k) => nodes.has(k),
      forEach: (f) => nodes.forEach(f),
      keys: () => walk(nodes.keys()) as MapIterator<string>,
      values: () => walk(nodes.values()) as MapIterator<RRset[]>,
      entries: () => walk(nodes.entries()) as MapIterator<[string, RRset[]]>,
      [Symbol.iterator]: () => walk(nodes.entries()) as MapIterator<[string, RRset[]]>,
    };
    w = { ...z, nodes: counted };
    wrapped.set(z, w);
  }
  return w;
}

test('a reload with transfer versions is done in short slices of the serving thread', async () => {
  const zonesDir = join(tmp, 'zones');
  mkdirSync(zonesDir);
  const file = join(zonesDir, 'big.test.zone');
  writeFileSync(file, zoneText(1, 0));
  const dir = new ZoneDirectory(zonesDir);
  const first = await dir.load();
  expect(first.errors).toEqual([]);

  // the ticks: per interval between two ticks, nodes walked and this thread's CPU
  const cpu = threadCpu;
  const now = cpu ?? (() => performance.now());
  let walked = 0;
  let maxWalked = 0;
  let maxHold = 0;
  let ticks = 0;
  let last = now();
  const onNode = () => walked++;
  const tick = () => {
    const t = now();
    maxHold = Math.max(maxHold, t - last);
    maxWalked = Math.max(maxWalked, walked);
    walked = 0;
    last = t;
    ticks++;
  };

  const responder = new Responder(new ZoneSet(first.zones));
  const service = new TransferService({
    secondaries: [{ name: 'sec', address: { host: '127.0.0.2', port: 53, family: 4 }, key: null }],
    keys: new Map(),
    responder,
    served: () => ({ zones: new ZoneSet([...responder.zoneSet.zones()].map((z) => counting(z, onNode))), overlay: responder.currentOverlay }),
    journals: createJournalFiles(join(tmp, 'journal')),
    logger: pino({ level: 'silent' }),
  });
  await service.changed(); // the first version (a full snapshot too, not measured)
  await service.flushJournals();
  const firstSerial = service.serials().get('big.test.');

  writeFileSync(file, zoneText(2, GROUPS / 10));
  const timer = setInterval(tick, 1);
  last = now();
  walked = 0;
  try {
    const r = await dir.load();
    expect(r.errors).toEqual([]);
    responder.update({ zones: new ZoneSet(r.zones) });
    await service.changed();
    await service.flushJournals();
    tick();
  } finally {
    clearInterval(timer);
  }
  expect(firstSerial).toBe(1);
  expect(service.serials().get('big.test.')).toBe(2);
  const zone = responder.zoneSet.get('big.test.')!;
  const owners = [...zone.nodes.values()].filter((s) => s.length > 0).length;

  // what a synchronous snapshot of this zone costs here
  const t0 = now();
  snapshotZone(zone);
  const syncMs = now() - t0;

  const context = `ticks ${ticks}, most nodes walked between two ticks ${maxWalked} of ${owners}, longest ${cpu ? 'CPU' : 'wall'} time between two ticks ${maxHold.toFixed(1)} ms, synchronous snapshot ${syncMs.toFixed(0)} ms`;
  expect({ context, spread: maxWalked <= owners / 10 }).toEqual({ context, spread: true });
  expect({ context, short: maxHold < Math.min(250, syncMs / 5) }).toEqual({ context, short: true });
}, 180_000);

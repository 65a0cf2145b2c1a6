/**
 * TransferService versions by step (only the overlay changed: nextSnapshot, the diff it gives)
 * are the versions a full snapshot and diff give: two services follow the same changes, one
 * with compiled overlays (steps), one with the same overlays hidden behind a plain AddressOverlay
 * (full snapshots); their stored journals are byte-identical after every change. Overlay changes
 * do not walk the zone; a reload (a new zone object) does.
 */
import { describe, expect, test } from '@jest/globals';
import pino from 'pino';
import { compileOverlay, type CompiledOverlay, type OverlayInput } from '../../../src/core/overlay.js';
import { ZoneSet, type AddressOverlay } from '../../../src/dns/engine/engine.js';
import type { Responder } from '../../../src/dns/server/responder.js';
import type { RRset, Zone } from '../../../src/dns/zone/zone.js';
import { Journal } from '../../../src/dns/xfr/journal.js';
import type { JournalStore } from '../../../src/dns/xfr/journal-files.js';
import { TransferService } from '../../../src/dns/xfr/xfr-service.js';
import { EXAMPLE, OVERLAY_INPUT, SECOND, zoneOf } from './fixture.js';

/** A zone whose node walks are counted (the full snapshot walks them; a step does not). */
function counted(z: Zone): { zone: Zone; walks: () => number } {
  let walks = 0;
  const nodes = z.nodes;
  const wrapped: ReadonlyMap<string, RRset[]> = {
    get size() {
      return nodes.size;
    },
    get: (k) => nodes.get(k),
    has: (k) => nodes.has(k),
    forEach: (f) => nodes.forEach(f),
    keys: () => nodes.keys(),
    values: () => {
      walks++;
      return nodes.values();
    },
    entries: () => {
      walks++;
      return nodes.entries();
    },
    [Symbol.iterator]: () => {
      walks++;
      return nodes[Symbol.iterator]();
    },
  };
  return { zone: { ...z, nodes: wrapped }, walks: () => walks };
}

/** The overlay without `touched`: the service cannot step with it. */
const opaque = (o: CompiledOverlay | null): AddressOverlay | undefined =>
  o ? { ttlCap: o.ttlCap, serialBump: o.serialBump, replacement: (a, z) => o.replacement(a, z), ttlCapFor: (a) => o.ttlCapFor(a) } : undefined;

function service(served: () => { zones: ZoneSet; overlay: AddressOverlay | undefined }) {
  const stored = new Map<string, Buffer>();
  const journals: JournalStore = { load: async () => null, save: async (z, j) => void stored.set(z, j.toBuffer()) };
  const svc = new TransferService({ secondaries: [], keys: new Map(), responder: {} as Responder, served, journals, logger: pino({ level: 'silent' }) });
  return { svc, stored };
}

describe('TransferService steps', () => {
  test('every change gives the journal a full snapshot gives; overlay changes do not walk the zone', async () => {
    const example = counted(zoneOf(EXAMPLE, 'example.test.', true));
    const second = counted(zoneOf(SECOND, 'second.test.', true));
    let zones = new ZoneSet([example.zone, second.zone]);
    let current: CompiledOverlay | null = null;
    const stepping = service(() => ({ zones, overlay: current ?? undefined }));
    const full = service(() => ({ zones, overlay: opaque(current) }));
    const over = (input: Partial<OverlayInput>) => compileOverlay({ ...OVERLAY_INPUT, ...input });
    // label, change, whether it walks zones, example.test.'s journal length after it
    const cases: [string, () => void, 'walk' | 'step', number][] = [
      ['start', () => undefined, 'walk', 0],
      ['cutover, account move, lowered TTL', () => (current = over({ serialBump: 1 })), 'step', 1],
      ['account move lifted', () => (current = over({ accounts: [], serialBump: 2 })), 'step', 2],
      ['the same overlay again', () => (current = over({ accounts: [], serialBump: 2 })), 'step', 2],
      ['everything lifted', () => (current = over({ servers: [], accounts: [], lowered: [], serialBump: 3 })), 'step', 3],
      ['no overlay at all: the serial goes back, the journal restarts', () => (current = null), 'step', 0],
      ['second.test. reloaded', () => {
        const next = counted(zoneOf(SECOND.replace(' 7 3600', ' 8 3600') + 'new A 192.0.2.1\n', 'second.test.', true));
        zones = new ZoneSet([example.zone, next.zone]);
        second.walks = next.walks;
      }, 'walk', 0],
      ['cut over again', () => (current = over({ serialBump: 4 })), 'step', 1],
    ];
    for (const [label, change, kind, length] of cases) {
      change();
      const before = [example.walks(), second.walks()];
      await stepping.svc.changed();
      const walked = [example.walks() - before[0], second.walks() - before[1]];
      await full.svc.changed();
      await Promise.all([stepping.svc.flushJournals(), full.svc.flushJournals()]);
      expect({ label, serials: stepping.svc.serials() }).toEqual({ label, serials: full.svc.serials() });
      expect({ label, length: Journal.fromBuffer(stepping.stored.get('example.test.')!).length }).toEqual({ label, length });
      for (const z of ['example.test.', 'second.test.']) {
        expect({ label, z, journal: stepping.stored.get(z)?.toString('hex') }).toEqual({ label, z, journal: full.stored.get(z)?.toString('hex') });
      }
      // a reload walks the reloaded zone only; an overlay change walks none
      if (kind === 'step') expect({ label, walked }).toEqual({ label, walked: [0, 0] });
      else expect({ label, walked: walked.map((w) => w > 0) }).toEqual({ label, walked: label === 'start' ? [true, true] : [false, true] });
    }
  });
});

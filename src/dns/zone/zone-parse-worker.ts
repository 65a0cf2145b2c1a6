/**
 * The zone parser worker (node:worker_threads): reads, parses and checks zone files off the
 * thread that answers queries. It takes one {@link ParseRequest}, answers each file in order
 * with a {@link ParseReply} (the zone packed for transfer, or the reason it failed), and is
 * terminated by its owner (zone-loader.ts) when done.
 */
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import { describeLoadError, loadZoneFile } from './zone-file.js';
import { packZone, transferList, type PackedZone } from './zone-transfer.js';

/**
 * Files to parse: path and the zone name from the file name; `maxBytes` per zone with includes;
 * `background` while zones are being served (a reload): the thread then runs at nice WORKER_NICE.
 */
export interface ParseRequest {
  jobs: { file: string; originText: string }[];
  maxBytes: number;
  background: boolean;
}

/** The outcome for one file. */
export type ParseReply =
  | { file: string; ok: true; zone: PackedZone; includes: string[]; fingerprint: string }
  | { file: string; ok: false; line?: number; reason: string };

/** Warnings handed over per zone; the rest are counted in one more line. */
const MAX_WARNINGS = 100;

/** Nice value of this thread during a reload: when CPUs are scarce, the thread that answers goes first. */
export const WORKER_NICE = 10;

if (parentPort) {
  const port = parentPort;
  port.once('message', (req: ParseRequest) => {
    if (req.background) {
      try {
        // on Linux, nice values are per thread and setpriority(PRIO_PROCESS, 0) sets the caller's only
        setPriority(WORKER_NICE);
      } catch { /* not allowed here: parse at the normal priority */ }
    }
    for (const job of req.jobs) {
      let reply: ParseReply;
      let transfer: ArrayBuffer[] = [];
      try {
        const loaded = loadZoneFile(job.file, job.originText, req.maxBytes);
        const zone = packZone(loaded.zone);
        if (zone.warnings.length > MAX_WARNINGS) {
          const more = zone.warnings.length - MAX_WARNINGS;
          zone.warnings = [...zone.warnings.slice(0, MAX_WARNINGS), `${more} more warnings like these not shown`];
        }
        reply = { file: job.file, ok: true, zone, includes: loaded.includes, fingerprint: loaded.fingerprint };
        transfer = transferList(zone);
      } catch (err) {
        reply = { file: job.file, ok: false, ...describeLoadError(err, job.file) };
      }
      port.postMessage(reply, transfer);
    }
  });
}

/**
 * Loads a directory of master files (`<zone>.zone`, one zone each). A file that fails to parse
 * or check, or is not a regular file (a directory named `x.zone`, a FIFO, a device), is reported
 * with file, line and reason and is not served; on reload, a broken new version keeps the
 * previous version served. Unchanged files are not parsed again.
 *
 * Reading, parsing and checking run in a worker thread (zone-parse-worker.ts); each finished zone
 * arrives packed in transferred buffers and is served from them as it is (zone-transfer.ts), so
 * this thread only swaps finished structures and a reload of any size never stops answering.
 * Reading is bounded: `maxZoneBytes` per zone with its includes, non-regular files refused unread.
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DEFAULT_MAX_ZONE_FILE_BYTES, fileKind, fingerprintPart, fsErrorText } from './zone-file.js';
import type { ParseReply, ParseRequest } from './zone-parse-worker.js';
import { packedZone } from './zone-transfer.js';
import type { Zone } from './zone.js';

/** One zone file that could not be (re)loaded. */
export interface ZoneLoadError {
  file: string;
  line?: number;
  reason: string;
  /** The zone is still served from an earlier, good version of the file. */
  keptPrevious: boolean;
}

/** The zones directory itself cannot be read at the first load (missing, not a directory, no permission). */
export class ZoneDirectoryError extends Error {
  override name = 'ZoneDirectoryError';
  constructor(readonly dir: string, readonly reason: string) {
    super(`${dir}: ${reason}`);
  }
}

interface Loaded {
  zone: Zone;
  /** mtime, size and inode of the file the zone came from and of the files it includes, as read. */
  fingerprint: string;
  includes: string[];
}

async function fingerprintOf(files: string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    try {
      parts.push(fingerprintPart(await stat(f)));
    } catch {
      parts.push('missing');
    }
  }
  return parts.join('|');
}

/** What one (re)load found. */
export interface LoadResult {
  zones: Zone[];
  errors: ZoneLoadError[];
  /** Files parsed in this pass (changed or new). */
  parsed: string[];
  /** Zones dropped because their file disappeared. */
  removed: string[];
  warnings: { file: string; message: string }[];
}

export interface ZoneDirectoryOptions {
  /** Most bytes read for one zone, its file and includes together (`dns.max_zone_file_bytes`). */
  maxZoneBytes?: number;
}

/** Keeps the zones of one directory, reloading only what changed. */
export class ZoneDirectory {
  private loaded = new Map<string, Loaded>();
  private everRead = false;
  readonly maxZoneBytes: number;

  constructor(readonly dir: string, opts: ZoneDirectoryOptions = {}) {
    this.maxZoneBytes = opts.maxZoneBytes ?? DEFAULT_MAX_ZONE_FILE_BYTES;
  }

  /**
   * Reads the directory. Throws {@link ZoneDirectoryError} only when the directory cannot be read
   * at the first load; later, that is one error in the result and every zone stays served.
   */
  async load(): Promise<LoadResult> {
    const result: LoadResult = { zones: [], errors: [], parsed: [], removed: [], warnings: [] };
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.zone')).sort();
    } catch (err) {
      const reason = `cannot read the zones directory: ${fsErrorText(err)}`;
      if (!this.everRead) throw new ZoneDirectoryError(this.dir, reason);
      result.errors.push({ file: this.dir, reason, keptPrevious: this.loaded.size > 0 });
      result.zones = this.served(this.loaded, result);
      return result;
    }
    this.everRead = true;
    const next = new Map<string, Loaded>();
    const jobs: { file: string; originText: string; prev?: Loaded }[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      const prev = this.loaded.get(file);
      try {
        const st = await stat(file);
        if (!st.isFile()) {
          // reported, never opened; an earlier good version stays served
          result.errors.push({ file, reason: `not a regular file (it is ${fileKind(st)})`, keptPrevious: prev !== undefined });
          if (prev) next.set(file, prev);
          continue;
        }
      } catch (err) {
        result.errors.push({ file, reason: fsErrorText(err), keptPrevious: false });
        continue;
      }
      if (prev && prev.fingerprint === (await fingerprintOf([file, ...prev.includes]))) {
        next.set(file, prev);
        continue;
      }
      jobs.push({ file, originText: name.slice(0, -'.zone'.length), prev });
    }
    const outcomes = jobs.length > 0 ? await this.parse(jobs) : new Map<string, Outcome>();
    for (const job of jobs) {
      result.parsed.push(job.file);
      const o = outcomes.get(job.file)!;
      if (o.ok) {
        next.set(job.file, { zone: o.zone, fingerprint: o.fingerprint, includes: o.includes });
        for (const w of o.zone.warnings) result.warnings.push({ file: job.file, message: w });
      } else {
        result.errors.push({ file: job.file, line: o.line, reason: o.reason, keptPrevious: job.prev !== undefined });
        if (job.prev) next.set(job.file, job.prev);
      }
    }
    // keep the order of the directory listing (the files are sorted)
    const ordered = new Map([...next].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    for (const file of this.loaded.keys()) if (!ordered.has(file)) result.removed.push(file);
    this.loaded = ordered;
    result.zones = this.served(ordered, result);
    return result;
  }

  /** The zones to serve: two files for one origin cannot both be; the first (sorted) wins, the other is an error. */
  private served(loaded: Map<string, Loaded>, result: LoadResult): Zone[] {
    const zones: Zone[] = [];
    const byOrigin = new Map<string, string>();
    for (const [file, l] of loaded) {
      const other = byOrigin.get(l.zone.origin);
      if (other) {
        result.errors.push({ file, reason: `zone ${l.zone.origin} is already loaded from ${other}`, keptPrevious: false });
        continue;
      }
      byOrigin.set(l.zone.origin, file);
      zones.push(l.zone);
    }
    return zones;
  }

  /**
   * Parses the files in a worker; each finished zone arrives packed and is served as it is. A
   * worker that dies (out of memory on a zone too large for the heap) fails the file it was on;
   * a new worker goes on with the files after it.
   */
  private async parse(jobs: { file: string; originText: string }[]): Promise<Map<string, Outcome>> {
    const outcomes = new Map<string, Outcome>();
    let rest = jobs;
    while (rest.length > 0) {
      const stopped = await this.runWorker(rest, outcomes);
      const unanswered = rest.filter((j) => !outcomes.has(j.file));
      if (stopped === null || unanswered.length === 0) break;
      if (stopped.startFailed) {
        for (const j of unanswered) outcomes.set(j.file, { ok: false, reason: `the zone parser could not start: ${stopped.reason}` });
        break;
      }
      outcomes.set(unanswered[0].file, { ok: false, reason: `the zone parser stopped while reading this file: ${stopped.reason}` });
      rest = unanswered.slice(1);
    }
    return outcomes;
  }

  /** One worker over `jobs`, in order; null when it answered every file, else why it stopped. */
  private runWorker(jobs: { file: string; originText: string }[], outcomes: Map<string, Outcome>): Promise<{ reason: string; startFailed?: boolean } | null> {
    return new Promise((settle) => {
      let worker: Worker;
      try {
        worker = new Worker(workerUrl());
      } catch (err) {
        settle({ reason: (err as Error).message, startFailed: true });
        return;
      }
      let answered = 0;
      let done = false;
      const finish = (stopped: { reason: string } | null) => {
        if (done) return;
        done = true;
        void worker.terminate();
        settle(stopped);
      };
      worker.on('message', (reply: ParseReply) => {
        if (done) return;
        if (!reply.ok) {
          outcomes.set(reply.file, { ok: false, line: reply.line, reason: reply.reason });
        } else {
          try {
            outcomes.set(reply.file, { ok: true, zone: packedZone(reply.zone), includes: reply.includes, fingerprint: reply.fingerprint });
          } catch (err) {
            outcomes.set(reply.file, { ok: false, reason: (err as Error).message });
          }
        }
        if (++answered === jobs.length) finish(null);
      });
      worker.on('error', (err) => finish({ reason: err.message }));
      worker.on('exit', (code) => finish({ reason: `it exited with code ${code}` }));
      const req: ParseRequest = {
        jobs: jobs.map(({ file, originText }) => ({ file, originText })),
        maxBytes: this.maxZoneBytes,
        background: this.loaded.size > 0,
      };
      worker.postMessage(req);
    });
  }
}

type Outcome =
  | { ok: true; zone: Zone; includes: string[]; fingerprint: string }
  | { ok: false; line?: number; reason: string };

/**
 * The compiled worker module next to this one; when this module runs from the TypeScript sources
 * (Jest), the one compiled into dist/ by `npm run build`.
 */
function workerUrl(): URL {
  const sibling = new URL('./zone-parse-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const compiled = new URL('../../../dist/src/dns/zone/zone-parse-worker.js', import.meta.url);
  if (import.meta.url.endsWith('.ts') && existsSync(fileURLToPath(compiled))) return compiled;
  throw new Error(`${fileURLToPath(sibling)} is missing (run "npm run build")`);
}

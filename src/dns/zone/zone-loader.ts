/**
 * Loads a directory of master files (`<zone>.zone`, one zone each). A file that fails to parse
 * or check, or is not a regular file (a directory named `x.zone`, a FIFO, a device), is reported
 * with file, line and reason and is not served; on reload, a broken new version keeps the
 * previous version served. Unchanged files are not parsed again.
 *
 * Reading, parsing and checking run in a parser process (zone-parse-child.ts, at nice 10 during a
 * reload): its heap and garbage collection are its own, and its memory goes back to the system
 * when it exits. Each finished zone arrives packed, read from the pipe in chunks, and is served
 * from those buffers as it is (zone-transfer.ts), so this thread only swaps finished structures
 * and a reload of any size never stops answering.
 * Reading is bounded: `maxZoneBytes` per zone with its includes, non-regular files refused unread.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { DEFAULT_MAX_ZONE_FILE_BYTES, fileKind, fingerprintPart, fsErrorText } from './zone-file.js';
import { FrameReader, readZoneData, type FramedReply, type ParseRequest } from './zone-parse-child.js';
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
   * Parses the files in a parser process; each finished zone arrives packed and is served as it
   * is. A parser that dies (out of memory on a zone too large for the heap) fails the file it was
   * on; a new one goes on with the files after it.
   */
  private async parse(jobs: { file: string; originText: string }[]): Promise<Map<string, Outcome>> {
    const outcomes = new Map<string, Outcome>();
    let rest = jobs;
    while (rest.length > 0) {
      const stopped = await this.runParser(rest, outcomes);
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

  /** One parser process over `jobs`, in order; null when it answered every file, else why it stopped. */
  private async runParser(jobs: { file: string; originText: string }[], outcomes: Map<string, Outcome>): Promise<{ reason: string; startFailed?: boolean } | null> {
    if (!sweptParserDirs) {
      sweptParserDirs = true;
      await sweepParserDirs(tmpdir());
    }
    let outDir: string;
    try {
      outDir = await mkdtemp(join(tmpdir(), `${PARSER_DIR_PREFIX}${process.pid}-`));
    } catch (err) {
      return { reason: `cannot make a directory for it in ${tmpdir()}: ${fsErrorText(err)}`, startFailed: true };
    }
    try {
      return await this.runParserIn(outDir, jobs, outcomes);
    } finally {
      await rm(outDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private runParserIn(outDir: string, jobs: { file: string; originText: string }[], outcomes: Map<string, Outcome>): Promise<{ reason: string; startFailed?: boolean } | null> {
    return new Promise((settle) => {
      let child: ChildProcess;
      try {
        child = spawn(process.execPath, [...heapOptions(), fileURLToPath(parserUrl())], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, FAILOVER_ZONE_PARSER: '1' },
        });
      } catch (err) {
        settle({ reason: (err as Error).message, startFailed: true });
        return;
      }
      let answered = 0;
      let done = false;
      let stderr = '';
      /** Replies are taken in order; the arrays of each are read before the next. */
      let taking: Promise<void> = Promise.resolve();
      const finish = (stopped: { reason: string; startFailed?: boolean } | null) => {
        if (done) return;
        done = true;
        if (stopped) child.kill('SIGKILL');
        // settled once every reply already framed is taken in
        void taking.then(() => settle(stopped));
      };
      const take = async (reply: FramedReply): Promise<void> => {
        if (!reply.ok) {
          outcomes.set(reply.file, { ok: false, line: reply.line, reason: reply.reason });
        } else {
          try {
            const full = await readZoneData(reply);
            outcomes.set(reply.file, { ok: true, zone: packedZone(full.zone), includes: full.includes, fingerprint: full.fingerprint });
          } catch (err) {
            outcomes.set(reply.file, { ok: false, reason: (err as Error).message });
          }
        }
        if (++answered === jobs.length) finish(null);
      };
      const reader = new FrameReader((reply) => {
        taking = taking.then(() => take(reply));
      });
      child.stdout!.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (err) {
          finish({ reason: `it sent a malformed reply (${(err as Error).message})` });
        }
      });
      child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
      child.stdin!.on('error', () => undefined); // a parser that died before reading: reported by 'close'
      child.on('error', (err) => finish({ reason: err.message, startFailed: answered === 0 && (err as NodeJS.ErrnoException).code === 'ENOENT' }));
      child.on('close', (code, signal) => {
        // every frame it wrote is in: once they are taken, a missing answer is a stop
        void taking.then(() => {
          if (answered < jobs.length) finish({ reason: exitReason(code, signal, stderr) });
        });
      });
      const req: ParseRequest = {
        jobs: jobs.map(({ file, originText }) => ({ file, originText })),
        maxBytes: this.maxZoneBytes,
        background: this.loaded.size > 0,
        outDir,
      };
      child.stdin!.end(JSON.stringify(req));
    });
  }
}

/** Prefix of the parser's directories in the temporary directory; the owning process's pid follows. */
const PARSER_DIR_PREFIX = 'failover-zones-';

let sweptParserDirs = false;

/**
 * Removes the parser directories in `dir` left by processes that no longer run (a controller
 * killed while a zone was handed over leaves its arrays there); those of running processes stay.
 */
export async function sweepParserDirs(dir: string): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = new RegExp(`^${PARSER_DIR_PREFIX}(\\d+)-`).exec(name);
    if (!m || pidRuns(Number(m[1]))) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

/** Whether process `pid` runs (EPERM: it runs under another user). */
function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a parser process ended before answering every file, from its exit and the end of its stderr. */
function exitReason(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  if (/out of memory/i.test(stderr)) return `it ran out of memory (${stderr.match(/[^\n]*out of memory[^\n]*/i)![0].trim()})`;
  if (signal) return `it was killed by ${signal}`;
  return `it exited with code ${code}`;
}

/** The heap size options of this process, handed to the parser (a heap limit set for the controller applies to it too). */
function heapOptions(): string[] {
  return process.execArgv.filter((a) => /^--max-old-space-size=\d+$/.test(a));
}

type Outcome =
  | { ok: true; zone: Zone; includes: string[]; fingerprint: string }
  | { ok: false; line?: number; reason: string };

/**
 * The compiled parser module next to this one; when this module runs from the TypeScript sources
 * (Jest), the one compiled into dist/ by `npm run build`.
 */
function parserUrl(): URL {
  const sibling = new URL('./zone-parse-child.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const compiled = new URL('../../../dist/src/dns/zone/zone-parse-child.js', import.meta.url);
  if (import.meta.url.endsWith('.ts') && existsSync(fileURLToPath(compiled))) return compiled;
  throw new Error(`${fileURLToPath(sibling)} is missing (run "npm run build")`);
}

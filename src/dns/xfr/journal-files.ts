/**
 * The zones' transfer journals on disk, one file per zone in `dns.journal_dir`, so that a
 * secondary that is behind after a controller restart still gets IXFR.
 *
 * - A file is an append-only log (journal.ts format 2): each save appends the versions recorded
 *   since the last one and fsyncs, so a change costs the bytes of its own difference. A crash
 *   mid-append leaves a torn last frame, which reading ignores: what is read is always a journal
 *   that was current once (restored only if it ends at what is served).
 * - The file is written whole instead (a temporary file, fsync, rename: a crash leaves the old file
 *   or the new one) when it does not continue: first save after start, the journal restarted,
 *   versions dropped before they were written, an append failed; and when the versions the journal
 *   dropped (its bounds) outweigh the ones it keeps (compaction).
 * - Encoding holds the event loop in slices of a few ms (`sliceMs`), whatever the journal's size;
 *   the writes themselves are asynchronous.
 */
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { runSliced, Slicer } from '../engine/snapshot.js';
import { journalStart, versionFrameSteps, type Journal, type JournalView, type ZoneDiff } from './journal.js';

/** Where journals are kept, by zone (canonical key). */
export interface JournalStore {
  /** The stored bytes (Journal.readAsync them), or null; read off the serving thread. */
  load(zone: string): Promise<Buffer | null>;
  /**
   * Stores `journal` as it is at the call (later changes are for a later save); resolves once it
   * is durable. Saves of one zone are done in call order.
   */
  save(zone: string, journal: Journal): Promise<void>;
}

export interface JournalFilesOptions {
  /** The longest the event loop is held at a time while encoding (ms, default 4). */
  sliceMs?: number;
  /**
   * Bytes of dropped versions a file may carry before it is compacted, at the least (default
   * 1 MiB); above that, once they outweigh the versions kept.
   */
  minDeadBytes?: number;
}

/** The file name of a zone's journal: the name when it is plain, else its hex form. */
export function journalFileName(zone: string): string {
  return /^[a-z0-9][a-z0-9._-]*$/.test(zone) && !zone.includes('..') ? `${zone}journal` : `x-${Buffer.from(zone).toString('hex')}.journal`;
}

/** What a zone's file holds, as this process wrote it. */
interface FileState {
  journal: WeakRef<Journal>;
  generation: number;
  /** The sequence number after the last version written. */
  next: number;
  /** Where the file's journal ends. */
  end: JournalView['current'];
  /** The versions written that the journal still has, oldest first: sequence number and frame bytes. */
  live: { seq: number; bytes: number }[];
  /** The file's length, and the part before the first version (header, start frame). */
  size: number;
  head: number;
}

export function createJournalFiles(dir: string, opts: JournalFilesOptions = {}): JournalStore {
  const sliceMs = opts.sliceMs ?? 4;
  const minDead = opts.minDeadBytes ?? 1024 * 1024;
  const states = new Map<string, FileState>();
  const queues = new Map<string, Promise<void>>();
  let made = false;

  /** The versions to append for `v`, 'none' when the file holds it already, null when it must be written whole. */
  const appendPlan = (st: FileState | undefined, v: JournalView): readonly ZoneDiff[] | 'none' | null => {
    if (!st || st.journal.deref() !== v.journal || st.generation !== v.generation) return null;
    const first = v.next - v.diffs.length;
    if (st.next < first || st.next > v.next) return null; // versions dropped before they were written: a gap
    if (st.next === v.next) return sameEnd(st.end, v.current) ? 'none' : null;
    const fresh = v.diffs.slice(st.next - first);
    if (st.end && fresh[0].fromSerial !== st.end.serial) return null;
    let kept = 0;
    for (const x of st.live) if (x.seq >= first) kept += x.bytes;
    let freshBytes = 0;
    for (const d of fresh) freshBytes += d.bytes;
    const dead = st.size - st.head - kept;
    return dead > Math.max(minDead, kept + freshBytes) ? null : fresh;
  };

  /** Encodes `d` in slices and writes it at `position`; its length. */
  const writeVersion = async (fh: FileHandle, d: ZoneDiff, position: number): Promise<number> => {
    const frame = await runSliced(versionFrameSteps(d, new Slicer(sliceMs)));
    const { bytesWritten } = await fh.writev(frame, position);
    let n = 0;
    for (const b of frame) n += b.length;
    if (bytesWritten !== n) throw new Error(`journal write of ${n} bytes wrote ${bytesWritten}`);
    return n;
  };

  const append = async (file: string, st: FileState, v: JournalView, fresh: readonly ZoneDiff[]): Promise<void> => {
    const fh = await open(file, 'r+');
    try {
      const { size } = await fh.stat();
      if (size !== st.size) throw new Error(`journal file is ${size} bytes, ${st.size} written`);
      const first = v.next - v.diffs.length;
      const live = st.live.filter((x) => x.seq >= first);
      let position = st.size;
      let seq = st.next;
      for (const d of fresh) {
        const bytes = await writeVersion(fh, d, position);
        live.push({ seq: seq++, bytes });
        position += bytes;
      }
      await fh.sync();
      Object.assign(st, { next: v.next, end: v.current, live, size: position });
    } finally {
      await fh.close();
    }
  };

  const rewrite = async (file: string, v: JournalView): Promise<FileState> => {
    const tmp = `${file}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    const start = journalStart(v);
    const live: FileState['live'] = [];
    let position = start.length;
    try {
      await fh.write(start, 0, start.length, 0);
      let seq = v.next - v.diffs.length;
      for (const d of v.diffs) {
        const bytes = await writeVersion(fh, d, position);
        live.push({ seq: seq++, bytes });
        position += bytes;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    return {
      journal: new WeakRef(v.journal), generation: v.generation, next: v.next, end: v.current,
      live, size: position, head: start.length,
    };
  };

  const store = async (zone: string, v: JournalView): Promise<void> => {
    if (!made) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      made = true;
    }
    const file = join(dir, journalFileName(zone));
    const st = states.get(zone);
    const plan = appendPlan(st, v);
    if (plan === 'none') return;
    if (plan && st) {
      try {
        await append(file, st, v, plan);
        return;
      } catch {
        // a torn or missing file: written whole below (reading ignores a torn frame meanwhile)
      }
    }
    states.delete(zone);
    states.set(zone, await rewrite(file, v));
  };

  return {
    async load(zone) {
      try {
        return await readFile(join(dir, journalFileName(zone)));
      } catch {
        return null;
      }
    },
    save(zone, journal) {
      const v = journal.view();
      const run = (queues.get(zone) ?? Promise.resolve()).catch(() => undefined).then(() => store(zone, v));
      queues.set(zone, run);
      const done = () => {
        if (queues.get(zone) === run) queues.delete(zone);
      };
      run.then(done, done);
      return run;
    },
  };
}

function sameEnd(a: JournalView['current'], b: JournalView['current']): boolean {
  return a === b || (a !== undefined && b !== undefined && a.serial === b.serial && a.digest === b.digest);
}

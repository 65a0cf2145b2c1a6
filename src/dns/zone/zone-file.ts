/**
 * Reading one zone: its master file and the files it `$INCLUDE`s, safely. Every file must be a
 * regular file (checked with stat before it is opened, so a FIFO is never opened for reading, and
 * again on the open descriptor); the bytes read for one zone, includes together, are bounded by
 * `dns.max_zone_file_bytes`, and a file over what is left is refused before any of it is read.
 * Synchronous: it runs in the zone parser process (zone-parse-child.ts), never on the thread that
 * answers queries.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { nameKey, NameError } from '../name.js';
import { parseMasterFile } from './master-file.js';
import { ZoneParseError } from './types.js';
import { buildZone, ZoneCheckError, type Zone } from './zone.js';

/**
 * Default of `dns.max_zone_file_bytes`: 64 MiB of master-file text for one zone with its
 * includes. A zone of the bench:zone-load mix takes about 30 bytes of text per record and its
 * parsing about 20 bytes of heap per byte of text, so this is about 2,200,000 records and 1.3 GB
 * in the parser process: a third of V8's default heap (about 4 GiB). Served, packed, such a zone
 * takes about 150 MB. Larger zones need this limit and --max-old-space-size raised together.
 */
export const DEFAULT_MAX_ZONE_FILE_BYTES = 64 * 1024 * 1024;

/** A zone file (or included file) refused before or while it was read. */
export class ZoneFileError extends Error {
  override name = 'ZoneFileError';
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`);
  }
}

/** What kind of file a Stats describes, for messages. */
export function fileKind(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/** The change fingerprint of a file as read: mtime, size and inode. */
export function fingerprintPart(st: Stats): string {
  return `${st.mtimeMs}/${st.size}/${st.ino}`;
}

/** Bytes read so far for one zone against the most allowed. */
export class ReadBudget {
  used = 0;
  constructor(readonly max: number) {}

  /** Throws when `size` more bytes do not fit. */
  check(file: string, size: number): void {
    if (this.used + size <= this.max) return;
    throw new ZoneFileError(file, this.used === 0
      ? `${size} bytes, over the limit of ${this.max} bytes (dns.max_zone_file_bytes)`
      : `${size} bytes; with the ${this.used} bytes already read for this zone that is over the limit of ${this.max} bytes (dns.max_zone_file_bytes)`);
  }
}

/**
 * Reads a file as UTF-8 text within `budget`. Refuses anything but a regular file (symbolic links
 * are followed) without opening it for reading, and a file over the budget without reading it;
 * a file that grows past the budget while it is read is refused after reading at most one byte
 * more. Errors from the file system keep their `code` (ENOENT, EACCES...).
 */
export function readZoneText(file: string, budget: ReadBudget): { text: string; stats: Stats } {
  const st = statSync(file);
  if (!st.isFile()) throw new ZoneFileError(file, `not a regular file (it is ${fileKind(st)})`);
  budget.check(file, st.size);
  // O_NONBLOCK: should the path be swapped for a FIFO after the stat, opening it does not wait
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const fst = fstatSync(fd);
    if (!fst.isFile()) throw new ZoneFileError(file, `not a regular file (it is ${fileKind(fst)})`);
    budget.check(file, fst.size);
    const room = budget.max - budget.used;
    let buf = Buffer.allocUnsafe(Math.min(fst.size, room) + 1);
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        if (n > room) break;
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, room + 1));
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      // in pieces: see IO_CHUNK in zone-parse-child.ts (this runs in the parser process)
      const got = readSync(fd, buf, n, Math.min(1024 * 1024, buf.length - n), null);
      if (got === 0) break;
      n += got;
    }
    budget.check(file, n);
    budget.used += n;
    return { text: buf.toString('utf8', 0, n), stats: fst };
  } finally {
    closeSync(fd);
  }
}

/** One zone read and checked: the zone, the files included, and the fingerprint of every file read. */
export interface LoadedZoneFile {
  zone: Zone;
  /** Resolved paths of the included files, in the order read. */
  includes: string[];
  /** fingerprintPart() of the zone file, then of each include, as they were read. */
  fingerprint: string;
}

/**
 * Reads, parses and checks one master file; the origin comes from the file name. `$INCLUDE` names
 * are resolved against the including file's directory. At most `maxBytes` are read for the file
 * and its includes together. Throws {@link ZoneParseError} (file, line, reason; a problem in an
 * included file names that file) or {@link ZoneFileError}.
 */
export function loadZoneFile(file: string, originText: string, maxBytes = DEFAULT_MAX_ZONE_FILE_BYTES): LoadedZoneFile {
  let origin: string;
  try {
    origin = nameKey(originText.endsWith('.') ? originText : originText + '.');
  } catch (err) {
    throw new ZoneParseError(file, 0, `file name does not give a zone name: ${(err as Error).message}`);
  }
  const budget = new ReadBudget(maxBytes);
  const top = readZoneText(file, budget);
  const includes: string[] = [];
  const parts = [fingerprintPart(top.stats)];
  const parsed = parseMasterFile(top.text, {
    origin,
    file,
    readInclude: (name, from) => {
      const path = resolve(dirname(from), name);
      includes.push(path);
      parts.push('missing');
      const r = readZoneText(path, budget);
      parts[parts.length - 1] = fingerprintPart(r.stats);
      return { text: r.text, file: path };
    },
  });
  try {
    return { zone: buildZone(parsed), includes, fingerprint: parts.join('|') };
  } catch (err) {
    if (err instanceof ZoneCheckError) throw new ZoneParseError(file, err.line ?? 0, err.reason);
    throw err;
  }
}

/** Line and reason of a load error, for the report about `file` (the zone file). */
export function describeLoadError(err: unknown, file: string): { line?: number; reason: string } {
  if (err instanceof ZoneParseError) {
    // a problem inside an included file: name that file and its line in the reason
    if (err.file !== file) return { reason: `in ${err.file}:${err.line}: ${err.reason}` };
    return { line: err.line || undefined, reason: err.reason };
  }
  if (err instanceof ZoneFileError) return { reason: err.file === file ? err.reason : err.message };
  if (err instanceof NameError) return { reason: err.message };
  return { reason: fsErrorText(err) };
}

/** A file-system error as "no such file or directory (ENOENT)"; other errors by their message. */
export function fsErrorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && typeof e.message === 'string') {
    const m = /^[A-Z0-9_]+: ([^,]+)/.exec(e.message);
    if (m) return `${m[1]} (${e.code})`;
  }
  return err instanceof Error ? err.message : String(err);
}

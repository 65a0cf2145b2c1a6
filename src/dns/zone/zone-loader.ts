/**
 * Loads a directory of master files (`<zone>.zone`, one zone each). A file that fails to parse
 * or check is reported with file, line and reason and is not served; on reload, a broken new
 * version keeps the previous version served. Unchanged files are not parsed again.
 */
import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { nameKey, NameError } from '../name.js';
import { parseMasterFile } from './master-file.js';
import { ZoneParseError } from './types.js';
import { buildZone, ZoneCheckError, type Zone } from './zone.js';

/** One zone file that could not be (re)loaded. */
export interface ZoneLoadError {
  file: string;
  line?: number;
  reason: string;
  /** The zone is still served from an earlier, good version of the file. */
  keptPrevious: boolean;
}

interface Loaded {
  zone: Zone;
  /** mtime, size and inode of the file the zone came from and of the files it includes. */
  fingerprint: string;
  includes: string[];
}

async function fingerprintOf(files: string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    try {
      const st = await stat(f);
      parts.push(`${st.mtimeMs}/${st.size}/${st.ino}`);
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

/** Keeps the zones of one directory, reloading only what changed. */
export class ZoneDirectory {
  private loaded = new Map<string, Loaded>();

  constructor(readonly dir: string) {}

  /** Reads the directory. Throws only when the directory itself cannot be read. */
  async load(): Promise<LoadResult> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.zone')).sort();
    const result: LoadResult = { zones: [], errors: [], parsed: [], removed: [], warnings: [] };
    const next = new Map<string, Loaded>();
    for (const name of names) {
      const file = join(this.dir, name);
      const prev = this.loaded.get(file);
      try {
        const st = await stat(file);
        if (!st.isFile()) continue;
      } catch (err) {
        result.errors.push({ file, reason: (err as Error).message, keptPrevious: false });
        continue;
      }
      if (prev && prev.fingerprint === (await fingerprintOf([file, ...prev.includes]))) {
        next.set(file, prev);
        continue;
      }
      result.parsed.push(file);
      try {
        const includes: string[] = [];
        const zone = await loadZoneFile(file, name.slice(0, -'.zone'.length), includes);
        next.set(file, { zone, fingerprint: await fingerprintOf([file, ...includes]), includes });
        for (const w of zone.warnings) result.warnings.push({ file, message: w });
      } catch (err) {
        const e = describe(err, file);
        result.errors.push({ file, line: e.line, reason: e.reason, keptPrevious: prev !== undefined });
        if (prev) next.set(file, prev);
      }
    }
    for (const file of this.loaded.keys()) if (!next.has(file)) result.removed.push(file);
    this.loaded = next;
    // two files for one origin cannot both be served: the first (sorted) wins, the other is an error
    const byOrigin = new Map<string, string>();
    for (const [file, l] of next) {
      const other = byOrigin.get(l.zone.origin);
      if (other) {
        result.errors.push({ file, reason: `zone ${l.zone.origin} is already loaded from ${other}`, keptPrevious: false });
        continue;
      }
      byOrigin.set(l.zone.origin, file);
      result.zones.push(l.zone);
    }
    return result;
  }
}

/**
 * Parses and checks one master file; the origin comes from the file name. `$INCLUDE` names are
 * resolved against the including file's directory; the files read are appended to `includes`.
 */
export async function loadZoneFile(file: string, originText: string, includes: string[] = []): Promise<Zone> {
  let origin: string;
  try {
    origin = nameKey(originText.endsWith('.') ? originText : originText + '.');
  } catch (err) {
    throw new ZoneParseError(file, 0, `file name does not give a zone name: ${(err as Error).message}`);
  }
  const text = await readFile(file, 'utf8');
  const parsed = parseMasterFile(text, {
    origin,
    file,
    readInclude: (name, from) => {
      const path = resolve(dirname(from), name);
      includes.push(path);
      return { text: readFileSync(path, 'utf8'), file: path };
    },
  });
  try {
    return buildZone(parsed);
  } catch (err) {
    if (err instanceof ZoneCheckError) throw new ZoneParseError(file, err.line ?? 0, err.reason);
    throw err;
  }
}

function describe(err: unknown, file: string): { line?: number; reason: string } {
  if (err instanceof ZoneParseError) {
    // a problem inside an included file: name that file and its line in the reason
    if (err.file !== file) return { reason: `in ${err.file}:${err.line}: ${err.reason}` };
    return { line: err.line || undefined, reason: err.reason };
  }
  if (err instanceof NameError) return { reason: err.message };
  return { reason: err instanceof Error ? err.message : String(err) };
}

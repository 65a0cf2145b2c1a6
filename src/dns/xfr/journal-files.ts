/**
 * The zones' transfer journals on disk, one file per zone in `dns.journal_dir`, so that a
 * secondary that is behind after a controller restart still gets IXFR. Written whole after each
 * version (a temporary file, fsync, rename: a crash leaves the old file or the new one, never a
 * torn one); a file that cannot be read back (checksum, format) is ignored and replaced.
 */
import { readFileSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';

/** Where journals are kept: bytes by zone (canonical key). */
export interface JournalStore {
  load(zone: string): Buffer | null;
  /** Stores the bytes; resolves once they are durable. */
  save(zone: string, bytes: Buffer): Promise<void>;
}

/** The file name of a zone's journal: the name when it is plain, else its hex form. */
export function journalFileName(zone: string): string {
  return /^[a-z0-9][a-z0-9._-]*$/.test(zone) && !zone.includes('..') ? `${zone}journal` : `x-${Buffer.from(zone).toString('hex')}.journal`;
}

export function createJournalFiles(dir: string): JournalStore {
  let made = false;
  return {
    load(zone) {
      try {
        return readFileSync(join(dir, journalFileName(zone)));
      } catch {
        return null;
      }
    },
    async save(zone, bytes) {
      if (!made) {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        made = true;
      }
      const file = join(dir, journalFileName(zone));
      const tmp = `${file}.tmp`;
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    },
  };
}

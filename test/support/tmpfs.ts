/**
 * A small tmpfs mounted in a temporary directory (needs root), and a padding file that sets how
 * much space is left on it. tmpfs allocates whole pages (4 KiB): asking for N bytes free leaves
 * N rounded down to a page; `setFree` returns what is actually free.
 */
import { execFile } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tmpfs {
  /** The mount point. */
  dir: string;
  /** Bytes free for an unprivileged writer now. */
  free(): number;
  /** Grows or shrinks the padding so that about `bytes` stay free; returns the bytes actually free. */
  setFree(bytes: number): number;
  /** Removes the padding: everything the files do not use is free again. */
  release(): void;
  /** Unmounts and removes the directory (tries a lazy unmount when busy). */
  unmount(): Promise<void>;
}

/** Mounts a tmpfs of `sizeBytes` in a new temporary directory. */
export async function mountTmpfs(sizeBytes: number): Promise<Tmpfs> {
  const base = mkdtempSync(join(tmpdir(), 'fc-tmpfs-'));
  const dir = join(base, 'fs');
  await run('mkdir', [dir]);
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  } catch (err) {
    rmSync(base, { recursive: true, force: true });
    throw err;
  }
  const padPath = join(dir, '.padding');
  let fd: number | null = openSync(padPath, 'w');
  let padSize = 0;
  const zeros = Buffer.alloc(1 << 20);
  const free = () => {
    const st = statfsSync(dir);
    return st.bavail * st.bsize;
  };
  const resize = (size: number) => {
    if (fd === null) fd = openSync(padPath, 'w');
    if (size < padSize) {
      ftruncateSync(fd, size);
      padSize = size;
      return;
    }
    // written, not truncated up: tmpfs does not allocate holes
    while (padSize < size) {
      const n = Math.min(zeros.length, size - padSize);
      try {
        padSize += writeSync(fd, zeros, 0, n, padSize);
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOSPC') return;
        throw err;
      }
    }
  };
  return {
    dir,
    free,
    setFree(bytes) {
      resize(Math.max(0, padSize + free() - bytes));
      return free();
    },
    release() {
      resize(0);
    },
    async unmount() {
      if (fd !== null) closeSync(fd);
      fd = null;
      try {
        await run('umount', [dir]);
      } catch {
        await run('umount', ['-l', dir]).catch(() => undefined);
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

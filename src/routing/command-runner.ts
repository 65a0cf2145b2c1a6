/**
 * Runs external commands without a shell: execFile with an argument array, a timeout, and the
 * output captured. Every argument that carries an address must be validated before it gets here.
 */
import { execFile } from 'node:child_process';

/** The result of one command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv[0] with argv[1..]; optional stdin. Never throws for a non-zero exit: see `code`. */
export type CommandRunner = (argv: readonly string[], opts?: { input?: string; timeoutMs?: number }) => Promise<CommandResult>;

/** The real runner: node:child_process.execFile, no shell. A spawn failure is code 127. */
export const runCommand: CommandRunner = (argv, opts = {}) =>
  new Promise((resolve) => {
    if (argv.length === 0) {
      resolve({ code: 127, stdout: '', stderr: 'empty command' });
      return;
    }
    const child = execFile(argv[0], argv.slice(1), { timeout: opts.timeoutMs ?? 10_000, maxBuffer: 16 << 20, shell: false }, (err, stdout, stderr) => {
      if (!err) {
        resolve({ code: 0, stdout, stderr });
        return;
      }
      const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
      const code = typeof e.code === 'number' ? e.code : e.killed ? 124 : 127;
      resolve({ code, stdout: stdout ?? '', stderr: (stderr ?? '') || e.message });
    });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    }
  });

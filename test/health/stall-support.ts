/**
 * Test helpers for controller stalls: blocking this process's event loop (as a long synchronous
 * task, a GC pause or CPU starvation does) while peers in other processes keep answering.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Blocks this thread's event loop for `ms` (busy loop): nothing of this process runs meanwhile. */
export function blockEventLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* stalled */
  }
}

/**
 * Blocks the event loop for `ms` from its check phase (setImmediate): when it resumes, the loop
 * runs its expired timers before it reads the I/O that arrived meanwhile, the worst case for a
 * timeout. (A stall inside a timer callback is followed by the poll phase first.)
 */
export function stallFromCheckPhase(ms: number): Promise<void> {
  return new Promise((resolve) =>
    setImmediate(() => {
      blockEventLoop(ms);
      resolve();
    }),
  );
}

/** An HTTP server in a child process, so that it answers while this process is blocked. */
export interface ChildHttpServer {
  port: number;
  stop(): Promise<void>;
}

// GET / answers 200 at once with x-served-by: IDENTITY; GET /slow/N answers the same after N ms.
// One line on stdout: the port.
const SERVER = `
const http = require('node:http');
const [host, identity] = process.argv.slice(1);
const s = http.createServer((q, r) => {
  const answer = () => r.writeHead(200, { 'x-served-by': identity, connection: 'close' }).end('ok');
  if (q.url.startsWith('/slow/')) setTimeout(answer, Number(q.url.slice(6)));
  else answer();
});
s.listen(0, host, () => process.stdout.write(s.address().port + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

/** Starts a child-process HTTP server on `host` (a loopback address) answering with `identity`. */
export async function startChildHttpServer(host: string, identity: string): Promise<ChildHttpServer> {
  const child: ChildProcess = spawn(process.execPath, ['-e', SERVER, host, identity], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`child HTTP server exited (${String(code)}) before listening`)));
  });
  return {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** PIDs of this process's children whose command name is `comm` (e.g. fping). */
export function childPids(comm: string): number[] {
  const pids: number[] = [];
  for (const task of readdirSync(`/proc/${process.pid}/task`)) {
    let list = '';
    try {
      list = readFileSync(`/proc/${process.pid}/task/${task}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const p of list.split(' ').filter(Boolean).map(Number)) {
      try {
        if (readFileSync(`/proc/${p}/comm`, 'utf8').trim() === comm) pids.push(p);
      } catch {
        /* gone */
      }
    }
  }
  return pids;
}

/**
 * Starts the real controller (the built CLI, `failoverctl serve`) as a child process on loopback
 * with a temporary config, for black-box tests and benchmarks. Requires `npm run build` first.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { stringify } from 'yaml';

const HERE_ROOT = resolve(new URL('../..', import.meta.url).pathname);
/** The repository root, also when this file runs compiled from dist/test/support. */
export const REPO_ROOT = HERE_ROOT.endsWith('/dist') ? resolve(HERE_ROOT, '..') : HERE_ROOT;
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'failoverctl.js');

/** A port free for both UDP and TCP on the given loopback address. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((res) => {
      const s = createServer();
      s.once('error', () => res(0));
      // below the kernel's ephemeral range (32768-60999): a port handed out by listen(0) can be
      // taken by another process's outgoing connection before the server meant for it binds it
      s.listen(20000 + Math.floor(Math.random() * 12000), host, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    if (port === 0) continue; // taken: another try
    const udpFree = await new Promise<boolean>((res) => {
      const u = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      u.once('error', () => res(false));
      u.bind(port, host, () => u.close(() => res(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port found');
}

export interface ControllerOptions {
  /** Directory of <zone>.zone master files. */
  zonesDir: string;
  /** Extra config merged at top level (e.g. { dns: {...} } keys are merged into dns). */
  extra?: Record<string, Record<string, unknown>>;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Pin to CPUs with taskset (e.g. "0"). */
  cpus?: string;
  /**
   * Scheduling priority (`nice -n`, negative = more CPU than the processes around it): for tests
   * that measure time with the controller's own clock and need it to run on time on a loaded machine.
   */
  nice?: number;
  /** Node options, e.g. ["--max-old-space-size=2048"]. */
  nodeArgs?: string[];
  /** Run in this directory (config, state) and keep it on stop: for restarts on the same state. */
  dir?: string;
  /** Other top-level config sections (servers, transits, routing, state...), written as given. */
  sections?: Record<string, unknown>;
  /** Run the controller inside this network namespace (its loopback); API calls go through curl there. */
  netns?: string;
  /** The program to start (default: CLI, the repository's build); e.g. an installed `failoverctl`. */
  cli?: string;
  /** The API's port (default: a free one), e.g. to name it in cluster.advertise_api beforehand. */
  apiPort?: number;
  /** The API token (default: a new random one), e.g. one token for several replicas. */
  token?: string;
}

export interface ControllerHandle {
  dnsPort: number;
  apiPort: number;
  token: string;
  dir: string;
  configPath: string;
  proc: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (pino JSON lines). */
  output(): string;
  /** GET on the API; returns status and body text. */
  get(path: string, auth?: boolean): Promise<{ status: number; body: string }>;
  /** POST a JSON body on the API. */
  post(path: string, body?: unknown): Promise<{ status: number; body: string }>;
  /** Sends SIGHUP (zone reload). */
  reload(): void;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes the temp dir (unless opts.dir was given). */
  stop(): Promise<void>;
  /** Kills the process with SIGKILL and waits for it to be gone; keeps the directory. */
  kill(): Promise<void>;
  /** Polls GET /v1/operations/{id} until it succeeded or failed (or the time is up); returns its JSON. */
  waitOperation(id: string, timeoutMs?: number): Promise<Record<string, any>>;
}

export async function startController(opts: ControllerOptions): Promise<ControllerHandle> {
  const cli = opts.cli ?? CLI;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first`);
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'fc-ctl-'));
  const removeDir = () => {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const dnsPort = await freePort();
  const apiPort = opts.apiPort ?? (await freePort());
  const token = opts.token ?? 'test-token-' + Math.random().toString(36).slice(2);
  const base: Record<string, Record<string, unknown>> = {
    dns: { listen: [`127.0.0.1:${dnsPort}`], zones: opts.zonesDir },
    api: { listen: `127.0.0.1:${apiPort}`, token_env: 'FC_TEST_TOKEN' },
    log: { level: 'info' },
  };
  for (const [k, v] of Object.entries(opts.extra ?? {})) base[k] = { ...(base[k] ?? {}), ...v };
  Object.assign(base, opts.sections ?? {});
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify(base));
  const argv = [...(opts.nodeArgs ?? []), cli, 'serve', '--config', configPath];
  let cmd = opts.cpus ? 'taskset' : process.execPath;
  let args = opts.cpus ? ['-c', opts.cpus, process.execPath, ...argv] : argv;
  if (opts.nice !== undefined) {
    args = ['-n', String(opts.nice), cmd, ...args];
    cmd = 'nice';
  }
  if (opts.netns) {
    args = ['netns', 'exec', opts.netns, cmd, ...args];
    cmd = 'ip';
  }
  const proc = spawn(cmd, args, {
    env: { ...process.env, FC_TEST_TOKEN: token, ...(opts.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  let exited: number | null = null;
  proc.on('exit', (code) => (exited = code ?? -1));

  const request = async (method: 'GET' | 'POST', path: string, auth: boolean, body?: unknown) => {
    const url = `http://127.0.0.1:${apiPort}${path}`;
    if (opts.netns) {
      const argv = ['netns', 'exec', opts.netns, 'curl', '-s', '-m', '30', '-o', '-', '-w', '\n%{http_code}', '-X', method];
      if (auth) argv.push('-H', `authorization: Bearer ${token}`);
      if (body !== undefined) argv.push('-H', 'content-type: application/json', '--data-binary', JSON.stringify(body));
      const out = await new Promise<string>((res, rej) => execFile('ip', [...argv, url], { timeout: 40_000 }, (err, stdout) => (err && !stdout ? rej(err) : res(stdout))));
      const cut = out.lastIndexOf('\n');
      return { status: Number(out.slice(cut + 1)) || 0, body: out.slice(0, cut) };
    }
    const r = await fetch(url, {
      method,
      headers: { ...(auth ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    return { status: r.status, body: await r.text() };
  };
  const get = (path: string, auth = true) => request('GET', path, auth);
  const handle: ControllerHandle = {
    dnsPort, apiPort, token, dir, configPath, proc,
    output: () => out,
    get,
    post: (path, body = {}) => request('POST', path, true, body),
    reload: () => proc.kill('SIGHUP'),
    stop: async () => {
      if (exited === null) {
        const done = new Promise<void>((res) => proc.once('exit', () => res()));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await done;
        clearTimeout(t);
      }
      removeDir();
    },
    waitOperation: async (id, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const op = JSON.parse((await get(`/v1/operations/${id}`)).body) as Record<string, any>;
        if (op.state === 'succeeded' || op.state === 'failed') return op;
        if (Date.now() > deadline) throw new Error(`operation ${id} still ${op.state} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    kill: async () => {
      if (exited === null) {
        const done = new Promise<void>((res) => proc.once('exit', () => res()));
        proc.kill('SIGKILL');
        await done;
      }
    },
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) {
      removeDir();
      throw new Error(`controller exited with ${exited} before it was ready:\n${out}`);
    }
    try {
      const r = await get('/readyz', false);
      if (r.status === 200) return handle;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await handle.stop();
      throw new Error(`controller not ready after 60 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A real etcd (the installed `etcd`, 3.4) on loopback for tests: one or three members on free
 * ports, data directories (0700) in one temporary directory. Ready when every member answers
 * GET /health with health "true" (a leader is elected). `stop()` kills every member and removes
 * the directory; a start that fails cleans up the same way before it throws.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from './controller.js';
import { waitFor } from './wait-for.js';

export interface EtcdClusterOptions {
  members: 1 | 3;
}

export interface EtcdMemberHandle {
  name: string;
  /** Client URL, e.g. http://127.0.0.1:23790. */
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess;
  /** Everything the member wrote to stdout and stderr so far. */
  output(): string;
}

export interface EtcdCluster {
  /** The members' client URLs, in member order. */
  endpoints: string[];
  members: EtcdMemberHandle[];
  /** Kills member i with SIGKILL and waits until it is gone. */
  kill(i: number): Promise<void>;
  /** Kills member i (if running) and starts it again on its data directory; resolves once it is healthy. */
  restart(i: number): Promise<void>;
  /** Freezes member i (SIGSTOP): it keeps its sockets but answers nothing. Resolves once the kernel reports it stopped. */
  sigstop(i: number): Promise<void>;
  /** Resumes member i after sigstop. */
  sigcont(i: number): void;
  /** Runs etcdctl against the cluster; resolves with its stdout. */
  etcdctl(args: string[]): Promise<string>;
  /** Kills every member and removes the data directories. */
  stop(): Promise<void>;
}

/** Starts an etcd cluster on loopback and waits until every member reports itself healthy. */
export async function startEtcdCluster(opts: EtcdClusterOptions): Promise<EtcdCluster> {
  const root = mkdtempSync(join(tmpdir(), 'fc-etcd-'));
  const members: EtcdMemberHandle[] = [];
  const exited = new Map<number, Promise<void>>();
  const gone = new Set<number>();

  const argv: string[][] = [];
  const outputs: string[] = [];
  /** Spawns member i; its output is appended to outputs[i]. */
  const launch = (i: number, args: string[]): ChildProcess => {
    gone.delete(i);
    outputs[i] ??= '';
    const proc = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d) => (outputs[i] += d));
    proc.stderr!.on('data', (d) => (outputs[i] += d));
    exited.set(i, new Promise<void>((res) => proc.once('exit', () => {
      gone.add(i);
      res();
    })));
    proc.once('error', (err) => {
      outputs[i] += `\nspawn failed: ${err.message}`;
      gone.add(i);
    });
    return proc;
  };
  const healthy = async (m: EtcdMemberHandle) => {
    try {
      const r = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(2000) });
      return r.ok && ((await r.json()) as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  };
  const waitHealthy = (which: number[]) => waitFor(`etcd member(s) ${which.map((i) => members[i].name).join(', ')} healthy`, async () => {
    const dead = which.find((i) => gone.has(i));
    if (dead !== undefined) throw new Error(`etcd member ${members[dead].name} exited during start:\n${members[dead].output()}`);
    return (await Promise.all(which.map((i) => healthy(members[i])))).every(Boolean);
  }, { pollMs: 50 });

  const killMember = async (i: number) => {
    const m = members[i];
    if (!m || gone.has(i)) return;
    m.proc.kill('SIGKILL');
    await exited.get(i);
  };
  const stop = async () => {
    await Promise.all(members.map((_m, i) => killMember(i)));
    rmSync(root, { recursive: true, force: true });
  };

  try {
    const ports = [];
    for (let i = 0; i < opts.members; i++) ports.push({ client: await freePort(), peer: await freePort() });
    const token = `fc-test-${randomBytes(4).toString('hex')}`;
    const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
    for (let i = 0; i < opts.members; i++) {
      const name = `m${i}`;
      const clientUrl = `http://127.0.0.1:${ports[i].client}`;
      const peerUrl = `http://127.0.0.1:${ports[i].peer}`;
      const dataDir = join(root, name);
      mkdirSync(dataDir, { mode: 0o700 });
      const args = [
        '--name', name, '--data-dir', dataDir,
        '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
        '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
        ...(opts.members > 1 ? ['--pre-vote'] : []),
      ];
      argv.push(args);
      members.push({ name, clientUrl, peerUrl, dataDir, proc: launch(i, args), output: () => outputs[i] });
    }

    await waitHealthy(members.map((_m, i) => i));
  } catch (err) {
    await stop();
    throw err;
  }

  const endpoints = members.map((m) => m.clientUrl);
  return {
    endpoints,
    members,
    kill: killMember,
    restart: async (i) => {
      await killMember(i);
      members[i].proc = launch(i, argv[i]);
      await waitHealthy([i]);
    },
    sigstop: async (i) => {
      const { pid } = members[i].proc;
      if (!members[i].proc.kill('SIGSTOP') || pid === undefined) throw new Error(`etcd member ${members[i].name} is not running`);
      // the state letter follows the parenthesised command name in /proc/<pid>/stat: T when stopped
      await waitFor(`etcd member ${members[i].name} stopped`, () => /\) T /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')));
    },
    sigcont: (i) => void members[i].proc.kill('SIGCONT'),
    etcdctl: (args) => new Promise<string>((res, rej) => {
      execFile('etcdctl', ['--endpoints', endpoints.join(','), '--command-timeout', '5s', ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 20_000 }, (err, stdout, stderr) => {
        if (err) rej(new Error(`etcdctl ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        else res(stdout);
      });
    }),
    stop,
  };
}

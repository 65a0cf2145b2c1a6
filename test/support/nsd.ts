/**
 * Starts NSD (the NLnet Labs authoritative server, Debian package `nsd`) in the foreground on a
 * free loopback port with a generated nsd.conf, as the reference implementation for differential
 * tests and benchmarks. Never skips: if nsd is missing, start fails and names the package.
 *
 * NSD options used (NSD 4.x, see nsd.conf(5)):
 *  - ip-address: 127.0.0.1@PORT       only loopback, on a port found free by freePort()
 *  - server-count: N (default 1)      one answering process, comparable to one Node process
 *  - rrl-ratelimit: 0                 response rate limiting off (it would answer TC / drop
 *                                     under a benchmark or a burst of test queries)
 *  - minimal-responses: yes           no extra NS/additional data except what referrals need;
 *                                     the behaviour we compare against
 *  - refuse-any: no (default)         ANY answered normally (see the differential test)
 *  - round-robin: no (default)        stable RR order (our comparator is order-insensitive anyway)
 *  - username: "", chroot: ""         we run as whoever runs the tests (root here); no
 *                                     privilege drop, no chroot, so temp-dir paths just work
 *  - database: ""                     no nsd.db; zones are read from the zone files
 *  - zonelistfile, xfrdfile, xfrdir, pidfile: inside the temp dir (nothing under /var or /run)
 *  - remote-control: control-enable: no
 *  - verbosity: 1, logging to stderr (captured, shown when start fails)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { freePort } from './controller.js';

export const NSD_BIN = process.env.NSD_BIN ?? '/usr/sbin/nsd';

export interface NsdZone {
  /** Zone origin, e.g. "example.com." (trailing dot optional). */
  name: string;
  /** Path of the master file. */
  file: string;
}

export interface NsdOptions {
  zones: NsdZone[];
  /** server-count (default 1). */
  serverCount?: number;
  /** Pin NSD (and its children) to these CPUs with taskset, e.g. "0". */
  cpus?: string;
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Extra "server:" options, written as `key: value`. */
  serverOptions?: Record<string, string | number>;
  /** Start timeout in ms (default 30 s). */
  timeoutMs?: number;
}

export interface NsdHandle {
  port: number;
  dir: string;
  confPath: string;
  proc: ChildProcess;
  /** What nsd wrote on stdout/stderr so far. */
  output(): string;
  /** Stops NSD (SIGTERM to its process group, SIGKILL after 5 s) and removes the temp dir. */
  stop(): Promise<void>;
}

/** Zones of a directory of `<zone>.zone` files (the layout the controller uses). */
export function zonesFromDir(dir: string): NsdZone[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.zone'))
    .sort()
    .map((f) => ({ name: basename(f, '.zone'), file: resolve(dir, f) }));
}

/** Fails with an actionable message if NSD is not installed. */
export function assertNsdInstalled(): void {
  if (!existsSync(NSD_BIN)) {
    throw new Error(
      `NSD is not installed (${NSD_BIN} missing): install the Debian package "nsd" ` +
        `(apt-get install -y nsd); the differential test and bench:dns need it as the reference server`,
    );
  }
}

/** NSD version string, e.g. "4.6.1". */
export function nsdVersion(): string {
  assertNsdInstalled();
  const r = spawnSync(NSD_BIN, ['-v'], { encoding: 'utf8' });
  const m = /NSD version (\S+)/.exec(`${r.stdout}${r.stderr}`);
  return m ? m[1] : 'unknown';
}

function q(s: string): string {
  return JSON.stringify(s);
}

export function nsdConf(dir: string, port: number, opts: NsdOptions): string {
  const server: Record<string, string | number> = {
    'ip-address': `127.0.0.1@${port}`,
    'do-ip6': 'no',
    'server-count': opts.serverCount ?? 1,
    'rrl-ratelimit': 0,
    'minimal-responses': 'yes',
    username: q(''),
    chroot: q(''),
    database: q(''),
    zonesdir: q(dir),
    zonelistfile: q(join(dir, 'zone.list')),
    xfrdfile: q(join(dir, 'xfrd.state')),
    xfrdir: q(dir),
    pidfile: q(join(dir, 'nsd.pid')),
    'cookie-secret-file': q(join(dir, 'cookiesecrets.txt')),
    verbosity: 1,
    'hide-version': 'yes',
    ...(opts.serverOptions ?? {}),
  };
  const lines = ['server:'];
  for (const [k, v] of Object.entries(server)) lines.push(`  ${k}: ${v}`);
  lines.push('', 'remote-control:', '  control-enable: no', '');
  for (const z of opts.zones) {
    const name = z.name.endsWith('.') ? z.name : `${z.name}.`;
    lines.push('zone:', `  name: ${q(name)}`, `  zonefile: ${q(resolve(z.file))}`, '');
  }
  return lines.join('\n');
}

/** Minimal DNS SOA query over UDP; resolves to the rcode and AA flag of the answer, or null. */
export function probeSoa(port: number, zone: string, timeoutMs = 300): Promise<{ rcode: number; aa: boolean } | null> {
  const labels = zone.replace(/\.$/, '').split('.').filter(Boolean);
  const parts: Buffer[] = [Buffer.from([0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0, 0, 6, 0, 1]));
  const msg = Buffer.concat(parts);
  return new Promise((res) => {
    const s = createSocket('udp4');
    const done = (v: { rcode: number; aa: boolean } | null) => {
      clearTimeout(t);
      try {
        s.close();
      } catch {
        /* already closed */
      }
      res(v);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    s.on('error', () => done(null));
    s.on('message', (m) => {
      if (m.length < 12 || m.readUInt16BE(0) !== 0x1234) return;
      done({ rcode: m[3] & 0x0f, aa: (m[2] & 0x04) !== 0 });
    });
    s.send(msg, port, '127.0.0.1');
  });
}

/** Waits until the server on 127.0.0.1:port answers SOA for each zone with NOERROR and AA. */
export async function waitForSoa(port: number, zones: string[], timeoutMs = 30_000, alive: () => boolean = () => true): Promise<void> {
  const pending = new Set(zones);
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0) {
    if (!alive()) throw new Error('server exited');
    for (const z of [...pending]) {
      const r = await probeSoa(port, z);
      if (r && r.rcode === 0 && r.aa) pending.delete(z);
    }
    if (pending.size === 0) return;
    if (Date.now() > deadline) throw new Error(`no authoritative SOA answer for ${[...pending].join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startNsd(opts: NsdOptions): Promise<NsdHandle> {
  assertNsdInstalled();
  if (opts.cpus && !existsSync('/usr/bin/taskset')) {
    throw new Error('taskset is missing: install the Debian package "util-linux"');
  }
  const dir = mkdtempSync(join(tmpdir(), 'fc-nsd-'));
  let proc: ChildProcess | undefined;
  let out = '';
  let exited: number | null = null;
  const stop = async () => {
    if (proc && exited === null && proc.pid) {
      const done = new Promise<void>((r) => proc!.once('exit', () => r()));
      try {
        process.kill(-proc.pid, 'SIGTERM'); // the process group: nsd and its server/xfrd children
      } catch {
        /* gone */
      }
      const t = setTimeout(() => {
        try {
          process.kill(-proc!.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 5000);
      await done;
      clearTimeout(t);
      // children may outlive the parent for a moment; make sure the group is gone
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = opts.port ?? (await freePort());
    const confPath = join(dir, 'nsd.conf');
    writeFileSync(confPath, nsdConf(dir, port, opts));
    const check = spawnSync('/usr/sbin/nsd-checkconf', [confPath], { encoding: 'utf8' });
    if (check.status !== 0 && existsSync('/usr/sbin/nsd-checkconf')) {
      throw new Error(`nsd-checkconf rejected the generated config:\n${check.stdout}${check.stderr}`);
    }
    const argv = [NSD_BIN, '-d', '-c', confPath];
    const cmd = opts.cpus ? '/usr/bin/taskset' : argv[0];
    const args = opts.cpus ? ['-c', opts.cpus, ...argv] : argv.slice(1);
    proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    proc.on('exit', (code, sig) => (exited = code ?? (sig ? 128 : -1)));
    proc.on('error', (e) => {
      out += `spawn error: ${e.message}\n`;
      exited = -1;
    });
    const handle: NsdHandle = { port, dir, confPath, proc, output: () => out, stop };
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    const pending = new Set(opts.zones.map((z) => z.name));
    for (;;) {
      if (exited !== null) throw new Error(`nsd exited with ${exited} before it was ready:\n${out}`);
      const bad = /error: zone (\S+) file .* read with \d+ errors/.exec(out);
      if (bad) throw new Error(`nsd could not load zone ${bad[1]}:\n${out}`);
      for (const z of [...pending]) {
        const r = await probeSoa(port, z);
        if (r && r.rcode === 0 && r.aa) pending.delete(z);
      }
      if (pending.size === 0) return handle;
      if (Date.now() > deadline) {
        throw new Error(`nsd does not answer SOA for ${[...pending].join(', ')} after start:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * BGP on top of a netns lab (test/support/netns-lab.ts): BIRD 2 in the router namespace as the
 * provider's router (deploy/bgp/bird.conf: import filters on prefix length and next hop), gobgpd
 * in a speaker namespace on the server LAN (deploy/bgp/gobgpd.toml), its gRPC API on a unix
 * socket in a temporary directory (the file system is shared across namespaces, so the test
 * process reaches it without routing).
 *
 *   router br0 ── sp0 ═ eth0 speaker 192.0.2.5/25, 2001:db8:ffff::5/64 (AS 65001 → router AS 65000)
 *
 * The lab's static host routes are removed first: BIRD's kernel routes (metric 32) would lose to
 * them. Needs root, bird2, gobgpd and golang-github-osrg-gobgp-dev. Names are `fcbgp<pid>-<n>-speaker`;
 * speaker namespaces of earlier runs whose process is gone are deleted at start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../src/routing/command-runner.js';
import { DEFAULT_PROTO_DIR, GobgpGrpcClient } from '../../src/routing/gobgp-client.js';
import { REPO_ROOT } from './controller.js';
import { removeNamespaces, SERVICE_ADDRESSES, staleNamespaces, type Lab } from './netns-lab.js';
import { waitFor } from './wait-for.js';

/** The speaker's LAN addresses and the router's BGP neighbour address (as in deploy/bgp/). */
export const SPEAKER = ['192.0.2.5', '2001:db8:ffff::5'] as const;
export const ROUTER_PEER = '192.0.2.1';
const DEPLOY = join(REPO_ROOT, 'deploy', 'bgp');

/** True when bird, gobgpd and the GoBGP API definitions are installed. */
export function haveBgpTools(): boolean {
  return existsSync('/usr/sbin/bird') && existsSync('/usr/sbin/birdc') && existsSync('/usr/bin/gobgpd') && existsSync(join(DEFAULT_PROTO_DIR, 'gobgp.proto'));
}

/** BGP added to a lab. */
export interface BgpLab {
  speakerNs: string;
  /** gobgpd's API target (`unix:///…`). */
  api: string;
  /** BIRD's control socket. */
  birdSocket: string;
  /** The verify command for BgpRouteBackend (`birdc … show route for`, run in the router namespace). */
  verify: string[];
  /** Runs birdc with `args` in the router namespace: its stdout. */
  birdc(args: string[]): Promise<string>;
  /** Starts gobgpd (with `-r` when gracefulRestart); its neighbour stays admin-down until enablePeer(). */
  startGobgpd(opts?: { gracefulRestart?: boolean }): Promise<void>;
  /** Stops gobgpd with `signal` and waits for its exit. */
  stopGobgpd(signal: NodeJS.Signals): Promise<void>;
  /** EnablePeer for the router, then waits until BIRD shows the session Established. */
  enablePeer(): Promise<void>;
  /** Stops bird and gobgpd, deletes the speaker namespace and the directory. Safe to call twice. */
  destroy(): Promise<void>;
}

let seq = 0;

async function must(argv: string[], input?: string): Promise<string> {
  const r = await runCommand(argv, { input, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`bgp-lab: ${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function spawnLogged(argv: string[]): ChildProcess & { log: string[] } {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcess & { log: string[] };
  child.log = [];
  const keep = (d: Buffer) => {
    child.log.push(d.toString());
    if (child.log.length > 200) child.log.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  await exited;
}

/** Adds the speaker namespace, BIRD on the router and gobgpd (not started: call startGobgpd). On failure everything added is removed. */
export async function addBgp(lab: Lab): Promise<BgpLab> {
  await removeNamespaces(await staleNamespaces(/^fcbgp(\d+)-\d+-(speaker)$/));
  const speakerNs = `fcbgp${process.pid}-${++seq}-speaker`;
  const dir = mkdtempSync(join(tmpdir(), 'fcbgp-'));
  const birdSocket = join(dir, 'bird.ctl');
  const apiPath = join(dir, 'gobgp.sock');
  const api = `unix://${apiPath}`;
  let bird: (ChildProcess & { log: string[] }) | undefined;
  let gobgpd: (ChildProcess & { log: string[] }) | undefined;
  let destroyed = false;

  const birdc = (args: string[]) => runCommand(['ip', 'netns', 'exec', lab.ns.router, 'birdc', '-s', birdSocket, ...args], { timeoutMs: 10_000 }).then((r) => r.stdout);
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await stopChild(gobgpd, 'SIGKILL');
    await stopChild(bird, 'SIGKILL');
    await removeNamespaces([speakerNs]);
    rmSync(dir, { recursive: true, force: true });
  };

  const bgp: BgpLab = {
    speakerNs,
    api,
    birdSocket,
    verify: ['ip', 'netns', 'exec', lab.ns.router, 'birdc', '-s', birdSocket, 'show', 'route', 'for'],
    birdc,
    async startGobgpd(opts = {}) {
      rmSync(apiPath, { force: true }); // a SIGKILLed gobgpd leaves its socket: bind would fail
      gobgpd = spawnLogged(['ip', 'netns', 'exec', speakerNs, 'gobgpd', '-f', join(dir, 'gobgpd.toml'), '-t', 'toml', '-p', '--pprof-disable', '--api-hosts', api, ...(opts.gracefulRestart ? ['-r'] : [])]);
      await waitFor('gobgpd API socket', () => existsSync(apiPath) || gobgpd!.exitCode !== null);
      if (gobgpd.exitCode !== null) throw new Error(`bgp-lab: gobgpd exited (${gobgpd.exitCode}): ${gobgpd.log.join('')}`);
    },
    async stopGobgpd(signal) {
      await stopChild(gobgpd, signal);
    },
    async enablePeer() {
      const client = new GobgpGrpcClient({ api });
      try {
        await client.enablePeer(ROUTER_PEER);
      } finally {
        client.close();
      }
      await waitFor('BGP session Established', async () => /Established/.test(await birdc(['show', 'protocols', 'speaker'])));
    },
    destroy,
  };

  try {
    await must(['ip', 'netns', 'add', speakerNs]);
    await must(['ip', 'netns', 'exec', speakerNs, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await must(['ip', '-n', lab.ns.router, '-batch', '-'], [`link add sp0 type veth peer name eth0 netns ${speakerNs}`, 'link set sp0 master br0', 'link set sp0 up'].join('\n') + '\n');
    await must(['ip', '-n', speakerNs, '-batch', '-'], ['link set lo up', `addr add ${SPEAKER[0]}/25 dev eth0`, `addr add ${SPEAKER[1]}/64 dev eth0 nodad`, 'link set eth0 up'].join('\n') + '\n');
    // BGP routes replace the lab's static ones
    const del = Object.values(SERVICE_ADDRESSES).flatMap((list) => list.map((a: string) => `route del ${a}/${a.includes(':') ? 128 : 32}`));
    await must(['ip', '-n', lab.ns.router, '-force', '-batch', '-'], del.join('\n') + '\n').catch(() => undefined);
    writeFileSync(join(dir, 'bird.conf'), readFileSync(join(DEPLOY, 'bird.conf'), 'utf8'));
    writeFileSync(join(dir, 'gobgpd.toml'), readFileSync(join(DEPLOY, 'gobgpd.toml'), 'utf8'));
    bird = spawnLogged(['ip', 'netns', 'exec', lab.ns.router, 'bird', '-f', '-c', join(dir, 'bird.conf'), '-s', birdSocket]);
    await waitFor('BIRD control socket', async () => bird!.exitCode !== null || /ready/.test(await birdc(['show', 'status'])));
    if (bird.exitCode !== null) throw new Error(`bgp-lab: bird exited (${bird.exitCode}): ${bird.log.join('')}`);
  } catch (err) {
    await destroy();
    throw err;
  }
  return bgp;
}

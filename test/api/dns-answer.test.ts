/**
 * GET /v1/servers/{server} says per address what DNS answers and why, and dig agrees: through a
 * migration driven by the API (account moved to the transit: its zones answer the transit's
 * addresses, reason account_move, while `dns_answer` stays the origin for the other zones), a
 * cutover (server_overlay everywhere) and a cutback (the moved accounts keep the transit).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { digBatch, type DigAnswer } from '../support/dig.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'migration');
const SRV = ['203.0.113.10', '203.0.113.11', '2001:db8:42::10'];
const TRANSIT = ['198.51.100.20', '198.51.100.21', '2001:db8:3::20'];

let zones: string;
let ctl: ControllerHandle;
beforeAll(async () => {
  zones = mkdtempSync(join(tmpdir(), 'fc-dns-answer-'));
  for (const f of readdirSync(FIXTURES)) copyFileSync(join(FIXTURES, f), join(zones, f));
  // a zone of no account carrying the server's addresses
  writeFileSync(join(zones, 'plain.test.zone'), [
    '$TTL 600',
    '@ SOA ns1.plain.test. hostmaster.plain.test. 1 7200 900 1209600 300',
    '@ NS ns1', 'ns1 A 192.0.2.53',
    `@ A ${SRV[0]}`, `@ AAAA ${SRV[2]}`, '',
  ].join('\n'));
  ctl = await startController({
    zonesDir: zones,
    sections: {
      servers: [{ name: 'srv-42', addresses: SRV }],
      transits: [{ name: 'transit-3', addresses: TRANSIT }],
      accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'] }, { name: 'shop', server: 'srv-42', zones: ['shop.test'] }],
      state: { path: './state.db' },
      routing: { backend: 'dry-run' },
    },
  });
});
afterAll(async () => {
  await ctl?.stop();
  if (zones) rmSync(zones, { recursive: true, force: true });
});

/** The served records carrying the server's addresses: query, zone, address and TTL in the zone file. */
const RECORDS = [
  { qname: 'acme.test', qtype: 'A', zone: 'acme.test', address: SRV[0], ttl: 3600 },
  { qname: 'www.acme.test', qtype: 'A', zone: 'acme.test', address: SRV[0], ttl: 3600 },
  { qname: 'shop.test', qtype: 'A', zone: 'shop.test', address: SRV[1], ttl: 1800 },
  { qname: 'shop.test', qtype: 'AAAA', zone: 'shop.test', address: SRV[2], ttl: 1800 },
  { qname: 'plain.test', qtype: 'A', zone: 'plain.test', address: SRV[0], ttl: 600 },
  { qname: 'plain.test', qtype: 'AAAA', zone: 'plain.test', address: SRV[2], ttl: 600 },
];

interface DnsJson { answer: string; reason: string; transit: string | null; ttl_cap: number | null }
interface AddressJson { address: string; dns_answer: string; dns: DnsJson & { accounts: (DnsJson & { account: string; zones: string[] })[] } }

const post = async (path: string, body: unknown = {}) => {
  const r = await ctl.post(path, body);
  return { status: r.status, body: JSON.parse(r.body) };
};
const server = async (): Promise<AddressJson[]> => JSON.parse((await ctl.get('/v1/servers/srv-42')).body).addresses;

/** What the API says a resolver gets for each record, next to what dig gets. */
async function compare() {
  const addresses = await server();
  const dig = await digBatch(RECORDS.map(({ qname, qtype }) => ({ qname, qtype })), { port: ctl.dnsPort });
  return RECORDS.map((r, i) => {
    const a = addresses.find((x) => x.address === r.address)!;
    const view = a.dns.accounts.find((acc) => acc.zones.includes(r.zone)) ?? a.dns;
    const got = dig[i] as DigAnswer;
    const rr = got.answer.filter((x) => x.type === r.qtype);
    return {
      query: `${r.qname} ${r.qtype}`,
      api: { answer: view.answer, ttl: view.ttl_cap === null ? r.ttl : Math.min(r.ttl, view.ttl_cap), reason: view.reason },
      dig: { answer: rr.map((x) => x.rdata).join(' '), ttl: rr[0]?.ttl, reason: view.reason },
    };
  });
}

/** The answer and reason per address (general) and per account. */
async function summary() {
  return Object.fromEntries((await server()).map((a) => [a.address, {
    dns_answer: a.dns_answer, answer: a.dns.answer, reason: a.dns.reason,
    accounts: Object.fromEntries(a.dns.accounts.map((x) => [x.account, `${x.answer} ${x.reason}`])),
  }]));
}

describe('GET /v1/servers/{server}: what DNS answers, per address, and why', () => {
  test('before anything moves: the zone files everywhere', async () => {
    const s = await summary();
    expect(s[SRV[0]]).toEqual({ dns_answer: SRV[0], answer: SRV[0], reason: 'base_zone', accounts: { acme: `${SRV[0]} base_zone`, shop: `${SRV[0]} base_zone` } });
    const a = (await server())[0];
    expect(a.dns.accounts).toEqual([
      { account: 'acme', zones: ['acme.test'], answer: SRV[0], reason: 'base_zone', transit: null, ttl_cap: null },
      { account: 'shop', zones: ['shop.test'], answer: SRV[0], reason: 'base_zone', transit: null, ttl_cap: null },
    ]);
    for (const c of await compare()) expect(c.dig).toEqual(c.api);
  });

  test('an account moved to the transit through the migration API: its zones answer the transit, reason account_move; dig agrees', async () => {
    expect((await post('/v1/servers/srv-42/migration')).status).toBe(201);
    await post('/v1/accounts/acme/move', { to: 'transit', phase: 'started' });
    expect((await post('/v1/accounts/acme/move', { to: 'transit', phase: 'completed' })).body.location).toBe('transit');

    const s = await summary();
    // dns_answer keeps its meaning: the answer in zones of no moved account
    expect(s[SRV[0]]).toEqual({ dns_answer: SRV[0], answer: SRV[0], reason: 'base_zone', accounts: { acme: `${TRANSIT[0]} account_move`, shop: `${SRV[0]} base_zone` } });
    expect(s[SRV[2]].accounts).toEqual({ acme: `${TRANSIT[2]} account_move`, shop: `${SRV[2]} base_zone` });
    const acme = (await server())[0].dns.accounts[0];
    expect(acme).toEqual({ account: 'acme', zones: ['acme.test'], answer: TRANSIT[0], reason: 'account_move', transit: 'transit-3', ttl_cap: 60 });

    const c = await compare();
    for (const x of c) expect(x.dig).toEqual(x.api);
    expect(c.find((x) => x.query === 'acme.test A')!.dig).toEqual({ answer: TRANSIT[0], ttl: 60, reason: 'account_move' });
    expect(c.find((x) => x.query === 'plain.test A')!.dig).toEqual({ answer: SRV[0], ttl: 600, reason: 'base_zone' });
  });

  test('cutover (every account on the transit): server_overlay everywhere; cutback: the moved accounts keep the transit', async () => {
    await post('/v1/accounts/shop/move', { to: 'transit', phase: 'started' });
    await post('/v1/accounts/shop/move', { to: 'transit', phase: 'completed' });
    const cut = await post('/v1/servers/srv-42/cutover?wait=30', { transit: 'transit-3' });
    expect(cut.body.state).toBe('succeeded');
    const during = await summary();
    for (const [i, address] of SRV.entries()) {
      expect(during[address]).toEqual({
        dns_answer: TRANSIT[i], answer: TRANSIT[i], reason: 'server_overlay',
        accounts: { acme: `${TRANSIT[i]} server_overlay`, shop: `${TRANSIT[i]} server_overlay` },
      });
    }
    for (const x of await compare()) expect(x.dig).toEqual(x.api);

    expect((await post('/v1/servers/srv-42/reinstalled')).status).toBe(200);
    expect((await post('/v1/servers/srv-42/cutback?wait=30')).body.state).toBe('succeeded');
    const after = await summary();
    expect(after[SRV[0]]).toEqual({ dns_answer: SRV[0], answer: SRV[0], reason: 'base_zone', accounts: { acme: `${TRANSIT[0]} account_move`, shop: `${TRANSIT[0]} account_move` } });
    const c = await compare();
    for (const x of c) expect(x.dig).toEqual(x.api);
    expect(c.find((x) => x.query === 'shop.test AAAA')!.dig).toEqual({ answer: TRANSIT[2], ttl: 60, reason: 'account_move' });
    // GET /v1/servers shows the same
    const all = JSON.parse((await ctl.get('/v1/servers')).body).servers[0].addresses;
    expect(all).toEqual(await server());
  });
});

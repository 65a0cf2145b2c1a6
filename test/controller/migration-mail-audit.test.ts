/**
 * The MX audit kept on a migration, over the real SQLite store with an auditor under the test's
 * control: started at the request and again at the cutover, recorded when it ends (after the
 * commit that started it, never in the way of the migration), missing with a reason when it fails
 * or passes its deadline, the cutover's warnings from the last results, resumed after a restart,
 * and records stored before the audit existed still load.
 */
import { afterEach, describe, expect, test } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { mxAuditJson } from '../../src/api/routes/migration-routes.js';
import { MigrationService } from '../../src/controller/migration-service.js';
import { parseAddress, type IpAddress } from '../../src/core/addresses.js';
import type { Inventory } from '../../src/core/inventory.js';
import type { MailDomainResult } from '../../src/core/mail-audit.js';
import type { MailDomainAuditor, StateStore } from '../../src/core/ports.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { waitFor } from '../support/wait-for.js';

const addr = (s: string) => parseAddress(s) as IpAddress;
const inventory: Inventory = {
  servers: new Map([
    ['srv-42', { name: 'srv-42', profile: 'vps', addresses: [addr('203.0.113.10')] }],
    ['srv-43', { name: 'srv-43', profile: 'vps', addresses: [addr('203.0.113.11')] }],
  ]),
  transits: new Map([['transit-3', { name: 'transit-3', profile: 'vps', addresses: [addr('198.51.100.20')] }]]),
  accounts: new Map([
    ['acme', { name: 'acme', server: 'srv-42', zones: ['acme.test.'], mailDomains: ['acme-mail.example', 'shop.example'] }],
    ['bob', { name: 'bob', server: 'srv-42', zones: ['bob.test.'], mailDomains: ['bob.example'] }],
    ['plain', { name: 'plain', server: 'srv-43', zones: ['plain.test.'] }],
  ]),
};

const FORBIDDEN = { check: 'forbidden-mx', verdict: 'FAIL', evidence: 'MX 5 srv-42.alwaysdata.net is a per-server MX record', fix: 'delete `MX 5 srv-42.alwaysdata.net` at your DNS provider' };
const result = (domain: string, verdict: string, checks = [{ check: 'mx-present', verdict: 'OK', evidence: '2 MX record(s)', fix: null as string | null }]): MailDomainResult =>
  ({ domain, verdict, checks });

/** An auditor answering from `answers` (per call), or never (`hang`), or with an error. */
function auditor(answers: ((domains: readonly string[]) => Promise<MailDomainResult[]>)[]): MailDomainAuditor & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    audit(domains) {
      calls.push([...domains]);
      const next = answers[Math.min(calls.length, answers.length) - 1];
      return next(domains);
    },
  };
}

const stores: StateStore[] = [];
const dirs: string[] = [];
const services: MigrationService[] = [];
afterEach(() => {
  for (const s of services.splice(0)) s.stop();
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(mail: MailDomainAuditor | undefined, opts: { path?: string; deadlineMs?: number } = {}) {
  const path = opts.path ?? join(mkdtempSync(join(tmpdir(), 'fc-mxmig-')), 'state.db');
  if (!opts.path) dirs.push(join(path, '..'));
  const store = openSqliteStore(path);
  stores.push(store);
  const clock = { t: Date.UTC(2026, 11, 1, 12), now: () => clock.t, monotonic: () => clock.t };
  const svc = new MigrationService({
    inventory: () => inventory, store, clock, logger: pino({ level: 'silent' }),
    overlays: { stage: () => ({ change: {}, apply: () => undefined }), restore: () => undefined },
    cutoverTtl: 60, ttlMarginS: 300, freeDays: 14, currency: 'EUR', largestTtl: () => 300,
    mailAuditor: mail, mailAuditDeadlineMs: opts.deadlineMs,
    commitRetry: { minMs: 5, maxMs: 20 },
  });
  services.push(svc);
  return { svc, store, clock, path };
}

/** Cuts the migration over as the cutover service does: its staged part committed, then applied. */
async function cutover(svc: MigrationService, store: StateStore, server: string) {
  svc.checkCutover(server, 'transit-3', true);
  const staged = svc.cutoverAccepted(server, true)!;
  await store.commit(staged.change);
  staged.apply();
}

const verdicts = (svc: MigrationService, server = 'srv-42') => svc.get(server)!.mxAudit?.domains.map((d) => [d.account, d.domain, d.verdict]);

describe('the MX audit of a migration', () => {
  test('audited at the request, refreshed at the cutover; the cutover is warned from the last results', async () => {
    const a = auditor([
      async (ds) => ds.map((d) => (d === 'shop.example' ? result(d, 'FAIL', [FORBIDDEN]) : result(d, 'OK'))),
      async (ds) => ds.map((d) => result(d, 'OK')),
    ]);
    const { svc, store, clock } = setup(a);
    const { migration } = await svc.request('srv-42', null);
    expect(migration.mxAudit).toMatchObject({ trigger: 'request', state: 'running', auditedAt: null, domains: [] });
    await svc.auditsSettled();
    expect(a.calls).toEqual([['acme-mail.example', 'shop.example', 'bob.example']]);
    expect(verdicts(svc)).toEqual([['acme', 'acme-mail.example', 'OK'], ['acme', 'shop.example', 'FAIL'], ['bob', 'bob.example', 'OK']]);
    const first = svc.get('srv-42')!.mxAudit!;
    expect(first).toMatchObject({ state: 'done', reason: null, auditedAt: clock.t });
    // stored: a restart reads the same
    expect((store.migrations() as { mxAudit: unknown }[])[0].mxAudit).toEqual(first);
    expect(mxAuditJson(first)).toMatchObject({
      state: 'done', trigger: 'request', audited_at: '2026-12-01T12:00:00.000Z',
      counts: { OK: 2, INFO: 0, WARN: 0, UNKNOWN: 0, FAIL: 1, INVALID: 0 },
      domains: [
        { account: 'acme', domain: 'acme-mail.example', verdict: 'OK' },
        { account: 'acme', domain: 'shop.example', verdict: 'FAIL', checks: [FORBIDDEN] },
        { account: 'bob', domain: 'bob.example', verdict: 'OK' },
      ],
    });

    clock.t += 3_600_000;
    await cutover(svc, store, 'srv-42');
    // the cutover's answer comes from the last results: the refresh runs after the commit
    expect(svc.cutoverWarnings('srv-42')).toEqual([{
      code: 'FORBIDDEN_MX', account: 'acme', domain: 'shop.example', fixes: [FORBIDDEN.fix], auditedAt: first.auditedAt,
      message: 'shop.example (account acme) still sends its mail to srv-42, which is being reinstalled: delete `MX 5 srv-42.alwaysdata.net` at your DNS provider (audited 2026-12-01T12:00:00.000Z)',
    }]);
    expect(svc.get('srv-42')!.mxAudit).toMatchObject({ trigger: 'cutover', state: 'running', auditedAt: first.auditedAt });
    await svc.auditsSettled();
    expect(svc.get('srv-42')!.mxAudit).toMatchObject({ trigger: 'cutover', state: 'done', auditedAt: clock.t });
    expect(verdicts(svc)).toEqual([['acme', 'acme-mail.example', 'OK'], ['acme', 'shop.example', 'OK'], ['bob', 'bob.example', 'OK']]);
    expect(svc.cutoverWarnings('srv-42')).toEqual([]);
  });

  test('an audit that ends after a later one started is not recorded: the later one is', async () => {
    let releaseFirst!: (r: MailDomainResult[]) => void;
    const a = auditor([
      () => new Promise<MailDomainResult[]>((res) => (releaseFirst = res)),
      async (ds) => ds.map((d) => result(d, 'WARN')),
    ]);
    const { svc, store, clock } = setup(a);
    await svc.request('srv-42', null);
    clock.t += 60_000;
    await cutover(svc, store, 'srv-42');
    await waitFor('the audit at the cutover', () => svc.get('srv-42')!.mxAudit?.state === 'done');
    expect(svc.get('srv-42')!.mxAudit).toMatchObject({ trigger: 'cutover', state: 'done', auditedAt: clock.t });
    releaseFirst([result('acme-mail.example', 'FAIL', [FORBIDDEN]), result('shop.example', 'FAIL', [FORBIDDEN]), result('bob.example', 'FAIL', [FORBIDDEN])]);
    // the request's audit ends now, with nothing left to record: the stored record is the cutover's
    await svc.auditsSettled();
    expect(verdicts(svc)!.map((v) => v[2])).toEqual(['WARN', 'WARN', 'WARN']);
    expect((store.migrations() as { mxAudit: { trigger: string } }[])[0].mxAudit.trigger).toBe('cutover');
  });

  test.each([
    {
      what: 'an auditor that fails', deadlineMs: undefined,
      answer: async (): Promise<MailDomainResult[]> => {
        throw new Error('resolver unreachable');
      },
      reason: 'resolver unreachable',
    },
    { what: 'an audit past its deadline', deadlineMs: 30, answer: () => new Promise<MailDomainResult[]>(() => undefined), reason: 'the audit did not finish within 30 ms' },
  ])('$what: the migration goes on; the audit is missing, saying why', async ({ deadlineMs, answer, reason }) => {
    const { svc } = setup(auditor([answer]), { deadlineMs });
    const { migration } = await svc.request('srv-42', null);
    expect(migration.state).toBe('transit_assigned');
    await svc.auditsSettled();
    expect(svc.get('srv-42')).toMatchObject({ state: 'transit_assigned', mxAudit: { state: 'missing', reason, auditedAt: null, domains: [] } });
    expect(svc.cutoverWarnings('srv-42')).toEqual([]);
  });

  test('a server whose accounts have no mail domain, or no auditor: no audit', async () => {
    const a = auditor([async (ds) => ds.map((d) => result(d, 'OK'))]);
    const { svc } = setup(a);
    expect((await svc.request('srv-43', null)).migration.mxAudit).toBeUndefined();
    const none = setup(undefined);
    expect((await none.svc.request('srv-42', null)).migration.mxAudit).toBeUndefined();
    expect(a.calls).toEqual([]);
  });

  test('an audit still running at a stop runs again at the next start', async () => {
    const slow = auditor([() => new Promise<MailDomainResult[]>(() => undefined)]);
    const { svc, store, path } = setup(slow);
    await svc.request('srv-42', null);
    svc.stop();
    store.close();
    stores.splice(stores.indexOf(store), 1);
    const again = auditor([async (ds) => ds.map((d) => result(d, 'WARN'))]);
    const next = setup(again, { path });
    expect(next.svc.get('srv-42')!.mxAudit).toMatchObject({ state: 'running' });
    next.svc.resume();
    await next.svc.auditsSettled();
    expect(again.calls).toHaveLength(1);
    expect(next.svc.get('srv-42')!.mxAudit).toMatchObject({ trigger: 'request', state: 'done' });
    expect(verdicts(next.svc)!.map((v) => v[2])).toEqual(['WARN', 'WARN', 'WARN']);
  });

  test('a migration stored before the audit existed loads, and gets one at its cutover', async () => {
    const a = auditor([async (ds) => ds.map((d) => result(d, 'OK'))]);
    const { svc, store, path } = setup(undefined);
    const { migration } = await svc.request('srv-42', null);
    const { mxAudit: _, ...old } = migration;
    await store.commit({ migrations: [{ server: 'srv-42', value: old }] });
    svc.stop();
    store.close();
    stores.splice(stores.indexOf(store), 1);
    const next = setup(a, { path });
    next.svc.resume();
    expect(next.svc.get('srv-42')!.mxAudit).toBeUndefined();
    expect(next.svc.cutoverWarnings('srv-42')).toEqual([]);
    await cutover(next.svc, next.store, 'srv-42');
    await next.svc.auditsSettled();
    expect(next.svc.get('srv-42')!.mxAudit).toMatchObject({ trigger: 'cutover', state: 'done' });
  });
});

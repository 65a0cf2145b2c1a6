/**
 * Gathers what the MX rules need about one domain, through a recursive resolver (NS, MX, TXT,
 * A/AAAA and CNAME of the MX targets, addresses of the NS names) and from the domain's
 * authoritative servers asked directly with RD=0 (AA flag, REFUSED, their MX RRsets).
 * Every lookup failure is kept as such (status "failed" with the reason), never turned into
 * "no records".
 */
import { getServers } from 'node:dns';
import { RRType } from '../dns/wire/constants.js';
import type { MxAuditSettings } from './audit-settings.js';
import {
  DnsClient, cnameChain, edeText, normName, parseServerAddress, type LookupResult, type ServerAddress,
} from './dns-client.js';
import { isIpLiteral, type AuditInput, type AuthServerResult, type MxRecord, type RRsetLookup, type TargetInfo } from './mx-rules.js';

/** The resolver of the settings, or the system's first one (node:dns getServers), or 127.0.0.1:53. */
export function resolverAddress(s: Pick<MxAuditSettings, 'resolver'>): ServerAddress {
  if (s.resolver) return parseServerAddress(s.resolver);
  const sys = getServers()[0];
  return sys ? parseServerAddress(sys) : { host: '127.0.0.1', port: 53 };
}

function failureText(r: LookupResult): string {
  const base = r.status === 'TIMEOUT'
    ? `timeout from ${r.server}`
    : r.status === 'MALFORMED' || r.status === 'NETWORK'
      ? `${r.error ?? r.status}`
      : `${r.status} from ${r.server}`;
  const ede = r.ede.length ? `, ${edeText(r.ede)}` : '';
  const cd = r.cdRecheck ? ` (not a DNSSEC failure: ${r.cdRecheck} with CD=1 too)` : '';
  return `${base} after ${r.attempts} attempt${r.attempts > 1 ? 's' : ''}${ede}${cd}`;
}

/** Converts a resolver answer into the rules' RRset view, following a CNAME chain at the name. */
export function toRRset<T>(r: LookupResult, type: number, map: (data: unknown) => T): RRsetLookup<T> {
  if (r.status === 'NXDOMAIN') return { status: 'nxdomain', values: [] };
  if (r.status !== 'NOERROR' || !r.message) {
    const out: RRsetLookup<T> = { status: 'failed', values: [], error: failureText(r) };
    if (r.dnssecBogus) {
      out.dnssecBogus = true;
      out.bogusReason = r.bogusReason;
    }
    return out;
  }
  const chain = cnameChain(r);
  const owner = chain.length ? chain[chain.length - 1] : normName(r.name);
  const values = r.message.answers.filter((a) => a.type === type && a.name === owner).map((a) => map(a.data));
  return values.length ? { status: 'ok', values } : { status: 'nodata', values: [] };
}

/** How long answers about shared names (MX targets, NS names) are reused, and how many. */
const SHARED_TTL_MS = 60_000;
const SHARED_MAX = 10_000;

/**
 * The MX audit's lookups, bound to a client, a resolver and settings. Lookups of names many
 * domains share (MX targets such as mx1.alwaysdata.com, NS names) are de-duplicated while in
 * flight and their successful results reused for a minute; failures are never reused.
 */
export class AuditLookups {
  readonly resolver: ServerAddress;
  private shared = new Map<string, { at: number; p: Promise<unknown> }>();
  constructor(readonly client: DnsClient, readonly settings: MxAuditSettings, resolver?: ServerAddress) {
    this.resolver = resolver ?? resolverAddress(settings);
  }

  private sharedLookup<T>(key: string, fn: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
    const now = Date.now();
    const hit = this.shared.get(key);
    if (hit && now - hit.at < SHARED_TTL_MS) return hit.p as Promise<T>;
    if (this.shared.size >= SHARED_MAX) this.shared.clear();
    const p = fn().then((v) => {
      if (!ok(v) && this.shared.get(key)?.p === p) this.shared.delete(key);
      return v;
    });
    this.shared.set(key, { at: now, p });
    return p;
  }

  private ask(name: string, type: number): Promise<LookupResult> {
    return this.client.lookup(this.resolver, name, type);
  }

  /** NS of the domain, or of the nearest ancestor that has some (a mail domain may be below its zone apex). */
  async nameServers(domain: string): Promise<{ zone: string; ns: RRsetLookup<string> }> {
    let name = domain;
    for (;;) {
      const r = await this.ask(name, RRType.NS);
      const ns = toRRset(r, RRType.NS, (x) => x as string);
      if (ns.status !== 'nodata' || !name.includes('.')) return { zone: name, ns };
      // NODATA: a name inside a zone; the SOA in the authority section names the apex
      const soa = r.message?.authority.find((a) => a.type === RRType.SOA);
      const parent = soa && soa.name !== name && domain.endsWith(`.${soa.name}`) ? soa.name : name.slice(name.indexOf('.') + 1);
      if (!parent.includes('.')) return { zone: name, ns };
      name = parent;
    }
  }

  /** Addresses (A then AAAA) and alias target of a host (shared between domains). */
  target(host: string): Promise<TargetInfo> {
    return this.sharedLookup(`target ${host}`, () => this.lookupTarget(host), (t) => t.addresses.status !== 'failed');
  }

  private async lookupTarget(host: string): Promise<TargetInfo> {
    const [a, aaaa] = await Promise.all([this.ask(host, RRType.A), this.ask(host, RRType.AAAA)]);
    const ra = toRRset(a, RRType.A, (x) => x as string);
    const r6 = toRRset(aaaa, RRType.AAAA, (x) => x as string);
    const chain = cnameChain(a.status === 'NOERROR' ? a : aaaa);
    let addresses: RRsetLookup<string>;
    const values = [...ra.values, ...r6.values];
    if (values.length) addresses = { status: 'ok', values };
    else if (ra.status === 'failed') addresses = ra;
    else if (r6.status === 'failed') addresses = r6;
    else addresses = { status: ra.status === 'nxdomain' || r6.status === 'nxdomain' ? 'nxdomain' : 'nodata', values: [] };
    const t: TargetInfo = { host, addresses };
    if (chain.length) t.cname = chain[chain.length - 1];
    return t;
  }

  /** Asks each authoritative server of `zone` directly (RD=0) for the MX RRset of `domain`. */
  async authoritative(zone: string, domain: string, nsNames: string[]): Promise<AuthServerResult[]> {
    const port = this.settings.authoritative_port;
    const perNs = await Promise.all(nsNames.map(async (ns): Promise<AuthServerResult[]> => {
      const a = await this.sharedLookup(`A ${ns}`, async () => toRRset(await this.ask(ns, RRType.A), RRType.A, (x) => x as string), (x) => x.status !== 'failed');
      if (a.status === 'failed') return [{ ns, status: 'no-address', aa: false, detail: a.error }];
      if (a.values.length === 0) return [{ ns, status: 'no-address', aa: false, detail: a.status }];
      return Promise.all(a.values.map(async (address): Promise<AuthServerResult> => {
        const r = await this.client.lookup({ host: address, port }, domain, RRType.MX, {
          rd: false, classifyServfail: false, retryServfail: false, retries: Math.min(1, this.settings.retries),
        });
        if (!r.message) {
          return { ns, address, status: r.status === 'TIMEOUT' ? 'timeout' : 'error', aa: false, detail: failureText(r) };
        }
        const out: AuthServerResult = { ns, address, status: 'answered', rcode: r.status, aa: r.message.flags.aa };
        if (r.status === 'NOERROR' && r.message.flags.aa) out.mx = mxValues(toRRset(r, RRType.MX, mxOf));
        return out;
      }));
    }));
    void zone;
    return perNs.flat();
  }

  /** Everything the rules need about one (validated, lower-case) domain. */
  async gather(domain: string): Promise<AuditInput> {
    const [nsr, mxr, txtr] = await Promise.all([
      this.nameServers(domain),
      this.ask(domain, RRType.MX),
      this.ask(domain, RRType.TXT),
    ]);
    const mx = toRRset(mxr, RRType.MX, mxOf);
    const txt = toRRset(txtr, RRType.TXT, (x) => (x as string[]).join(''));
    const hosts = [...new Set(mx.values.map((r) => r.host))].filter((h) => h !== '.' && !isIpLiteral(h));
    const nsNames = nsr.ns.values;
    const checkAuth = this.settings.check_authoritative && nsr.ns.status === 'ok' && mx.status !== 'nxdomain';
    const [targets, auth] = await Promise.all([
      Promise.all(hosts.map((h) => this.target(h))),
      checkAuth ? this.authoritative(nsr.zone, domain, nsNames) : Promise.resolve(undefined),
    ]);
    const input: AuditInput = { domain, zone: nsr.zone, ns: nsr.ns, mx, targets, txt };
    if (auth) input.auth = auth;
    return input;
  }
}

function mxOf(x: unknown): MxRecord {
  const m = x as { priority: number; exchange: string };
  return { priority: m.priority, host: m.exchange };
}

function mxValues(r: RRsetLookup<MxRecord>): MxRecord[] {
  return r.status === 'ok' ? r.values : [];
}

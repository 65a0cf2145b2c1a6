/**
 * Gathers what the MX rules need about one domain, through a recursive resolver (NS, MX, TXT,
 * A/AAAA and CNAME of the MX targets, addresses of the NS names) and from the domain's
 * authoritative servers asked directly with RD=0 (AA flag, REFUSED, their MX RRsets, and their
 * TXT when the resolver answered none). The targets looked up are those of the MX RRset the rules
 * judge ({@link judgedMx}): the resolver's, or an authoritative server's when the resolver answered
 * none. A "no NS" answer without an SOA is no proof (a lame server answered the resolver): the
 * parent zone's servers are asked for the delegation instead. Any other negative answer without
 * its SOA (a filtering resolver's NXDOMAIN or NODATA) is checked with the authoritative servers
 * asked directly ({@link AuditLookups.proved}): a negative verdict rests on proof or is UNKNOWN.
 * Every lookup failure is kept as such (status "failed" with the reason), never turned into
 * "no records".
 */
import { getServers } from 'node:dns';
import { RRType } from '../dns/wire/constants.js';
import type { MxAuditSettings } from './audit-settings.js';
import {
  DnsClient, cnameChain, edeText, normName, parseServerAddress, type LookupResult, type ServerAddress,
} from './dns-client.js';
import {
  judgedMx, mxTargetHosts, type AuditInput, type AuthServerResult, type MxRecord, type RRsetLookup, type TargetInfo,
} from './mx-rules.js';

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

const RRTYPE_TEXT: Record<number, string> = { [RRType.A]: 'A', [RRType.AAAA]: 'AAAA', [RRType.MX]: 'MX', [RRType.TXT]: 'TXT', [RRType.NS]: 'NS' };

/**
 * Whether a negative answer (NXDOMAIN, or NOERROR without the records) carries its proof: an SOA
 * in the authority section owned by the name (after a CNAME chain) or one of its ancestors
 * (RFC 2308). A filtering resolver's answer often has none.
 */
export function negativeProved(r: LookupResult): boolean {
  if (!r.message) return false;
  const chain = cnameChain(r);
  const name = chain.length ? chain[chain.length - 1] : normName(r.name);
  return r.message.authority.some((a) => a.type === RRType.SOA && isAncestorOrSelf(a.name, name));
}

/** Whether `zone` is `name` or one of its ancestors (both as {@link normName}; "." is the root). */
function isAncestorOrSelf(zone: string, name: string): boolean {
  return zone === '.' || zone === name || name.endsWith(`.${zone}`);
}

/** What a zone's authoritative servers, asked directly, say about a name and type. */
export type AuthoritativeAnswer =
  | { status: 'ok' | 'nodata' | 'nxdomain'; values: unknown[]; by: string; zone: string }
  | { status: 'failed'; said: string };

/** How a negative answer is called in the evidence. */
function negativeText(status: RRsetLookup<unknown>['status']): string {
  return status === 'nxdomain' ? 'NXDOMAIN' : 'NOERROR without records (NODATA)';
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

  /**
   * NS of the domain, or of the nearest ancestor that has some (a mail domain may be below its zone
   * apex). A NODATA answer proves a name inside a zone by its SOA; one without an SOA proves nothing
   * (a lame server answered the resolver), so the parent zone's servers are asked for the delegation;
   * when they give none either, the NS lookup is "failed" (UNKNOWN), never "no NS".
   */
  async nameServers(domain: string): Promise<{ zone: string; ns: RRsetLookup<string> }> {
    let name = domain;
    for (;;) {
      const r = await this.ask(name, RRType.NS);
      let ns = toRRset(r, RRType.NS, (x) => x as string);
      let apex = r.message?.authority.find((a) => a.type === RRType.SOA)?.name;
      if (ns.status === 'nxdomain') return { zone: name, ns: await this.proved(r, ns, `NS of ${name}`) };
      if (ns.status === 'nodata' && apex === undefined && name.includes('.')) {
        const d = await this.delegation(name);
        if ('said' in d) {
          return {
            zone: name,
            ns: { status: 'failed', values: [], error: `NOERROR without NS records and without an SOA (no proof: a lame server may have answered) from ${r.server}, and no server of the parent zone gave a delegation for ${name} (${d.said})` },
          };
        }
        ns = d.ns;
        apex = d.apex;
      }
      if (ns.status !== 'nodata' || !name.includes('.')) return { zone: name, ns };
      // NODATA: a name inside a zone; the SOA in the authority section names the apex
      const parent = apex && apex !== name && domain.endsWith(`.${apex}`) ? apex : name.slice(name.indexOf('.') + 1);
      if (!parent.includes('.')) return { zone: name, ns };
      name = parent;
    }
  }

  /**
   * A negative RRset from the resolver, checked: kept as it is when the answer carries its proof
   * (an SOA of the name or an ancestor); otherwise the authoritative servers are asked directly
   * ({@link authoritativeAnswer}): the same negative answer from them is the proof (said in
   * `source`), anything else makes the lookup "failed" (UNKNOWN) with what each side said.
   */
  async proved<T>(r: LookupResult, rr: RRsetLookup<T>, what: string): Promise<RRsetLookup<T>> {
    if ((rr.status !== 'nxdomain' && rr.status !== 'nodata') || negativeProved(r)) return rr;
    const chain = cnameChain(r);
    const name = chain.length ? chain[chain.length - 1] : normName(r.name);
    const got = `the resolver (${r.server}) answered ${negativeText(rr.status)} for ${what} without an SOA (no proof: a filtering resolver may have answered)`;
    const auth = await this.sharedLookup(`auth ${name} ${r.type}`, () => this.authoritativeAnswer(name, r.type), (a) => a.status !== 'failed');
    if (auth.status === 'failed') return { status: 'failed', values: [], error: `${got}, and the authoritative servers (from the parent zone down) could not be asked: ${auth.said}` };
    if (auth.status === rr.status) return { ...rr, source: `${got}; confirmed by ${auth.by}, a server of ${auth.zone}` };
    const says = auth.status === 'ok' ? `${name} has ${RRTYPE_TEXT[r.type] ?? `type ${r.type}`} records` : auth.status === 'nodata' ? `${name} exists` : `${name} does not exist (NXDOMAIN)`;
    return { status: 'failed', values: [], error: `${got}, but ${auth.by}, a server of ${auth.zone}, says ${says}` };
  }

  /**
   * Asks the authoritative servers directly (RD=0) for `name` `type`, starting at the servers of
   * its nearest ancestor whose NS the resolver gives, following referrals (glue, else addresses
   * through the resolver). The first authoritative (AA) answer decides; "failed" says what each
   * server answered when none gave one.
   */
  async authoritativeAnswer(name: string, type: number): Promise<AuthoritativeAnswer> {
    const labels = name.split('.');
    let zone = '';
    let servers: { ns: string; glue: string[] }[] = [];
    const tried: string[] = [];
    for (let i = 1; i < labels.length; i++) {
      const z = labels.slice(i).join('.');
      const ns = await this.sharedLookup(`NS ${z}`, async () => toRRset(await this.ask(z, RRType.NS), RRType.NS, (x) => x as string), (x) => x.status !== 'failed');
      if (ns.status === 'ok') {
        zone = z;
        servers = ns.values.map((n) => ({ ns: n, glue: [] }));
        break;
      }
      tried.push(`NS of ${z}: ${ns.error ?? negativeText(ns.status)}`);
    }
    if (!zone) return { status: 'failed', said: tried.join('; ') || `${name} has no parent zone to ask` };
    const said: string[] = [];
    for (let hop = 0; hop < 8; hop++) {
      let referral: { zone: string; servers: { ns: string; glue: string[] }[] } | undefined;
      for (const server of servers) {
        const addrs = server.glue.length ? server.glue : (await this.nsAddress(server.ns)).values;
        if (addrs.length === 0) said.push(`${server.ns}: no address`);
        for (const address of addrs) {
          const r = await this.askAuthoritative(address, name, type);
          const who = `${server.ns} (${address})`;
          const m = r.message;
          if (!m || (r.status !== 'NOERROR' && r.status !== 'NXDOMAIN')) {
            said.push(`${who}: ${m ? r.status : failureText(r)}`);
            continue;
          }
          if (m.flags.aa) {
            if (r.status === 'NXDOMAIN') return { status: 'nxdomain', values: [], by: who, zone };
            const chain = cnameChain(r);
            const owner = chain.length ? chain[chain.length - 1] : normName(name);
            const values = m.answers.filter((a) => a.type === type && a.name === owner).map((a) => a.data);
            // an alias: the name exists (its target is another lookup)
            return { status: values.length || chain.length ? 'ok' : 'nodata', values, by: who, zone };
          }
          const cut = m.authority.find((a) => a.type === RRType.NS && a.name !== zone && isAncestorOrSelf(a.name, normName(name)) && a.name.endsWith(zone === '.' ? '' : `.${zone}`));
          if (r.status === 'NOERROR' && cut) {
            const nsNames = [...new Set(m.authority.filter((a) => a.type === RRType.NS && a.name === cut.name).map((a) => a.data as string))];
            referral = {
              zone: cut.name,
              servers: nsNames.map((n) => ({ ns: n, glue: m.additional.filter((a) => a.type === RRType.A && a.name === n).map((a) => a.data as string) })),
            };
            break;
          }
          said.push(`${who}: ${r.status} without AA and without a referral`);
        }
        if (referral) break;
      }
      if (!referral) return { status: 'failed', said: said.join('; ') || `${zone} has no name server` };
      zone = referral.zone;
      servers = referral.servers;
    }
    return { status: 'failed', said: `more than 8 referrals for ${name}` };
  }

  /** Addresses (A) of a name server, through the resolver (shared between domains). */
  private nsAddress(ns: string): Promise<RRsetLookup<string>> {
    return this.sharedLookup(`A ${ns}`, async () => toRRset(await this.ask(ns, RRType.A), RRType.A, (x) => x as string), (x) => x.status !== 'failed');
  }

  /** Asks an authoritative server directly (RD=0, at most one retry, SERVFAIL not retried). */
  private askAuthoritative(address: string, name: string, type: number): Promise<LookupResult> {
    return this.client.lookup({ host: address, port: this.settings.authoritative_port }, name, type, {
      rd: false, classifyServfail: false, retryServfail: false, retries: Math.min(1, this.settings.retries),
    });
  }

  /**
   * The NS of `name` as given by its parent zone's servers asked directly: a referral, or an AA
   * answer when they serve both; an AA NODATA (with the apex from its SOA) when `name` is inside the
   * parent's zone. Otherwise what was seen (`said`): the parent's NS unknown, or each server's answer.
   */
  private async delegation(name: string): Promise<{ ns: RRsetLookup<string>; apex?: string } | { said: string }> {
    const parent = name.slice(name.indexOf('.') + 1);
    const pns = await this.sharedLookup(`NS ${parent}`, async () => toRRset(await this.ask(parent, RRType.NS), RRType.NS, (x) => x as string), (x) => x.status !== 'failed');
    if (pns.status !== 'ok') return { said: `NS of ${parent}: ${pns.error ?? pns.status}` };
    const said: string[] = [];
    for (const server of pns.values) {
      const addrs = await this.nsAddress(server);
      if (addrs.values.length === 0) said.push(`${server}: no address`);
      for (const address of addrs.values) {
        const r = await this.askAuthoritative(address, name, RRType.NS);
        if (!r.message || r.status !== 'NOERROR') {
          said.push(`${server} (${address}): ${r.message ? `${r.status}${r.message.flags.aa ? ' (AA)' : ''}` : failureText(r)}`);
          continue;
        }
        const m = r.message;
        const recs = [...m.answers, ...m.authority].filter((x) => x.type === RRType.NS && x.name === normName(name));
        if (recs.length) {
          const values = [...new Set(recs.map((x) => x.data as string))];
          return { ns: { status: 'ok', values, source: `the resolver answered no NS records and no SOA; this is the delegation given by ${server} (${address}), a server of ${parent}` } };
        }
        const soa = m.authority.find((x) => x.type === RRType.SOA);
        if (m.flags.aa && soa) return { ns: { status: 'nodata', values: [] }, apex: soa.name };
        said.push(`${server} (${address}): NOERROR without NS records${m.flags.aa ? ' (AA) and without SOA' : ' and without AA'}`);
      }
    }
    return { said: said.join('; ') || `${parent} has no name server` };
  }

  /** Addresses (A then AAAA) and alias target of a host (shared between domains). */
  target(host: string): Promise<TargetInfo> {
    return this.sharedLookup(`target ${host}`, () => this.lookupTarget(host), (t) => t.addresses.status !== 'failed');
  }

  private async lookupTarget(host: string): Promise<TargetInfo> {
    const [a, aaaa] = await Promise.all([this.ask(host, RRType.A), this.ask(host, RRType.AAAA)]);
    let ra = toRRset(a, RRType.A, (x) => x as string);
    let r6 = toRRset(aaaa, RRType.AAAA, (x) => x as string);
    // a host without any address must be proved so (either lookup with records is enough)
    if (ra.values.length === 0 && r6.values.length === 0) {
      [ra, r6] = await Promise.all([this.proved(a, ra, `A of ${host}`), this.proved(aaaa, r6, `AAAA of ${host}`)]);
    }
    const chain = cnameChain(a.status === 'NOERROR' ? a : aaaa);
    let addresses: RRsetLookup<string>;
    const values = [...ra.values, ...r6.values];
    if (values.length) addresses = { status: 'ok', values };
    else if (ra.status === 'failed') addresses = ra;
    else if (r6.status === 'failed') addresses = r6;
    else addresses = { status: ra.status === 'nxdomain' || r6.status === 'nxdomain' ? 'nxdomain' : 'nodata', values: [], source: ra.source ?? r6.source };
    const t: TargetInfo = { host, addresses };
    if (chain.length) t.cname = chain[chain.length - 1];
    return t;
  }

  /**
   * Asks each authoritative server of `zone` directly (RD=0) for the MX RRset of `domain`, and for
   * its TXT records too when `opts.txt` (the resolver answered none).
   */
  async authoritative(zone: string, domain: string, nsNames: string[], opts: { txt?: boolean } = {}): Promise<AuthServerResult[]> {
    const perNs = await Promise.all(nsNames.map(async (ns): Promise<AuthServerResult[]> => {
      const a = await this.nsAddress(ns);
      if (a.status === 'failed') return [{ ns, status: 'no-address', aa: false, detail: a.error }];
      if (a.values.length === 0) return [{ ns, status: 'no-address', aa: false, detail: a.status }];
      return Promise.all(a.values.map(async (address): Promise<AuthServerResult> => {
        const [r, t] = await Promise.all([
          this.askAuthoritative(address, domain, RRType.MX),
          opts.txt ? this.askAuthoritative(address, domain, RRType.TXT) : Promise.resolve(undefined),
        ]);
        if (!r.message) {
          return { ns, address, status: r.status === 'TIMEOUT' ? 'timeout' : 'error', aa: false, detail: failureText(r) };
        }
        const out: AuthServerResult = { ns, address, status: 'answered', rcode: r.status, aa: r.message.flags.aa };
        if (r.status === 'NOERROR' && r.message.flags.aa) out.mx = mxValues(toRRset(r, RRType.MX, mxOf));
        if (t?.status === 'NOERROR' && t.message?.flags.aa) {
          const txt = toRRset(t, RRType.TXT, txtOf);
          if (txt.status === 'ok') out.txt = txt.values;
        }
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
    let mx = toRRset(mxr, RRType.MX, mxOf);
    let txt = toRRset(txtr, RRType.TXT, txtOf);
    const hosts = mxTargetHosts(mx.values);
    const nsNames = nsr.ns.values;
    const checkAuth = this.settings.check_authoritative && nsr.ns.status === 'ok' && mx.status !== 'nxdomain';
    const [targets, auth] = await Promise.all([
      Promise.all(hosts.map((h) => this.target(h))),
      checkAuth ? this.authoritative(nsr.zone, domain, nsNames, { txt: txt.status === 'nodata' }) : Promise.resolve(undefined),
    ]);
    // a negative answer without its proof: the authoritative servers decide (the AA answers already
    // asked when they have the records: the rules judge those)
    const backed = (pick: (a: AuthServerResult) => unknown[] | undefined) =>
      auth?.some((a) => a.status === 'answered' && a.aa && a.rcode === 'NOERROR' && (pick(a)?.length ?? 0) > 0) ?? false;
    [mx, txt] = await Promise.all([
      backed((a) => a.mx) ? mx : this.proved(mxr, mx, `MX of ${domain}`),
      backed((a) => a.txt) ? txt : this.proved(txtr, txt, `TXT of ${domain}`),
    ]);
    const input: AuditInput = { domain, zone: nsr.zone, ns: nsr.ns, mx, targets, txt };
    if (auth) input.auth = auth;
    // when the resolver answered no MX, the rules judge an authoritative server's: look its targets up too
    const more = mxTargetHosts(judgedMx(input).values).filter((h) => !hosts.includes(h));
    if (more.length) input.targets = [...targets, ...(await Promise.all(more.map((h) => this.target(h))))];
    return input;
  }
}

function mxOf(x: unknown): MxRecord {
  const m = x as { priority: number; exchange: string };
  return { priority: m.priority, host: m.exchange };
}

function txtOf(x: unknown): string {
  return (x as string[]).join('');
}

function mxValues(r: RRsetLookup<MxRecord>): MxRecord[] {
  return r.status === 'ok' ? r.values : [];
}

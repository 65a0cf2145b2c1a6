/**
 * The MX audit's rules: pure functions from everything looked up about a domain
 * ({@link AuditInput}, a plain object) to checks, each with a verdict, the evidence seen and the
 * exact record to add, delete or change, written as it would be typed at a DNS provider.
 * No I/O here: lookups.ts gathers the input. See README.md for the rule list.
 */
import type { MxAuditSettings } from './audit-settings.js';

/** Verdicts, mildest first; a domain's verdict is its worst check in this order. */
export const VERDICTS = ['OK', 'INFO', 'WARN', 'UNKNOWN', 'FAIL'] as const;
/** A check's or a domain's verdict. */
export type Verdict = (typeof VERDICTS)[number];

/** One check's result. `fix` is set for every FAIL and WARN. */
export interface Check {
  check: string;
  verdict: Verdict;
  evidence: string;
  fix: string | null;
}

/** The outcome of looking up one RRset through the resolver. */
export interface RRsetLookup<T> {
  /** ok: records found; nodata: name exists without records of the type; failed: no usable answer. */
  status: 'ok' | 'nodata' | 'nxdomain' | 'failed';
  values: T[];
  /** For failed: what happened ("SERVFAIL from 127.0.0.1:53 after 3 attempts"). */
  error?: string;
  /** For failed: the failure is a DNSSEC validation failure. */
  dnssecBogus?: boolean;
  bogusReason?: string;
  /** Where the values come from when not from the resolver's answer (shown in the evidence). */
  source?: string;
}

/** An MX record; host lower case without trailing dot ("." for a null MX). */
export interface MxRecord {
  priority: number;
  host: string;
}

/** What was found about one MX target. */
export interface TargetInfo {
  host: string;
  /** Final name when the target is an alias (CNAME chain). */
  cname?: string;
  /** A and AAAA addresses together (ok if any; failed if a lookup failed and none was found). */
  addresses: RRsetLookup<string>;
}

/** One authoritative server of the domain asked directly (RD=0) for the MX RRset. */
export interface AuthServerResult {
  /** NS name. */
  ns: string;
  /** Address asked; absent when the NS name has no address. */
  address?: string;
  /** answered: an answer came (see rcode and aa); otherwise why not. */
  status: 'answered' | 'timeout' | 'no-address' | 'error';
  rcode?: string;
  aa: boolean;
  /** MX RRset of an authoritative NOERROR answer. */
  mx?: MxRecord[];
  /** TXT records of an authoritative NOERROR answer (asked when the resolver answered none). */
  txt?: string[];
  detail?: string;
}

/** Everything looked up about one domain. */
export interface AuditInput {
  /** The domain, lower case, without trailing dot. */
  domain: string;
  /** The zone apex whose NS were used (the domain itself, or an ancestor for a non-apex domain). */
  zone?: string;
  ns: RRsetLookup<string>;
  mx: RRsetLookup<MxRecord>;
  targets: TargetInfo[];
  /** TXT records at the domain (each record's strings concatenated). */
  txt: RRsetLookup<string>;
  /** Authoritative servers asked directly; undefined when not checked. */
  auth?: AuthServerResult[];
}

/** Rank of a verdict (OK 0 ... FAIL 4). */
export function verdictRank(v: Verdict): number {
  return VERDICTS.indexOf(v);
}

/** The worst verdict of the checks (OK for none). */
export function overallVerdict(checks: readonly Check[]): Verdict {
  let worst: Verdict = 'OK';
  for (const c of checks) if (verdictRank(c.verdict) > verdictRank(worst)) worst = c.verdict;
  return worst;
}

/** `MX 10 mx1.alwaysdata.com` */
export function mxText(r: MxRecord): string {
  return `MX ${r.priority} ${r.host}`;
}

const lc = (s: string) => s.toLowerCase().replace(/\.$/, '');

/** Whether host matches a pattern: "*.example.net" = any name below example.net; else exact. */
export function matchesPattern(host: string, pattern: string): boolean {
  const h = lc(host);
  const p = lc(pattern);
  if (p.startsWith('*.')) return h.endsWith(p.slice(1)) && h.length > p.length - 1;
  return h === p;
}

const IPV4_LITERAL = /^\[?\d{1,3}(\.\d{1,3}){3}\]?$/;
const IPV6_LITERAL = /^\[?[0-9a-f]*:[0-9a-f:.]*\]?$/i;

/** Whether an MX target is an IP address written as a name. */
export function isIpLiteral(host: string): boolean {
  const h = host.replace(/\.$/, '');
  return IPV4_LITERAL.test(h) || IPV6_LITERAL.test(h) || /^\[.*\]$/.test(h);
}

function failedText(what: string, l: RRsetLookup<unknown>): string {
  if (l.dnssecBogus) {
    const why = l.bogusReason && !l.bogusReason.startsWith('the resolver says') ? `; ${l.bogusReason}` : '';
    return `${what} lookup failed DNSSEC validation (bogus): ${l.error ?? 'SERVFAIL'}${why}`;
  }
  return `${what} lookup failed: ${l.error ?? 'no answer'}`;
}

const BOGUS_FIX = 'the zone\'s DNSSEC signatures do not validate: re-sign the zone at your DNS provider, or delete the DS record at your registrar';

function joinAnd(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

function requiredAddFix(s: MxAuditSettings): string {
  return `add ${joinAnd(s.required_mx.map((r) => `\`${mxText(r)}\``))} at your DNS provider`;
}

/** A record set the rules judge, and the authoritative server it comes from when not the resolver. */
export interface Judged<T> {
  values: T[];
  /** Set when the resolver answered no records and these are an authoritative server's (AA) answer. */
  from?: AuthServerResult;
}

function judged<T>(resolver: RRsetLookup<T>, auth: AuthServerResult[] | undefined, pick: (a: AuthServerResult) => T[] | undefined): Judged<T> {
  if (resolver.status === 'failed' || resolver.status === 'nxdomain' || resolver.values.length > 0) return { values: resolver.values };
  // A lame name server can hand the resolver an answer without the RRset (NOERROR, no records,
  // often no SOA either); an authoritative server's answer (AA) with records is the evidence then.
  const from = auth?.find((a) => a.status === 'answered' && a.aa && a.rcode === 'NOERROR' && (pick(a)?.length ?? 0) > 0);
  return from ? { values: pick(from)!, from } : { values: resolver.values };
}

/** The MX RRset the rules judge: the resolver's, or when it answered none, the first authoritative server's that has some. */
export function judgedMx(input: Pick<AuditInput, 'mx' | 'auth'>): Judged<MxRecord> {
  return judged(input.mx, input.auth, (a) => a.mx);
}

/** The TXT records the rules judge: the resolver's, or when it answered none, the first authoritative server's that has some. */
export function judgedTxt(input: Pick<AuditInput, 'txt' | 'auth'>): Judged<string> {
  return judged(input.txt, input.auth, (a) => a.txt);
}

/** The MX targets that need an address lookup: host names (lower case), not the null MX nor IP literals. */
export function mxTargetHosts(mx: readonly MxRecord[]): string[] {
  return [...new Set(mx.map((r) => lc(r.host)))].filter((h) => h !== '' && h !== '.' && !isIpLiteral(h));
}

/** Canonical text of an MX RRset, for comparisons. */
function mxSetKey(mx: MxRecord[]): string {
  return mx.map(mxText).sort().join(', ') || '(no MX)';
}

/** Runs every rule; the checks come out in rule order. */
export function runMxRules(input: AuditInput, s: MxAuditSettings): Check[] {
  const out: Check[] = [];
  const add = (check: string, verdict: Verdict, evidence: string, fix: string | null = null) =>
    out.push({ check, verdict, evidence, fix });
  const d = input.domain;

  // 1. NXDOMAIN
  if (input.ns.status === 'nxdomain' || input.mx.status === 'nxdomain') {
    const proof = [input.ns, input.mx].find((l) => l.status === 'nxdomain' && l.source)?.source;
    add('domain-exists', 'FAIL', `${d} does not exist (NXDOMAIN)${proof ? ` (${proof})` : ''}`,
      `register ${d} or fix its delegation at the registrar, then ${requiredAddFix(s)}`);
    return out;
  }

  // 2. the lookups everything depends on
  const nsKnown = input.ns.status !== 'failed';
  const mxKnown = input.mx.status !== 'failed';
  if (!nsKnown) add('ns-lookup', 'UNKNOWN', failedText('NS', input.ns), input.ns.dnssecBogus ? BOGUS_FIX : null);
  if (!mxKnown) add('mx-lookup', 'UNKNOWN', failedText('MX', input.mx), input.mx.dnssecBogus ? BOGUS_FIX : null);

  // 3. who serves the DNS
  const providerNs = new Set(s.provider_nameservers.map(lc));
  const nsNames = input.ns.values.map(lc);
  const zoneNote = (input.zone && input.zone !== d ? ` (NS of the zone ${input.zone})` : '') + (input.ns.source ? ` (${input.ns.source})` : '');
  let external: boolean | undefined;
  if (nsKnown) {
    if (nsNames.length === 0) {
      // the zone's NS could not be found at all (nodata up to the root): nothing to compare
      external = true;
      add('dns-host', 'WARN', `no NS records found for ${d} or its parent zones`, `add NS records for ${d} at the registrar`);
    } else if (nsNames.every((n) => providerNs.has(n))) {
      external = false;
      add('dns-host', 'INFO', `DNS managed by the provider: NS ${nsNames.join(', ')}${zoneNote}`);
    } else {
      external = true;
      const mixed = nsNames.filter((n) => providerNs.has(n));
      add('dns-host', 'OK', `DNS hosted at an external provider: NS ${nsNames.join(', ')}${zoneNote}` +
        (mixed.length ? ` (mixed with the provider's ${mixed.join(', ')})` : ''));
    }
  }

  // A lame name server can hand the resolver an answer without the MX RRset; when an authoritative
  // server (AA) has MX records, judge those and say so instead of reporting "no MX" (lookups.ts
  // looks up the targets of whichever RRset is judged).
  const jm = judgedMx(input);
  const mxValues = jm.values;
  const mxNote = jm.from ? ` (the resolver answered no MX; these come from the authoritative server ${jm.from.ns}: a lame server answered the resolver)` : '';

  if (mxKnown) {
    const mx = mxValues.map((r) => ({ priority: r.priority, host: lc(r.host) || '.' }));
    const isNull = (r: MxRecord) => r.host === '.' || r.host === '';
    const nulls = mx.filter(isNull);
    const real = mx.filter((r) => !isNull(r));
    const isProviderHost = (h: string) =>
      s.required_mx.some((r) => lc(r.host) === h) || s.forbidden_mx.some((p) => matchesPattern(h, p));

    // 7. no MX / null MX
    if (mx.length === 0) {
      add('mx-present', 'FAIL', `${d} has no MX record: mail would go to the domain's A record, or bounce${input.mx.source ? ` (${input.mx.source})` : ''}`, requiredAddFix(s));
    } else if (nulls.length > 0) {
      add('mx-present', 'FAIL', `${d} publishes a null MX (${nulls.map(mxText).join(', ')}, RFC 7505): it refuses all mail`,
        `delete ${joinAnd(nulls.map((r) => `\`${mxText(r)}\``))}, then ${requiredAddFix(s)}`);
    } else {
      add('mx-present', 'OK', `${real.length} MX record(s): ${real.map(mxText).join(', ')}${mxNote}`);
    }

    // 4-6: the records at the external DNS provider
    if (external === true && real.length > 0) {
      // 4. forbidden (per-server) MX
      const forbidden = real.filter((r) => s.forbidden_mx.some((p) => matchesPattern(r.host, p)));
      for (const r of forbidden) {
        const p = s.forbidden_mx.find((x) => matchesPattern(r.host, x))!;
        add('forbidden-mx', 'FAIL', `${mxText(r)} is a per-server MX record (matches ${p}): that server is being reinstalled`,
          `delete \`${mxText(r)}\` at your DNS provider`);
      }
      if (forbidden.length === 0) add('forbidden-mx', 'OK', `no MX matches ${s.forbidden_mx.join(', ')}`);

      // 5. required MX with their priorities
      for (const req of s.required_mx) {
        const host = lc(req.host);
        const same = real.filter((r) => r.host === host);
        if (same.some((r) => r.priority === req.priority)) {
          add('required-mx', 'OK', `${mxText(req)} present`);
        } else if (same.length > 0) {
          add('required-mx', 'FAIL', `${host} is present with priority ${same.map((r) => r.priority).join(', ')} instead of ${req.priority}`,
            `change \`${mxText(same[0])}\` to \`${mxText({ priority: req.priority, host })}\` at your DNS provider`);
        } else {
          add('required-mx', 'FAIL', `${mxText(req)} is missing`, `add \`${mxText({ priority: req.priority, host })}\` at your DNS provider`);
        }
      }

      // 6. foreign MX mixed with the provider's
      // an alias of the provider's host is the provider's (rule 8 flags the alias); IP literals are rule 8's
      const aliasOf = new Map(input.targets.filter((t) => t.cname).map((t) => [lc(t.host), lc(t.cname!)]));
      const foreign = real.filter((r) => !isIpLiteral(r.host) && !isProviderHost(r.host) && !isProviderHost(aliasOf.get(r.host) ?? ''));
      const providers = real.filter((r) => !isIpLiteral(r.host) && !foreign.includes(r));
      if (foreign.length > 0 && providers.length > 0) {
        for (const r of foreign) {
          add('foreign-mx', 'WARN', `${mxText(r)} is another provider's server mixed with the provider's: part of the mail would go there`,
            `delete \`${mxText(r)}\` at your DNS provider`);
        }
      } else if (foreign.length > 0) {
        add('foreign-mx', 'INFO', `all MX point to another provider: ${foreign.map(mxText).join(', ')}`);
      }
    }

    // 8. targets: IP literals, CNAMEs, no address
    const targets = new Map(input.targets.map((t) => [lc(t.host), t]));
    let targetProblems = 0;
    const seenTarget = new Set<string>();
    for (const r of real) {
      if (seenTarget.has(r.host)) continue;
      seenTarget.add(r.host);
      if (isIpLiteral(r.host)) {
        targetProblems++;
        add('mx-target', 'FAIL', `${mxText(r)} names an IP address, not a host name (RFC 5321 §5.1)`,
          `delete \`${mxText(r)}\` at your DNS provider` + (external === false ? '' : ` (the MX targets are ${s.required_mx.map((x) => x.host).join(', ')})`));
        continue;
      }
      const t = targets.get(r.host);
      if (!t) {
        targetProblems++;
        add('mx-target', 'UNKNOWN', `${r.host} was not looked up`);
        continue;
      }
      if (t.cname) {
        targetProblems++;
        add('mx-target', 'WARN', `${r.host} is an alias (CNAME) of ${lc(t.cname)}; an MX target must not be an alias (RFC 2181 §10.3)`,
          `change \`${mxText(r)}\` to \`${mxText({ priority: r.priority, host: lc(t.cname) })}\` at your DNS provider`);
      }
      const a = t.addresses;
      if (a.status === 'failed') {
        targetProblems++;
        add('mx-target', 'UNKNOWN', failedText(`A/AAAA of ${r.host}`, a), a.dnssecBogus ? BOGUS_FIX : null);
      } else if (a.status !== 'ok' || a.values.length === 0) {
        targetProblems++;
        add('mx-target', 'FAIL', `${r.host} has no A/AAAA record (${a.status === 'nxdomain' ? 'NXDOMAIN' : 'no address'}${a.source ? `; ${a.source}` : ''}): mail to it cannot be delivered`,
          `delete \`${mxText(r)}\` at your DNS provider`);
      }
    }
    if (real.length > 0 && targetProblems === 0) {
      add('mx-target', 'OK', `every MX target is a host name with an address`);
    }

    // 9. duplicates
    const byHost = new Map<string, MxRecord[]>();
    for (const r of real) byHost.set(r.host, [...(byHost.get(r.host) ?? []), r]);
    for (const [host, rs] of byHost) {
      if (rs.length < 2) continue;
      const req = s.required_mx.find((x) => lc(x.host) === host);
      const keep = (req && rs.find((r) => r.priority === req.priority)) ?? [...rs].sort((a, b) => a.priority - b.priority)[0];
      const extra = rs.filter((r) => r !== keep);
      add('duplicate-mx', 'WARN', `${host} appears ${rs.length} times: ${rs.map(mxText).join(', ')}`,
        `delete ${joinAnd(extra.map((r) => `\`${mxText(r)}\``))} at your DNS provider`);
    }
    const byPrio = new Map<number, string[]>();
    for (const r of real) byPrio.set(r.priority, [...new Set([...(byPrio.get(r.priority) ?? []), r.host])]);
    for (const [prio, hosts] of byPrio) {
      if (hosts.length > 1) add('same-priority', 'INFO', `${hosts.join(' and ')} share priority ${prio}: mail is spread between them`);
    }
  }

  // 10. the domain's authoritative servers asked directly
  if (input.auth && nsKnown && nsNames.length > 0) {
    const zone = input.zone ?? d;
    let problems = 0;
    for (const a of input.auth) {
      const who = a.address ? `${a.ns} (${a.address})` : a.ns;
      const dropFix = `delete \`${zone}. NS ${a.ns}\` at your registrar and DNS provider, or make ${a.ns} serve ${zone}`;
      if (a.status === 'no-address') {
        problems++;
        add('lame-server', 'WARN', `name server ${a.ns} has no address`, dropFix);
      } else if (a.status !== 'answered') {
        problems++;
        add('lame-server', 'WARN', `name server ${who} does not answer: ${a.detail ?? a.status}`, dropFix);
      } else if (a.rcode === 'REFUSED') {
        problems++;
        add('lame-server', 'WARN', `name server ${who} answers REFUSED for ${zone} (lame delegation)`, dropFix);
      } else if (a.rcode !== 'NOERROR' && a.rcode !== 'NXDOMAIN') {
        problems++;
        add('lame-server', 'WARN', `name server ${who} answers ${a.rcode} for ${zone}`, dropFix);
      } else if (!a.aa) {
        problems++;
        add('lame-server', 'WARN', `name server ${who} answers without the AA flag: it is not authoritative for ${zone} (lame delegation)`, dropFix);
      }
    }
    // stale secondaries: MX RRsets differ between authoritative answers
    const sets = new Map<string, AuthServerResult[]>();
    for (const a of input.auth) {
      if (a.status !== 'answered' || !a.aa || a.rcode !== 'NOERROR' || !a.mx) continue;
      const k = mxSetKey(a.mx);
      sets.set(k, [...(sets.get(k) ?? []), a]);
    }
    if (sets.size > 1) {
      problems++;
      const resolverKey = mxKnown ? mxSetKey(mxValues.map((r) => ({ priority: r.priority, host: lc(r.host) }))) : '';
      const ranked = [...sets.entries()].sort((x, y) => y[1].length - x[1].length || Number(y[0] === resolverKey) - Number(x[0] === resolverKey));
      const [refKey, refServers] = ranked[0];
      const ref = new Set(refServers[0].mx!.map(mxText));
      const evidence = ranked.map(([k, v]) => `${v.map((a) => `${a.ns} (${a.address})`).join(', ')} serve${v.length > 1 ? '' : 's'} ${k}`).join('; ');
      const fixes: string[] = [];
      for (const [k, v] of ranked.slice(1)) {
        if (k === refKey) continue;
        const have = new Set(v[0].mx!.map(mxText));
        const missing = [...ref].filter((x) => !have.has(x)).map((x) => `add \`${x}\``);
        const extra = [...have].filter((x) => !ref.has(x)).map((x) => `delete \`${x}\``);
        fixes.push(`on ${v.map((a) => a.ns).join(', ')}: ${[...extra, ...missing].join(', ')} (a stale secondary: make it transfer ${zone} again and compare SOA serials)`);
      }
      add('stale-secondary', 'WARN', `the authoritative servers disagree on the MX RRset: ${evidence}`, fixes.join('; '));
    }
    if (problems === 0 && input.auth.length > 0) {
      add('auth-servers', 'OK', `${input.auth.length} authoritative server(s) answer with AA and the same MX RRset`);
    }
  }

  // 11. SPF (records at the external provider)
  if (external === true) {
    if (input.txt.status === 'failed') {
      add('spf', 'UNKNOWN', failedText('TXT', input.txt), input.txt.dnssecBogus ? BOGUS_FIX : null);
    } else {
      const jt = judgedTxt(input);
      const txtNote = jt.from ? ` (the resolver answered no TXT; this comes from the authoritative server ${jt.from.ns}: a lame server answered the resolver)` : '';
      const spf = jt.values.filter((t) => /^v=spf1(\s|$)/i.test(t.trim()));
      const inc = lc(s.spf_include);
      const has = (t: string) => t.trim().split(/\s+/).some((m) => {
        const x = m.toLowerCase().replace(/^[+?~-]/, '');
        return x === `include:${inc}` || x === `include:${inc}.` || x === `redirect=${inc}` || x === `redirect=${inc}.`;
      });
      if (spf.length === 0) {
        add('spf', 'WARN', `${d} has no SPF record${txtNote}${input.txt.source && !jt.from ? ` (${input.txt.source})` : ''}`, `add \`TXT "v=spf1 include:${inc} ~all"\` at your DNS provider`);
      } else if (spf.length > 1) {
        const merged = mergeSpf(spf, inc);
        const sorted = [...spf].sort();
        add('spf', 'WARN', `${d} has ${spf.length} SPF records (RFC 7208 §3.2: a permanent error): ${sorted.map((t) => `"${t}"`).join(', ')}${txtNote}`,
          `delete ${joinAnd(sorted.map((t) => `\`TXT "${t}"\``))}, then add \`TXT "${merged}"\` at your DNS provider`);
      } else if (!has(spf[0])) {
        add('spf', 'WARN', `the SPF record "${spf[0]}" lacks include:${inc}${txtNote}`,
          `change \`TXT "${spf[0]}"\` to \`TXT "${insertInclude(spf[0], inc)}"\` at your DNS provider`);
      } else {
        add('spf', 'OK', `SPF record includes ${inc}: "${spf[0]}"${txtNote}`);
      }
    }
  }
  return out;
}

/** The SPF record with `include:<inc>` inserted before its `all` / `redirect=` term. */
export function insertInclude(spf: string, inc: string): string {
  const terms = spf.trim().split(/\s+/);
  const at = terms.findIndex((t) => /^[+?~-]?all$/i.test(t) || /^redirect=/i.test(t));
  if (at < 0) terms.push(`include:${inc}`);
  else terms.splice(at, 0, `include:${inc}`);
  return terms.join(' ');
}

/** One SPF record merging several (sorted, so the advice is stable); `~all` wins over stricter `all` terms. */
function mergeSpf(records: string[], inc: string): string {
  const mechs: string[] = [];
  const alls: string[] = [];
  for (const r of [...records].sort()) {
    for (const t of r.trim().split(/\s+/).slice(1)) {
      if (/^[+?~-]?all$/i.test(t)) alls.push(t.toLowerCase());
      else if (!mechs.includes(t)) mechs.push(t);
    }
  }
  const all = alls.includes('~all') || alls.length === 0 ? '~all' : alls[0];
  if (!mechs.some((m) => m.toLowerCase().replace(/^[+?~-]/, '') === `include:${inc}`)) mechs.push(`include:${inc}`);
  return ['v=spf1', ...mechs, all].join(' ');
}

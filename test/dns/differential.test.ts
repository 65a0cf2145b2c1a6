/**
 * Differential test: the controller's authoritative DNS server against NSD (the reference), on the
 * fixture zones of test/fixtures/differential/, with a query corpus generated from the zone
 * contents. Both servers are queried with `dig` (an independent client) over loopback.
 *
 *   npx tsc -p tsconfig.json     # the controller is started from dist/
 *   node --experimental-vm-modules node_modules/jest/bin/jest.js test/dns/differential
 *
 * Environment:
 *   DIFF_AGAINST=nsd    compare NSD against a second NSD instead of the controller (self-check of
 *                       the comparator: must give zero differences)
 *   DIFF_OTHER_ZONES=DIR with DIFF_AGAINST=nsd: the second NSD serves these zone files instead
 *                       (e.g. a mutated copy, to see that the comparator does catch differences)
 *   DIFF_VERBOSE=1      also print every query sent
 *
 * Compared for every query: rcode; all header flags (AA, TC, RD, RA, AD, CD; RA must be 0 from
 * both); the question section as echoed (exact case: 0x20); the answer section as a set of RRs
 * (owner case-insensitive, names inside RDATA case-insensitive, TTLs equal; order ignored); the
 * authority section on negative answers, referrals and errors; the additional section (glue) on
 * referrals (also after a CNAME into a delegation); presence of OPT, the EDNS version and the DO
 * bit echoed in it. Known, legitimate exceptions: see EXCEPTIONS below.
 */
import { describe, expect, test, beforeAll, afterAll } from '@jest/globals';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, basename } from 'node:path';
import { startController, REPO_ROOT, CLI, type ControllerHandle } from '../support/controller.js';
import { startNsd, zonesFromDir, nsdVersion, waitForSoa, type NsdHandle } from '../support/nsd.js';
import { digBatch, digVersion, type DigQuery, type DigResult, type DigAnswer, type DigRR } from '../support/dig.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'differential');
const AGAINST = process.env.DIFF_AGAINST === 'nsd' ? 'nsd' : 'controller';

// ---------------------------------------------------------------------------------------------
// A small master-file reader for our own fixtures (enough to know owners and types: $ORIGIN,
// $TTL, comments, parentheses, blank owner, @, relative names). It does not check validity:
// NSD loads the same files and must answer SOA for each zone before the test starts.
// ---------------------------------------------------------------------------------------------

interface FixtureRR {
  owner: string; // absolute, lower case, with trailing dot
  type: string;
  rdata: string[];
}

interface FixtureZone {
  origin: string;
  records: FixtureRR[];
}

function tokenize(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === ';') break;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '(' || c === ')') {
      out.push(c);
      i++;
      continue;
    }
    let tok = '';
    if (c === '"') {
      tok += c;
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') tok += line[i++];
        tok += line[i++];
      }
      tok += '"';
      i++;
    } else {
      while (i < line.length && !/[\s;()]/.test(line[i])) {
        if (line[i] === '\\') tok += line[i++];
        tok += line[i++];
      }
    }
    out.push(tok);
  }
  return out;
}

const CLASSES = new Set(['IN', 'CH', 'HS', 'CS']);

function readZone(file: string, origin: string): FixtureZone {
  const abs = (n: string, org: string) =>
    (n === '@' ? org : n.endsWith('.') ? n : `${n}.${org}`).toLowerCase();
  let org = origin;
  let last = org;
  const records: FixtureRR[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let li = 0; li < lines.length; li++) {
    const line = lines[li];
    let toks = tokenize(line);
    // join parenthesised continuation lines (each tokenised on its own: comments end a line)
    while (toks.includes('(') && !toks.includes(')') && li + 1 < lines.length) {
      toks = [...toks, ...tokenize(lines[++li])];
    }
    toks = toks.filter((t) => t !== '(' && t !== ')');
    if (toks.length === 0) continue;
    if (toks[0] === '$ORIGIN') {
      org = abs(toks[1], org);
      continue;
    }
    if (toks[0].startsWith('$')) continue;
    let owner: string;
    let rest: string[];
    if (/^\s/.test(line)) {
      owner = last;
      rest = toks;
    } else {
      owner = abs(toks[0], org);
      rest = toks.slice(1);
    }
    last = owner;
    while (rest.length && (/^\d+$/.test(rest[0]) || CLASSES.has(rest[0].toUpperCase()))) rest = rest.slice(1);
    records.push({ owner, type: rest[0].toUpperCase(), rdata: rest.slice(1) });
  }
  return { origin: origin.toLowerCase(), records };
}

function loadFixtures(): FixtureZone[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.zone'))
    .sort()
    .map((f) => readZone(join(FIXTURES, f), `${basename(f, '.zone')}.`));
}

// ---------------------------------------------------------------------------------------------
// The query corpus, generated from the zones.
// ---------------------------------------------------------------------------------------------

/** A transport / EDNS profile: dig options for a whole batch. */
interface Profile {
  name: string;
  opts: string[];
}

// UDP profiles: +notcp because dig 9.18 sends qtype ANY over TCP unless told otherwise; +ignore
// so that a TC answer is reported as is, not retried over TCP.
const P_DEFAULT: Profile = { name: 'udp-edns1232', opts: ['+notcp', '+ignore'] }; // dig default: EDNS0, bufsize 1232, cookie
const PROFILES: Profile[] = [
  { name: 'udp-noedns', opts: ['+notcp', '+noedns', '+ignore'] },
  { name: 'udp-edns512', opts: ['+notcp', '+edns=0', '+bufsize=512', '+ignore'] },
  { name: 'udp-edns4096', opts: ['+notcp', '+edns=0', '+bufsize=4096', '+ignore'] },
  { name: 'udp-edns1232-do', opts: ['+notcp', '+edns=0', '+bufsize=1232', '+dnssec', '+ignore'] },
  { name: 'udp-edns-nocookie', opts: ['+notcp', '+edns=0', '+nocookie', '+ignore'] },
  // RFC 6891 6.2.5: a requestor's payload size under 512 is treated as 512
  { name: 'udp-edns-bufsize100', opts: ['+notcp', '+edns=0', '+bufsize=100', '+ignore'] },
  // RFC 6891 6.1.2: an unknown EDNS option is ignored; unknown EDNS flags are ignored (and cleared)
  { name: 'udp-edns-unknown-opt', opts: ['+notcp', '+edns=0', '+ednsopt=65001:c0ffee', '+ednsflags=0x0100', '+ignore'] },
  // RFC 6891 6.1.3: EDNS version 1 is answered BADVERS
  { name: 'udp-edns1', opts: ['+notcp', '+edns=1', '+noednsnegotiation', '+ignore'] },
  { name: 'tcp-edns', opts: ['+tcp'] },
  { name: 'tcp-noedns', opts: ['+tcp', '+noedns'] },
];

const PROBE_TYPES = ['A', 'AAAA', 'NS', 'CNAME', 'MX', 'TXT', 'SRV', 'CAA', 'PTR', 'SOA', 'TYPE65400', 'DS', 'ANY'];

/** Names outside every served zone: both servers must answer REFUSED. */
const OUTSIDE = [
  '.',
  'com',
  'net',
  'arpa',
  'in-addr.arpa',
  '192.in-addr.arpa',
  '0.192.in-addr.arpa',
  '3.0.192.in-addr.arpa',
  'example.org',
  'www.example.org',
  'xample.com',
  'ample.com',
  'notexample.com',
  'example.co',
  'example.com.evil',
  'foo.invalid',
  'localhost',
];

interface CorpusEntry extends DigQuery {
  profile: Profile;
  why: string;
}

/** Deterministic 0x20 mixed case (never all-lower or all-upper when the name has letters). */
function mixCase(name: string, seed: number): string {
  let x = seed * 2654435761 + 12345;
  let s = '';
  for (const ch of name) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    s += (x >> 16) & 1 ? ch.toUpperCase() : ch.toLowerCase();
  }
  if (/[a-z]/i.test(name) && (s === name.toLowerCase() || s === name.toUpperCase())) {
    const i = s.search(/[a-z]/i);
    s = s.slice(0, i) + (s[i] === s[i].toLowerCase() ? s[i].toUpperCase() : s[i].toLowerCase()) + s.slice(i + 1);
  }
  return s;
}

function parentOf(n: string): string {
  const i = n.indexOf('.');
  return i < 0 || i === n.length - 1 ? '.' : n.slice(i + 1);
}

function isBelow(n: string, zone: string): boolean {
  return n === zone || n.endsWith(`.${zone}`);
}

function buildCorpus(zones: FixtureZone[]): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  const seen = new Set<string>();
  const add = (qname: string, qtype: string, profile: Profile, why: string) => {
    const qn = qname === '.' ? '.' : qname.replace(/\.$/, '');
    const key = `${profile.name}|${qn}|${qtype}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ qname: qn, qtype, profile, why });
  };
  let seed = 1;
  for (const z of zones) {
    const owners = new Map<string, Set<string>>();
    for (const r of z.records) {
      if (!owners.has(r.owner)) owners.set(r.owner, new Set());
      owners.get(r.owner)!.add(r.type);
    }
    // empty non-terminals: ancestors of owners, inside the zone, that own nothing
    const ents = new Set<string>();
    for (const o of owners.keys()) {
      for (let p = parentOf(o); isBelow(p, z.origin) && p !== z.origin; p = parentOf(p)) {
        if (!owners.has(p)) ents.add(p);
      }
    }
    const cuts = [...owners.entries()]
      .filter(([n, t]) => n !== z.origin && t.has('NS'))
      .map(([n]) => n);
    const kind = (n: string) =>
      cuts.some((c) => n !== c && n.endsWith(`.${c}`))
        ? 'below-cut'
        : cuts.includes(n)
          ? 'cut'
          : n.startsWith('*.')
            ? 'wildcard-owner'
            : ents.has(n)
              ? 'ent'
              : 'owner';

    const names = [...owners.keys(), ...ents].sort();
    // 1. every name x every probe type (existing types, NODATA, ENT, referrals, wildcards)
    for (const n of names) {
      for (const t of PROBE_TYPES) add(n, t, P_DEFAULT, `${kind(n)} ${owners.get(n)?.has(t) ? 'has' : 'lacks'} ${t}`);
    }
    // 2. names that do not exist: below every name (NXDOMAIN, wildcard synthesis, below a cut)
    for (const n of names) {
      const child = n.startsWith('*.') ? `nx-probe.${n.slice(2)}` : `nx-probe.${n}`;
      for (const t of ['A', 'TXT', 'MX', 'AAAA']) add(child, t, P_DEFAULT, `child of ${kind(n)} ${n}`);
      if (n.startsWith('*.')) {
        const p = n.slice(2);
        for (const t of ['A', 'AAAA', 'MX', 'TXT', 'CNAME', 'NS', 'ANY']) {
          add(`syn1.${p}`, t, P_DEFAULT, `wildcard synthesis from ${n}`);
          add(`deep.syn2.${p}`, t, P_DEFAULT, `wildcard synthesis (two labels) from ${n}`);
        }
      }
    }
    add(`nx-probe.${z.origin}`, 'SOA', P_DEFAULT, 'NXDOMAIN SOA');
    add(`a.b.c.d.nx-probe.${z.origin}`, 'A', P_DEFAULT, 'deep NXDOMAIN');
    // 3. 0x20: mixed-case variants of existing names, for the types they have (and A)
    for (const n of names) {
      const types = new Set([...(owners.get(n) ?? []), 'A']);
      for (const t of types) add(mixCase(n, seed++), t, P_DEFAULT, `0x20 ${kind(n)}`);
      add(mixCase(`nx-probe.${n.replace(/^\*\./, '')}`, seed++), 'A', P_DEFAULT, '0x20 below name');
    }
    // 4. transport / EDNS profiles: every name with the types it has, ENTs, NXDOMAIN, ANY
    for (const p of PROFILES) {
      for (const n of names) {
        const types = owners.get(n) ?? new Set(['A']);
        for (const t of types) add(n, t, p, `${p.name} ${kind(n)} ${t}`);
      }
      add(`nx-probe.${z.origin}`, 'A', p, `${p.name} NXDOMAIN`);
      add(z.origin, 'ANY', p, `${p.name} apex ANY`);
      add(mixCase(`www.${z.origin}`, seed++), 'A', p, `${p.name} 0x20`);
    }
  }
  for (const n of OUTSIDE) {
    for (const t of ['A', 'SOA', 'NS']) add(n, t, P_DEFAULT, 'outside every zone');
    add(mixCase(n, seed++), 'A', P_DEFAULT, 'outside every zone, 0x20');
  }
  for (const p of PROFILES) add('www.example.org', 'A', p, `${p.name} outside every zone`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/** RR types whose RDATA holds domain names (compared case-insensitively, RFC 4343). */
const NAME_RDATA = new Set(['NS', 'CNAME', 'PTR', 'MX', 'SOA', 'SRV', 'DNAME', 'NAPTR', 'RP', 'AFSDB', 'KX']);

function normRR(r: DigRR): string {
  const rdata = NAME_RDATA.has(r.type) ? r.rdata.toLowerCase() : r.rdata;
  return `${r.owner.toLowerCase()} ${r.ttl} ${r.cls} ${r.type} ${rdata}`;
}

function normSection(rrs: DigRR[]): string[] {
  return rrs.map(normRR).sort();
}

/** The RRsets of a section: "owner type" -> sorted normalised RRs. */
function rrsets(rrs: DigRR[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const r of rrs) {
    const k = `${r.owner.toLowerCase()} ${r.type}`;
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(normRR(r));
  }
  for (const v of m.values()) v.sort();
  return m;
}

function isReferral(a: DigAnswer): boolean {
  return !a.flags.includes('aa') && a.answer.length === 0 && a.authority.some((r) => r.type === 'NS');
}

function view(r: DigResult): string {
  if (!r.ok) return `no answer (${r.error})`;
  const sec = (name: string, rrs: DigRR[]) =>
    rrs.length ? `\n      ${name}: ${rrs.map((x) => `${x.owner} ${x.ttl} ${x.type} ${x.rdata}`).join(' | ')}` : '';
  const opt = r.opt ? `OPT(udp=${r.opt.udp}${r.opt.flags.length ? ' ' + r.opt.flags.join(' ') : ''})` : 'no OPT';
  return (
    `${r.rcode} flags=[${r.flags.join(' ')}] ${opt} ${r.protocol} ${r.size}b q=${r.question.join(',')}` +
    sec('answer', r.answer) +
    sec('authority', r.authority) +
    sec('additional', r.additional)
  );
}

/**
 * Known, legitimate exceptions. Keep minimal; each returns true when it applies (then the
 * normal comparison of the sections it covers is replaced by the weaker check it states).
 */
const EXCEPTIONS = {
  /**
   * qtype ANY: RFC 8482 lets an authoritative server answer ANY with a subset of the RRsets at
   * the name (NSD 4.x answers with one RRset, over UDP and TCP) or with all of them. So when
   * NSD's answer is non-empty, ours must be non-empty and every RRset in it must be complete and
   * correct: equal to NSD's answer to the query for that name and that specific type (the corpus
   * asks every type at every name ANY is asked at). Rcode and AA must match. Our answer may be
   * bigger than NSD's, so TC may be set on our side only; then only the header is compared (the
   * TCP profiles compare the content). If NSD's answer is empty (NODATA, ENT, NXDOMAIN,
   * referral), everything is compared as usual.
   */
  anyQuery: (q: CorpusEntry) => q.qtype === 'ANY',
  /**
   * Truncated answers (TC=1 on both sides): RFC 1035 4.2.1 / RFC 2181 9 / RFC 7766: the client
   * discards the sections of a truncated UDP answer and retries over TCP, and a server may put
   * in them whatever whole RRsets fit (NSD sends them empty). So the header (rcode, flags), the
   * question and OPT are compared, the sections are not. The TCP profiles compare the full
   * answers to the same questions.
   */
  truncated: (a: DigAnswer, b: DigAnswer) => a.flags.includes('tc') && b.flags.includes('tc'),
};

/** NSD's answer RRsets per "qname|qtype" (any profile, not truncated), to check our ANY answers. */
type Reference = Map<string, Map<string, string[]>>;

interface Diff {
  q: CorpusEntry;
  what: string[];
  ref: DigResult;
  ours: DigResult;
}

function compare(q: CorpusEntry, ref: DigResult, ours: DigResult, reference: Reference): string[] {
  const what: string[] = [];
  if (!ref.ok || !ours.ok) {
    if (ref.ok !== ours.ok || !ref.ok) what.push(ref.ok ? 'ours: no answer' : 'NSD: no answer');
    return what;
  }
  if (ref.rcode !== ours.rcode) what.push(`rcode ${ref.rcode} vs ${ours.rcode}`);
  if (ours.flags.includes('ra')) what.push('RA set in our answer');
  if (ref.flags.includes('ra')) what.push('RA set in NSD answer');
  const any = EXCEPTIONS.anyQuery(q) && ref.answer.length > 0;
  const fl = (f: string[]) => (any ? f.filter((x) => x !== 'tc') : f).join(' ');
  if (fl(ref.flags) !== fl(ours.flags)) what.push(`flags [${ref.flags.join(' ')}] vs [${ours.flags.join(' ')}]`);
  if (any && ref.flags.includes('tc') && !ours.flags.includes('tc')) what.push('ANY: TC set by NSD, not by us');
  if (ref.question.join('|') !== ours.question.join('|'))
    what.push(`question ${ref.question.join('|')} vs ${ours.question.join('|')}`);
  if (!!ref.opt !== !!ours.opt) what.push(`OPT ${ref.opt ? 'present' : 'absent'} vs ${ours.opt ? 'present' : 'absent'}`);
  else if (ref.opt && ours.opt) {
    const rdo = ref.opt.flags.includes('do');
    const odo = ours.opt.flags.includes('do');
    if (rdo !== odo) what.push(`OPT DO bit ${rdo ? 'echoed' : 'clear'} vs ${odo ? 'echoed' : 'clear'}`);
    if (ref.opt.version !== ours.opt.version) what.push(`EDNS version ${ref.opt.version} vs ${ours.opt.version}`);
  }
  if (EXCEPTIONS.truncated(ref, ours)) return what;
  if (any && ours.flags.includes('tc')) return what;

  // answer
  if (any) {
    const os = rrsets(ours.answer);
    if (os.size === 0) what.push('ANY: our answer is empty, NSD has RRsets');
    const qn = q.qname.toLowerCase().replace(/\.?$/, '.');
    for (const [k, v] of os) {
      const type = k.split(' ')[1];
      const refSets = reference.get(`${qn}|${type}`);
      const r = refSets?.get(k) ?? rrsets(ref.answer).get(k);
      if (!refSets && !r) what.push(`ANY: cannot check our RRset ${k} (no NSD answer for ${qn} ${type})`);
      else if (!r) what.push(`ANY: our RRset ${k} is not in NSD's answer for ${qn} ${type}`);
      else if (r.join('\n') !== v.join('\n')) what.push(`ANY: our RRset ${k} differs from NSD's answer for ${qn} ${type}`);
    }
  } else {
    const ra = normSection(ref.answer).join('\n');
    const oa = normSection(ours.answer).join('\n');
    if (ra !== oa) what.push('answer section differs');
  }
  // authority: on negative answers (NXDOMAIN / NODATA, also after a CNAME chain), referrals and
  // errors. On positive answers it is not compared: with minimal-responses NSD sends none there,
  // and RFC 2181 6.1 lets a server add the zone's NS RRset; that is a policy, not a correctness
  // issue.
  const qt = q.qtype.toUpperCase();
  const positive = (a: DigAnswer) =>
    a.rcode === 'NOERROR' && a.flags.includes('aa') && a.answer.some((r) => qt === 'ANY' || r.type === qt);
  if (!positive(ref) || !positive(ours)) {
    const rA = normSection(ref.authority).join('\n');
    const oA = normSection(ours.authority).join('\n');
    if (rA !== oA) what.push('authority section differs');
  }
  // additional (glue) on referrals, also after a CNAME that leads into a delegation
  const hasCut = (a: DigAnswer) => isReferral(a) || a.authority.some((r) => r.type === 'NS');
  if (hasCut(ref) || hasCut(ours)) {
    const rX = normSection(ref.additional).join('\n');
    const oX = normSection(ours.additional).join('\n');
    if (rX !== oX) what.push('additional section (glue) differs');
  }
  return what;
}

// ---------------------------------------------------------------------------------------------

/**
 * Runs the corpus against one server: one dig process per (profile, chunk of 150), 4 in
 * parallel. Queries that got no answer are sent once more, alone in their batch, with a longer
 * timeout (on a loaded machine a single UDP query can time out now and then, for NSD as for us;
 * a query that is never answered still shows as a difference). If alive() turns false (the server
 * process exited), the remaining queries are not sent (each would wait for the dig timeout) and
 * are reported as unanswered.
 */
async function runCorpus(
  corpus: CorpusEntry[],
  port: number,
  alive: () => boolean = () => true,
): Promise<{ results: DigResult[]; retried: string[] }> {
  const ac = new AbortController();
  const watch = setInterval(() => {
    if (!alive()) ac.abort();
  }, 200);
  const results: DigResult[] = corpus.map(() => ({ ok: false, error: 'not sent: the server exited' }));
  const pass = async (indexes: number[], chunk: number, timeouts?: string[]) => {
    const jobs: { idx: number[]; profile: Profile }[] = [];
    const byProfile = new Map<string, number[]>();
    for (const i of indexes) {
      const n = corpus[i].profile.name;
      if (!byProfile.has(n)) byProfile.set(n, []);
      byProfile.get(n)!.push(i);
    }
    for (const idx of byProfile.values()) {
      for (let i = 0; i < idx.length; i += chunk) jobs.push({ idx: idx.slice(i, i + chunk), profile: corpus[idx[0]].profile });
    }
    let next = 0;
    const worker = async () => {
      while (next < jobs.length && !ac.signal.aborted) {
        const j = jobs[next++];
        try {
          const r = await digBatch(
            j.idx.map((i) => corpus[i]),
            { port, opts: j.profile.opts, signal: ac.signal, timeouts },
          );
          j.idx.forEach((ci, k) => (results[ci] = r[k]));
        } catch (e) {
          if (!ac.signal.aborted) throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
  };
  try {
    await pass(corpus.map((_, i) => i), 150);
    const failed = results.flatMap((r, i) => (!r.ok && !ac.signal.aborted ? [i] : []));
    if (failed.length > 0 && failed.length <= 50) await pass(failed, 1, ['+tries=1', '+time=5']);
    return { results, retried: failed.map((i) => `${corpus[i].profile.name} ${corpus[i].qname} ${corpus[i].qtype}`) };
  } finally {
    clearInterval(watch);
  }
}

describe(`DNS differential test: ${AGAINST} vs NSD`, () => {
  let nsd: NsdHandle | undefined;
  let other: NsdHandle | undefined;
  let ctl: ControllerHandle | undefined;
  let oursPort = 0;

  beforeAll(async () => {
    nsd = await startNsd({ zones: zonesFromDir(FIXTURES) });
    if (AGAINST === 'nsd') {
      other = await startNsd({ zones: zonesFromDir(process.env.DIFF_OTHER_ZONES ?? FIXTURES) });
      oursPort = other.port;
    } else {
      if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
      ctl = await startController({ zonesDir: FIXTURES });
      oursPort = ctl.dnsPort;
      // /readyz may come before the zones are served: wait for an authoritative SOA of each
      const c = ctl;
      await waitForSoa(oursPort, zonesFromDir(FIXTURES).map((z) => z.name), 15_000, () => c.proc.exitCode === null).catch(
        (e: Error) => {
          throw new Error(`the controller does not serve the fixture zones: ${e.message}\n${c.output().slice(-4000)}`);
        },
      );
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all([nsd?.stop(), other?.stop(), ctl?.stop()]);
  });

  test('the fixture zones are what the corpus generator expects', () => {
    const zones = loadFixtures();
    expect(zones.map((z) => z.origin).sort()).toEqual(
      ['2.0.192.in-addr.arpa.', 'example.com.', 'example.net.', 'served.example.com.'].sort(),
    );
    for (const z of zones) {
      const apex = z.records.filter((r) => r.owner === z.origin);
      expect(apex.filter((r) => r.type === 'SOA')).toHaveLength(1);
      expect(apex.filter((r) => r.type === 'NS').length).toBeGreaterThan(0);
      // no CNAME beside other data
      const byOwner = new Map<string, Set<string>>();
      for (const r of z.records) byOwner.set(r.owner, (byOwner.get(r.owner) ?? new Set()).add(r.type));
      for (const [o, t] of byOwner) if (t.has('CNAME')) expect([o, [...t]]).toEqual([o, ['CNAME']]);
    }
  });

  test('every answer matches NSD, except the listed exceptions', async () => {
    const corpus = buildCorpus(loadFixtures());
    expect(corpus.length).toBeGreaterThanOrEqual(300);
    if (process.env.DIFF_VERBOSE) for (const q of corpus) console.log(`${q.profile.name} ${q.qname} ${q.qtype}  # ${q.why}`);

    const oursAlive = () => (ctl ? ctl.proc.exitCode === null && ctl.proc.signalCode === null : true);
    const [refRun, oursRun] = await Promise.all([runCorpus(corpus, nsd!.port), runCorpus(corpus, oursPort, oursAlive)]);
    const ref = refRun.results;
    const ours = oursRun.results;
    if (!oursAlive()) console.log(`the controller exited during the run:\n${ctl!.output().slice(-4000)}`);

    const reference: Reference = new Map();
    corpus.forEach((q, i) => {
      const r = ref[i];
      if (!r.ok || r.flags.includes('tc')) return; // the RRsets do not depend on the profile
      const key = `${q.qname.toLowerCase().replace(/\.?$/, '.')}|${q.qtype.toUpperCase()}`;
      if (!reference.has(key)) reference.set(key, rrsets(r.answer));
    });
    const diffs: Diff[] = [];
    const nsdFailures: string[] = [];
    const tolerated: string[] = [];
    corpus.forEach((q, i) => {
      if (!ref[i].ok) nsdFailures.push(`${q.profile.name} ${q.qname} ${q.qtype}`);
      const what = compare(q, ref[i], ours[i], reference);
      if (what.length) diffs.push({ q, what, ref: ref[i], ours: ours[i] });
      // informational: section content that compare() deliberately does not look at
      const r = ref[i];
      const o = ours[i];
      if (what.length || !r.ok || !o.ok) return;
      const a = normSection(r.authority).join('\n') !== normSection(o.authority).join('\n');
      const x = normSection(r.additional).join('\n') !== normSection(o.additional).join('\n');
      if (a || x) tolerated.push(`${q.profile.name} ${q.qname} ${q.qtype}${a ? ' authority' : ''}${x ? ' additional' : ''}`);
    });

    const profiles = new Map<string, number>();
    for (const q of corpus) profiles.set(q.profile.name, (profiles.get(q.profile.name) ?? 0) + 1);
    const rcodes = new Map<string, number>();
    for (const r of ref) {
      const k = r.ok ? `${r.rcode}${r.flags.includes('tc') ? '+TC' : ''}` : 'no-answer';
      rcodes.set(k, (rcodes.get(k) ?? 0) + 1);
    }
    const lines = [
      `differential: ${AGAINST} vs NSD ${nsdVersion()} (client: ${digVersion()})`,
      `queries compared: ${corpus.length}; by profile: ${[...profiles].map(([k, v]) => `${k}=${v}`).join(', ')}`,
      `NSD outcomes: ${[...rcodes].map(([k, v]) => `${k}=${v}`).join(', ')}`,
      `not compared (by design, see compare()): authority/additional differ in ${tolerated.length} otherwise equal answers` +
        tolerated
          .slice(0, 50)
          .map((t) => `\n    ${t}`)
          .join(''),
      `sent twice after a timeout: NSD ${refRun.retried.length} [${refRun.retried.join(', ')}], ` +
        `ours ${oursRun.retried.length} [${oursRun.retried.join(', ')}]`,
      `differences: ${diffs.length}`,
    ];
    const DETAIL = Number(process.env.DIFF_MAX_DETAIL ?? 400);
    for (const d of diffs.slice(0, DETAIL)) {
      lines.push(
        `\n  [${d.q.profile.name}] ${d.q.qname} ${d.q.qtype}   (${d.q.why})`,
        `    - ${d.what.join('\n    - ')}`,
        `    NSD : ${view(d.ref)}`,
        `    ours: ${view(d.ours)}`,
      );
    }
    if (diffs.length > DETAIL) lines.push(`\n  ... ${diffs.length - DETAIL} more differences (DIFF_MAX_DETAIL=N to see more)`);
    // a summary: differences by kind
    const kinds = new Map<string, number>();
    for (const d of diffs) for (const w of d.what) {
      const k = w.replace(/ (our RRset|for) .*$/, '');
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    if (kinds.size) lines.push(`\nby kind: ${[...kinds].map(([k, v]) => `${v} x ${k}`).join('; ')}`);
    console.log(lines.join('\n'));
    // NSD itself must answer every query, otherwise the corpus or the harness is broken
    expect(nsdFailures.slice(0, 20)).toEqual([]);
    if (diffs.length) {
      const head = diffs.slice(0, 40).map((d) => `[${d.q.profile.name}] ${d.q.qname} ${d.q.qtype}: ${d.what.join('; ')}`);
      throw new Error(
        `${diffs.length} of ${corpus.length} answers differ from NSD (details in the log above):\n  ` +
          head.join('\n  ') +
          (diffs.length > head.length ? `\n  ... and ${diffs.length - head.length} more` : ''),
      );
    }
  }, 900_000);
});

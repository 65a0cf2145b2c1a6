/**
 * A DNS lab on loopback for the MX audit: real Debian servers on port 53 of unique 127.B.C.x
 * addresses (a fresh B.C per run; 127.0.0.0/8 is all local on Linux, nothing to configure).
 *
 *   .1   NSD "tld":      the fake root ".", "com." and "net." (a.root-servers.net, a.gtld-servers.net)
 *   .2   NSD "provider": dns1.alwaysdata.com  } alwaysdata.com, alwaysdata.net and the customer
 *   .3                  dns2.alwaysdata.com  } zones hosted by the provider
 *   .4   NSD "extA":     ns1.extdns.net       } the external DNS provider's customer zones
 *   .8                  ns3.extdns.net       }
 *   .5   NSD "extB":     ns2.extdns.net: the same zones, except `records_b` (a stale secondary)
 *   .6   NSD "lame":     lame.extdns.net: serves none of them (REFUSED)
 *   .7   dead.extdns.net: nothing listens
 *   .53  unbound, the recursive resolver (root hints -> .1; trust anchor for the signed zone;
 *        a transparent local zone per case with `resolver_data`)
 *   .54  unbound, a filtering resolver (as .53, plus a local zone per case with `filter`: NXDOMAIN or
 *        NODATA without SOA, as a DNS firewall answers); started only when a case has one
 *   .99  nothing: a dead resolver
 *
 * Debian packages: nsd, unbound, ldnsutils (ldns-keygen, ldns-signzone for the bogus zone).
 * Never skips: a missing binary fails with the package to install.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { DnsClient } from '../../src/audit/dns-client.js';
import { mxAuditSettings, type MxAuditSettings } from '../../src/audit/audit-settings.js';
import { RRType } from '../../src/dns/wire/constants.js';
import { assertNsdInstalled, nsdConf, NSD_BIN } from './nsd.js';

const HERE = resolve(new URL('.', import.meta.url).pathname);
const ROOT = HERE.includes('/dist/') ? resolve(HERE, '../../..') : resolve(HERE, '../..');
/** Directory of the lab's fixtures. */
export const MX_LAB_FIXTURES = join(ROOT, 'test', 'fixtures', 'mx-lab');

export const UNBOUND_BIN = process.env.UNBOUND_BIN ?? '/usr/sbin/unbound';
export const LDNS_KEYGEN = '/usr/bin/ldns-keygen';
export const LDNS_SIGNZONE = '/usr/bin/ldns-signzone';

/** The correct SPF record, written "SPF_OK" in case files. */
export const SPF_OK = '@ TXT "v=spf1 include:_spf.alwaysdata.com ~all"';

/** An expected check in a case file. */
export interface ExpectedCheck {
  check: string;
  verdict: string;
  fix?: string;
  fix_contains?: string;
  evidence_contains?: string;
  /** A regular expression the evidence must match. */
  evidence_matches?: string;
}

/** One customer zone of the lab. */
export interface LabCase {
  domain: string;
  host: 'external' | 'provider' | 'none';
  ns?: string[];
  records?: string[];
  records_b?: string[];
  signed?: 'expired';
  /**
   * Records the resolver answers itself (unbound local-data in a transparent local zone): any other
   * type at the domain's name gets NOERROR without records and without SOA, as unbound passes on
   * an answer from a lame server. Lines start with "@"; "SPF_OK" as in `records`.
   */
  resolver_data?: string[];
  /**
   * The filtering resolver (.54) answers for `name` (default: the domain; a name below it) itself:
   * `always_nxdomain` NXDOMAIN, `static` NODATA (A 192.0.2.1 only), both without SOA.
   */
  filter?: { type: 'always_nxdomain' | 'static'; name?: string };
  /** Run the case this many times: the domain itself and DOMAIN-2.com ... (for races in the resolver). */
  copies?: number;
  expect?: { verdict: string; checks?: ExpectedCheck[] };
}

/** Replaces every occurrence of `from` in the strings of a plain value. */
function renamed<T>(v: T, from: string, to: string): T {
  if (typeof v === 'string') return v.split(from).join(to) as T;
  if (Array.isArray(v)) return v.map((x) => renamed(x, from, to)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, renamed(x, from, to)])) as T;
  return v;
}

/** Reads test/fixtures/mx-lab/cases.yaml; a case with `copies: N` gives N cases (DOMAIN, DOMAIN-2.com, ...). */
export function loadLabCases(file = join(MX_LAB_FIXTURES, 'cases.yaml')): LabCase[] {
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, Omit<LabCase, 'domain'>>;
  return Object.entries(doc).flatMap(([domain, c]) => {
    const n = c.copies ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 50) throw new Error(`${file}: ${domain}: copies must be an integer from 1 to 50`);
    return Array.from({ length: n }, (_, i) => {
      const name = i === 0 ? domain : domain.replace(/\.com$/, `-${i + 1}.com`);
      return { ...renamed(c, domain, name), domain: name };
    });
  });
}

/** unbound.conf lines making the resolver answer a case's `resolver_data` itself. */
function resolverDataConf(c: LabCase): string[] {
  if (!c.resolver_data) return [];
  const lines = [`  local-zone: "${c.domain}." transparent`];
  for (const l of c.resolver_data.map((x) => (x === 'SPF_OK' ? SPF_OK : x))) {
    const m = /^@\s+(.+)$/.exec(l);
    if (!m || l.includes("'")) throw new Error(`${c.domain}: resolver_data lines start with "@" and have no single quote: ${l}`);
    lines.push(`  local-data: '${c.domain}. 300 IN ${m[1]}'`);
  }
  return lines;
}

/** unbound.conf lines making the filtering resolver answer a case's `filter` itself (no SOA). */
function filterConf(c: LabCase): string[] {
  if (!c.filter) return [];
  const name = c.filter.name ?? c.domain;
  if (name !== c.domain && !name.endsWith(`.${c.domain}`)) throw new Error(`${c.domain}: filter.name must be the domain or a name below it: ${name}`);
  const lines = [`  local-zone: "${name}." ${c.filter.type}`];
  if (c.filter.type === 'static') lines.push(`  local-data: '${name}. 300 IN A 192.0.2.1'`);
  return lines;
}

/** Offsets of the lab's roles in the 127.B.C.0/24 block. */
export const LAB_HOSTS = {
  tld: 1, dns1: 2, dns2: 3, ns1: 4, ns2: 5, lame: 6, dead: 7, ns3: 8, mx1: 25, mx2: 26, srv: 27, foreign: 28,
  resolver: 53, filteringResolver: 54, deadResolver: 99,
} as const;

export interface DnsLabOptions {
  cases: LabCase[];
  /** unbound num-threads (default 2). */
  resolverThreads?: number;
  /** Keep the lab's directory on stop (debugging). */
  keepDir?: boolean;
}

export interface DnsLab {
  /** "127.B.C" */
  prefix: string;
  ip(role: keyof typeof LAB_HOSTS): string;
  /** The resolver as "IP:53". */
  resolver: string;
  /** The filtering resolver as "IP:53" (null when no case has a `filter`). */
  filteringResolver: string | null;
  dir: string;
  /** Audit settings pointing at the lab's resolver (provider values otherwise). */
  settings(over?: Partial<MxAuditSettings>): MxAuditSettings;
  /** Logs of the lab's servers. */
  output(): string;
  stop(): Promise<void>;
}

function need(bin: string, pkg: string): void {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: install the Debian package "${pkg}" (apt-get install -y ${pkg})`);
}

/** Whether UDP port 53 can be bound on ip. */
function canBind(ip: string): Promise<boolean> {
  return new Promise((res) => {
    const s = createSocket('udp4');
    s.once('error', () => res(false));
    s.bind(53, ip, () => s.close(() => res(true)));
  });
}

async function pickPrefix(): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const p = `127.${100 + Math.floor(Math.random() * 150)}.${Math.floor(Math.random() * 256)}`;
    if ((await canBind(`${p}.1`)) && (await canBind(`${p}.53`)) && (await canBind(`${p}.54`)) && (await canBind(`${p}.4`))) return p;
  }
  throw new Error('no free 127.B.C.0/24 block with port 53 free');
}

const SOA = (ns: string) => `@ 300 IN SOA ${ns}. hostmaster.${ns.split('.').slice(1).join('.')}. 1 3600 600 86400 300`;

function zoneText(origin: string, ns: string[], lines: string[]): string {
  const body = lines.map((l) => (l === 'SPF_OK' ? SPF_OK : l));
  return [`$ORIGIN ${origin}.`, '$TTL 300', SOA(ns[0]), ...ns.map((n) => `@ NS ${n}.`), ...body, ''].join('\n');
}

interface Proc {
  name: string;
  proc: ChildProcess;
  out: () => string;
  exited: () => number | null;
}

function spawnDaemon(name: string, cmd: string, args: string[]): Proc {
  let out = '';
  let exited: number | null = null;
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  proc.stdout!.on('data', (d) => (out = (out + d).slice(-20000)));
  proc.stderr!.on('data', (d) => (out = (out + d).slice(-20000)));
  proc.on('exit', (code, sig) => (exited = code ?? (sig ? 128 : -1)));
  proc.on('error', (e) => {
    out += `spawn error: ${e.message}\n`;
    exited = -1;
  });
  return { name, proc, out: () => out, exited: () => exited };
}

async function stopDaemon(p: Proc): Promise<void> {
  if (p.exited() !== null || !p.proc.pid) return;
  const done = new Promise<void>((r) => p.proc.once('exit', () => r()));
  try {
    process.kill(-p.proc.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  const t = setTimeout(() => {
    try {
      process.kill(-p.proc.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, 5000);
  await done;
  clearTimeout(t);
  try {
    process.kill(-p.proc.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** Waits until `ip:53` answers `qname` `qtype` with the given rcode (and AA when authoritative). */
async function waitReady(p: Proc, ip: string, qname: string, qtype: number, opts: { aa: boolean; rd: boolean; timeoutMs: number }): Promise<void> {
  const client = new DnsClient({ timeoutMs: 300, retries: 0 });
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (p.exited() !== null) throw new Error(`${p.name} exited with ${p.exited()} before it was ready:\n${p.out()}`);
    const r = await client.lookup({ host: ip, port: 53 }, qname, qtype, { rd: opts.rd, retries: 0, classifyServfail: false });
    if (r.status === 'NOERROR' && (!opts.aa || r.aa)) return;
    if (Date.now() > deadline) throw new Error(`${p.name} on ${ip} does not answer ${qname} (${r.status}):\n${p.out()}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

function startNsdAt(dir: string, name: string, ips: string[], zones: { name: string; file: string }[]): Proc {
  const sub = join(dir, name);
  mkdirSync(sub, { recursive: true });
  let conf = nsdConf(sub, 53, {
    zones,
    serverOptions: { 'ip-address': ips[0], 'server-count': 1, 'tcp-count': 256, 'zonefiles-write': 0, 'ip-freebind': 'no' },
  });
  for (const ip of ips.slice(1)) conf = conf.replace(/^server:\n/, `server:\n  ip-address: ${ip}\n`);
  const confPath = join(sub, 'nsd.conf');
  writeFileSync(confPath, conf);
  if (existsSync('/usr/sbin/nsd-checkconf')) {
    const check = spawnSync('/usr/sbin/nsd-checkconf', [confPath], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`nsd-checkconf rejected ${confPath}:\n${check.stdout}${check.stderr}`);
  }
  return spawnDaemon(`nsd ${name}`, NSD_BIN, ['-d', '-c', confPath]);
}

/** Signs a zone file with a fresh KSK+ZSK and RRSIGs that expired long ago; returns the KSK's DS. */
function signExpired(dir: string, origin: string, file: string): string {
  const kdir = join(dir, `keys-${origin}`);
  mkdirSync(kdir, { recursive: true });
  const gen = (ksk: boolean) => {
    const r = spawnSync(LDNS_KEYGEN, ['-a', 'ECDSAP256SHA256', ...(ksk ? ['-k'] : []), origin], { cwd: kdir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ldns-keygen failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  const ksk = gen(true);
  const zsk = gen(false);
  const r = spawnSync(LDNS_SIGNZONE, ['-i', '20190101000000', '-e', '20200101000000', '-f', `${file}.signed`, '-o', origin, file, join(kdir, ksk), join(kdir, zsk)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ldns-signzone failed: ${r.stdout}${r.stderr}`);
  return readFileSync(join(kdir, `${ksk}.ds`), 'utf8').trim().replace(/\s+/g, ' ');
}

/** Builds the zones, starts the servers and the resolver, waits until all answer. */
export async function startDnsLab(opts: DnsLabOptions): Promise<DnsLab> {
  assertNsdInstalled();
  need(UNBOUND_BIN, 'unbound');
  need(LDNS_KEYGEN, 'ldnsutils');
  need(LDNS_SIGNZONE, 'ldnsutils');
  const prefix = await pickPrefix();
  const ip = (role: keyof typeof LAB_HOSTS) => `${prefix}.${LAB_HOSTS[role]}`;
  const dir = mkdtempSync(join(tmpdir(), 'fc-mxlab-'));
  const zdir = join(dir, 'zones');
  mkdirSync(zdir);
  const procs: Proc[] = [];
  const stop = async () => {
    await Promise.all(procs.map(stopDaemon));
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const defaultNs = { external: ['ns1.extdns.net', 'ns2.extdns.net'], provider: ['dns1.alwaysdata.com', 'dns2.alwaysdata.com'], none: [] };
    const write = (name: string, text: string) => {
      const f = join(zdir, name);
      writeFileSync(f, text);
      return f;
    };
    // the root, com. and net.
    const root = [
      '$ORIGIN .', '$TTL 86400', '@ IN SOA a.root-servers.net. hostmaster.root-servers.net. 1 3600 600 86400 300',
      '@ NS a.root-servers.net.', 'com. NS a.gtld-servers.net.', 'net. NS a.gtld-servers.net.',
      `a.root-servers.net. A ${ip('tld')}`, `a.gtld-servers.net. A ${ip('tld')}`, '',
    ].join('\n');
    const com: string[] = [
      '$ORIGIN com.', '$TTL 86400', '@ IN SOA a.gtld-servers.net. hostmaster.gtld-servers.net. 1 3600 600 86400 300',
      '@ NS a.gtld-servers.net.',
      'alwaysdata NS dns1.alwaysdata.com.', 'alwaysdata NS dns2.alwaysdata.com.',
      `dns1.alwaysdata A ${ip('dns1')}`, `dns2.alwaysdata A ${ip('dns2')}`,
    ];
    const net: string[] = [
      '$ORIGIN net.', '$TTL 86400', '@ IN SOA a.gtld-servers.net. hostmaster.gtld-servers.net. 1 3600 600 86400 300',
      '@ NS a.gtld-servers.net.', `a.gtld-servers A ${ip('tld')}`, `a.root-servers A ${ip('tld')}`,
      'alwaysdata NS dns1.alwaysdata.com.', 'alwaysdata NS dns2.alwaysdata.com.',
      `ns1.extdns A ${ip('ns1')}`, `ns2.extdns A ${ip('ns2')}`, `ns3.extdns A ${ip('ns3')}`,
      `lame.extdns A ${ip('lame')}`, `dead.extdns A ${ip('dead')}`,
      `mx.foreign-mail A ${ip('foreign')}`, `mail.new-provider A ${ip('foreign')}`, `mail.old-provider A ${ip('foreign')}`,
    ];
    const providerZones = [
      { name: 'alwaysdata.com', file: write('alwaysdata.com.zone', zoneText('alwaysdata.com', defaultNs.provider, [
        `dns1 A ${ip('dns1')}`, `dns2 A ${ip('dns2')}`, `mx1 A ${ip('mx1')}`, `mx2 A ${ip('mx2')}`,
        '_spf TXT "v=spf1 ip4:185.31.40.0/22 ~all"',
      ])) },
      { name: 'alwaysdata.net', file: write('alwaysdata.net.zone', zoneText('alwaysdata.net', defaultNs.provider, [`* A ${ip('srv')}`])) },
    ];
    const extA: { name: string; file: string }[] = [];
    const extB: { name: string; file: string }[] = [];
    const anchors: string[] = [];
    for (const c of opts.cases) {
      if (c.host === 'none') continue;
      const ns = c.ns ?? defaultNs[c.host];
      const label = c.domain.replace(/\.com$/, '');
      if (!c.domain.endsWith('.com') || label.includes('.')) throw new Error(`lab domains are second-level .com names: ${c.domain}`);
      for (const n of ns) com.push(`${label} NS ${n}.`);
      const records = c.records ?? [];
      if (c.host === 'provider') {
        providerZones.push({ name: c.domain, file: write(`${c.domain}.zone`, zoneText(c.domain, ns, records)) });
        continue;
      }
      let fileA = write(`${c.domain}.zone`, zoneText(c.domain, ns, records));
      if (c.signed === 'expired') {
        anchors.push(signExpired(dir, c.domain, fileA));
        fileA = `${fileA}.signed`;
      }
      extA.push({ name: c.domain, file: fileA });
      extB.push({ name: c.domain, file: c.records_b ? write(`${c.domain}.b.zone`, zoneText(c.domain, ns, c.records_b)) : fileA });
    }
    const tldZones = [
      { name: '.', file: write('root.zone', root) },
      { name: 'com', file: write('com.zone', [...com, ''].join('\n')) },
      { name: 'net', file: write('net.zone', [...net, ''].join('\n')) },
    ];
    const lameZones = [{ name: 'lame-only.org', file: write('lame-only.org.zone', zoneText('lame-only.org', ['lame.extdns.net'], ['@ A 192.0.2.1'])) }];

    const nsdSets: [string, string[], { name: string; file: string }[]][] = [
      ['tld', [ip('tld')], tldZones],
      ['provider', [ip('dns1'), ip('dns2')], providerZones],
      ['extA', [ip('ns1'), ip('ns3')], extA],
      ['extB', [ip('ns2')], extB],
      ['lame', [ip('lame')], lameZones],
    ];
    const ready: Promise<void>[] = [];
    for (const [name, ips, zones] of nsdSets) {
      if (zones.length === 0) continue;
      const p = startNsdAt(dir, name, ips, zones);
      procs.push(p);
      const probe = zones[zones.length - 1].name;
      for (const a of ips) ready.push(waitReady(p, a, probe === '.' ? '.' : probe, RRType.SOA, { aa: true, rd: false, timeoutMs: 120_000 }));
    }
    await Promise.all(ready);

    // unbound: the resolver, and the filtering one when a case has a filter
    const startUnbound = async (role: 'resolver' | 'filteringResolver', extra: string[]) => {
      const udir = join(dir, role);
      mkdirSync(udir);
      writeFileSync(join(udir, 'root.hints'), `.  3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A ${ip('tld')}\n`);
      const uconf = [
        'server:',
        `  interface: ${ip(role)}`,
        '  port: 53',
        '  do-ip4: yes', '  do-ip6: no', '  do-udp: yes', '  do-tcp: yes',
        '  access-control: 127.0.0.0/8 allow',
        '  do-not-query-localhost: no',
        `  num-threads: ${opts.resolverThreads ?? 2}`,
        '  so-reuseport: yes',
        '  num-queries-per-thread: 4096',
        '  outgoing-range: 8192',
        '  chroot: ""', '  username: ""',
        `  directory: "${udir}"`,
        `  pidfile: "${join(udir, 'unbound.pid')}"`,
        '  use-syslog: no', '  logfile: ""', '  verbosity: 1', '  log-servfail: no',
        `  root-hints: "${join(udir, 'root.hints')}"`,
        ...anchors.map((a) => `  trust-anchor: "${a}"`),
        ...opts.cases.flatMap(resolverDataConf),
        ...extra,
        '  module-config: "validator iterator"',
        '  ede: yes',
        '  val-log-level: 0',
        '  qname-minimisation: no',
        '  harden-referral-path: no',
        '  aggressive-nsec: no',
        '  prefetch: no',
        '  minimal-responses: yes',
        '  infra-cache-max-rtt: 1000',
        '  infra-keep-probing: yes',
        '  hide-identity: yes', '  hide-version: yes',
        'remote-control:', '  control-enable: no', '',
      ].join('\n');
      const uconfPath = join(udir, 'unbound.conf');
      writeFileSync(uconfPath, uconf);
      const chk = spawnSync('/usr/sbin/unbound-checkconf', [uconfPath], { encoding: 'utf8' });
      if (chk.status !== 0) throw new Error(`unbound-checkconf rejected the lab's config:\n${chk.stdout}${chk.stderr}`);
      const u = spawnDaemon(role === 'resolver' ? 'unbound' : 'unbound (filtering)', UNBOUND_BIN, ['-d', '-c', uconfPath]);
      procs.push(u);
      await waitReady(u, ip(role), 'mx1.alwaysdata.com', RRType.A, { aa: false, rd: true, timeoutMs: 30_000 });
    };
    const filters = opts.cases.flatMap(filterConf);
    await Promise.all([startUnbound('resolver', []), ...(filters.length ? [startUnbound('filteringResolver', filters)] : [])]);

    const resolverAddr = `${ip('resolver')}:53`;
    return {
      prefix, ip, resolver: resolverAddr, dir,
      filteringResolver: filters.length ? `${ip('filteringResolver')}:53` : null,
      settings: (over = {}) => mxAuditSettings({ resolver: resolverAddr, timeout_ms: 1500, retries: 2, ...over }),
      output: () => procs.map((p) => `--- ${p.name}\n${p.out()}`).join('\n'),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Throws unless a result has the case's expected verdict and checks (each FAIL and WARN with a
 * fix); the message shows the whole result.
 */
export function assertLabCase(c: LabCase, r: { verdict: string; checks: { check: string; verdict: string; evidence: string; fix: string | null }[] } | undefined): void {
  if (!r) throw new Error(`${c.domain}: no result`);
  const msg = JSON.stringify(r, null, 1);
  if (r.verdict !== c.expect!.verdict) throw new Error(`${c.domain}: expected ${c.expect!.verdict}, got ${r.verdict}:\n${msg}`);
  for (const ch of r.checks) {
    if ((ch.verdict === 'FAIL' || ch.verdict === 'WARN') && typeof ch.fix !== 'string') throw new Error(`${c.domain}: ${ch.check} ${ch.verdict} without a fix:\n${msg}`);
  }
  for (const want of c.expect!.checks ?? []) {
    const found = r.checks.filter((ch) => ch.check === want.check && ch.verdict === want.verdict);
    const ok = found.some((ch) =>
      (want.fix === undefined || ch.fix === want.fix) &&
      (want.fix_contains === undefined || (ch.fix ?? '').includes(want.fix_contains)) &&
      (want.evidence_contains === undefined || ch.evidence.includes(want.evidence_contains)) &&
      (want.evidence_matches === undefined || new RegExp(want.evidence_matches).test(ch.evidence)));
    if (!ok) throw new Error(`${c.domain}: expected check ${JSON.stringify(want)}\ngot ${msg}`);
  }
}

/** Zone files of a directory (debugging helper). */
export function labZoneFiles(lab: DnsLab): string[] {
  return readdirSync(join(lab.dir, 'zones'));
}

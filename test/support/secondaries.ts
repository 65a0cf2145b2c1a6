/**
 * The public nameservers as secondaries of a hidden primary, for tests: NSD 4.6, Knot 3.2 and
 * BIND 9.18 (Debian 12 packages nsd, knot, bind9) each started in the foreground as root on a free
 * loopback port, configured by rendering the SAME templates an operator deploys
 * (deploy/secondaries/{nsd,knot,named}.conf), so a passing test proves the deployed configs work.
 * Also a reference primary (NSD, with IXFR and NOTIFY) until the controller serves transfers.
 *
 * Contract:
 *  - startSecondary(kind, opts) resolves once the daemon answers DNS on its port (not once it
 *    has a zone: wait for `soaSerial(zone)` for that). Its files live in opts.dir: config,
 *    data/ (zone data, journal, timers: kept across stop()/start()), run/ (pid file, control
 *    socket) and daemon.log (stdout and stderr of every run, for diagnostics).
 *  - stop() ends it gracefully (SIGTERM, SIGKILL after 10 s), kill() at once (SIGKILL); both
 *    resolve when the process group is gone. start() runs it again on the same port with the
 *    same dir. Every daemon still running when the test process exits is killed.
 *  - Nothing here removes opts.dir: the caller owns it (and can read the logs after a failure).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RRType, typeName } from '../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage, type DecodedRecord, type Message } from '../../src/dns/wire/message.js';
import { readSoa } from '../../src/dns/wire/rdata.js';
import { tcpQuery, udpExchange } from '../dns/tiny-dns.js';
import { freePort, REPO_ROOT } from './controller.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);

export type SecondaryKind = 'nsd' | 'knot' | 'bind';
export const SECONDARY_KINDS: readonly SecondaryKind[] = ['nsd', 'knot', 'bind'];

/** A TSIG key (RFC 8945): name, algorithm as the daemons spell it (hmac-sha256), secret base64. */
export interface TsigKey {
  name: string;
  algorithm: string;
  secret: string;
}

export interface SecondaryOptions {
  /** Where the hidden primary serves transfers (and sends NOTIFY from). */
  primary: { host: string; port: number };
  tsig: TsigKey;
  /** Zones listed explicitly in the config. */
  zones: string[];
  /** Name of an RFC 9432 catalog zone to consume (Knot and BIND; NSD 4.6 cannot). */
  catalog?: string;
  /** Working directory (created if missing); keeps the zone data across stop()/start(). */
  dir: string;
  /** DNS port on 127.0.0.1 (UDP and TCP); default a free one. */
  port?: number;
}

export interface Secondary {
  kind: SecondaryKind;
  /** The DNS port on 127.0.0.1 (UDP and TCP). */
  port: number;
  dir: string;
  confPath: string;
  logPath: string;
  /** The answer records of `name`/`type` (the RRset; [] when the answer has none). */
  query(name: string, type: number | keyof typeof RRType): Promise<DecodedRecord[]>;
  /** The whole decoded response to one query (UDP, TCP when truncated); null on no reply. */
  ask(name: string, type: number | keyof typeof RRType): Promise<Message | null>;
  /** SOA serial it serves for `zone` with AA, or null (not loaded, refused, no reply). */
  soaSerial(zone: string): Promise<number | null>;
  /** What the daemon logged so far (all runs). */
  log(): string;
  running(): boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
  kill(): Promise<void>;
}

// --------------------------------------------------------------------------- templates -------

export const SECONDARIES_DIR = join(REPO_ROOT, 'deploy', 'secondaries');
export const TEMPLATE_FILE: Record<SecondaryKind, string> = { nsd: 'nsd.conf', knot: 'knot.conf', bind: 'named.conf' };

/** A section's items: each item's values apply inside one copy of the section's lines. */
export type TemplateSections = Record<string, Record<string, string>[]>;

const SECTION_LINE = /^\s*(?:#|\/\/)\s*\{\{([#/])([A-Z0-9_]+)\}\}\s*$/;

/**
 * Renders a template of deploy/secondaries/: every `{{NAME}}` is replaced from `values`; the
 * lines between a comment line `{{#NAME}}` and its `{{/NAME}}` are repeated once per item of
 * `sections[NAME]` (none for an empty or missing list), with the item's values added. Throws on
 * an unknown placeholder, an unbalanced section, or one not given.
 */
export function renderTemplate(text: string, values: Record<string, string>, sections: TemplateSections = {}): string {
  const lines = text.split('\n');
  const out: string[] = [];
  const subst = (line: string, vals: Record<string, string>, where: number) =>
    line.replace(/\{\{([A-Za-z0-9_#/]*)\}\}/g, (_m, name: string) => {
      if (!(name in vals)) throw new Error(`template line ${where + 1}: no value for {{${name}}}`);
      return vals[name];
    });
  for (let i = 0; i < lines.length; i++) {
    const m = SECTION_LINE.exec(lines[i]);
    if (!m) {
      out.push(subst(lines[i], values, i));
      continue;
    }
    if (m[1] === '/') throw new Error(`template line ${i + 1}: {{/${m[2]}}} without {{#${m[2]}}}`);
    const name = m[2];
    const end = lines.findIndex((l, j) => j > i && SECTION_LINE.exec(l)?.[2] === name);
    if (end < 0 || SECTION_LINE.exec(lines[end])![1] !== '/') throw new Error(`template line ${i + 1}: {{#${name}}} not closed`);
    const items = sections[name];
    if (!items) throw new Error(`template line ${i + 1}: no items given for section ${name}`);
    for (const item of items) {
      const vals = { ...values, ...item };
      for (let j = i + 1; j < end; j++) {
        if (SECTION_LINE.test(lines[j])) throw new Error(`template line ${j + 1}: nested sections are not supported`);
        out.push(subst(lines[j], vals, j));
      }
    }
    i = end;
  }
  return out.join('\n');
}

/** What a secondary config is made of; `renderSecondaryConfig` turns it into the daemon's file. */
export interface SecondaryConfigParams {
  listenV4: string[];
  listenV6: string[];
  port: number;
  primary: { host: string; port: number };
  tsig: TsigKey;
  zones: string[];
  catalog?: string;
  dataDir: string;
  runDir: string;
  /** nsd: username ("" = none); knot: user[:group]. Not used for BIND (`named -u`). */
  user: string;
  /** BIND only: rndc control port and key file. */
  controlPort?: number;
  rndcKeyFile?: string;
}

const bare = (zone: string) => (zone === '.' ? '.' : zone.replace(/\.$/, ''));

/** The config file of `kind` for `p`, from the template in deploy/secondaries/. */
export function renderSecondaryConfig(kind: SecondaryKind, p: SecondaryConfigParams): string {
  if (kind === 'nsd' && p.catalog) throw new Error('NSD 4.6 does not consume catalog zones: list the zones');
  const text = readFileSync(join(SECONDARIES_DIR, TEMPLATE_FILE[kind]), 'utf8');
  return renderTemplate(
    text,
    {
      LISTEN_PORT: String(p.port),
      PRIMARY_ADDRESS: p.primary.host,
      PRIMARY_PORT: String(p.primary.port),
      TSIG_NAME: p.tsig.name,
      TSIG_ALGORITHM: p.tsig.algorithm,
      TSIG_SECRET: p.tsig.secret,
      DATA_DIR: p.dataDir,
      RUN_DIR: p.runDir,
      USER: p.user,
      CONTROL_PORT: String(p.controlPort ?? 953),
      RNDC_KEY_FILE: p.rndcKeyFile ?? '/etc/bind/rndc.key',
    },
    {
      LISTEN_V4: p.listenV4.map((a) => ({ ADDRESS: a })),
      LISTEN_V6: p.listenV6.map((a) => ({ ADDRESS: a })),
      ZONES: p.zones.map((z) => ({ ZONE: bare(z) })),
      CATALOG: p.catalog ? [{ CATALOG: bare(p.catalog) }] : [],
    },
  );
}

// ------------------------------------------------------------------------------ binaries -----

const BIN = {
  nsd: '/usr/sbin/nsd',
  nsdCheckconf: '/usr/sbin/nsd-checkconf',
  nsdControl: '/usr/sbin/nsd-control',
  knotd: '/usr/sbin/knotd',
  knotc: '/usr/sbin/knotc',
  named: '/usr/sbin/named',
  namedCheckconf: '/usr/bin/named-checkconf',
} as const;
const PACKAGE: Record<keyof typeof BIN, string> = {
  nsd: 'nsd', nsdCheckconf: 'nsd', nsdControl: 'nsd', knotd: 'knot', knotc: 'knot', named: 'bind9', namedCheckconf: 'bind9-utils',
};

function bin(name: keyof typeof BIN): string {
  if (!existsSync(BIN[name])) throw new Error(`${BIN[name]} is missing: apt-get install -y ${PACKAGE[name]} (scripts/test.sh installs it)`);
  return BIN[name];
}

/** Runs a checker; throws with its output when it rejects the file. */
async function check(argv: string[], what: string): Promise<void> {
  try {
    await run(argv[0], argv.slice(1), { encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${what} rejected:\n${e.stdout ?? ''}${e.stderr ?? ''}${e.stdout || e.stderr ? '' : e.message}`);
  }
}

// ------------------------------------------------------------------------------ processes ----

/** Process groups still running; killed when the test process exits, whatever happened. */
const liveGroups = new Set<number>();
let exitHook = false;
function track(pid: number): void {
  liveGroups.add(pid);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const g of liveGroups) signalGroup(g, 'SIGKILL');
    });
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Whether any process of the group is left. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A daemon run in the foreground in its own process group, output appended to a log file. */
class Daemon {
  private proc: ChildProcess | null = null;
  private exited: string | null = null;

  constructor(
    readonly argv: string[],
    readonly logPath: string,
  ) {}

  running(): boolean {
    return this.proc !== null && this.exited === null;
  }

  /** Why it ended, or null while it runs. */
  exitReason(): string | null {
    return this.exited;
  }

  spawn(): void {
    if (this.running()) throw new Error(`${this.argv[0]} is already running`);
    const fd = openSync(this.logPath, 'a');
    try {
      const p = spawn(this.argv[0], this.argv.slice(1), { stdio: ['ignore', fd, fd], detached: true });
      this.proc = p;
      this.exited = null;
      p.on('error', (e) => (this.exited = `spawn error: ${e.message}`));
      p.on('exit', (code, sig) => (this.exited = sig ? `signal ${sig}` : `exit code ${code}`));
      if (p.pid) track(p.pid);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Sends `sig` to the main process (graceful: it stops its own children) or with `group` to
   * the whole group; resolves when the group is gone, SIGKILLing it after `graceMs`.
   */
  async end(sig: NodeJS.Signals, group: boolean, graceMs: number): Promise<void> {
    const p = this.proc;
    if (!p?.pid) return;
    const pid = p.pid;
    if (this.exited === null) {
      const gone = new Promise<void>((r) => (this.exited !== null ? r() : p.once('exit', () => r())));
      if (group) signalGroup(pid, sig);
      else p.kill(sig);
      const t = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
      await gone;
      clearTimeout(t);
    }
    // Children (NSD's xfrd and server processes) may outlive the main one for a moment.
    if (groupAlive(pid)) {
      await waitFor(`process group ${pid} to end`, () => !groupAlive(pid), { timeoutMs: graceMs, pollMs: 20 }).catch(() => {
        signalGroup(pid, 'SIGKILL');
      });
      if (groupAlive(pid)) await waitFor(`process group ${pid} to die`, () => !groupAlive(pid), { pollMs: 20 });
    }
    liveGroups.delete(pid);
  }
}

function logTail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ------------------------------------------------------------------------------ queries -------

function typeNumber(type: number | keyof typeof RRType): number {
  return typeof type === 'number' ? type : RRType[type];
}

/** One query to 127.0.0.1:port over UDP (TCP when truncated); null when nothing answers. */
export async function askServer(port: number, name: string, type: number | keyof typeof RRType, timeoutMs = 1000): Promise<Message | null> {
  const id = Math.floor(Math.random() * 0x10000);
  const msg = encodeMessage({ id, flags: { rd: false }, question: [{ name, type: typeNumber(type) }], edns: { udpPayload: 1232 } });
  let raw: Buffer | null;
  try {
    raw = await udpExchange(port, msg, timeoutMs);
  } catch {
    return null;
  }
  if (!raw) return null;
  let m: Message;
  try {
    m = decodeMessage(raw);
  } catch {
    return null;
  }
  if (m.id !== id) return null;
  if (!m.flags.tc) return m;
  const viaTcp = await tcpQuery(port, msg, timeoutMs * 2);
  if (!viaTcp) return null;
  try {
    return decodeMessage(viaTcp);
  } catch {
    return null;
  }
}

const lower = (n: string) => (n.endsWith('.') ? n : `${n}.`).toLowerCase();

/** The answer records of `name`/`type` from a server on 127.0.0.1:port. */
export async function queryServer(port: number, name: string, type: number | keyof typeof RRType): Promise<DecodedRecord[]> {
  const m = await askServer(port, name, type);
  const t = typeNumber(type);
  return m ? m.answer.filter((r) => r.type === t && r.name === lower(name)) : [];
}

/** SOA serial served with AA for `zone` by 127.0.0.1:port, or null. */
export async function soaSerialOf(port: number, zone: string): Promise<number | null> {
  const m = await askServer(port, zone, 'SOA');
  if (!m || m.rcode !== 0 || !m.flags.aa) return null;
  const soa = m.answer.find((r) => r.type === RRType.SOA && r.name === lower(zone));
  return soa ? readSoa(soa.rdata).serial : null;
}

/** Presentation form of an A record's address. */
export const aText = (r: DecodedRecord): string => Array.from(r.rdata).join('.');

// ------------------------------------------------------------------------------ secondaries --

/** Whether `port` is free for TCP and UDP on ::1 too (false when there is no ::1). */
async function portFreeOnV6(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '::1', () => s.close(() => res(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((res) => {
    const u = createSocket({ type: 'udp6', ipv6Only: true });
    u.once('error', () => res(false));
    u.bind(port, '::1', () => u.close(() => res(true)));
  });
}

/** Starts `kind` as a secondary of `opts.primary`; see the file comment for the contract. */
export async function startSecondary(kind: SecondaryKind, opts: SecondaryOptions): Promise<Secondary> {
  const dir = opts.dir;
  const dataDir = join(dir, 'data');
  const runDir = join(dir, 'run');
  for (const d of [dir, dataDir, runDir]) mkdirSync(d, { recursive: true });
  const port = opts.port ?? (await freePort());
  // Listen on ::1 too when it is there and free: the rendered config then has both families.
  const listenV6 = (await portFreeOnV6(port)) ? ['::1'] : [];
  const confPath = join(dir, TEMPLATE_FILE[kind]);
  const logPath = join(dir, 'daemon.log');
  const params: SecondaryConfigParams = {
    listenV4: ['127.0.0.1'], listenV6, port, primary: opts.primary, tsig: opts.tsig, zones: opts.zones,
    catalog: opts.catalog, dataDir, runDir, user: kind === 'knot' ? 'root:root' : '',
  };
  let argv: string[];
  let checker: string[];
  if (kind === 'nsd') {
    argv = [bin('nsd'), '-d', '-c', confPath];
    checker = [bin('nsdCheckconf'), confPath];
  } else if (kind === 'knot') {
    argv = [bin('knotd'), '-c', confPath];
    checker = [bin('knotc'), '-c', confPath, 'conf-check'];
  } else {
    params.controlPort = await freePort();
    params.rndcKeyFile = join(dir, 'rndc.key');
    const secret = randomBytes(32).toString('base64');
    writeFileSync(params.rndcKeyFile, `key "rndc-key" {\n\talgorithm hmac-sha256;\n\tsecret "${secret}";\n};\n`, { mode: 0o600 });
    // -g: foreground, all logging to stderr; no -u: stays root, which owns the temp dir.
    argv = [bin('named'), '-g', '-c', confPath];
    checker = [bin('namedCheckconf'), confPath];
  }
  writeFileSync(confPath, renderSecondaryConfig(kind, params));
  await check(checker, `${kind}: the config rendered from deploy/secondaries/${TEMPLATE_FILE[kind]} (${confPath})`);

  const daemon = new Daemon(argv, logPath);
  const secondary: Secondary = {
    kind, port, dir, confPath, logPath,
    query: (name, type) => queryServer(port, name, type),
    ask: (name, type) => askServer(port, name, type),
    soaSerial: (zone) => soaSerialOf(port, zone),
    log: () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''),
    running: () => daemon.running(),
    async start() {
      writeFileSync(logPath, `----- ${new Date().toISOString()} start: ${argv.join(' ')}\n`, { flag: 'a' });
      daemon.spawn();
      try {
        await waitFor(`${kind} secondary to answer on 127.0.0.1:${port}`, async () => {
          const why = daemon.exitReason();
          if (why) throw new Error(`${kind} secondary ended (${why}) before it answered:\n${logTail(logPath)}`);
          return (await askServer(port, opts.zones[0] ?? opts.catalog ?? '.', 'SOA', 200)) !== null;
        });
      } catch (err) {
        await daemon.end('SIGKILL', true, 1000);
        throw err;
      }
    },
    stop: () => daemon.end('SIGTERM', false, 10_000),
    kill: () => daemon.end('SIGKILL', true, 1000),
  };
  await secondary.start();
  return secondary;
}

// ------------------------------------------------------------------------- reference primary --

export interface PrimaryZone {
  name: string;
  /** Master file text. */
  text: string;
}

export interface ReferencePrimaryOptions {
  tsig: TsigKey;
  zones: PrimaryZone[];
  /** Secondaries to NOTIFY (signed with the key) when a zone changes. */
  notify: { host: string; port: number }[];
  dir: string;
  port?: number;
}

export interface ReferencePrimary {
  host: string;
  port: number;
  dir: string;
  logPath: string;
  /** Writes a zone's master file (takes effect on reload). */
  setZone(zone: PrimaryZone): void;
  /** Re-reads the zone files (or one); NSD NOTIFYs the secondaries of each changed zone. */
  reload(zone?: string): Promise<void>;
  /** Sends NOTIFY for a zone (or all) again. */
  notify(zone?: string): Promise<void>;
  /** Adds a zone at run time (nsd-control addzone) and writes its file. */
  addZone(zone: PrimaryZone): Promise<void>;
  /** Removes a zone at run time (nsd-control delzone). */
  removeZone(name: string): Promise<void>;
  log(): string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/**
 * NSD 4.6 as the hidden primary on 127.0.0.1: serves the zones, transfers them to 127.0.0.1 only
 * with the TSIG key (IXFR from the differences of each reloaded zone file: store-ixfr and
 * create-ixfr, AXFR otherwise), NOTIFYs `notify` on every change (signed, retried 5 times).
 */
export async function startReferencePrimary(opts: ReferencePrimaryOptions): Promise<ReferencePrimary> {
  const dir = opts.dir;
  mkdirSync(dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const confPath = join(dir, 'primary-nsd.conf');
  const logPath = join(dir, 'primary.log');
  const q = JSON.stringify;
  const conf = [
    'server:',
    `  ip-address: 127.0.0.1@${port}`,
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    '  database: ""',
    `  zonesdir: ${q(dir)}`,
    `  zonelistfile: ${q(join(dir, 'zone.list'))}`,
    `  xfrdfile: ${q(join(dir, 'xfrd.state'))}`,
    `  xfrdir: ${q(dir)}`,
    `  pidfile: ${q(join(dir, 'nsd.pid'))}`,
    `  cookie-secret-file: ${q(join(dir, 'cookiesecrets.txt'))}`,
    '  verbosity: 2',
    'remote-control:',
    '  control-enable: yes',
    `  control-interface: ${q(join(dir, 'nsd.ctl'))}`,
    'key:',
    `  name: ${q(opts.tsig.name)}`,
    `  algorithm: ${opts.tsig.algorithm}`,
    `  secret: ${q(opts.tsig.secret)}`,
    'pattern:',
    '  name: primary',
    '  zonefile: "%s.zone"',
    '  store-ixfr: yes',
    '  create-ixfr: yes',
    `  provide-xfr: 127.0.0.1 ${opts.tsig.name}`,
    ...opts.notify.map((n) => `  notify: ${n.host}@${n.port} ${opts.tsig.name}`),
    '',
  ].join('\n');
  writeFileSync(confPath, conf);
  const setZone = (z: PrimaryZone) => writeFileSync(join(dir, `${bare(z.name)}.zone`), z.text);
  for (const z of opts.zones) setZone(z);
  await check([bin('nsdCheckconf'), confPath], `reference primary config (${confPath})`);
  const control = async (...args: string[]) => {
    try {
      await run(bin('nsdControl'), ['-c', confPath, ...args], { encoding: 'utf8' });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`nsd-control ${args.join(' ')}: ${e.stdout ?? ''}${e.stderr ?? ''}${e.message}`);
    }
  };
  const daemon = new Daemon([bin('nsd'), '-d', '-c', confPath], logPath);
  let started = false;
  /** The zones it serves now. */
  const zones = new Set(opts.zones.map((z) => bare(z.name)));
  const primary: ReferencePrimary = {
    host: '127.0.0.1', port, dir, logPath, setZone,
    reload: (zone) => control('reload', ...(zone ? [bare(zone)] : [])),
    notify: (zone) => control('notify', ...(zone ? [bare(zone)] : [])),
    async addZone(z) {
      setZone(z);
      await control('addzone', bare(z.name), 'primary');
      zones.add(bare(z.name));
    },
    async removeZone(name) {
      await control('delzone', bare(name));
      zones.delete(bare(name));
    },
    log: () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''),
    async start() {
      daemon.spawn();
      try {
        await waitFor('reference primary to answer', async () => {
          const why = daemon.exitReason();
          if (why) throw new Error(`reference primary ended (${why}):\n${logTail(logPath)}`);
          return (await askServer(port, '.', 'SOA', 200)) !== null;
        });
        // Zones are added at run time (kept in its zone.list across restarts), so that
        // removeZone can delete any of them: NSD cannot delete a zone its nsd.conf names.
        if (!started) for (const z of zones) await control('addzone', z, 'primary');
        started = true;
        for (const z of zones) {
          await waitFor(`reference primary to serve ${z}`, async () => {
            const why = daemon.exitReason();
            if (why) throw new Error(`reference primary ended (${why}):\n${logTail(logPath)}`);
            return (await soaSerialOf(port, z)) !== null;
          });
        }
      } catch (err) {
        await daemon.end('SIGKILL', true, 1000);
        throw err;
      }
    },
    stop: () => daemon.end('SIGTERM', false, 10_000),
  };
  await primary.start();
  return primary;
}

// ------------------------------------------------------------------------------ zone texts ---

/** A small zone: SOA (refresh 3600, so only NOTIFY makes a secondary follow quickly), NS, www A. */
export function testZoneText(zone: string, serial: number, wwwAddress: string): string {
  const z = bare(zone);
  return [
    `$ORIGIN ${z}.`,
    '$TTL 300',
    `@ IN SOA ns1.${z}. hostmaster.${z}. ${serial} 3600 600 86400 300`,
    `@ IN NS ns1.${z}.`,
    'ns1 IN A 192.0.2.1',
    `www IN A ${wwwAddress}`,
    '',
  ].join('\n');
}

/** The member's label in an RFC 9432 catalog: any unique label; here a hash of the name. */
export function catalogMemberLabel(member: string): string {
  return createHash('sha256').update(lower(member)).digest('hex').slice(0, 16);
}

/** An RFC 9432 (version 2) catalog zone listing `members`. */
export function catalogZoneText(catalog: string, serial: number, members: string[]): string {
  const c = bare(catalog);
  return [
    `$ORIGIN ${c}.`,
    '$TTL 0',
    `@ IN SOA invalid. invalid. ${serial} 3600 600 2147483646 0`,
    '@ IN NS invalid.',
    'version IN TXT "2"',
    ...members.map((m) => `${catalogMemberLabel(m)}.zones IN PTR ${bare(m)}.`),
    '',
  ].join('\n');
}

// ------------------------------------------------------------------------ recording proxy ----

/** One request a secondary sent to the primary, as the recording proxy saw it. */
export interface RecordedRequest {
  /** performance.now() when it arrived. */
  at: number;
  transport: 'udp' | 'tcp';
  /** TCP connection number (1, 2, ...: requests on one connection share it); 0 for UDP. */
  connection: number;
  opcode: number;
  qname: string;
  /** Type mnemonic: SOA, IXFR, AXFR, ... */
  qtype: string;
  /** IXFR only: the serial the secondary has (the SOA in the authority section). */
  clientSerial?: number;
  /** Whether it carried a TSIG record. */
  signed: boolean;
}

export interface RecordingProxy {
  host: string;
  port: number;
  /** Every request so far, in arrival order. */
  requests: RecordedRequest[];
  close(): Promise<void>;
}

function record(list: RecordedRequest[], msg: Buffer, transport: 'udp' | 'tcp', connection: number): void {
  try {
    const m = decodeMessage(msg);
    if (m.flags.qr || m.question.length !== 1) return;
    const q = m.question[0];
    const soa = q.type === RRType.IXFR ? m.authority.find((r) => r.type === RRType.SOA) : undefined;
    list.push({
      at: performance.now(), transport, connection, opcode: m.opcode, qname: q.name, qtype: typeName(q.type),
      ...(soa ? { clientSerial: readSoa(soa.rdata).serial } : {}), signed: m.tsig !== undefined,
    });
  } catch {
    /* not a DNS message: forwarded all the same */
  }
}

/**
 * A transparent DNS proxy on 127.0.0.1 in front of `target` (UDP and TCP, bytes unchanged, so
 * TSIG still verifies) that records what each client asks: point a secondary's primary at it to
 * see how it asks (SOA over UDP or TCP, IXFR or AXFR, one connection or two).
 */
export async function startRecordingProxy(target: { host: string; port: number }): Promise<RecordingProxy> {
  const port = await freePort();
  const requests: RecordedRequest[] = [];
  const udp = createSocket('udp4');
  const upstreams = new Map<string, ReturnType<typeof createSocket>>();
  udp.on('message', (msg, rinfo) => {
    record(requests, msg, 'udp', 0);
    const key = `${rinfo.address}:${rinfo.port}`;
    let up = upstreams.get(key);
    if (!up) {
      up = createSocket('udp4');
      up.on('message', (reply) => udp.send(reply, rinfo.port, rinfo.address));
      up.on('error', () => undefined);
      upstreams.set(key, up);
    }
    up.send(msg, target.port, target.host);
  });
  udp.on('error', () => undefined);
  await new Promise<void>((res) => udp.bind(port, '127.0.0.1', () => res()));
  let connections = 0;
  const sockets = new Set<Socket>();
  const tcp: Server = createServer((client) => {
    const n = ++connections;
    const up = connect({ host: target.host, port: target.port });
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    let buf = Buffer.alloc(0);
    client.on('data', (d: Buffer) => {
      up.write(d);
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        record(requests, buf.subarray(2, 2 + buf.readUInt16BE(0)), 'tcp', n);
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
    });
    up.on('data', (d: Buffer) => client.write(d));
    client.on('end', () => up.end());
    up.on('end', () => client.end());
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((res, rej) => {
    tcp.once('error', rej);
    tcp.listen(port, '127.0.0.1', () => res());
  });
  return {
    host: '127.0.0.1', port, requests,
    async close() {
      for (const s of sockets) s.destroy();
      for (const u of upstreams.values()) u.close();
      await new Promise<void>((r) => tcp.close(() => r()));
      await new Promise<void>((r) => udp.close(() => r()));
    },
  };
}

/** Short text of requests (e.g. "SOA/udp IXFR(2)/tcp#1"), for figures and failure messages. */
export function describeRequests(list: RecordedRequest[]): string {
  return list
    .map((r) => `${r.opcode === 4 ? 'NOTIFY' : r.qtype}${r.clientSerial !== undefined ? `(${r.clientSerial})` : ''}/${r.transport}${r.connection ? `#${r.connection}` : ''}${r.signed ? '' : '(unsigned)'}`)
    .join(' ');
}

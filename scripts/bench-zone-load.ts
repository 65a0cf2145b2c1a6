/**
 * bench:zone-load — how long the controller takes to load a 1,000,000-record zone, how much
 * memory it keeps, and how it answers during a SIGHUP reload of it under load.
 *
 * Generates a zone with a realistic mix (A 45 %, AAAA 20 %, CNAME 15 %, TXT 10 %, MX 5 %,
 * NS delegations with glue 5 %) into a temp dir, starts the built controller on it
 * (dist/src/cli/failoverctl.js, on loopback), and measures: spawn -> /readyz 200, spawn -> first
 * correct DNS answer, RSS after load and after 10,000 queries.
 *
 * Then the controller's capacity: dnsperf (when installed) unthrottled for BENCH_CAPACITY_SECONDS
 * on a query file of the zone's names (the mix of the 10,000 queries); the completed queries/s.
 * Then a SIGHUP reload of the zone (rewritten with the next serial) while dnsperf sends at
 * BENCH_LOAD times that capacity and a UDP probe on loopback keeps asking (a query about every
 * millisecond, at most 32 unanswered). The reload window runs from the SIGHUP until the new serial
 * is served (with secondaries: until the secondary got the NOTIFY of the new serial, i.e. the
 * transfer snapshot and the journal version are made), plus 1 s. Reported: SIGHUP -> new serial;
 * dnsperf's lost queries, latency p99 and max (over its whole run: 1 s before the SIGHUP to the
 * end of the window); the probe's longest gap between two answers in the window (the server
 * stopped answering, or fell behind the load: the probe's queries wait behind dnsperf's), when it
 * began, its p99 latency, and the serving thread's on-CPU time in that gap (near the gap: the
 * thread was working; far below it: it was waiting for a CPU or the probe was).
 * Prints them with the targets (load < 15 s, RSS < 1 GiB; during the reload no query lost and no
 * gap over 50 ms) and a final JSON line; removes everything it created.
 *
 * Usage: npm run build && npm run bench:zone-load -- [--records N] [--queries N]
 *          [--max-old-space-size MB] [--strict] [--keep]
 *   --strict  exit 1 when a target is missed (default: exit 0, only errors fail)
 *   --keep    keep the temp dir (zone file, config, controller log, dnsperf output)
 * Environment:
 *   BENCH_SECONDARIES=1  configure the controller as a hidden primary (dns.tsig_keys, one
 *     dns.secondaries entry with that key, dns.journal_dir in the temp dir), as the end-to-end
 *     tests do: every reload then also makes the zone's transfer snapshot and journal version on
 *     the serving thread. The secondary is a UDP socket of this bench that only records NOTIFYs.
 *   BENCH_CACHE_ENTRIES  the controller's dns.cache_entries (default: the controller's default).
 *   BENCH_NODE_ARGS  more node options for the controller, space-separated (e.g. --trace-gc).
 *   BENCH_LOAD  dnsperf's rate during the reload as a fraction of the measured capacity
 *     (default 0.5; 0: no dnsperf, the probe alone).
 *   BENCH_CAPACITY_SECONDS  length of the capacity run (default 5).
 *   BENCH_PIN=0  do not pin (default when there are 2 CPUs or more: the controller on CPU 0,
 *     dnsperf on CPU 1, with taskset, as bench:dns does).
 *   BENCH_CGROUP=NAME  run in the cgroup-v1 CPU group NAME (created with the most CPU shares,
 *     removed at the end; as root, where /sys/fs/cgroup/cpu is mounted): on a machine shared
 *     with other work the bench then gets the CPUs whenever it wants them, as on a quiet one.
 *     The report's "who had the CPUs" line tells what ran while the serving thread did not.
 *   BENCH_NICE=N  run the controller, dnsperf and this bench at nice N (e.g. -10, as root): other
 *     work on a shared machine then takes less of their CPU. The zone parser thread still lowers
 *     itself to nice 10 (V8's garbage-collector threads, which also work for it, do not).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, renameSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { loadavg, cpus, setPriority, tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { buildQuery, decode, ipOf, udpExchange, RC, T, type Decoded } from '../test/dns/tiny-dns.js';
import { answersBetween, type Answered } from '../test/dns/query-stream.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** dist/scripts/ -> dist/src/cli/failoverctl.js */
const CLI = resolve(HERE, '..', 'src', 'cli', 'failoverctl.js');
const ORIGIN = 'bench.example.';
const LOAD_TARGET_S = 15;
const RSS_TARGET = 1024 * 1024 * 1024;
const MB = 1024 * 1024;

const { values: opt } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    queries: { type: 'string', default: '10000' },
    'max-old-space-size': { type: 'string', default: '4096' },
    strict: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const RECORDS = Number(opt.records);
const QUERIES = Number(opt.queries);
const SECONDARIES = process.env.BENCH_SECONDARIES === '1';
const LOAD = Number(process.env.BENCH_LOAD ?? 0.5);
const CAPACITY_SECONDS = Number(process.env.BENCH_CAPACITY_SECONDS ?? 5);
const GAP_TARGET_MS = 50;
const NICE = process.env.BENCH_NICE === undefined ? null : Number(process.env.BENCH_NICE);
const CGROUP = process.env.BENCH_CGROUP || null;
const TSIG_SECRET_ENV = 'FC_BENCH_TSIG';

const log = (s: string) => process.stdout.write(s + '\n');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The zone

/** Records per group of names, and what a group holds (used to check answers). */
const PER_GROUP = 20;
const a4 = (g: number, k: number) => `10.${(g >> 8) & 255}.${g & 255}.${k}`;
const a6 = (g: number, k: number) => `2001:db8:${(g >> 16).toString(16)}:${(g & 0xffff).toString(16)}::${k.toString(16)}`;

function groupLines(g: number): string {
  // 9 A, 4 AAAA, 3 CNAME, 2 TXT, 1 MX, 1 NS (+ its glue A counted among the A)
  return `host${g} A ${a4(g, 1)}
host${g} A ${a4(g, 2)}
host${g} AAAA ${a6(g, 1)}
host${g} TXT "v=spf1 ip4:${a4(g, 1)} -all"
host${g} MX 10 mail${g}
_dmarc.host${g} TXT "v=DMARC1; p=reject; rua=mailto:dmarc@host${g}.${ORIGIN}"
mail${g} A ${a4(g, 3)}
mail${g} AAAA ${a6(g, 3)}
web${g} A ${a4(g, 4)}
web${g} A ${a4(g, 5)}
web${g} AAAA ${a6(g, 4)}
api${g} A ${a4(g, 6)}
api${g} AAAA ${a6(g, 6)}
srv${g} A ${a4(g, 7)}
srv${g} A ${a4(g, 8)}
www${g} CNAME web${g}
cdn${g} CNAME web${g}.${ORIGIN}
m${g} CNAME www${g}
deleg${g} NS ns1.deleg${g}
ns1.deleg${g} A ${a4(g, 9)}
`;
}

const SERIAL = 2024010101;

async function writeZone(path: string, records: number, serial = SERIAL): Promise<{ groups: number; records: number; bytes: number }> {
  const out = createWriteStream(path);
  let failed: Error | null = null;
  out.on('error', (e) => (failed = e));
  const write = async (s: string) => {
    if (failed) throw failed;
    if (!out.write(s)) await new Promise<void>((res) => out.once('drain', res));
  };
  await write(`$ORIGIN ${ORIGIN}\n$TTL 3600\n` +
    `@ IN SOA ns1.${ORIGIN} hostmaster.${ORIGIN} ${serial} 3600 600 1209600 300\n` +
    `@ IN NS ns1.${ORIGIN}\nns1 IN A 192.0.2.53\n`);
  let n = 3;
  const groups = Math.floor((records - n) / PER_GROUP);
  let chunk = '';
  for (let g = 0; g < groups; g++) {
    chunk += groupLines(g);
    n += PER_GROUP;
    if (chunk.length > 1 << 20) {
      await write(chunk);
      chunk = '';
    }
  }
  for (let k = 0; n < records; k++, n++) chunk += `pad${k} A 192.0.2.${k % 250}\n`;
  await write(chunk);
  await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
  return { groups, records: n, bytes: statSync(path).size };
}

// ---------------------------------------------------------------------------------------------
// The controller

async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    const ok = await new Promise<boolean>((res) => {
      const u = createSocket('udp4');
      u.once('error', () => res(false));
      u.bind(port, '127.0.0.1', () => u.close(() => res(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port');
}

function rss(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Milliseconds the controller's main thread (the one that answers) has been on a CPU (schedstat, ns resolution). */
function mainThreadCpuMs(pid: number): number {
  const s = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8');
  return Number(s.split(' ')[0]) / 1e6;
}

/** Milliseconds on a CPU per group of threads, and the hypervisor's steal per CPU (ticks of 10 ms). */
interface CpuShares { mainMs: number; mainWaitMs: number; otherMs: number; parserMs: number; steal0Ms: number; steal1Ms: number }

/** Reads {@link CpuShares} of the controller `pid` and its children (the zone parser). */
function cpuShares(pid: number): CpuShares {
  const sched = (path: string): [number, number] => {
    try {
      const f = readFileSync(path, 'utf8').split(' ');
      return [Number(f[0]) / 1e6, Number(f[1]) / 1e6];
    } catch {
      return [0, 0];
    }
  };
  const tasks = (p: number): string[] => {
    try {
      return readdirSync(`/proc/${p}/task`);
    } catch {
      return [];
    }
  };
  const [mainMs, mainWaitMs] = sched(`/proc/${pid}/task/${pid}/schedstat`);
  let otherMs = 0;
  let parserMs = 0;
  const children: number[] = [];
  for (const tid of tasks(pid)) {
    if (tid !== String(pid)) {
      const ms = sched(`/proc/${pid}/task/${tid}/schedstat`)[0];
      otherMs += ms;
    }
    try {
      children.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    } catch { /* gone */ }
  }
  for (const child of children) for (const tid of tasks(child)) parserMs += sched(`/proc/${child}/task/${tid}/schedstat`)[0];
  const stat = readFileSync('/proc/stat', 'utf8').split('\n');
  const steal = (cpu: string) => Number(stat.find((l) => l.startsWith(cpu + ' '))?.split(/\s+/)[8] ?? 0) * 10;
  return { mainMs, mainWaitMs, otherMs, parserMs, steal0Ms: steal('cpu0'), steal1Ms: steal('cpu1') };
}

/** `b - a` per field, rounded to 0.1 ms (null when a sample is missing). */
function diffShares(a: CpuShares | null, b: CpuShares | null): CpuShares | null {
  if (!a || !b) return null;
  const d = (k: keyof CpuShares) => +(b[k] - a[k]).toFixed(1);
  return { mainMs: d('mainMs'), mainWaitMs: d('mainWaitMs'), otherMs: d('otherMs'), parserMs: d('parserMs'), steal0Ms: d('steal0Ms'), steal1Ms: d('steal1Ms') };
}

/**
 * Moves this process (and so every process it starts) into the cgroup-v1 CPU group `name` with
 * the most CPU shares there are: on a machine shared with other work, the bench then gets the CPUs
 * whenever it wants them, as on a quiet machine. `leave()` moves back and removes the group.
 */
function joinCpuGroup(name: string): { leave(): void } {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`BENCH_CGROUP ${JSON.stringify(name)}: lower-case letters, digits and "-" only`);
  const root = '/sys/fs/cgroup/cpu';
  const path = join(root, name);
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'cpu.shares'), '262144');
  writeFileSync(join(path, 'tasks'), String(process.pid));
  return {
    leave() {
      try {
        writeFileSync(join(root, 'tasks'), String(process.pid));
        rmdirSync(path);
      } catch { /* still in use (a child that did not exit): left for the next run */ }
    },
  };
}

/**
 * The probe (a query about every millisecond) in its own process, so that this bench's pauses
 * (its garbage collector, its sampling) do not delay it. Times are put on this process's
 * performance.now() clock.
 */
async function startProbe(opts: { port: number; zone: string; groups: number }) {
  const script = join(HERE, 'query-stream-process.js');
  const argv = [process.execPath, script, JSON.stringify(opts)];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const answered: Answered[] = [];
  let port = 0;
  const local = (t: number) => t - performance.timeOrigin;
  let stopped: ((r: { lost: number; inFlightAtStop: number }) => void) | null = null;
  const result = new Promise<{ lost: number; inFlightAtStop: number }>((res) => (stopped = res));
  const started = new Promise<void>((res, rej) => {
    child.once('error', rej);
    child.once('exit', (code) => rej(new Error(`the probe process exited (${code})`)));
    child.on('message', (m: { type: string; port?: number; batch?: Answered[]; lost?: number; inFlightAtStop?: number }) => {
      if (m.type === 'started') {
        port = m.port ?? 0;
        res();
      }
      else if (m.type === 'answers') for (const a of m.batch ?? []) answered.push({ ...a, sentAt: local(a.sentAt), answeredAt: local(a.answeredAt) });
      else if (m.type === 'stopped') stopped?.({ lost: m.lost ?? 0, inFlightAtStop: m.inFlightAtStop ?? 0 });
    });
  });
  await started;
  let lost = 0;
  return {
    answered,
    port,
    get lost() {
      return lost;
    },
    async stop() {
      child.send({ type: 'stop' });
      lost = (await result).lost;
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * The probe's queries and the server's answers to them as the kernel saw them (tcpdump on
 * loopback, when installed): times that neither the probe's nor this bench's pauses can shift.
 * `stop()` returns the longest time the server had a probe query waiting and sent no answer to
 * any (ms), with when it began (on this process's performance.now() clock), between `from` and `to`.
 */
async function startCapture(dir: string, serverPort: number, probePort: number) {
  const file = join(dir, 'probe.pcap');
  const filter = `udp and ((src port ${probePort} and dst port ${serverPort}) or (src port ${serverPort} and dst port ${probePort}))`;
  const child = spawn('tcpdump', ['-i', 'lo', '-n', '-s', '64', '-B', '16384', '-U', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((res, rej) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) res();
    });
    child.once('error', rej);
    child.once('exit', (code) => rej(new Error(`tcpdump exited (${code}): ${err.trim()}`)));
  });
  return {
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
    async stop(from: number, to: number): Promise<{ maxGapMs: number; maxGapAt: number; packets: number; dropped: string | null }> {
      const exited = new Promise<void>((res) => child.once('exit', () => res()));
      child.kill('SIGINT');
      await exited;
      const dropped = /(\d+) packets? dropped by kernel/.exec(err)?.[1] ?? null;
      const events = readPcap(readFileSync(file), serverPort);
      const pending = new Set<number>();
      let since: number | null = null;
      let maxGapMs = 0;
      let maxGapAt = from;
      for (const e of events) {
        const t = e.at - performance.timeOrigin;
        if (e.query) {
          pending.add(e.id);
          since ??= t;
          continue;
        }
        if (!pending.delete(e.id)) continue;
        if (since !== null && t >= from && since <= to && t - Math.max(since, from) > maxGapMs) {
          maxGapMs = t - Math.max(since, from);
          maxGapAt = Math.max(since, from);
        }
        since = pending.size > 0 ? t : null;
      }
      return { maxGapMs, maxGapAt, packets: events.length, dropped: dropped === '0' ? null : dropped };
    },
  };
}

/** DNS messages to and from `serverPort` in a pcap file (Ethernet or Linux cooked link types): epoch ms, query or answer, DNS id. */
function readPcap(buf: Buffer, serverPort: number): { at: number; query: boolean; id: number }[] {
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const nanos = magic === 0xa1b23c4d || magic === 0x4d3cb2a1;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const link = u32(20);
  const linkHeader = link === 1 ? 14 : link === 113 ? 16 : link === 276 ? 20 : link === 0 ? 4 : -1;
  if (linkHeader < 0) throw new Error(`pcap link type ${link} not understood`);
  const out: { at: number; query: boolean; id: number }[] = [];
  for (let o = 24; o + 16 <= buf.length; ) {
    const at = u32(o) * 1000 + u32(o + 4) / (nanos ? 1e6 : 1e3);
    const caplen = u32(o + 8);
    const p = o + 16 + linkHeader;
    o += 16 + caplen;
    if (o > buf.length) break;
    const ipv = buf[p] >> 4;
    const ip = ipv === 4 ? (buf[p] & 0xf) * 4 : ipv === 6 ? 40 : -1;
    if (ip < 0 || p + ip + 8 + 2 > o) continue;
    const dst = buf.readUInt16BE(p + ip + 2);
    out.push({ at, query: dst === serverPort, id: buf.readUInt16BE(p + ip + 8) });
  }
  return out.sort((a, b) => a.at - b.at);
}

/** Whether a command runs (exit 0 for `--version`/-h). */
function hasCommand(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

/** The p-quantile (0..1) of `xs` (sorted in place), NaN when empty. */
function quantile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
}

/** `command` pinned to `cpu` (taskset) and at nice {@link NICE} when asked: the executable and its arguments. */
function wrapped(cpu: string | null, command: string[]): [string, string[]] {
  let argv = command;
  if (NICE !== null) argv = ['nice', '-n', String(NICE), ...argv];
  if (cpu !== null) argv = ['taskset', '-c', cpu, ...argv];
  return [argv[0], argv.slice(1)];
}

/** dnsperf processes running (stopped by the cleanup should the bench fail). */
const perfProcs = new Set<ChildProcess>();

/** A dnsperf run's summary, and the latencies of its answered queries (-v). */
interface PerfRun {
  sent: number;
  completed: number;
  lost: number;
  interrupted: number;
  qps: number;
  maxLatencyMs: number;
  p99LatencyMs: number;
  /** Answers that were not NOERROR/NXDOMAIN. */
  otherRcodes: number;
}

/**
 * Runs dnsperf (pinned to `cpu` when given) until `stop` resolves (then SIGINT) or `seconds`;
 * `-Q qps` when given. Its verbose output goes to `outFile`.
 */
async function runDnsperf(o: { port: number; queryFile: string; outFile: string; seconds: number; qps?: number; clients: number; outstanding: number; cpu: string | null; stop?: Promise<void> }): Promise<PerfRun> {
  const args = ['-s', '127.0.0.1', '-p', String(o.port), '-d', o.queryFile, '-l', String(o.seconds), '-c', String(o.clients), '-q', String(o.outstanding), '-v', '-S', '1'];
  if (o.qps) args.push('-Q', String(o.qps));
  const [cmd, argv] = wrapped(o.cpu, ['dnsperf', ...args]);
  const out = createWriteStream(o.outFile);
  const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  perfProcs.add(p);
  p.once('close', () => perfProcs.delete(p));
  p.stdout.pipe(out);
  let err = '';
  p.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  const exited = new Promise<number | null>((res, rej) => {
    p.once('error', rej);
    p.once('close', (code) => res(code));
  });
  void o.stop?.then(() => p.kill('SIGINT'));
  const code = await exited;
  await new Promise<void>((res) => (out.writableFinished ? res() : out.once('finish', () => res())));
  const text = readFileSync(o.outFile, 'latin1');
  if (code !== 0) throw new Error(`dnsperf exited with ${code}: ${err}${text.slice(-2000)}`);
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const lat: number[] = [];
  let other = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('> ')) continue;
    // "> RCODE name type latency"; "> I name type" (in flight at the stop), "> T ..." (lost)
    const f = line.split(' ');
    if (f.length < 5) continue;
    if (f[1] !== 'NOERROR' && f[1] !== 'NXDOMAIN') other++;
    lat.push(Number(f[4]) * 1000);
  }
  return {
    sent: num(/Queries sent:\s+(\d+)/), completed: num(/Queries completed:\s+(\d+)/), lost: num(/Queries lost:\s+(\d+)/),
    interrupted: num(/Queries interrupted:\s+(\d+)/) || 0, qps: num(/Queries per second:\s+([\d.]+)/),
    maxLatencyMs: num(/Average Latency \(s\):\s+[\d.]+\s+\(min [\d.]+, max ([\d.]+)\)/) * 1000,
    p99LatencyMs: quantile(lat, 0.99), otherRcodes: other,
  };
}

/** A secondary that is never there but for NOTIFY: records when each NOTIFY arrived and the serial it announced. */
async function notifyCatcher(): Promise<{ port: number; notifies: { at: number; serial: number | null }[]; close(): void }> {
  const sock: UdpSocket = createSocket('udp4');
  const notifies: { at: number; serial: number | null }[] = [];
  sock.on('message', (m) => {
    const at = performance.now();
    if (m.length < 12 || ((m[2] >> 3) & 0xf) !== 4) return; // not a NOTIFY
    let serial: number | null = null;
    try {
      const soa = decode(m).answers.find((r) => r.type === T.SOA);
      if (soa) serial = soa.rdata.readUInt32BE(soa.rdata.length - 20);
    } catch { /* a NOTIFY without a readable SOA */ }
    notifies.push({ at, serial });
  });
  sock.on('error', () => { /* the bench only listens */ });
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
  return { port: sock.address().port, notifies, close: () => sock.close() };
}

/** Whether a reply is the right answer for `host<g> A`. */
function hostAnswerOk(d: Decoded, g: number): boolean {
  if (d.rcode !== RC.NOERROR || !d.aa) return false;
  const got = d.answers.filter((r) => r.type === T.A).map(ipOf).sort();
  return got.length === 2 && got[0] === a4(g, 1) && got[1] === a4(g, 2);
}

async function main(): Promise<number> {
  if (!existsSync(CLI)) {
    log(`${CLI} is missing: run "npm run build" first`);
    return 1;
  }
  const group = CGROUP ? joinCpuGroup(CGROUP) : null;
  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-zone-'));
  const zonesDir = join(dir, 'zones');
  let proc: ChildProcess | null = null;
  let probeProc: Awaited<ReturnType<typeof startProbe>> | null = null;
  let captureProc: Awaited<ReturnType<typeof startCapture>> | null = null;
  let secondary: Awaited<ReturnType<typeof notifyCatcher>> | null = null;
  const cleanup = async () => {
    secondary?.close();
    secondary = null;
    for (const p of perfProcs) p.kill('SIGINT');
    probeProc?.kill();
    captureProc?.kill();
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const p = proc;
      const done = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(t);
    }
    if (opt.keep) log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    group?.leave();
  };
  const onSignal = () => void cleanup().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    mkdirSync(zonesDir);
    const tg = Date.now();
    const zone = await writeZone(join(zonesDir, `${ORIGIN.slice(0, -1)}.zone`), RECORDS);
    const genMs = Date.now() - tg;
    log(`zone: ${zone.records} records (${zone.groups} groups of ${PER_GROUP}), ${(zone.bytes / MB).toFixed(1)} MB, generated in ${genMs} ms`);

    const dnsPort = await freePort();
    const apiPort = await freePort();
    const configPath = join(dir, 'config.yaml');
    secondary = SECONDARIES ? await notifyCatcher() : null;
    const dns: Record<string, unknown> = { listen: [`127.0.0.1:${dnsPort}`], zones: zonesDir };
    if (process.env.BENCH_CACHE_ENTRIES) dns.cache_entries = Number(process.env.BENCH_CACHE_ENTRIES);
    if (secondary) {
      // as test/support/hidden-primary-lab.ts hiddenPrimaryDns: one key, the secondary signs with it
      Object.assign(dns, {
        tsig_keys: [{ name: 'fc-bench.', algorithm: 'hmac-sha256', secret_env: TSIG_SECRET_ENV }],
        secondaries: [{ name: 'bench-secondary', address: `127.0.0.1:${secondary.port}`, tsig: 'fc-bench.' }],
        journal_dir: join(dir, 'journal'),
      });
    }
    writeFileSync(configPath, stringify({
      dns,
      api: { listen: `127.0.0.1:${apiPort}`, token_env: 'FC_BENCH_TOKEN' },
      log: { level: 'info' },
    }));
    const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
    const nodeArgs = [`--max-old-space-size=${opt['max-old-space-size']}`, ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
    const pin = process.env.BENCH_PIN !== '0' && cpus().length >= 2 && hasCommand('taskset', ['-c', '0', 'true']);
    const withLoad = LOAD > 0 && spawnSync('dnsperf', ['-h'], { stdio: 'ignore' }).error === undefined;
    let output = '';
    const t0 = performance.now();
    const env = { ...process.env, FC_BENCH_TOKEN: 'bench-' + Math.random().toString(36).slice(2), [TSIG_SECRET_ENV]: randomBytes(32).toString('base64') };
    const argv = [...nodeArgs, CLI, 'serve', '--config', configPath];
    if (NICE !== null) setPriority(NICE); // the probe and the sampler
    const [cmd, args] = wrapped(pin ? '0' : null, [process.execPath, ...argv]);
    proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const logFile = createWriteStream(join(dir, 'controller.log'));
    proc.stdout!.on('data', (d) => (output = (output + d).slice(-20000)));
    proc.stderr!.on('data', (d) => (output = (output + d).slice(-20000)));
    proc.stdout!.pipe(logFile);
    proc.stderr!.pipe(logFile);
    const pid = proc.pid!;
    const exited = () => proc!.exitCode !== null || proc!.signalCode !== null;

    // Poll readiness and a correct answer concurrently, both timed from the spawn.
    const lastG = zone.groups - 1;
    const probe = buildQuery(`host${lastG}.${ORIGIN}`, { id: 4242, type: T.A });
    const deadline = t0 + 180_000;
    let readyMs: number | null = null;
    let answerMs: number | null = null;
    const pollReady = (async () => {
      while (readyMs === null && !exited() && performance.now() < deadline) {
        try {
          const r = await fetch(`http://127.0.0.1:${apiPort}/readyz`);
          await r.arrayBuffer();
          if (r.status === 200) readyMs = performance.now() - t0;
        } catch { /* not listening yet */ }
        if (readyMs === null) await sleep(20);
      }
    })();
    const pollAnswer = (async () => {
      while (answerMs === null && !exited() && performance.now() < deadline) {
        const m = await udpExchange(dnsPort, probe, 200).catch(() => null);
        if (m) {
          try {
            if (hostAnswerOk(decode(m), lastG)) answerMs = performance.now() - t0;
          } catch { /* keep polling */ }
        }
        if (answerMs === null) await sleep(20);
      }
    })();
    await Promise.all([pollReady, pollAnswer]);
    if (readyMs === null || answerMs === null) {
      log(`controller ${exited() ? `exited (${proc.exitCode ?? proc.signalCode})` : 'did not become ready within 180 s'}; ` +
        `readyz ${readyMs === null ? 'never 200' : 'ok'}, answer ${answerMs === null ? 'never correct' : 'ok'}. Last output:\n${output.slice(-4000)}`);
      const peak = exited() ? null : rss(pid);
      log(JSON.stringify({ bench: 'zone-load', ok: false, records: zone.records, readyMs, firstAnswerMs: answerMs, peakRssMB: peak && peak.hwm / MB }));
      return 1;
    }
    const cpuAtReady = cpuSeconds(pid);
    await sleep(500);
    const afterLoad = rss(pid);

    // 10,000 queries over UDP, a window of 64, checking each answer.
    const tq = performance.now();
    const kinds = ['host-A', 'host-MX', 'web-AAAA', 'www-CNAME', 'nx', 'deleg'] as const;
    let ok = 0;
    let bad = 0;
    let lost = 0;
    const badSamples: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < QUERIES) {
        const i = next++;
        const g = (i * 7919) % zone.groups;
        const kind = kinds[i % kinds.length];
        const [name, type] = {
          'host-A': [`host${g}`, T.A], 'host-MX': [`host${g}`, T.MX], 'web-AAAA': [`web${g}`, T.AAAA],
          'www-CNAME': [`www${g}`, T.A], nx: [`nx${g}`, T.A], deleg: [`x.deleg${g}`, T.A],
        }[kind] as [string, number];
        const m = await udpExchange(dnsPort, buildQuery(`${name}.${ORIGIN}`, { id: i & 0xffff, type }), 2000);
        if (!m) {
          lost++;
          continue;
        }
        let good = false;
        try {
          const d = decode(m);
          switch (kind) {
            case 'host-A': good = hostAnswerOk(d, g); break;
            case 'host-MX': good = d.rcode === RC.NOERROR && d.answers.some((r) => r.type === T.MX); break;
            case 'web-AAAA': good = d.rcode === RC.NOERROR && d.answers.filter((r) => r.type === T.AAAA).length === 1; break;
            case 'www-CNAME': good = d.rcode === RC.NOERROR && d.answers.some((r) => r.type === T.CNAME); break;
            case 'nx': good = d.rcode === RC.NXDOMAIN && d.aa; break;
            case 'deleg': good = d.rcode === RC.NOERROR && !d.aa && d.authority.some((r) => r.type === T.NS); break;
          }
          if (!good && badSamples.length < 5) badSamples.push(`${kind} ${name}: rcode ${d.rcode} aa=${d.aa} an=${d.answers.length} ns=${d.authority.length}`);
        } catch (e) {
          if (badSamples.length < 5) badSamples.push(`${kind} ${name}: ${(e as Error).message}`);
        }
        if (good) ok++;
        else bad++;
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    const queryMs = performance.now() - tq;
    await sleep(500);
    const afterQueries = rss(pid);

    // The capacity: dnsperf unthrottled on the zone's names (the mix above).
    const queryFile = join(dir, 'queries.txt');
    {
      const lines: string[] = [];
      const typeOf = ['A', 'MX', 'AAAA', 'A', 'A', 'A'];
      for (let i = 0; i < 100_000; i++) {
        const g = (i * 7919 + 13) % zone.groups;
        const k = i % 6;
        const name = [`host${g}`, `host${g}`, `web${g}`, `www${g}`, `nx${g}`, `x.deleg${g}`][k];
        lines.push(`${name}.${ORIGIN.slice(0, -1)} ${typeOf[k]}`);
      }
      writeFileSync(queryFile, lines.join('\n') + '\n');
    }
    const perfCpu = pin ? '1' : null;
    let capacity: PerfRun | null = null;
    if (withLoad) {
      capacity = await runDnsperf({ port: dnsPort, queryFile, outFile: join(dir, 'dnsperf-capacity.txt'), seconds: CAPACITY_SECONDS, clients: 10, outstanding: 500, cpu: perfCpu });
      await sleep(500);
    }
    const rate = capacity ? Math.max(1, Math.round(capacity.qps * LOAD)) : 0;

    // A SIGHUP reload of the whole zone (next serial) under that load, a probe asking meanwhile.
    const zoneFile = join(zonesDir, `${ORIGIN.slice(0, -1)}.zone`);
    await writeZone(zoneFile + '.new', RECORDS, SERIAL + 1);
    renameSync(zoneFile + '.new', zoneFile);
    const stream = await startProbe({ port: dnsPort, zone: ORIGIN, groups: zone.groups });
    probeProc = stream;
    const capture = hasCommand('tcpdump', ['--version']) ? await startCapture(dir, dnsPort, stream.port).catch((e: Error) => (log(`no capture: ${e.message}`), null)) : null;
    captureProc = capture;
    // the main thread's on-CPU time every 10 ms: tells a server busy answering late from one waiting for a CPU
    const cpuSamples: [number, number][] = [];
    const whoSamples: [number, CpuShares][] = [];
    const sampler = setInterval(() => {
      try {
        cpuSamples.push([performance.now(), mainThreadCpuMs(pid)]);
        whoSamples.push([performance.now(), cpuShares(pid)]);
      } catch { /* exited */ }
    }, 10);
    let stopLoad = (): void => undefined;
    const loadStopped = new Promise<void>((res) => (stopLoad = res));
    const loadRun = rate > 0
      ? runDnsperf({ port: dnsPort, queryFile, outFile: join(dir, 'dnsperf-reload.txt'), seconds: 600, qps: rate, clients: 10, outstanding: 500, cpu: perfCpu, stop: loadStopped })
      : null;
    loadRun?.catch(() => undefined); // awaited below
    await sleep(1000);
    const hup = performance.now();
    proc.kill('SIGHUP');
    let swapped: number | null = null;
    let notified: number | null = null;
    while (!exited() && performance.now() - hup < 180_000) {
      swapped ??= stream.answered.find((x) => x.answeredAt >= hup && x.serial === SERIAL + 1)?.answeredAt ?? null;
      notified ??= secondary?.notifies.find((x) => x.at >= hup && x.serial === SERIAL + 1)?.at ?? null;
      if (swapped !== null && (secondary === null || notified !== null)) break;
      await sleep(10);
    }
    const windowEnd = Math.max(swapped ?? 0, notified ?? 0) + 1000;
    await sleep(Math.max(0, windowEnd - performance.now()) + 200);
    stopLoad();
    const perf = await loadRun;
    await stream.stop();
    clearInterval(sampler);
    const afterReload = rss(pid);
    const before = answersBetween(stream.answered, hup - 900, hup);
    const complete = swapped !== null && (secondary === null || notified !== null);
    const during = complete ? answersBetween(stream.answered, hup, windowEnd) : null;
    const captured = capture ? await capture.stop(hup, windowEnd).catch((e: Error) => (log(`capture not read: ${e.message}`), null)) : null;
    captureProc = null;
    /** The gap judged: as the kernel saw it when captured, else as the probe saw it. */
    const gap = during === null ? null : captured ? { ms: captured.maxGapMs, at: captured.maxGapAt } : { ms: during.maxGapMs, at: during.maxGapAt };
    const probeP99 = quantile(stream.answered.filter((a) => a.answeredAt >= hup && a.answeredAt <= windowEnd).map((a) => a.answeredAt - a.sentAt), 0.99);
    const reloadMs = swapped === null ? null : swapped - hup;
    const cpuAt = (t: number) => cpuSamples.reduce((v, [at, n]) => (at <= t ? n : v), cpuSamples[0]?.[1] ?? 0);
    const gapCpuMs = gap ? +(cpuAt(gap.at + gap.ms + 5) - cpuAt(gap.at - 5)).toFixed(1) : null;
    const whoAt = (t: number) => whoSamples.reduce<CpuShares | null>((v, [at, n]) => (at <= t ? n : v), whoSamples[0]?.[1] ?? null);
    // the probe's own longest pause in sending (the bench process not running): an answer gap about
    // as long is the bench's, not the server's
    const sends = stream.answered.filter((a) => a.sentAt >= hup && a.sentAt <= windowEnd).map((a) => a.sentAt).sort((a, b) => a - b);
    let sendGap = 0;
    for (let i = 1; i < sends.length; i++) sendGap = Math.max(sendGap, sends[i] - sends[i - 1]);
    const gapWho = gap ? diffShares(whoAt(gap.at - 5), whoAt(gap.at + gap.ms + 5)) : null;
    const reloadOk = gap !== null && gap.ms <= GAP_TARGET_MS && stream.lost === 0 && (perf === null || perf.lost === 0);

    const loadOk = readyMs < LOAD_TARGET_S * 1000 && answerMs < LOAD_TARGET_S * 1000;
    const rssOk = afterLoad.rss < RSS_TARGET && afterQueries.rss < RSS_TARGET;
    const f = (ms: number) => (ms / 1000).toFixed(2) + ' s';
    const m = (b: number) => (b / MB).toFixed(0) + ' MB';
    const ms = (x: number) => x.toFixed(1) + ' ms';
    log('');
    log(`records                    ${zone.records.toLocaleString('en')}  (zone file ${m(zone.bytes)})`);
    log(`secondaries                ${secondary ? 'configured (hidden primary: a transfer snapshot and journal version per reload)' : 'none'}`);
    log(`spawn -> /readyz 200       ${f(readyMs)}   target < ${LOAD_TARGET_S} s   ${readyMs < LOAD_TARGET_S * 1000 ? 'OK' : 'MISSED'}`);
    log(`spawn -> first answer      ${f(answerMs)}   target < ${LOAD_TARGET_S} s   ${answerMs < LOAD_TARGET_S * 1000 ? 'OK' : 'MISSED'}`);
    log(`controller CPU to ready    ${cpuAtReady.toFixed(2)} s (user+sys; wall time above includes waiting for the CPU)`);
    log(`machine                    ${cpus().length} CPUs${pin ? ' (controller on CPU 0, dnsperf on CPU 1)' : ''}${NICE !== null ? `, nice ${NICE}` : ''}${CGROUP ? `, in CPU group ${CGROUP}` : ''}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (at start ${load0})`);
    log(`RSS after load             ${m(afterLoad.rss)}  (peak ${m(afterLoad.hwm)})   target < 1 GiB   ${afterLoad.rss < RSS_TARGET ? 'OK' : 'MISSED'}`);
    log(`RSS after ${QUERIES} queries   ${m(afterQueries.rss)}  (peak ${m(afterQueries.hwm)})   target < 1 GiB   ${afterQueries.rss < RSS_TARGET ? 'OK' : 'MISSED'}`);
    log(`queries                    ${ok} correct, ${bad} wrong, ${lost} unanswered in ${f(queryMs)} (${Math.round(QUERIES / (queryMs / 1000))} q/s)`);
    if (capacity) log(`capacity (dnsperf)         ${Math.round(capacity.qps)} q/s unthrottled (${capacity.lost} lost); load during the reload: ${rate} q/s (${LOAD} of it)`);
    else log(`load during the reload     none (${LOAD > 0 ? 'dnsperf is not installed' : 'BENCH_LOAD=0'}): the probe alone`);
    if (during === null || reloadMs === null) {
      log(`SIGHUP reload              ${swapped === null ? 'the new serial was never served' : 'the secondary never got the NOTIFY of the new serial'} (${exited() ? 'controller exited' : 'gave up after 180 s'})`);
    } else {
      log(`SIGHUP -> new serial       ${f(reloadMs)}${notified !== null ? `; -> NOTIFY of it ${f(notified - hup)}` : ''}`);
      if (perf) {
        log(`dnsperf during the reload  ${perf.sent} sent, ${perf.completed} answered, ${perf.lost} lost (${perf.interrupted} in flight at its stop), ${perf.otherRcodes} other rcodes; ${Math.round(perf.qps)} q/s`);
        log(`  latency                  p99 ${ms(perf.p99LatencyMs)}, max ${ms(perf.maxLatencyMs)} (whole run: 1 s before the SIGHUP to the end of the window)`);
      }
      log(`probe during the reload    ${during.answered} answers, ${stream.lost} unanswered after 5 s; latency p99 ${ms(probeP99)}, max ${ms(during.maxLatencyMs)}`);
      if (captured) {
        log(`longest answer gap         ${ms(captured.maxGapMs)} (kernel times, tcpdump: a probe query waiting, no answer sent; SIGHUP to ${notified !== null ? 'NOTIFY' : 'new serial'} + 1 s)   target <= ${GAP_TARGET_MS} ms, none lost   ${reloadOk ? 'OK' : 'MISSED'}`);
        log(`  as the probe saw it      ${ms(during.maxGapMs)} (before the SIGHUP: ${ms(before.maxGapMs)}); the probe's longest pause in sending ${ms(sendGap)} (its own, not the server's)${captured.dropped ? `; tcpdump dropped ${captured.dropped} packets` : ''}`);
      } else {
        log(`longest answer gap         ${ms(during.maxGapMs)} (as the probe saw it; SIGHUP to ${notified !== null ? 'NOTIFY' : 'new serial'} + 1 s; before it: ${ms(before.maxGapMs)})   target <= ${GAP_TARGET_MS} ms, none lost   ${reloadOk ? 'OK' : 'MISSED'}`);
        log(`  probe's longest pause    ${ms(sendGap)} between two queries sent (without tcpdump the probe's own pauses read as the server's gaps)`);
      }
      log(`  when, main thread CPU    from +${f(gap!.at - hup)} after the SIGHUP; ${gapCpuMs} ms on a CPU in it (near the gap: the thread was working; far below it: waiting for a CPU)`);
      if (gapWho) log(`  who had the CPUs         main thread ${gapWho.mainMs} ms (waiting runnable ${gapWho.mainWaitMs} ms), other controller threads ${gapWho.otherMs} ms, parser ${gapWho.parserMs >= 0 ? `${gapWho.parserMs} ms` : "(exited in the gap)"}, steal cpu0 ${gapWho.steal0Ms} ms / cpu1 ${gapWho.steal1Ms} ms`);
      log(`RSS after reload           ${m(afterReload.rss)}  (peak ${m(afterReload.hwm)})`);
    }
    if (badSamples.length) log(`wrong answers, first ${badSamples.length}:\n  ${badSamples.join('\n  ')}`);
    log(JSON.stringify({
      bench: 'zone-load', ok: loadOk && rssOk && bad === 0 && lost === 0 && reloadOk, records: zone.records, zoneFileBytes: zone.bytes,
      secondaries: secondary !== null, pinned: pin, nice: NICE, cgroup: CGROUP,
      nodeArgs, readyMs: Math.round(readyMs), firstAnswerMs: Math.round(answerMs), cpuSecondsToReady: cpuAtReady,
      cpus: cpus().length, loadAvgAtStart: load0, loadAvgAtEnd: loadavg().map((x) => x.toFixed(2)).join(' '),
      rssAfterLoadMB: +(afterLoad.rss / MB).toFixed(1), peakRssAfterLoadMB: +(afterLoad.hwm / MB).toFixed(1),
      rssAfterQueriesMB: +(afterQueries.rss / MB).toFixed(1), peakRssMB: +(afterQueries.hwm / MB).toFixed(1),
      queries: QUERIES, queriesCorrect: ok, queriesWrong: bad, queriesLost: lost, qps: Math.round(QUERIES / (queryMs / 1000)),
      capacityQps: capacity ? Math.round(capacity.qps) : null, loadQps: rate || null,
      reloadMs: reloadMs === null ? null : Math.round(reloadMs), notifyMs: notified === null ? null : Math.round(notified - hup),
      dnsperf: perf && { sent: perf.sent, answered: perf.completed, lost: perf.lost, interrupted: perf.interrupted, otherRcodes: perf.otherRcodes, qps: Math.round(perf.qps), p99LatencyMs: +perf.p99LatencyMs.toFixed(2), maxLatencyMs: +perf.maxLatencyMs.toFixed(1) },
      reloadAnswered: during?.answered ?? null, reloadLost: stream.lost, reloadP99LatencyMs: during ? +probeP99.toFixed(2) : null,
      reloadMaxGapMs: gap ? +gap.ms.toFixed(1) : null, reloadMaxGapMainCpuMs: gapCpuMs, reloadMaxGapShares: gapWho, probeMaxSendPauseMs: +sendGap.toFixed(1), probeMaxGapMs: during ? +during.maxGapMs.toFixed(1) : null, captured: captured !== null, reloadMaxGapAtMs: gap ? Math.round(gap.at - hup) : null, reloadMaxLatencyMs: during ? +during.maxLatencyMs.toFixed(1) : null,
      gapBeforeReloadMs: +before.maxGapMs.toFixed(1), rssAfterReloadMB: +(afterReload.rss / MB).toFixed(1), peakRssAfterReloadMB: +(afterReload.hwm / MB).toFixed(1),
      targets: { loadS: LOAD_TARGET_S, rssMB: RSS_TARGET / MB, reloadGapMs: GAP_TARGET_MS }, loadOk, rssOk, reloadOk,
    }));
    if (bad || lost || during === null) return 1;
    return opt.strict && !(loadOk && rssOk && reloadOk) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`bench-zone-load failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});

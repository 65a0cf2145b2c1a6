/**
 * bench:zone-load — how long the controller takes to load a 1,000,000-record zone, and how much
 * memory it keeps.
 *
 * Generates a zone with a realistic mix (A 45 %, AAAA 20 %, CNAME 15 %, TXT 10 %, MX 5 %,
 * NS delegations with glue 5 %) into a temp dir, starts the built controller on it
 * (dist/src/cli/failoverctl.js, on loopback), and measures: spawn -> /readyz 200, spawn -> first
 * correct DNS answer, RSS after load and after 10,000 queries. Then a SIGHUP reload of the zone
 * (rewritten with the next serial) while a UDP client on loopback keeps asking (a query about every
 * millisecond, at most 32 unanswered): the time from SIGHUP to the new serial being served, the
 * answers in between, and the longest gap between two answers, which is the longest the server
 * stopped answering (the main thread's event-loop stall as a client sees it). Prints them with
 * the targets (load < 15 s, RSS < 1 GiB) and a final JSON line; removes everything it created.
 *
 * Usage: npm run build && npm run bench:zone-load -- [--records N] [--queries N]
 *          [--max-old-space-size MB] [--strict] [--keep]
 *   --strict  exit 1 when a target is missed (default: exit 0, only errors fail)
 *   --keep    keep the temp dir (zone file, config, controller log)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { loadavg, cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { buildQuery, decode, ipOf, udpExchange, RC, T, type Decoded } from '../test/dns/tiny-dns.js';
import { QueryStream, answersBetween } from '../test/dns/query-stream.js';

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

/** CPU ticks (1/100 s) the controller's main thread (the one that answers) has used. */
function mainThreadTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
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
  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-zone-'));
  const zonesDir = join(dir, 'zones');
  let proc: ChildProcess | null = null;
  const cleanup = async () => {
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
    writeFileSync(configPath, stringify({
      dns: { listen: [`127.0.0.1:${dnsPort}`], zones: zonesDir },
      api: { listen: `127.0.0.1:${apiPort}`, token_env: 'FC_BENCH_TOKEN' },
      log: { level: 'info' },
    }));
    const load0 = loadavg().map((x) => x.toFixed(2)).join(' ');
    const nodeArgs = [`--max-old-space-size=${opt['max-old-space-size']}`];
    let output = '';
    const t0 = performance.now();
    proc = spawn(process.execPath, [...nodeArgs, CLI, 'serve', '--config', configPath], {
      env: { ...process.env, FC_BENCH_TOKEN: 'bench-' + Math.random().toString(36).slice(2) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (d) => (output = (output + d).slice(-20000)));
    proc.stderr!.on('data', (d) => (output = (output + d).slice(-20000)));
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

    // A SIGHUP reload of the whole zone (next serial) while a client keeps asking.
    const zoneFile = join(zonesDir, `${ORIGIN.slice(0, -1)}.zone`);
    await writeZone(zoneFile + '.new', RECORDS, SERIAL + 1);
    renameSync(zoneFile + '.new', zoneFile);
    const stream = new QueryStream({ port: dnsPort, zone: ORIGIN, names: (i) => `host${(i * 7919) % zone.groups}.${ORIGIN}` });
    await stream.start();
    // the main thread's CPU every 5 ms: tells a server busy answering late from one waiting for a CPU
    const ticks: [number, number][] = [];
    const sampler = setInterval(() => {
      try {
        ticks.push([performance.now(), mainThreadTicks(pid)]);
      } catch { /* exited */ }
    }, 5);
    await sleep(500);
    const hup = performance.now();
    proc.kill('SIGHUP');
    let swapped: number | null = null;
    while (!exited() && performance.now() - hup < 180_000) {
      const a = stream.answered.find((x) => x.answeredAt >= hup && x.serial === SERIAL + 1);
      if (a) {
        swapped = a.answeredAt;
        break;
      }
      await sleep(10);
    }
    await sleep(500);
    stream.stop();
    clearInterval(sampler);
    const afterReload = rss(pid);
    const before = answersBetween(stream.answered, hup - 400, hup);
    const during = swapped === null ? null : answersBetween(stream.answered, hup, swapped);
    const reloadMs = swapped === null ? null : swapped - hup;
    const ticksAt = (t: number) => ticks.reduce((v, [at, n]) => (at <= t ? n : v), ticks[0]?.[1] ?? 0);
    const gapCpuMs = during ? (ticksAt(during.maxGapAt + during.maxGapMs + 5) - ticksAt(during.maxGapAt - 5)) * 10 : null;

    const loadOk = readyMs < LOAD_TARGET_S * 1000 && answerMs < LOAD_TARGET_S * 1000;
    const rssOk = afterLoad.rss < RSS_TARGET && afterQueries.rss < RSS_TARGET;
    const f = (ms: number) => (ms / 1000).toFixed(2) + ' s';
    const m = (b: number) => (b / MB).toFixed(0) + ' MB';
    log('');
    log(`records                    ${zone.records.toLocaleString('en')}  (zone file ${m(zone.bytes)})`);
    log(`spawn -> /readyz 200       ${f(readyMs)}   target < ${LOAD_TARGET_S} s   ${readyMs < LOAD_TARGET_S * 1000 ? 'OK' : 'MISSED'}`);
    log(`spawn -> first answer      ${f(answerMs)}   target < ${LOAD_TARGET_S} s   ${answerMs < LOAD_TARGET_S * 1000 ? 'OK' : 'MISSED'}`);
    log(`controller CPU to ready    ${cpuAtReady.toFixed(2)} s (user+sys; wall time above includes waiting for the CPU)`);
    log(`machine                    ${cpus().length} CPUs, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} (at start ${load0})`);
    log(`RSS after load             ${m(afterLoad.rss)}  (peak ${m(afterLoad.hwm)})   target < 1 GiB   ${afterLoad.rss < RSS_TARGET ? 'OK' : 'MISSED'}`);
    log(`RSS after ${QUERIES} queries   ${m(afterQueries.rss)}  (peak ${m(afterQueries.hwm)})   target < 1 GiB   ${afterQueries.rss < RSS_TARGET ? 'OK' : 'MISSED'}`);
    log(`queries                    ${ok} correct, ${bad} wrong, ${lost} unanswered in ${f(queryMs)} (${Math.round(QUERIES / (queryMs / 1000))} q/s)`);
    if (during === null || reloadMs === null) {
      log(`SIGHUP reload              the new serial was never served (${exited() ? 'controller exited' : 'gave up after 180 s'})`);
    } else {
      log(`SIGHUP -> new serial       ${f(reloadMs)}`);
      log(`answers during the reload  ${during.answered} (a query about every ms, at most 32 unanswered; ${stream.lost} unanswered after 5 s)`);
      log(`longest answer gap         ${during.maxGapMs.toFixed(1)} ms during the reload (before it: ${before.maxGapMs.toFixed(1)} ms); slowest answer ${during.maxLatencyMs.toFixed(1)} ms`);
      log(`  main thread CPU in it    ${gapCpuMs} ms (10 ms ticks: near the gap, the thread was working; far below it, waiting for a CPU)`);
      log(`RSS after reload           ${m(afterReload.rss)}  (peak ${m(afterReload.hwm)})`);
    }
    if (badSamples.length) log(`wrong answers, first ${badSamples.length}:\n  ${badSamples.join('\n  ')}`);
    log(JSON.stringify({
      bench: 'zone-load', ok: loadOk && rssOk && bad === 0 && lost === 0, records: zone.records, zoneFileBytes: zone.bytes,
      nodeArgs, readyMs: Math.round(readyMs), firstAnswerMs: Math.round(answerMs), cpuSecondsToReady: cpuAtReady,
      cpus: cpus().length, loadAvgAtStart: load0,
      rssAfterLoadMB: +(afterLoad.rss / MB).toFixed(1), peakRssAfterLoadMB: +(afterLoad.hwm / MB).toFixed(1),
      rssAfterQueriesMB: +(afterQueries.rss / MB).toFixed(1), peakRssMB: +(afterQueries.hwm / MB).toFixed(1),
      queries: QUERIES, queriesCorrect: ok, queriesWrong: bad, queriesLost: lost, qps: Math.round(QUERIES / (queryMs / 1000)),
      reloadMs: reloadMs === null ? null : Math.round(reloadMs), reloadAnswered: during?.answered ?? null, reloadLost: stream.lost,
      reloadMaxGapMs: during ? +during.maxGapMs.toFixed(1) : null, reloadMaxGapMainCpuMs: gapCpuMs, reloadMaxLatencyMs: during ? +during.maxLatencyMs.toFixed(1) : null,
      gapBeforeReloadMs: +before.maxGapMs.toFixed(1), rssAfterReloadMB: +(afterReload.rss / MB).toFixed(1), peakRssAfterReloadMB: +(afterReload.hwm / MB).toFixed(1),
      targets: { loadS: LOAD_TARGET_S, rssMB: RSS_TARGET / MB }, loadOk, rssOk,
    }));
    if (bad || lost || reloadMs === null) return 1;
    return opt.strict && !(loadOk && rssOk) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`bench-zone-load failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});

/**
 * No zone file stops the server (failoverctl serve, the built CLI, on loopback): a FIFO as a zone
 * file or as an $INCLUDE target, /dev/zero and /dev/urandom includes, a directory named x.zone, a
 * file over dns.max_zone_file_bytes, a sparse 1 GiB file, a missing zones directory. At start and
 * at SIGHUP: the bad file is reported (file and reason), the other zones keep being answered and a
 * reload still swaps them, memory stays flat, SIGTERM stops the process cleanly.
 *
 * The controller runs under a guard: should it grow past 1.5 GiB (a device read without end),
 * it is killed and the test fails instead of taking the machine down.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { CLI, freePort } from '../support/controller.js';
import { buildQuery, decode, T, udpExchange } from './tiny-dns.js';

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), 'fc-zone-safety-'));
const running = new Set<ChildProcess>();
afterAll(() => {
  for (const p of running) p.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

const MEMORY_GUARD = 1.5 * 1024 ** 3;
const MB = 1024 * 1024;

const zoneText = (origin: string, serial = 1, extra = '') =>
  `$ORIGIN ${origin}.\n$TTL 300\n@ SOA ns host ${serial} 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.80\n${extra}`;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function memory(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function writeConfig(zones: string, dnsExtra: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmp, 'ctl-'));
  const dnsPort = await freePort();
  const apiPort = await freePort();
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, stringify({
    dns: { listen: [`127.0.0.1:${dnsPort}`], zones, ...dnsExtra },
    api: { listen: `127.0.0.1:${apiPort}`, token_env: 'FC_TEST_TOKEN' },
    log: { level: 'info' },
  }));
  return { dir, dnsPort, apiPort, configPath };
}

/** A controller under the memory guard. */
async function launch(zones: string, dnsExtra: Record<string, unknown> = {}, nodeArgs: string[] = []) {
  const cfg = await writeConfig(zones, dnsExtra);
  const proc = spawn(process.execPath, [...nodeArgs, CLI, 'serve', '--config', cfg.configPath], {
    env: { ...process.env, FC_TEST_TOKEN: 'test-token-' + Math.random().toString(36).slice(2) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  let exit: { code: number | null; signal: string | null } | null = null;
  const exited = new Promise<void>((res) => proc.once('exit', (code, signal) => {
    exit = { code, signal };
    running.delete(proc);
    res();
  }));
  let guardTripped = '';
  const guard = setInterval(() => {
    if (exit) return;
    try {
      const m = memory(proc.pid!);
      if (m.rss > MEMORY_GUARD) {
        guardTripped = `RSS reached ${Math.round(m.rss / MB)} MB: killed`;
        proc.kill('SIGKILL');
      }
    } catch { /* gone */ }
  }, 50);
  proc.once('exit', () => clearInterval(guard));

  const fail = (what: string) => new Error(`${what}${guardTripped ? ` (${guardTripped})` : ''}${exit ? ` (exited: ${JSON.stringify(exit)})` : ''}\n${out.slice(-4000)}`);
  /** Polls `pred` until true; fails when the process is gone or after a generous deadline. */
  const waitFor = async (what: string, pred: () => boolean | Promise<boolean>, limitMs = 60_000) => {
    const deadline = performance.now() + limitMs;
    while (performance.now() < deadline) {
      if (exit || guardTripped) break;
      if (await pred()) return;
      await sleep(50);
    }
    throw fail(`${what}: not seen`);
  };
  const h = {
    ...cfg,
    proc,
    output: () => out,
    /** The pino lines as objects. */
    lines: () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>),
    waitFor,
    /** The answer's first A record as a dotted quad, or null. */
    async answerA(name: string): Promise<string | null> {
      const m = await udpExchange(cfg.dnsPort, buildQuery(name, { type: T.A }), 1000);
      if (!m) return null;
      const a = decode(m).answers.find((r) => r.type === T.A);
      return a ? [...a.rdata].join('.') : null;
    },
    async serial(zone: string): Promise<number | null> {
      const m = await udpExchange(cfg.dnsPort, buildQuery(zone, { type: T.SOA }), 1000);
      const soa = m ? decode(m).answers.find((r) => r.type === T.SOA) : undefined;
      return soa ? soa.rdata.readUInt32BE(soa.rdata.length - 20) : null;
    },
    /** The log line rejecting `file`, once it appears. */
    async rejected(file: string): Promise<Record<string, unknown>> {
      let found: Record<string, unknown> | undefined;
      await waitFor(`the rejection of ${file}`, () => (found = h.lines().find((l) => l.file === file && typeof l.reason === 'string')) !== undefined);
      return found!;
    },
    async ready(): Promise<void> {
      await waitFor('/readyz 200', async () => {
        try {
          return (await fetch(`http://127.0.0.1:${cfg.apiPort}/readyz`)).status === 200;
        } catch {
          return false;
        }
      });
    },
    /** SIGTERM; resolves with the exit code once the process is gone (SIGKILL and a failure if it hangs). */
    async term(): Promise<number | null> {
      if (!exit) {
        proc.kill('SIGTERM');
        const hung = setTimeout(() => proc.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(hung);
      }
      return exit!.signal === 'SIGKILL' ? -9 : exit!.code;
    },
    memory: () => memory(proc.pid!),
  };
  return h;
}

/** Makes a FIFO (coreutils mkfifo). */
const mkfifo = (path: string) => run('mkfifo', [path]);

let seq = 0;
function zonesDir(): string {
  const d = join(tmp, `zones-${++seq}`);
  mkdirSync(d);
  writeFileSync(join(d, 'good.test.zone'), zoneText('good.test'));
  return d;
}

interface BadKind {
  name: string;
  /** Creates the bad thing for zone `origin` in `dir`; returns the file reported and the expected reason. */
  make(dir: string, origin: string): Promise<{ file: string; line?: number; reason: RegExp }>;
}

const includeOf = (target: (dir: string, origin: string) => Promise<string>, kind: string): BadKind['make'] => async (dir, origin) => {
  const t = await target(dir, origin);
  const file = join(dir, `${origin}.zone`);
  writeFileSync(file, zoneText(origin, 1, `$INCLUDE ${t}\n`));
  const esc = t.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return { file, line: 7, reason: new RegExp(`^cannot read \\$INCLUDE file "${esc}": ${esc}: not a regular file \\(it is ${kind}\\)$`) };
};

const KINDS: BadKind[] = [
  {
    name: 'a FIFO as the zone file',
    make: async (dir, origin) => {
      await mkfifo(join(dir, `${origin}.zone`));
      return { file: join(dir, `${origin}.zone`), reason: /^not a regular file \(it is a FIFO\)$/ };
    },
  },
  {
    name: 'a FIFO as an $INCLUDE target',
    make: includeOf(async (dir, origin) => {
      const f = join(dir, `${origin}.fifo`);
      await mkfifo(f);
      return f;
    }, 'a FIFO'),
  },
  { name: '/dev/zero as an $INCLUDE target', make: includeOf(async () => '/dev/zero', 'a character device') },
  { name: '/dev/urandom as an $INCLUDE target', make: includeOf(async () => '/dev/urandom', 'a character device') },
  {
    name: 'a directory named x.zone',
    make: async (dir, origin) => {
      mkdirSync(join(dir, `${origin}.zone`));
      return { file: join(dir, `${origin}.zone`), reason: /^not a regular file \(it is a directory\)$/ };
    },
  },
];

describe('no zone file stops the server', () => {
  test.each(KINDS.map((k) => [k.name, k] as const))('%s: at start and at reload', async (_n, kind) => {
    const zones = zonesDir();
    const atStart = await kind.make(zones, 'bad1.test');
    const ctl = await launch(zones);
    try {
      await ctl.ready();
      expect(await ctl.answerA('www.good.test')).toBe('192.0.2.80');
      const first = await ctl.rejected(atStart.file);
      expect(first.reason).toMatch(atStart.reason);
      if (atStart.line) expect(first.line).toBe(atStart.line);

      // at reload: a second bad file, and a change to the good zone that must still be swapped in
      const atReload = await kind.make(zones, 'bad2.test');
      writeFileSync(join(zones, 'good.test.zone'), zoneText('good.test', 2));
      ctl.proc.kill('SIGHUP');
      const second = await ctl.rejected(atReload.file);
      expect(second.reason).toMatch(atReload.reason);
      await ctl.waitFor('the good zone reloaded', async () => (await ctl.serial('good.test')) === 2);
      expect(await ctl.answerA('www.good.test')).toBe('192.0.2.80');
      expect((await fetch(`http://127.0.0.1:${ctl.apiPort}/readyz`)).status).toBe(200);
      expect(ctl.memory().hwm).toBeLessThan(MEMORY_GUARD);
    } finally {
      expect(await ctl.term()).toBe(0);
    }
  });

  test('a sparse 1 GiB zone file is refused by the default limit without being read: memory stays flat', async () => {
    const zones = zonesDir();
    const ctl = await launch(zones);
    try {
      await ctl.ready();
      // a reload that parses something, so that the worker's own start is in the baseline
      writeFileSync(join(zones, 'good.test.zone'), zoneText('good.test', 2));
      ctl.proc.kill('SIGHUP');
      await ctl.waitFor('the good zone reloaded', async () => (await ctl.serial('good.test')) === 2);
      await sleep(500);
      const before = ctl.memory();
      const big = join(zones, 'big.test.zone');
      writeFileSync(big, '');
      truncateSync(big, 1024 ** 3);
      ctl.proc.kill('SIGHUP');
      const line = await ctl.rejected(big);
      expect(line.reason).toBe('1073741824 bytes, over the limit of 67108864 bytes (dns.max_zone_file_bytes)');
      await sleep(500);
      const after = ctl.memory();
      expect(after.hwm - before.hwm).toBeLessThan(128 * MB);
      expect(after.rss - before.rss).toBeLessThan(64 * MB);
      expect(await ctl.serial('good.test')).toBe(2);
    } finally {
      expect(await ctl.term()).toBe(0);
    }
  });

  test('a zone too large for the heap fails alone: the parser process runs out of memory, the process and the other zones do not', async () => {
    const zones = zonesDir();
    writeFileSync(join(zones, 'z.test.zone'), zoneText('z.test'));
    const parts = [zoneText('a-huge.test')];
    for (let i = 0; i < 100_000; i++) parts.push(`h${i} A 192.0.2.${i % 250}\nh${i} TXT "record ${i} of a zone too large for a 64 MB heap"\n`);
    const huge = join(zones, 'a-huge.test.zone');
    writeFileSync(huge, parts.join(''));
    const ctl = await launch(zones, {}, ['--max-old-space-size=64']);
    try {
      await ctl.ready();
      const line = await ctl.rejected(huge);
      expect(line.reason).toMatch(/^the zone parser stopped while reading this file: .*out of memory/);
      expect(await ctl.answerA('www.good.test')).toBe('192.0.2.80');
      expect(await ctl.answerA('www.z.test')).toBe('192.0.2.80');
    } finally {
      expect(await ctl.term()).toBe(0);
    }
  });

  test('a missing zones directory at SIGHUP: one log line naming it, no stack; every zone stays served', async () => {
    const zones = zonesDir();
    const ctl = await launch(zones);
    try {
      await ctl.ready();
      renameSync(zones, zones + '.away');
      ctl.proc.kill('SIGHUP');
      const line = await ctl.rejected(zones);
      expect(line.reason).toBe('cannot read the zones directory: no such file or directory (ENOENT)');
      expect(ctl.output()).not.toMatch(/"stack"|\n\s+at /);
      expect(await ctl.answerA('www.good.test')).toBe('192.0.2.80');
      renameSync(zones + '.away', zones);
      writeFileSync(join(zones, 'good.test.zone'), zoneText('good.test', 3));
      ctl.proc.kill('SIGHUP');
      await ctl.waitFor('the good zone reloaded', async () => (await ctl.serial('good.test')) === 3);
    } finally {
      expect(await ctl.term()).toBe(0);
    }
  });
});

describe('failoverctl serve: zone directory and limits', () => {
  async function cli(args: string[]) {
    try {
      const r = await run(process.execPath, [CLI, ...args], { timeout: 60_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  test.each([[[]], [['--check']]])('a missing zones directory: one line with the path, exit 2 (serve %j)', async (extra) => {
    const missing = join(tmp, 'no-such-zones');
    const cfg = await writeConfig(missing);
    const r = await cli(['serve', '--config', cfg.configPath, ...extra]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`failoverctl: ${missing}: cannot read the zones directory: no such file or directory (ENOENT)\n`);
  });

  test('dns.max_zone_file_bytes bounds each zone with its includes; the error names the file and the limit', async () => {
    const zones = zonesDir();
    const small = zoneText('good.test');
    const big = zoneText('big.test', 1, 'h A 192.0.2.2\n'.repeat(100));
    writeFileSync(join(zones, 'big.test.zone'), big);
    writeFileSync(join(zones, 'part.inc'), 'p A 192.0.2.3\n'.repeat(30));
    const inc = zoneText('inc.test', 1, '$INCLUDE part.inc\n$INCLUDE part.inc\n');
    writeFileSync(join(zones, 'inc.test.zone'), inc);
    const limit = Buffer.byteLength(inc) + 420 + 100; // the zone and one include fit, not two
    expect(Buffer.byteLength(small)).toBeLessThan(limit);
    expect(Buffer.byteLength(big)).toBeGreaterThan(limit);
    const cfg = await writeConfig(zones, { max_zone_file_bytes: limit });
    const r = await cli(['serve', '--config', cfg.configPath, '--check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('ok    good.test. serial 1');
    expect(r.stdout).toContain(`error ${join(zones, 'big.test.zone')}: ${Buffer.byteLength(big)} bytes, over the limit of ${limit} bytes (dns.max_zone_file_bytes)\n`);
    expect(r.stdout).toContain(`error ${join(zones, 'inc.test.zone')}:8: cannot read $INCLUDE file "part.inc": ${join(zones, 'part.inc')}: 420 bytes; ` +
      `with the ${Buffer.byteLength(inc) + 420} bytes already read for this zone that is over the limit of ${limit} bytes (dns.max_zone_file_bytes)\n`);
  });

  test('an include loop is still refused', async () => {
    const zones = zonesDir();
    writeFileSync(join(zones, 'a.inc'), '$INCLUDE b.inc\n');
    writeFileSync(join(zones, 'b.inc'), '$INCLUDE a.inc\n');
    writeFileSync(join(zones, 'loop.test.zone'), zoneText('loop.test', 1, '$INCLUDE a.inc\n'));
    const cfg = await writeConfig(zones);
    const r = await cli(['serve', '--config', cfg.configPath, '--check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('ok    good.test. serial 1');
    expect(r.stdout).toContain(`error ${join(zones, 'loop.test.zone')}: in ${join(zones, 'b.inc')}:1: $INCLUDE loop: ${join(zones, 'a.inc')} includes itself\n`);
  });
});

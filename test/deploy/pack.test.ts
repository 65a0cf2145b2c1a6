/**
 * The package as a user gets it: `npm pack` on a copy of the sources (no dist/, as in a fresh
 * clone) builds and ships the program alone; the tarball installed into an empty prefix gives a
 * `failoverctl` that runs: `--help`, `serve --check`, and `serve` answering DNS.
 *
 * Dependencies come from the npm cache that `npm ci` filled (--prefer-offline: the registry only
 * for what the cache lacks). better-sqlite3's install script (prebuild-install, else a compile of
 * several minutes) is handed, as a local prebuild named in a .prebuild-installrc in the test's
 * directory, the binary that the repository's own install built: same version, same Node ABI.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startController } from '../support/controller.js';
import { buildQuery, decode, udpExchange } from '../dns/tiny-dns.js';

/** What a fresh clone needs to pack: the package's files and the inputs of its build. */
const SOURCES = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'src', 'config'];

const tmp = mkdtempSync(join(tmpdir(), 'fc-pack-'));
const work = join(tmp, 'work');
const prefix = join(tmp, 'prefix');
const bin = join(prefix, 'bin', 'failoverctl');
const pkgDir = join(prefix, 'lib', 'node_modules', 'failover-controller');
let tarball = '';
let installLog = '';

/** The environment without what `npm test` passes to its children (npm_config_build_from_source...). */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k))) as NodeJS.ProcessEnv;

function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    execFile(cmd, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolveRun({ code, stdout: String(stdout), stderr: String(stderr) + (err && code === -1 ? String(err) : '') });
    });
  });
}

async function mustRun(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  const r = await run(cmd, args, cwd, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

/** A prebuild-install archive of the repository's compiled better-sqlite3, in the layout it downloads. */
async function localPrebuild(): Promise<string> {
  const mod = join(REPO_ROOT, 'node_modules', 'better-sqlite3');
  const binary = join(mod, 'build', 'Release', 'better_sqlite3.node');
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run npm ci first`);
  const { version } = JSON.parse(readFileSync(join(mod, 'package.json'), 'utf8')) as { version: string };
  const wanted = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies['better-sqlite3'];
  if (version !== wanted) throw new Error(`node_modules has better-sqlite3 ${version}, package.json wants ${wanted}: run npm ci`);
  const stage = join(tmp, 'prebuild-stage');
  mkdirSync(join(stage, 'build', 'Release'), { recursive: true });
  cpSync(binary, join(stage, 'build', 'Release', 'better_sqlite3.node'));
  const dir = join(tmp, 'prebuilds');
  mkdirSync(dir);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  await mustRun('tar', ['-czf', join(dir, name), '-C', stage, 'build'], tmp, 60_000);
  return dir;
}

beforeAll(async () => {
  mkdirSync(work);
  for (const s of SOURCES) cpSync(join(REPO_ROOT, s), join(work, s), { recursive: true, filter: (f) => !f.endsWith('api-token') });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(work, 'node_modules'));
  // prebuild-install reads .prebuild-installrc from its directory upwards: the prefix is below tmp
  writeFileSync(join(tmp, '.prebuild-installrc'), `local-prebuilds=${await localPrebuild()}\n`);

  const dest = join(tmp, 'pack');
  mkdirSync(dest);
  await mustRun('npm', ['pack', '--pack-destination', dest], work, 300_000);
  const packed = readdirSync(dest).filter((f) => f.endsWith('.tgz'));
  if (packed.length !== 1) throw new Error(`npm pack wrote ${JSON.stringify(packed)}`);
  tarball = join(dest, packed[0]);

  mkdirSync(prefix);
  installLog = await mustRun('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund',
    '--foreground-scripts', '--loglevel=info', tarball], tmp, 300_000);
}, 600_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npm pack + npm install --global', () => {
  test('the tarball holds the program, the example config and the README, and bin names a file in it', async () => {
    const entries = (await mustRun('tar', ['-tzf', tarball], tmp, 60_000)).split('\n').filter(Boolean);
    const allowed = /^package\/(package\.json|README\.md|config\/example\.yaml|config\/zones\/[^/]+\.zone|dist\/src\/.+\.js|src\/ui\/[^/]+\.(html|js|css))$/;
    expect(entries.filter((e) => !allowed.test(e))).toEqual([]);
    const packed = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(Object.keys(packed.bin)).toEqual(['failoverctl']);
    expect(entries).toContain(`package/${packed.bin.failoverctl}`);
    expect(entries).toContain('package/config/example.yaml');
    expect(entries).toEqual(expect.arrayContaining(['package/src/ui/index.html', 'package/src/ui/app.js']));
  });

  test('better-sqlite3 took the local prebuild instead of compiling', () => {
    expect(installLog).toMatch(/prebuild-install info found local prebuild/);
    expect(installLog).not.toMatch(/gyp info spawn make/);
  });

  test('failoverctl --help runs from the prefix (the bin link, its shebang)', async () => {
    const r = await run(bin, ['--help'], tmp, 30_000);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/Usage:\n {2}failoverctl serve --config FILE/);
    expect(r.code).toBe(0);
  });

  test('failoverctl serve --check validates a config and its zone, and the shipped example', async () => {
    const zones = join(tmp, 'zones');
    mkdirSync(zones);
    writeFileSync(join(zones, 'pack.test.zone'), '$ORIGIN pack.test.\n$TTL 300\n@ SOA ns host 7 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.10\n');
    const config = join(tmp, 'config.yaml');
    writeFileSync(config, `dns:\n  listen: ["127.0.0.1:5300"]\n  zones: ${zones}\napi:\n  listen: "127.0.0.1:8080"\n`);
    const r = await run(bin, ['serve', '--check', '--config', config], tmp, 30_000);
    expect(r.stdout).toBe('ok    pack.test. serial 7, 4 records\n');
    expect(r.code).toBe(0);
    const example = await run(bin, ['serve', '--check', '--config', join(pkgDir, 'config', 'example.yaml')], tmp, 30_000);
    expect(example.stdout).toMatch(/^ok {4}example\.com\. serial \d+, \d+ records\n$/);
    expect(example.code).toBe(0);
  });

  test('failoverctl serve from the prefix answers DNS, serves the page at /ui and cuts a server over (state in SQLite)', async () => {
    const zones = join(tmp, 'zones-serve');
    mkdirSync(zones);
    writeFileSync(join(zones, 'pack.test.zone'), '$ORIGIN pack.test.\n$TTL 300\n@ SOA ns host 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.10\n');
    const ctl = await startController({
      zonesDir: zones,
      cli: bin,
      sections: {
        servers: [{ name: 'srv-1', profile: 'vps', addresses: ['192.0.2.10'] }],
        transits: [{ name: 'transit-1', profile: 'vps', addresses: ['198.51.100.10'] }],
        routing: { backend: 'dry-run' },
      },
    });
    const www = async () => decode((await udpExchange(ctl.dnsPort, buildQuery('www.pack.test')))!).answers.map((a) => a.rdata.toString('hex'));
    try {
      expect(await www()).toEqual(['c000020a']);
      // the page at /ui, from the package's src/ui
      const page = await fetch(`http://127.0.0.1:${ctl.apiPort}/ui/`);
      expect([page.status, (await page.text()).includes('<script type="module" src="/ui/app.js">')]).toEqual([200, true]);
      const started = await ctl.post('/v1/servers/srv-1/cutover', { transit: 'transit-1' });
      expect([200, 202]).toContain(started.status);
      const op = await ctl.waitOperation(JSON.parse(started.body).id);
      expect(op.state).toBe('succeeded');
      expect(await www()).toEqual(['c633640a']);
      expect(existsSync(join(ctl.dir, 'var', 'state.db'))).toBe(true);
    } finally {
      await ctl.stop();
    }
  });
});

/**
 * Real secondaries (Knot DNS, BIND, NSD) transfer a zone from a tiny loopback primary that
 * serves our AXFR/IXFR messages, and then serve exactly the snapshot: bootstrap by AXFR, an IXFR
 * of two versions (zone edits and a cut-over lifted: deletions, additions, TTL changes), an IXFR
 * of a serial-only version, and an IXFR the journal does not reach (answered with the whole zone
 * in AXFR form). After each step the secondary's own AXFR, read with dig and canonicalized by
 * named-compilezone, equals the snapshot; the primary's log shows which form each client got.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotRecords, snapshotZone, type SnapshotRecord, type ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import { Journal } from '../../../src/dns/xfr/journal.js';
import { freePort } from '../../support/controller.js';
import { waitFor } from '../../support/wait-for.js';
import { EXAMPLE, overlay, zoneOf } from './fixture.js';
import { startPrimary, type Primary } from './tiny-primary.js';

const ORIGIN = 'example.test.';

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((res, rej) =>
    execFile(bin, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? rej(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}${stdout.slice(0, 2000)}`)) : res(stdout),
    ),
  );
}

interface Secondary {
  port: number;
  start(): Promise<void>;
  /** Asks it to check the primary now (SOA query, then IXFR). */
  refresh(): Promise<void>;
  stop(): Promise<void>;
  output(): string;
}

/** A daemon in its own process group, stopped by its pid (TERM, then KILL). */
function daemon(bin: string, args: string[]): { proc: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const proc = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  return {
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      try {
        process.kill(-proc.pid!, 'SIGTERM');
      } catch {
        return;
      }
      const t = setTimeout(() => {
        try {
          process.kill(-proc.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

async function knot(dir: string, primaryPort: number): Promise<Secondary> {
  const port = await freePort();
  const sock = join(dir, 'knot.sock');
  mkdirSync(join(dir, 'db'));
  mkdirSync(join(dir, 'zones'));
  const conf = join(dir, 'knot.conf');
  writeFileSync(conf, `server:
    rundir: ${dir}
    listen: 127.0.0.1@${port}
log:
  - target: stderr
    any: info
database:
    storage: ${join(dir, 'db')}
control:
    listen: ${sock}
remote:
  - id: primary
    address: 127.0.0.1@${primaryPort}
acl:
  - id: local
    address: 127.0.0.1
    action: [transfer, notify]
template:
  - id: default
    storage: ${join(dir, 'zones')}
    zonefile-sync: -1
    zonefile-load: none
zone:
  - domain: ${ORIGIN}
    master: primary
    acl: local
`);
  let d: ReturnType<typeof daemon> | undefined;
  return {
    port,
    start: async () => {
      d = daemon('/usr/sbin/knotd', ['-c', conf]);
    },
    refresh: async () => void (await run('/usr/sbin/knotc', ['-s', sock, 'zone-refresh', ORIGIN])),
    stop: async () => d?.stop(),
    output: () => d?.output() ?? '',
  };
}

async function bind(dir: string, primaryPort: number): Promise<Secondary> {
  const port = await freePort();
  const control = await freePort();
  const secret = randomBytes(32).toString('base64');
  const key = `key "rndc-key" { algorithm hmac-sha256; secret "${secret}"; };`;
  const conf = join(dir, 'named.conf');
  writeFileSync(conf, `${key}
options {
  directory "${dir}";
  pid-file "${join(dir, 'named.pid')}";
  session-keyfile "${join(dir, 'session.key')}";
  managed-keys-directory "${dir}";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
  allow-transfer { 127.0.0.1; };
  allow-query { 127.0.0.1; };
};
controls { inet 127.0.0.1 port ${control} allow { 127.0.0.1; } keys { "rndc-key"; }; };
zone "${ORIGIN}" {
  type secondary;
  primaries { 127.0.0.1 port ${primaryPort}; };
  file "${join(dir, 'example.test.db')}";
  masterfile-format text;
};
`);
  const rndcConf = join(dir, 'rndc.conf');
  writeFileSync(rndcConf, `${key}\noptions { default-key "rndc-key"; default-server 127.0.0.1; default-port ${control}; };\n`);
  let d: ReturnType<typeof daemon> | undefined;
  return {
    port,
    start: async () => {
      d = daemon('/usr/sbin/named', ['-g', '-c', conf]);
    },
    refresh: async () => void (await run('/usr/sbin/rndc', ['-c', rndcConf, 'refresh', ORIGIN])),
    stop: async () => d?.stop(),
    output: () => d?.output() ?? '',
  };
}

async function nsd(dir: string, primaryPort: number): Promise<Secondary> {
  const port = await freePort();
  const conf = join(dir, 'nsd.conf');
  const sock = join(dir, 'nsd.sock');
  writeFileSync(conf, `server:
  ip-address: 127.0.0.1@${port}
  username: ""
  chroot: ""
  database: ""
  zonesdir: "${dir}"
  zonelistfile: "${join(dir, 'zone.list')}"
  xfrdfile: "${join(dir, 'xfrd.state')}"
  xfrdir: "${dir}"
  pidfile: "${join(dir, 'nsd.pid')}"
  cookie-secret-file: "${join(dir, 'cookiesecrets.txt')}"
  verbosity: 2
remote-control:
  control-enable: yes
  control-interface: "${sock}"
zone:
  name: "${ORIGIN}"
  zonefile: "example.test.zone"
  request-xfr: 127.0.0.1@${primaryPort} NOKEY
  allow-notify: 127.0.0.1 NOKEY
  provide-xfr: 127.0.0.1 NOKEY
`);
  let d: ReturnType<typeof daemon> | undefined;
  return {
    port,
    start: async () => {
      d = daemon('/usr/sbin/nsd', ['-d', '-c', conf]);
    },
    refresh: async () => void (await run('/usr/sbin/nsd-control', ['-c', conf, 'transfer', ORIGIN])),
    stop: async () => d?.stop(),
    output: () => d?.output() ?? '',
  };
}

/** The served versions: zone edits, overlay changes, each with a higher served serial. */
function versions(): ZoneSnapshot[] {
  const edited = EXAMPLE.replace('mail A 192.0.2.25', 'mail A 192.0.2.26')
    .replace('x.wild TXT "blocks the wildcard"\n', '')
    .replace('ns1 A 192.0.2.53', 'ns1 7200 A 192.0.2.53\nnew AAAA 2001:db8::99');
  const z1 = zoneOf(EXAMPLE, ORIGIN, true);
  const z2 = zoneOf(edited, ORIGIN, true);
  const z5 = zoneOf(edited.replace('acct A 203.0.113.10', 'acct A 203.0.113.11\nlate TXT "after the journal"'), ORIGIN, true);
  return [
    snapshotZone(z1, overlay({ serialBump: 5 })), // 46: cut over
    snapshotZone(z2, overlay({ servers: [], serialBump: 6 })), // 47: edits, cut-over lifted
    snapshotZone(z2, overlay({ serialBump: 7 })), // 48: cut over again
    snapshotZone(z2, overlay({ serialBump: 8 })), // 49: serial only
    snapshotZone(z5, overlay({ serialBump: 9 })), // 50: beyond a reset journal
  ];
}

const generic = (r: SnapshotRecord) => `${r.owner} ${r.ttl} IN TYPE${r.type} \\# ${r.rdata.length} ${r.rdata.toString('hex')}`.trimEnd();

describe.each([
  ['Knot DNS', knot],
  ['BIND', bind],
  ['NSD', nsd],
])('%s as a secondary', (_name, make) => {
  const V = versions();
  let dir = '';
  let primary: Primary;
  let sec: Secondary;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-xfr-sec-'));
    // small messages: many per transfer; IXFR even when the versions outweigh this small zone
    primary = await startPrimary({ maxMessageSize: 1024, reserve: 100, maxIxfrRatio: 100 });
    sec = await make(dir, primary.port);
  });
  afterAll(async () => {
    await sec?.stop();
    await primary?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function serialAt(): Promise<number | undefined> {
    const out = await run('/usr/bin/dig', ['@127.0.0.1', '-p', String(sec.port), ORIGIN, 'SOA', '+short', '+tries=1', '+time=1']).catch(() => '');
    const f = out.trim().split(/\s+/);
    return f.length === 7 ? Number(f[2]) : undefined;
  }

  async function canonical(file: string): Promise<string[]> {
    const out = `${file}.canonical`;
    await run('/usr/bin/named-compilezone', ['-q', '-i', 'none', '-k', 'ignore', '-m', 'ignore', '-n', 'ignore', '-r', 'ignore', '-M', 'ignore', '-S', 'ignore', '-W', 'ignore', '-s', 'full', '-o', out, ORIGIN, file]);
    return (await run('/bin/cat', [out])).split('\n').filter(Boolean).sort();
  }

  /** Waits for the secondary to serve `snap`'s serial, then compares its whole zone with the snapshot. */
  async function servesExactly(snap: ZoneSnapshot, step: string): Promise<void> {
    await waitFor(`${step}: serial ${snap.serial} at the secondary\n${sec.output().slice(-3000)}`, async () => (await serialAt()) === snap.serial);
    const axfr = await run('/usr/bin/dig', ['@127.0.0.1', '-p', String(sec.port), ORIGIN, 'AXFR', '+nocmd', '+nocomments', '+nostats', '+onesoa', '+tries=1', '+time=5']);
    const theirs = join(dir, `${step}.theirs.zone`);
    const ours = join(dir, `${step}.ours.zone`);
    writeFileSync(theirs, axfr);
    writeFileSync(ours, [...snapshotRecords(snap)].map(generic).join('\n') + '\n');
    expect({ step, zone: await canonical(theirs) }).toEqual({ step, zone: await canonical(ours) });
  }

  test('bootstrap, IXFR of two versions, of a serial-only version, and the whole zone when the journal does not reach', async () => {
    const st = primary.state;
    const journal = new Journal(ORIGIN);
    journal.reset(V[0]);
    st.journals.set(ORIGIN, journal);
    st.snaps.set(ORIGIN, V[0]);
    await sec.start();
    await servesExactly(V[0], 'bootstrap');

    for (let i = 1; i <= 2; i++) expect(journal.record(V[i - 1], V[i])).toBe('recorded');
    st.snaps.set(ORIGIN, V[2]);
    let from = st.log.length;
    await sec.refresh();
    await servesExactly(V[2], 'ixfr-two-versions');
    expect(st.log.slice(from)).toEqual([{ zone: ORIGIN, kind: 'IXFR', form: 'incremental', serial: 46 }]);

    expect(journal.record(V[2], V[3])).toBe('recorded');
    st.snaps.set(ORIGIN, V[3]);
    from = st.log.length;
    await sec.refresh();
    await servesExactly(V[3], 'ixfr-serial-only');
    expect(st.log.slice(from)).toEqual([{ zone: ORIGIN, kind: 'IXFR', form: 'incremental', serial: 48 }]);

    journal.reset(V[4]); // e.g. a restart without the persisted journal
    st.snaps.set(ORIGIN, V[4]);
    from = st.log.length;
    await sec.refresh();
    await servesExactly(V[4], 'ixfr-full');
    expect(st.log.slice(from)).toEqual([{ zone: ORIGIN, kind: 'IXFR', form: 'full', serial: 49 }]);
  });
});

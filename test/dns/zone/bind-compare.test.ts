/**
 * Our master-file parser against BIND's named-compilezone (Debian package bind9-utils).
 *
 * For each fixture zone under test/fixtures/zones/ (origin = file name without ".zone"):
 * named-compilezone loads it and dumps it in canonical text (absolute names, explicit TTLs,
 * one record per line); we parse both the fixture and BIND's dump and require the same
 * records (owner, type, TTL, RDATA bytes). BIND 9.18 keeps the case of names inside RDATA, so
 * the bytes are compared exactly. We also check that rdataToText prints what BIND prints.
 *
 * Then every error case of cases.ts marked `bind: true` must be rejected by BIND too.
 *
 * A missing named-compilezone fails these tests (never skips): apt-get install bind9-utils.
 */
import { describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parseMasterFile } from '../../../src/dns/zone/master-file.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import { typeFromName, typeName } from '../../../src/dns/wire/constants.js';
import type { ZoneRecord } from '../../../src/dns/zone/types.js';
import { ERROR_CASES, errorCaseFile } from './cases.js';

const FIXTURES = resolve(new URL('../../fixtures/zones', import.meta.url).pathname);

function findCompilezone(): string {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin']);
  for (const d of dirs) {
    const p = join(d, 'named-compilezone');
    if (d && existsSync(p)) return p;
  }
  throw new Error('named-compilezone not found: apt-get install bind9-utils (these tests need BIND to compare against)');
}

/** All semantic checks off: we compare syntax, not zone policy. */
const CHECKS_OFF = ['-i', 'none', '-k', 'ignore', '-m', 'ignore', '-M', 'ignore', '-S', 'ignore', '-r', 'ignore',
  '-W', 'ignore', '-n', 'ignore'];

function compile(origin: string, file: string): { ok: boolean; out: string; log: string } {
  const bin = findCompilezone();
  const dir = mkdtempSync(join(tmpdir(), 'compilezone-'));
  try {
    const outFile = join(dir, 'out.zone');
    const r = spawnSync(bin, [...CHECKS_OFF, '-s', 'full', '-f', 'text', '-F', 'text', '-o', outFile, origin, file],
      { encoding: 'utf8' });
    const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.status !== 0) return { ok: false, out: '', log };
    return { ok: true, out: readFileSync(outFile, 'utf8'), log };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const key = (r: ZoneRecord): string => `${r.owner} ${r.ttl} ${typeName(r.type)} ${r.rdata.toString('hex')}`;

/** Types BIND prints with hex split into chunks: compare their text without white space. */
const HEX_TYPES = new Set(['DS', 'SSHFP', 'TLSA']);

describe('named-compilezone', () => {
  it('is installed (apt-get install bind9-utils)', () => {
    const bin = findCompilezone();
    expect(execFileSync(bin, ['-v'], { encoding: 'utf8' })).toMatch(/^9\./);
  });
});

describe('fixture zones: our parse equals named-compilezone', () => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.zone')).sort();

  it('there are fixtures', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });

  it.each(files)('%s', (f) => {
    const path = join(FIXTURES, f);
    const origin = f.slice(0, -'.zone'.length) + '.';
    const c = compile(origin, path);
    if (!c.ok) throw new Error(`named-compilezone rejected ${f}:\n${c.log}`);

    const ours = parseMasterFile(readFileSync(path, 'utf8'), { origin, file: f }).records;
    const theirs = parseMasterFile(c.out, { origin, file: `${f} (named-compilezone output)` }).records;
    expect(ours.length).toBeGreaterThan(2);
    // BIND drops exact duplicates; the fixtures have none, so the counts must match too
    expect(ours.map(key).sort()).toEqual(theirs.map(key).sort());

    // rdataToText prints what BIND prints (line format: owner TTL IN TYPE rdata)
    for (const line of c.out.split('\n')) {
      if (line.trim() === '' || line.startsWith(';')) continue;
      const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line);
      if (!m) throw new Error(`unexpected named-compilezone line: ${line}`);
      const [, , , tname, text] = m;
      const type = typeFromName(tname) as number;
      const one = parseMasterFile(`${line}\n`, { origin: m[1], file: 'line' }).records[0];
      const norm = (s: string): string => (HEX_TYPES.has(tname) ? s.replace(/\s+/g, '') : s.trim());
      expect(`${tname} ${norm(rdataToText(type, one.rdata))}`).toBe(`${tname} ${norm(text)}`);
    }
  });
});

describe('error cases: BIND rejects them too', () => {
  const cases = ERROR_CASES.filter((c) => c.bind);
  it.each(cases.map((c) => [c.reason, c] as const))('%s', (_r, c) => {
    const dir = mkdtempSync(join(tmpdir(), 'compilezone-bad-'));
    try {
      const file = join(dir, 'bad.zone');
      writeFileSync(file, errorCaseFile(c).text);
      const r = compile('example.com.', file);
      expect({ ok: r.ok, log: r.log }).toEqual({ ok: false, log: expect.any(String) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

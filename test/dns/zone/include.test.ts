/** $INCLUDE (RFC 1035 5.1): origin for the included file, origin restored after, errors located, loops refused; reload follows included files. */
import { afterAll, describe, expect, test } from '@jest/globals';
import { mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseMasterFile } from '../../../src/dns/zone/master-file.js';
import { ZoneDirectory } from '../../../src/dns/zone/zone-loader.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import { typeName } from '../../../src/dns/wire/constants.js';

const files: Record<string, string> = {
  'common.inc': 'mx1 A 192.0.2.25\n@ MX 10 mx1\n',
  'loop.inc': '$INCLUDE loop.inc\n',
  'bad.inc': 'ok A 192.0.2.1\nbroken A 192.0.2\n',
  'origin-change.inc': '$ORIGIN other.example.com.\nx A 192.0.2.7\n',
};
const read = (name: string) => {
  if (!(name in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  return { text: files[name], file: name };
};
const parse = (text: string) => parseMasterFile(text, { origin: 'example.com.', file: 'example.com.zone', defaultTtl: 300, readInclude: read });
const show = (text: string) => parse(text).records.map((r) => `${r.owner} ${typeName(r.type)} ${rdataToText(r.type, r.rdata)}`);

describe('$INCLUDE', () => {
  test.each([
    ['with the current origin', '$INCLUDE common.inc\n', ['mx1.example.com. A 192.0.2.25', 'example.com. MX 10 mx1.example.com.']],
    ['with its own origin', '$INCLUDE common.inc sub\n', ['mx1.sub.example.com. A 192.0.2.25', 'sub.example.com. MX 10 mx1.sub.example.com.']],
    ['the including file keeps its origin after it', '$INCLUDE origin-change.inc\ny A 192.0.2.8\n', ['x.other.example.com. A 192.0.2.7', 'y.example.com. A 192.0.2.8']],
  ])('%s', (_n, text, expected) => {
    expect(show(text)).toEqual(expected);
  });

  test.each([
    ['an error inside the included file names that file and line', '$INCLUDE bad.inc\n', 'bad.inc:2: bad IPv4 address "192.0.2"'],
    ['a missing file names the including line', '\n$INCLUDE nope.inc\n', 'example.com.zone:2: cannot read $INCLUDE file "nope.inc": ENOENT'],
    ['a loop', '$INCLUDE loop.inc\n', 'loop.inc:1: $INCLUDE loop: loop.inc includes itself'],
    ['no file name', '$INCLUDE\n', 'example.com.zone:1: $INCLUDE needs a file name'],
  ])('%s', (_n, text, message) => {
    expect(() => parse(text)).toThrow(message);
  });
});

describe('zone directory with includes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fc-inc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a change to an included file is picked up at reload; a broken one keeps the old zone', async () => {
    mkdirSync(join(dir, 'zones'));
    mkdirSync(join(dir, 'shared'));
    writeFileSync(join(dir, 'zones', 'inc.test.zone'), '$TTL 300\n@ SOA ns1 host 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n$INCLUDE ../shared/mail.inc\n');
    writeFileSync(join(dir, 'shared', 'mail.inc'), 'mx A 192.0.2.25\n');
    const zd = new ZoneDirectory(join(dir, 'zones'));
    const first = await zd.load();
    expect(first.errors).toEqual([]);
    expect(first.zones[0].nodes.has('mx.inc.test.')).toBe(true);
    expect((await zd.load()).parsed).toEqual([]);
    writeFileSync(join(dir, 'shared', 'mail.inc'), 'mail A 192.0.2.26\n');
    utimesSync(join(dir, 'shared', 'mail.inc'), new Date(), new Date(Date.now() + 5000));
    const second = await zd.load();
    expect(second.parsed).toHaveLength(1);
    expect(second.zones[0].nodes.has('mail.inc.test.')).toBe(true);
    writeFileSync(join(dir, 'shared', 'mail.inc'), 'mail A 192.0.2\n');
    utimesSync(join(dir, 'shared', 'mail.inc'), new Date(), new Date(Date.now() + 10000));
    const third = await zd.load();
    expect(third.errors).toEqual([{
      file: join(dir, 'zones', 'inc.test.zone'), line: undefined, keptPrevious: true,
      reason: `in ${join(dir, 'shared', 'mail.inc')}:1: bad IPv4 address "192.0.2"`,
    }]);
    expect(third.zones[0].nodes.has('mail.inc.test.')).toBe(true);
  });
});

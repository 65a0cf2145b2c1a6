import { describe, expect, it } from '@jest/globals';
import { parseMasterFile, rdataFromText } from '../../../src/dns/zone/master-file.js';
import { rdataToText } from '../../../src/dns/zone/rdata-text.js';
import { ZoneParseError, type ZoneRecord } from '../../../src/dns/zone/types.js';
import { RRType, typeName } from '../../../src/dns/wire/constants.js';
import { labelsToKey, parseName } from '../../../src/dns/name.js';
import { ERROR_CASES, HEAD, HEAD_LINES, errorCaseFile } from './cases.js';

const ORIGIN = 'example.com.';

function parse(text: string, opts: { origin?: string; defaultTtl?: number } = {}): ZoneRecord[] {
  return parseMasterFile(text, { origin: opts.origin ?? ORIGIN, file: 'z.zone', defaultTtl: opts.defaultTtl }).records;
}

/** "owner ttl TYPE rdata" lines for the records after HEAD. */
function body(b: string): string[] {
  return parse(HEAD + b).slice(3).map(show);
}

function show(r: ZoneRecord): string {
  return `${r.owner} ${r.ttl} ${typeName(r.type)} ${rdataToText(r.type, r.rdata)}`;
}

function errorOf(text: string, opts: { origin?: string } = {}): ZoneParseError {
  try {
    parse(text, opts);
  } catch (e) {
    if (e instanceof ZoneParseError) return e;
    throw e;
  }
  throw new Error('no error thrown');
}

describe('parseMasterFile: constructs', () => {
  it('returns the origin key and records in file order with lines', () => {
    const z = parseMasterFile(HEAD + 'www A 192.0.2.2\n', { origin: 'Example.COM', file: 'z.zone' });
    expect(z.origin).toBe('example.com.');
    expect(z.records.map((r) => [r.owner, typeName(r.type), r.line])).toEqual([
      ['example.com.', 'SOA', 2], ['example.com.', 'NS', 3], ['ns1.example.com.', 'A', 4], ['www.example.com.', 'A', 5],
    ]);
    expect(z.records[3].rdata).toEqual(Buffer.from([192, 0, 2, 2]));
  });

  const table: Array<[string, string, string[]]> = [
    ['relative owner', 'www A 192.0.2.2', ['www.example.com. 300 A 192.0.2.2']],
    ['absolute owner', 'www.example.com. A 192.0.2.2', ['www.example.com. 300 A 192.0.2.2']],
    ['@ owner', '@ A 192.0.2.2', ['example.com. 300 A 192.0.2.2']],
    ['owner is case-folded in the key', 'WwW.ExAmple.Com. A 192.0.2.2', ['www.example.com. 300 A 192.0.2.2']],
    ['blank owner = previous owner', 'www A 192.0.2.2\n  A 192.0.2.3\n\tAAAA ::1', [
      'www.example.com. 300 A 192.0.2.2', 'www.example.com. 300 A 192.0.2.3', 'www.example.com. 300 AAAA ::1']],
    ['blank owner after a comment and blank lines', 'www A 192.0.2.2\n; c\n\n   \n  A 192.0.2.3', [
      'www.example.com. 300 A 192.0.2.2', 'www.example.com. 300 A 192.0.2.3']],
    ['ttl then class', 'a 60 IN A 192.0.2.2', ['a.example.com. 60 A 192.0.2.2']],
    ['class then ttl', 'a IN 60 A 192.0.2.2', ['a.example.com. 60 A 192.0.2.2']],
    ['class only', 'a in A 192.0.2.2', ['a.example.com. 300 A 192.0.2.2']],
    ['CLASS1 is IN', 'a CLASS1 A 192.0.2.2', ['a.example.com. 300 A 192.0.2.2']],
    ['lower-case type', 'a 1m aaaa 2001:db8::1', ['a.example.com. 60 AAAA 2001:db8::1']],
    ['TYPEnnn for a known type', 'a TYPE1 192.0.2.2', ['a.example.com. 300 A 192.0.2.2']],
    ['parentheses across lines', 'a MX (\n 10 ; pref\n mail ) ; end', ['a.example.com. 300 MX 10 mail.example.com.']],
    ['parentheses around everything', 'a ( 60 IN\n A 192.0.2.2 )', ['a.example.com. 60 A 192.0.2.2']],
    ['nested parentheses', 'a TXT ( "x" ( "y" ) )', ['a.example.com. 300 TXT "x" "y"']],
    ['comment right after data', 'a A 192.0.2.2;comment', ['a.example.com. 300 A 192.0.2.2']],
    ['CRLF line ends', 'a A 192.0.2.2\r\nb A 192.0.2.3\r\n', ['a.example.com. 300 A 192.0.2.2', 'b.example.com. 300 A 192.0.2.3']],
    ['no newline at the end', 'a A 192.0.2.2', ['a.example.com. 300 A 192.0.2.2']],
    ['quoted strings keep ; ( ) and spaces', 'a TXT "a;b" "(c)" "d  e"', ['a.example.com. 300 TXT "a;b" "(c)" "d  e"']],
    ['unquoted TXT words', 'a TXT one two', ['a.example.com. 300 TXT "one" "two"']],
    ['escapes in strings', 'a TXT "q\\"q" "b\\\\s" "\\065\\066" \\;x "\\255"', ['a.example.com. 300 TXT "q\\"q" "b\\\\s" "AB" ";x" "\\255"']],
    ['quotes and parens split words as in BIND', 'a TXT ab(c)d x"y"', ['a.example.com. 300 TXT "ab" "c" "d" "x" "y"']],
    ['empty TXT string', 'a TXT ""', ['a.example.com. 300 TXT ""']],
    ['UTF-8 in TXT is kept as bytes', 'a TXT "é"', ['a.example.com. 300 TXT "\\195\\169"']],
    ['escapes in owner names', 'a\\.b\\065 A 192.0.2.2', ['a\\.ba.example.com. 300 A 192.0.2.2']],
    ['\\DDD for a special character', '\\064x A 192.0.2.2', ['\\@x.example.com. 300 A 192.0.2.2']],
    ['wildcard owner', '*.w A 192.0.2.2', ['*.w.example.com. 300 A 192.0.2.2']],
    ['names in RDATA keep their case', 'a CNAME Foo.Example.NET.', ['a.example.com. 300 CNAME Foo.Example.NET.']],
    ['relative names in RDATA', 'a MX 10 Mail', ['a.example.com. 300 MX 10 Mail.example.com.']],
    ['@ in RDATA', 'a CNAME @', ['a.example.com. 300 CNAME example.com.']],
    ['root in RDATA', 'a SRV 0 0 0 .', ['a.example.com. 300 SRV 0 0 0 .']],
    ['$ORIGIN absolute', '$ORIGIN sub.example.com.\n@ A 192.0.2.2\nx CNAME y', [
      'sub.example.com. 300 A 192.0.2.2', 'x.sub.example.com. 300 CNAME y.sub.example.com.']],
    ['$ORIGIN relative to the current origin', '$ORIGIN sub\n$origin deeper\nx A 192.0.2.2', ['x.deeper.sub.example.com. 300 A 192.0.2.2']],
    ['$ORIGIN keeps the previous owner for blank owners', 'x A 192.0.2.2\n$ORIGIN sub.example.com.\n  A 192.0.2.3', [
      'x.example.com. 300 A 192.0.2.2', 'x.example.com. 300 A 192.0.2.3']],
    ['same owner text after $ORIGIN is re-resolved', 'x A 192.0.2.2\n$ORIGIN sub.example.com.\nx A 192.0.2.3', [
      'x.example.com. 300 A 192.0.2.2', 'x.sub.example.com. 300 A 192.0.2.3']],
    ['$TTL with units', '$TTL 1h30m\na A 192.0.2.2', ['a.example.com. 5400 A 192.0.2.2']],
    ['$TTL changes the default for later records', 'a A 192.0.2.2\n$TTL 10\nb A 192.0.2.3', [
      'a.example.com. 300 A 192.0.2.2', 'b.example.com. 10 A 192.0.2.3']],
    ['explicit TTL does not change the default once $TTL is known', 'a 60 A 192.0.2.2\nb A 192.0.2.3', [
      'a.example.com. 60 A 192.0.2.2', 'b.example.com. 300 A 192.0.2.3']],
    ['TTL 0 and max', 'a 0 A 192.0.2.2\nb 2147483647 A 192.0.2.3', [
      'a.example.com. 0 A 192.0.2.2', 'b.example.com. 2147483647 A 192.0.2.3']],
  ];
  it.each(table)('%s', (_name, b, want) => {
    expect(body(b)).toEqual(want);
  });

  it('skips a byte order mark at the start of the file', () => {
    expect(parse('\ufeff' + HEAD).map((r) => r.owner)).toEqual(['example.com.', 'example.com.', 'ns1.example.com.']);
  });

  it('a long owner name built from a relative name is checked through name.ts', () => {
    const label = 'a'.repeat(63);
    const origin = `${label}.${label}.${label}.`; // 193 bytes on the wire
    const ok = `${'b'.repeat(50)}`;
    const text = `$TTL 1\n@ SOA ns1 h 1 2 3 4 5\n${ok} A 192.0.2.1\n`;
    expect(parse(text, { origin })[1].owner).toBe(`${ok}.${origin}`);
    const bad = 'b'.repeat(62);
    const e = errorOf(`$TTL 1\n@ SOA ns1 h 1 2 3 4 5\n${bad} A 192.0.2.1\n`, { origin });
    expect(e.message).toMatch(/^z\.zone:3: bad owner name: name longer than 255 bytes/);
  });

  it('fast-path owner keys equal labelsToKey(parseName())', () => {
    const names = ['a', 'A-b_c', '*', 'x.y', 'X.Y.example.com.', 'host123.Example.COM.', '_srv._tcp', 'a.b.c.d.e.f'];
    for (const n of names) {
      const recs = parse(HEAD + `${n} A 192.0.2.1\n`);
      const want = labelsToKey(parseName(n, parseName(ORIGIN, null)));
      expect(recs[3].owner).toBe(want);
    }
  });

  it('RDATA names equal labelsToWire(parseName()) for tricky spellings', () => {
    const names = ['a.b', 'A.B.', '@', '.', 'a\\.b', 'a\\046b', 'x\\032y', 'é'];
    for (const n of names) {
      const r = parse(HEAD + `a CNAME ${n}\n`)[3];
      const want = parseName(n, parseName(ORIGIN, null));
      const wire: number[] = [];
      for (const l of want) wire.push(l.length, ...l);
      wire.push(0);
      expect([...r.rdata]).toEqual(wire);
    }
  });
});

describe('parseMasterFile: default TTL (as BIND)', () => {
  it('SOA without TTL and no $TTL takes MINIMUM, which becomes the default', () => {
    const recs = parse('@ SOA ns1 h 1 2 3 4 900\n NS ns1\nns1 A 192.0.2.1\na 60 A 192.0.2.2\nb A 192.0.2.3\n');
    expect(recs.map((r) => r.ttl)).toEqual([900, 900, 900, 60, 900]);
  });
  it('without a default, a record without TTL takes the last explicit TTL (RFC 1035)', () => {
    const recs = parse('a.example.com. 77 A 192.0.2.1\n@ SOA ns1 h 1 2 3 4 900\n NS ns1\nb 60 A 192.0.2.2\nc A 192.0.2.3\n');
    expect(recs.map((r) => r.ttl)).toEqual([77, 77, 77, 60, 60]);
  });
  it('opts.defaultTtl acts as a $TTL at the top', () => {
    const recs = parse('@ SOA ns1 h 1 2 3 4 900\n NS ns1\na 60 A 192.0.2.2\nb A 192.0.2.3\n', { defaultTtl: 120 });
    expect(recs.map((r) => r.ttl)).toEqual([120, 120, 60, 120]);
  });
  it('a record without any TTL known is an error', () => {
    expect(errorOf('a A 192.0.2.1\n').message).toBe('z.zone:1: no TTL specified (add a $TTL directive or an explicit TTL)');
  });
  it('rejects a bad opts.defaultTtl', () => {
    expect(() => parse(HEAD, { defaultTtl: 2 ** 31 })).toThrow('z.zone:0: bad default TTL 2147483648');
  });
});

describe('parseMasterFile: errors carry file, line and reason', () => {
  it.each(ERROR_CASES.map((c) => [c.body.replace(/\n/g, '\\n').slice(0, 60), c] as const))('%s', (_n, c) => {
    const { text, line } = errorCaseFile(c);
    const e = errorOf(text);
    expect(e.message).toBe(`z.zone:${line}: ${c.reason}`);
    expect(e.file).toBe('z.zone');
    expect(e.line).toBe(line);
    expect(e.reason).toBe(c.reason);
  });

  it('reports the first error only, and nothing is returned', () => {
    const e = errorOf(HEAD + 'a A 1.2.3\nb A 4.5.6\n');
    expect(e.line).toBe(HEAD_LINES + 1);
  });

  it('rejects a bad zone origin', () => {
    expect(() => parse(HEAD, { origin: 'a..b' })).toThrow(ZoneParseError);
  });
});

describe('rdataFromText', () => {
  it('encodes one line of presentation RDATA', () => {
    expect(rdataFromText(RRType.MX, '10 mail', 'example.com.')).toEqual(
      Buffer.from([0, 10, 4, ...Buffer.from('mail'), 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0]));
    expect(rdataFromText(RRType.A, '\\# 4 c0000201')).toEqual(Buffer.from([192, 0, 2, 1]));
    expect(rdataFromText(RRType.TXT, '"a b" c')).toEqual(Buffer.from([3, 0x61, 0x20, 0x62, 1, 0x63]));
  });
  it('throws ZoneParseError for bad input', () => {
    expect(() => rdataFromText(RRType.A, '1.2.3')).toThrow('<rdata>:1: bad IPv4 address "1.2.3"');
    expect(() => rdataFromText(RRType.A, '')).toThrow('<rdata>:1: missing A data');
    expect(() => rdataFromText(RRType.A, '1.2.3.4\n5')).toThrow('RDATA text must be on one line');
  });
});

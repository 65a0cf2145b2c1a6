import { describe, expect, it } from '@jest/globals';
import {
  MAX_TTL, WireError, hasTextFormat, makeOrigin, parseTtl, rdataFromTokens, rdataToText, validateRdata, RdataError,
} from '../../../src/dns/zone/rdata-text.js';
import { rdataFromText } from '../../../src/dns/zone/master-file.js';
import { RRType, typeFromName } from '../../../src/dns/wire/constants.js';

const O = 'example.com.';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const enc = (type: string, text: string): string => hex(rdataFromText(typeFromName(type) as number, text, O));

describe('parseTtl', () => {
  const ok: Array<[string, number]> = [
    ['0', 0], ['300', 300], ['1s', 1], ['1m', 60], ['1h', 3600], ['1d', 86400], ['1w', 604800],
    ['1H30M', 5400], ['1h30m', 5400], ['2W', 1209600], ['1D', 86400], ['2w1d', 1296000], ['1h1h', 7200],
    ['0h5m', 300], ['2147483647', 2147483647], ['4294967295', 4294967295],
  ];
  it.each(ok)('%s = %d', (t, v) => expect(parseTtl(t)).toBe(v));
  const bad = ['', 'h', '1h30', '1x', '-1', '+1', '1.5', '4294967296', '1 h', 'w1', '99999999999', '1hh'];
  it.each(bad)('%j is not a TTL', (t) => expect(parseTtl(t)).toBe(-1));
  it('MAX_TTL is 2^31-1', () => expect(MAX_TTL).toBe(2 ** 31 - 1));
});

describe('presentation -> wire -> presentation', () => {
  // [type, input, wire hex, canonical text (what BIND prints)]
  const table: Array<[string, string, string, string]> = [
    ['A', '192.0.2.1', 'c0000201', '192.0.2.1'],
    ['A', '0.0.0.0', '00000000', '0.0.0.0'],
    ['AAAA', '::', '0'.repeat(32), '::'],
    ['AAAA', '::1', '0'.repeat(31) + '1', '::1'],
    ['AAAA', '::ffff:1.2.3.4', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['AAAA', '::FFFF:102:304', '00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
    ['AAAA', '::192.0.2.128', '000000000000000000000000c0000280', '::192.0.2.128'],
    ['AAAA', '2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['AAAA', '2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['AAAA', '1::', '0001' + '0'.repeat(28), '1::'],
    ['AAAA', '1:2:3:4:5:6:7::', '00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
    ['AAAA', '1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304', '1:2:3:4:5:6:102:304'],
    ['NS', 'ns1', '036e7331076578616d706c6503636f6d00', 'ns1.example.com.'],
    ['CNAME', 'Foo.Bar.', '03466f6f0342617200', 'Foo.Bar.'],
    ['PTR', 'a\\.b.', '03612e6200', 'a\\.b.'],
    ['DNAME', '.', '00', '.'],
    ['MX', '10 @', '000a076578616d706c6503636f6d00', '10 example.com.'],
    ['SOA', 'ns1. h. 1 2h 15m 1w 300', '036e733100016800' + '00000001' + '00001c20' + '00000384' + '00093a80' + '0000012c',
      'ns1. h. 1 7200 900 604800 300'],
    ['SOA', 'ns1. h. 4294967295 1 1 1 1', '036e73310001680000' .slice(0, 16) + 'ffffffff' + '00000001'.repeat(4),
      'ns1. h. 4294967295 1 1 1 1'],
    ['TXT', '"a b" c', '0361206201' + '63', '"a b" "c"'],
    ['TXT', '""', '00', '""'],
    ['TXT', '"\\"\\\\\\000\\127~"', '05225c007f7e', '"\\"\\\\\\000\\127~"'],
    ['TXT', '"x" "y" "z"', '01780179017a', '"x" "y" "z"'],
    ['HINFO', 'PC "Linux 6"', '0250430' + '74c696e75782036', '"PC" "Linux 6"'],
    ['SRV', '0 5 5060 sip.example.net.', '000000051' + '3c403736970076578616d706c65036e657400', '0 5 5060 sip.example.net.'],
    ['NAPTR', '100 10 "u" "E2U+sip" "!^.*$!x!" .', '0064000a0175074532552b73697008215e2e2a24217821' + '00',
      '100 10 "u" "E2U+sip" "!^.*$!x!" .'],
    ['CAA', '0 issue "ca.example; x=1"', '0005697373756563612e6578616d706c653b20783d31', '0 issue "ca.example; x=1"'],
    ['CAA', '128 tbs Hello', '800374627348656c6c6f', '128 tbs "Hello"'],
    ['CAA', '0 issue ""', '00056973737565', '0 issue ""'],
    ['DS', '60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118', 'ec45050' + '12bb183af5f22588179a53b0a98631fad1a292118',
      '60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118'],
    ['DS', '1 8 9 ab cd', '000108' + '09abcd', '1 8 9 ABCD'],
    ['SSHFP', '1 1 dd46 5c09', '0101dd465c09', '1 1 DD465C09'],
    ['TLSA', '3 1 1 0c72', '0301010c72', '3 1 1 0C72'],
  ];
  it.each(table)('%s %s', (type, input, wire, text) => {
    const t = typeFromName(type) as number;
    const b = rdataFromText(t, input, O);
    expect(hex(b)).toBe(wire);
    expect(rdataToText(t, b)).toBe(text);
    // the printed form reads back to the same bytes
    expect(hex(rdataFromText(t, text, O))).toBe(wire);
  });
});

describe('RFC 3597 generic RDATA', () => {
  it('gives the same wire as the normal form for known types', () => {
    expect(enc('A', '\\# 4 c0000201')).toBe(enc('A', '192.0.2.1'));
    expect(enc('AAAA', '\\# 16 20010DB8 00000000 00000000 00000001')).toBe(enc('AAAA', '2001:db8::1'));
    expect(enc('MX', '\\# 8 000a 046d61696c 00')).toBe(enc('MX', '10 mail.'));
    expect(enc('TXT', '\\# 4 03616263')).toBe(enc('TXT', 'abc'));
    expect(enc('CAA', '\\# ( 10 0005 6973737565 616263 )')).toBe(enc('CAA', '0 issue abc'));
  });
  it('accepts any type, and \\# 0 for empty', () => {
    expect(enc('TYPE65280', '\\# 4 0a000001')).toBe('0a000001');
    expect(enc('TYPE65280', '\\# 0')).toBe('');
    expect(enc('HTTPS', '\\# 3 000100')).toBe('000100');
    expect(enc('TYPE65280', '\\# 2 ( AB\n cd )'.replace('\n', ' '))).toBe('abcd');
  });
  it('prints types without a text format, and malformed RDATA, generically', () => {
    expect(rdataToText(65280, Buffer.from('0a000001', 'hex'))).toBe('\\# 4 0A000001');
    expect(rdataToText(65280, Buffer.alloc(0))).toBe('\\# 0');
    expect(rdataToText(RRType.A, Buffer.from('0a0000', 'hex'))).toBe('\\# 3 0A0000');
    expect(rdataToText(RRType.MX, Buffer.from('000ac000', 'hex'))).toBe('\\# 4 000AC000'); // compression pointer
    expect(rdataToText(RRType.TXT, Buffer.alloc(0))).toBe('\\# 0');
    expect(rdataToText(RRType.TXT, Buffer.from('0561', 'hex'))).toBe('\\# 2 0561');
  });
  it('validates the generic bytes of known types', () => {
    const bad: Array<[string, string]> = [
      ['A', '\\# 0'], ['AAAA', '\\# 4 00000000'], ['MX', '\\# 2 000a'], ['TXT', '\\# 0'], ['TXT', '\\# 2 0261'],
      ['NS', '\\# 2 c000'], ['SOA', '\\# 1 00'], ['CAA', '\\# 2 0000'], ['DS', '\\# 5 0001080200'],
      ['MX', '\\# 4 000a0000'],
    ];
    for (const [type, text] of bad) {
      expect(() => rdataFromText(typeFromName(type) as number, text, O)).toThrow(/bad RFC 3597 data for type/);
    }
  });
  it('validateRdata throws WireError', () => {
    expect(() => validateRdata(RRType.A, Buffer.alloc(3))).toThrow(WireError);
    expect(() => validateRdata(RRType.A, Buffer.alloc(4))).not.toThrow();
  });
});

describe('TXT strings', () => {
  it('keeps 255 bytes as one string and splits longer ones into 255-byte strings (unlike BIND 9.18, which rejects them)', () => {
    const s255 = 'x'.repeat(255);
    expect(rdataFromText(RRType.TXT, `"${s255}"`).length).toBe(256);
    const split = rdataFromText(RRType.TXT, `"${s255}y"`);
    expect(split.length).toBe(256 + 2);
    expect(split[0]).toBe(255);
    expect(split[256]).toBe(1);
    expect(split.subarray(257).toString()).toBe('y');
    expect(rdataToText(RRType.TXT, split)).toBe(`"${s255}" "y"`);
    // escapes count as one byte each
    expect(rdataFromText(RRType.TXT, `"${'\\065'.repeat(255)}"`).length).toBe(256);
    // UTF-8 bytes count: 128 x 2 bytes = 256 bytes -> 255 + 1
    expect(rdataFromText(RRType.TXT, `"${'é'.repeat(128)}"`).length).toBe(258);
    // 600 bytes -> 255 + 255 + 90, after a short string
    const three = rdataFromText(RRType.TXT, `"a" "${'z'.repeat(600)}"`);
    expect([three[0], three[2], three[258], three[514]]).toEqual([1, 255, 255, 90]);
  });
  it('many strings, up to the RDATA limit', () => {
    const one = `"${'x'.repeat(255)}" `;
    expect(rdataFromText(RRType.TXT, one.repeat(255)).length).toBe(255 * 256);
    expect(() => rdataFromText(RRType.TXT, one.repeat(256))).toThrow('RDATA longer than 65535 bytes');
  });
  it('CAA values may be longer than 255 bytes', () => {
    const v = 'v'.repeat(300);
    expect(rdataFromText(RRType.CAA, `0 issue "${v}"`).length).toBe(2 + 5 + 300);
  });
  it('\\DDD needs three digits', () => {
    expect(() => rdataFromText(RRType.TXT, '"\\06"')).toThrow('bad escape in TXT string "\\06" (\\DDD needs 3 digits)');
  });
});

describe('rdataFromTokens', () => {
  it('reports the index of the bad token', () => {
    try {
      rdataFromTokens(RRType.MX, ['x', '10', 'a..b'], [false, false, false], 1, 3, makeOrigin(O));
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(RdataError);
      expect((e as RdataError).token).toBe(2);
    }
  });
  it('hasTextFormat', () => {
    expect(hasTextFormat(RRType.A)).toBe(true);
    expect(hasTextFormat(RRType.HTTPS)).toBe(false);
  });
});

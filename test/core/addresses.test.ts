/** One rule for addresses, prefixes and endpoints: the same text is accepted or refused everywhere. */
import { describe, expect, test } from '@jest/globals';
import { addressFromBytes, addressBytes, parseAddress, parseEndpoint, parsePrefix } from '../../src/core/addresses.js';

describe('addresses', () => {
  test.each([
    ['203.0.113.10', { address: '203.0.113.10', family: 4 }],
    ['2001:DB8:0::10', { address: '2001:db8::10', family: 6 }],
    ['::ffff:192.0.2.1', { address: '::ffff:c000:201', family: 6 }],
    ['1.2.3', '"1.2.3" is not an IPv4 address'],
    ['999.1.1.1', '"999.1.1.1" is not an IPv4 address'],
    ['203.0.113.010', '"203.0.113.010" is not an IPv4 address'],
    ['fe80::1%eth0', '"fe80::1%eth0" is not an IP address'],
    ['2001:db8::/64', '"2001:db8::/64" is not an IP address'],
    ['host.example', '"host.example" is not an IP address'],
    ['', '"" is not an IP address'],
  ])('parseAddress(%s)', (text, expected) => {
    expect(parseAddress(text)).toEqual(expected);
  });

  test.each([
    ['2001:db8:1:0:5::/64', { address: '2001:db8:1::', family: 6, prefixLength: 64 }],
    ['2001:db8:1::', { address: '2001:db8:1::', family: 6, prefixLength: 64 }],
    ['198.51.100.7/24', { address: '198.51.100.0', family: 4, prefixLength: 24 }],
    ['2001:db8::/129', '"2001:db8::/129": the prefix length must be from 0 to 128'],
    ['2001:db8::/064', '"2001:db8::/064": the prefix length must be from 0 to 128'],
    ['198.51.100.7', '"198.51.100.7" is not an IPv6 address'],
    ['1.2.3/24', '"1.2.3/24" is not an IP prefix (address/length)'],
  ])('parsePrefix(%s) as an IPv6 net', (text, expected) => {
    const opts = text.startsWith('198.51.100.7/') ? { defaultLength: { 4: 32, 6: 64 } } : { family: 6 as const, defaultLength: { 4: 32, 6: 64 } };
    expect(parsePrefix(text, opts)).toEqual(expected);
  });

  test.each([
    ['192.0.2.53', { host: '192.0.2.53', port: 53, family: 4 }],
    ['192.0.2.53:5353', { host: '192.0.2.53', port: 5353, family: 4 }],
    ['2001:DB8::53', { host: '2001:db8::53', port: 53, family: 6 }],
    ['[2001:db8::53]:5353', { host: '2001:db8::53', port: 5353, family: 6 }],
    ['[2001:db8::53]', { host: '2001:db8::53', port: 53, family: 6 }],
    ['1.2.3:53', '"1.2.3:53": "1.2.3" is not an IPv4 address (host names are not accepted)'],
    ['999.1.1.1:53', '"999.1.1.1:53": "999.1.1.1" is not an IPv4 address (host names are not accepted)'],
    ['192.0.2.53:0', '"192.0.2.53:0": port must be from 1 to 65535'],
    ['resolver.example', '"resolver.example" is not an IP address'],
  ])('parseEndpoint(%s)', (text, expected) => {
    expect(parseEndpoint(text, 53)).toEqual(expected);
  });

  test('RDATA bytes round-trip', () => {
    for (const a of ['192.0.2.1', '2001:db8::1', '::']) {
      const ip = parseAddress(a) as { address: string; family: 4 | 6 };
      expect(addressFromBytes(addressBytes(ip))).toEqual(ip);
    }
  });
});

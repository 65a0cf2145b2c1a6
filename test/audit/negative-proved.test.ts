/** Which negative answers carry their proof (an SOA of the name or an ancestor in the authority section, RFC 2308). */
import { describe, expect, test } from '@jest/globals';
import type { DnsRecord, LookupResult } from '../../src/audit/dns-client.js';
import { negativeProved } from '../../src/audit/lookups.js';
import { RRType } from '../../src/dns/wire/constants.js';

const soa = (name: string): DnsRecord => ({ name, type: RRType.SOA, class: 1, ttl: 300, data: { mname: 'ns1.example', rname: 'h.example', serial: 1 } });
const cname = (name: string, to: string): DnsRecord => ({ name, type: RRType.CNAME, class: 1, ttl: 300, data: to });
function answer(name: string, status: string, authority: DnsRecord[], answers: DnsRecord[] = []): LookupResult {
  return {
    name, type: RRType.MX, server: '192.0.2.53:53', status, aa: false, attempts: 1, ede: [],
    message: { id: 1, opcode: 0, rcode: status === 'NXDOMAIN' ? 3 : 0, flags: {} as never, question: [], answers, authority, additional: [], edns: false, ede: [] },
  };
}

describe('negativeProved', () => {
  test.each([
    ['NXDOMAIN with the parent zone\'s SOA', answer('gone.example.com', 'NXDOMAIN', [soa('example.com')]), true],
    ['NXDOMAIN with the root\'s SOA', answer('gone.invalid', 'NXDOMAIN', [soa('.')]), true],
    ['NODATA with the zone\'s own SOA', answer('example.com', 'NOERROR', [soa('example.com')]), true],
    ['NXDOMAIN without SOA (a filtering resolver)', answer('gmail.com', 'NXDOMAIN', []), false],
    ['NODATA without SOA', answer('example.com', 'NOERROR', []), false],
    ['an SOA of an unrelated zone', answer('example.com', 'NXDOMAIN', [soa('sinkhole.example')]), false],
    ['an SOA of a name below', answer('example.com', 'NXDOMAIN', [soa('sub.example.com')]), false],
    ['an SOA that only ends like the name', answer('example.com', 'NXDOMAIN', [soa('ample.com')]), false],
    ['through a CNAME: the SOA of the target\'s zone', answer('mail.example.com', 'NXDOMAIN', [soa('other.net')], [cname('mail.example.com', 'gone.other.net')]), true],
    ['through a CNAME: the SOA of the alias\'s zone only', answer('mail.example.com', 'NXDOMAIN', [soa('example.com')], [cname('mail.example.com', 'gone.other.net')]), false],
    ['no answer at all', { ...answer('example.com', 'TIMEOUT', []), message: undefined }, false],
  ] as [string, LookupResult, boolean][])('%s: %s', (_what, r, want) => {
    expect(negativeProved(r)).toBe(want);
  });
});

/** IP addresses as the controller handles them: validated and normalised with ip-address. */
import { Address4, Address6 } from 'ip-address';

/** A validated address in its normalised text form (`2001:DB8:0::10` → `2001:db8::10`). */
export interface IpAddress {
  address: string;
  family: 4 | 6;
}

/** Normalises an IPv4 or IPv6 literal; returns an error message for anything else (no prefixes, no zones). */
export function parseAddress(text: string): IpAddress | string {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return `${JSON.stringify(text)} is not an IP address`;
  if (/^[0-9.]+$/.test(text)) {
    if (!Address4.isValid(text) || text.split('.').length !== 4 || text.split('.').some((o) => o.length > 1 && o.startsWith('0'))) {
      return `${JSON.stringify(text)} is not an IPv4 address`;
    }
    return { address: new Address4(text).correctForm(), family: 4 };
  }
  if (text.includes(':') && !text.includes('/') && !text.includes('%') && Address6.isValid(text)) {
    return { address: new Address6(text).correctForm(), family: 6 };
  }
  return `${JSON.stringify(text)} is not an IP address`;
}

/** Wire bytes of a normalised address (4 or 16 bytes), as they appear in A/AAAA RDATA. */
export function addressBytes(a: IpAddress): Buffer {
  if (a.family === 4) return Buffer.from(a.address.split('.').map(Number));
  return Buffer.from(new Address6(a.address).canonicalForm().replace(/:/g, ''), 'hex');
}

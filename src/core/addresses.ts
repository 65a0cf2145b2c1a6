/**
 * IP addresses as the controller handles them, in one place with one rule: every address, prefix
 * and `address:port` in the config, the API, the backends and the MX audit is read here, so the
 * same text is accepted or refused everywhere with the same message. Validated and normalised
 * with ip-address; no host names, no zone ids (`%eth0`), no leading zeros in IPv4 octets.
 */
import { Address4, Address6 } from 'ip-address';

/** A validated address in its normalised text form (`2001:DB8:0::10` → `2001:db8::10`). */
export interface IpAddress {
  address: string;
  family: 4 | 6;
}

/** A network: its first address (normalised) and prefix length. */
export interface IpPrefix extends IpAddress {
  prefixLength: number;
}

/** An IP literal and port. */
export interface HostPort {
  host: string;
  port: number;
  family: 4 | 6;
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** Normalises an IPv4 or IPv6 literal; returns an error message for anything else (no prefixes, no zones). */
export function parseAddress(text: string): IpAddress | string {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) return `${JSON.stringify(text)} is not an IP address`;
  if (/^[0-9.]+$/.test(text)) {
    if (!IPV4.test(text)) return `${JSON.stringify(text)} is not an IPv4 address`;
    return { address: text, family: 4 };
  }
  if (text.includes(':') && /^[0-9A-Fa-f:.]+$/.test(text) && Address6.isValid(text)) {
    return { address: new Address6(text).correctForm(), family: 6 };
  }
  return `${JSON.stringify(text)} is not an IP address`;
}

/**
 * Reads `address/length` (or a bare address, taken as a host prefix of `defaultLength[family]`);
 * the result is the network's first address. `family` restricts what is accepted.
 */
export function parsePrefix(text: string, opts: { family?: 4 | 6; defaultLength?: { 4: number; 6: number } } = {}): IpPrefix | string {
  if (typeof text !== 'string') return `${JSON.stringify(text)} is not an IP prefix`;
  const slash = text.indexOf('/');
  const ip = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (typeof ip === 'string') return slash < 0 ? ip : `${JSON.stringify(text)} is not an IP prefix (address/length)`;
  if (opts.family !== undefined && ip.family !== opts.family) return `${JSON.stringify(text)} is not an IPv${opts.family} ${slash < 0 ? 'address' : 'prefix'}`;
  const max = ip.family === 4 ? 32 : 128;
  let len = opts.defaultLength?.[ip.family] ?? max;
  if (slash >= 0) {
    const l = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(l) || Number(l) > max) return `${JSON.stringify(text)}: the prefix length must be from 0 to ${max}`;
    len = Number(l);
  }
  const start = ip.family === 4 ? new Address4(`${ip.address}/${len}`).startAddress().correctForm() : new Address6(`${ip.address}/${len}`).startAddress().correctForm();
  return { address: start, family: ip.family, prefixLength: len };
}

/** Parses "a.b.c.d:port" or "[v6]:port" (IP literals only). Returns the address or a message. */
export function parseHostPort(text: string): HostPort | string {
  if (typeof text !== 'string') return `${JSON.stringify(text)} is not host:port (IPv6 as [addr]:port)`;
  const m = /^\[([^\]]+)\]:([0-9]+)$/.exec(text) ?? /^([^:[\]]+):([0-9]+)$/.exec(text);
  if (!m) return `${JSON.stringify(text)} is not host:port (IPv6 as [addr]:port)`;
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535) || m[2].length > 5) return `${JSON.stringify(text)}: port must be from 1 to 65535`;
  const ip = parseAddress(m[1]);
  if (text.startsWith('[')) {
    if (typeof ip === 'string' || ip.family !== 6) return `${JSON.stringify(text)}: ${JSON.stringify(m[1])} is not an IPv6 address`;
    return { host: ip.address, port, family: 6 };
  }
  if (typeof ip === 'string' || ip.family !== 4) return `${JSON.stringify(text)}: ${JSON.stringify(m[1])} is not an IPv4 address (host names are not accepted)`;
  return { host: ip.address, port, family: 4 };
}

/**
 * Like parseHostPort, but the port may be left out (`defaultPort`), and a bare IPv6 address
 * needs no brackets: "192.0.2.53", "192.0.2.53:5353", "2001:db8::53", "[2001:db8::53]:5353".
 */
export function parseEndpoint(text: string, defaultPort: number): HostPort | string {
  if (typeof text !== 'string') return `${JSON.stringify(text)} is not an IP address`;
  const t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) return parseHostPort(`${t}:${defaultPort}`);
  if (t.startsWith('[') || /^[^:]*:[0-9]*$/.test(t)) return parseHostPort(t);
  const ip = parseAddress(t);
  if (typeof ip === 'string') return ip;
  return { host: ip.address, port: defaultPort, family: ip.family };
}

/** The `[v6]:port` or `v4:port` text of an endpoint. */
export function formatHostPort(hp: { host: string; port: number }): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** Wire bytes of a normalised address (4 or 16 bytes), as they appear in A/AAAA RDATA. */
export function addressBytes(a: IpAddress): Buffer {
  if (a.family === 4) return Buffer.from(a.address.split('.').map(Number));
  return Buffer.from(new Address6(a.address).canonicalForm().replace(/:/g, ''), 'hex');
}

/** The normalised text of 4 or 16 address bytes (A/AAAA RDATA). */
export function addressFromBytes(bytes: Uint8Array): IpAddress {
  if (bytes.length === 4) return { address: [...bytes].join('.'), family: 4 };
  const hex = Buffer.from(bytes).toString('hex').replace(/(.{4})(?!$)/g, '$1:');
  return { address: new Address6(hex).correctForm(), family: 6 };
}

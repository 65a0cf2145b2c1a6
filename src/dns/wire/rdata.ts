/**
 * Typed readers of uncompressed RDATA (as {@link decodeMessage} returns it): names as canonical
 * keys, MX, SOA and TXT as their fields. Strict: malformed RDATA throws DnsFormatError. The
 * presentation (master file) form of any RDATA is zone/rdata-text.ts's `rdataToText`.
 */
import { labelsToKey, MAX_LABEL_LENGTH, MAX_NAME_WIRE_LENGTH, type Labels } from '../name.js';
import { DnsFormatError } from './message.js';

/** Reads an uncompressed name at `off`: its key and the offset after it. */
export function rdataName(rd: Uint8Array, off = 0): { name: string; end: number } {
  const labels: Labels = [];
  let o = off;
  let total = 1;
  for (;;) {
    if (o >= rd.length) throw new DnsFormatError('name in RDATA runs past its end', o);
    const len = rd[o];
    if (len === 0) return { name: labelsToKey(labels), end: o + 1 };
    if (len > MAX_LABEL_LENGTH) throw new DnsFormatError('bad label in RDATA (compressed or over 63 bytes)', o);
    total += 1 + len;
    if (o + 1 + len > rd.length) throw new DnsFormatError('name in RDATA runs past its end', o);
    if (total > MAX_NAME_WIRE_LENGTH) throw new DnsFormatError('name in RDATA longer than 255 bytes', off);
    labels.push(rd.subarray(o + 1, o + 1 + len));
    o += 1 + len;
  }
}

function u16(rd: Uint8Array, o: number): number {
  return (rd[o] << 8) | rd[o + 1];
}

function u32(rd: Uint8Array, o: number): number {
  return ((rd[o] << 24) | (rd[o + 1] << 16) | (rd[o + 2] << 8) | rd[o + 3]) >>> 0;
}

/** The single name of NS, CNAME, PTR or DNAME RDATA. */
export function readNameRdata(rd: Uint8Array): string {
  const n = rdataName(rd, 0);
  if (n.end !== rd.length) throw new DnsFormatError('trailing bytes after a name in RDATA', n.end);
  return n.name;
}

/** MX RDATA (RFC 1035 3.3.9). */
export function readMx(rd: Uint8Array): { preference: number; exchange: string } {
  if (rd.length < 3) throw new DnsFormatError('short MX RDATA', 0);
  const n = rdataName(rd, 2);
  if (n.end !== rd.length) throw new DnsFormatError('trailing bytes in MX RDATA', n.end);
  return { preference: u16(rd, 0), exchange: n.name };
}

/** SOA RDATA (RFC 1035 3.3.13). */
export interface Soa {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

/** SOA RDATA (RFC 1035 3.3.13). */
export function readSoa(rd: Uint8Array): Soa {
  const m = rdataName(rd, 0);
  const r = rdataName(rd, m.end);
  const o = r.end;
  if (o + 20 !== rd.length) throw new DnsFormatError('bad SOA RDATA length', o);
  return {
    mname: m.name, rname: r.name, serial: u32(rd, o), refresh: u32(rd, o + 4), retry: u32(rd, o + 8),
    expire: u32(rd, o + 12), minimum: u32(rd, o + 16),
  };
}

/** The character-strings of TXT RDATA (RFC 1035 3.3.14), as bytes. */
export function readTxt(rd: Uint8Array): Uint8Array[] {
  if (rd.length === 0) throw new DnsFormatError('empty TXT RDATA', 0);
  const out: Uint8Array[] = [];
  for (let p = 0; p < rd.length; ) {
    const l = rd[p];
    if (p + 1 + l > rd.length) throw new DnsFormatError('TXT string runs past its RDATA', p);
    out.push(rd.subarray(p + 1, p + 1 + l));
    p += 1 + l;
  }
  return out;
}

/** DNS numeric constants (RFC 1035, 3597, 6891, 8914 and the IANA registries). */

export const RRType = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28, SRV: 33,
  NAPTR: 35, DNAME: 39, OPT: 41, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47, DNSKEY: 48, TLSA: 52,
  SVCB: 64, HTTPS: 65, IXFR: 251, AXFR: 252, MAILB: 253, MAILA: 254, ANY: 255, CAA: 257,
} as const;

/** Mnemonic for a type number; TYPEnnn (RFC 3597) for the rest. */
export function typeName(t: number): string {
  for (const [k, v] of Object.entries(RRType)) if (v === t) return k;
  return `TYPE${t}`;
}

/** Type number for a mnemonic or TYPEnnn; undefined when unknown. */
export function typeFromName(name: string): number | undefined {
  const u = name.toUpperCase();
  if (u in RRType) return (RRType as Record<string, number>)[u];
  const m = /^TYPE([0-9]{1,5})$/.exec(u);
  if (m && Number(m[1]) <= 65535) return Number(m[1]);
  return undefined;
}

export const RRClass = { IN: 1, CH: 3, HS: 4, NONE: 254, ANY: 255 } as const;

export const Rcode = {
  NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, NOTAUTH: 9, BADVERS: 16,
} as const;

export const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 16: 'BADVERS',
};

export const Opcode = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 } as const;

/** Our advertised and maximum UDP payload (DNS Flag Day 2020). */
export const MAX_UDP_PAYLOAD = 1232;

/** EDNS option codes (IANA "DNS EDNS0 Option Codes") the controller knows by name. */
export const EdnsOptionCode = { NSID: 3, CLIENT_SUBNET: 8, COOKIE: 10, PADDING: 12, EDE: 15 } as const;

/** Names of the Extended DNS Error INFO-CODEs (RFC 8914 and the IANA registry). */
export const EDE_NAMES: Record<number, string> = {
  0: 'Other', 1: 'Unsupported DNSKEY Algorithm', 2: 'Unsupported DS Digest Type', 3: 'Stale Answer',
  4: 'Forged Answer', 5: 'DNSSEC Indeterminate', 6: 'DNSSEC Bogus', 7: 'Signature Expired',
  8: 'Signature Not Yet Valid', 9: 'DNSKEY Missing', 10: 'RRSIGs Missing', 11: 'No Zone Key Bit Set',
  12: 'NSEC Missing', 13: 'Cached Error', 14: 'Not Ready', 15: 'Blocked', 16: 'Censored',
  17: 'Filtered', 18: 'Prohibited', 19: 'Stale NXDOMAIN Answer', 20: 'Not Authoritative',
  21: 'Not Supported', 22: 'No Reachable Authority', 23: 'Network Error', 24: 'Invalid Data',
};

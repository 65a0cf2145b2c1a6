/**
 * The inventory: servers and transits with their service addresses, and how a server's
 * addresses pair with a transit's (the n-th IPv4 with the n-th IPv4, the same for IPv6,
 * unless the server lists explicit pairs for that transit). Pure.
 */
import type { IpAddress } from './addresses.js';

/** A server or a transit. */
export interface Host {
  name: string;
  addresses: readonly IpAddress[];
  /** Configuration class; a transit stands in for servers of its own profile. Default "default". */
  profile?: string;
  /** The host's own routing settings; each backend reads the ones it needs. */
  routing?: HostRouting;
}

/** How the routing backends reach a host (each backend requires the settings it uses). */
export interface HostRouting {
  /** The router's next hop towards the host, one per family (linux-route). */
  nextHops?: readonly string[];
  /** Command prefix that runs a command on the host (linux-route make-before-break, linux-address). */
  exec?: readonly string[];
  /** The host's interface on the shared segment (linux-address). */
  device?: string;
  /** The provider's main IP of the host (http). */
  mainIp?: string;
  /** The provider's IPv6 net of the host, its first address (http). */
  ipv6Net?: string;
}

/** A server, with optional explicit pairs per transit: server address → transit address. */
export interface Server extends Host {
  pairs?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** Monthly price, a decimal string (billing.currency), billed for a transit past the free period. */
  monthlyPrice?: string;
}

/** A hosting account: its home server and the zones it owns. */
export interface Account {
  name: string;
  server: string;
  /** Zone keys ("acme.example.") whose answers follow the account when it moves. */
  zones: readonly string[];
  /** Optional HTTP probe of the account's site during its moves. */
  probe?: { url: string; identityHeader?: string };
  /** Domains on external DNS whose mail is at the provider (normalised): MX-audited at each migration. */
  mailDomains?: readonly string[];
}

export type Transit = Host;

/** One server address and the transit address that stands in for it. */
export interface AddressPair {
  address: string;
  transitAddress: string;
  family: 4 | 6;
}

export interface Inventory {
  readonly servers: ReadonlyMap<string, Server>;
  readonly transits: ReadonlyMap<string, Transit>;
  readonly accounts?: ReadonlyMap<string, Account>;
}

/** The profile of a host ("default" when none is set). */
export function profileOf(h: Host): string {
  return h.profile ?? 'default';
}

/** Names of servers and transits: what may appear in a URL path and in a metric label. */
export const HOST_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Pairs a server's addresses with a transit's; a string explains why they cannot pair. */
export function pairAddresses(server: Server, transit: Transit): AddressPair[] | string {
  const explicit = server.pairs?.[transit.name];
  if (explicit) {
    const out: AddressPair[] = [];
    const used = new Set<string>();
    for (const a of server.addresses) {
      const t = explicit[a.address];
      if (t === undefined) return `${server.name}'s pairs for ${transit.name} do not name ${a.address}`;
      const ta = transit.addresses.find((x) => x.address === t);
      if (!ta) return `${server.name}'s pairs for ${transit.name} name ${t}, which is not an address of ${transit.name}`;
      if (ta.family !== a.family) return `${server.name}'s pairs for ${transit.name} pair ${a.address} with ${t} of another family`;
      if (used.has(t)) return `${server.name}'s pairs for ${transit.name} use ${t} twice`;
      used.add(t);
      out.push({ address: a.address, transitAddress: t, family: a.family });
    }
    return out;
  }
  const out: AddressPair[] = [];
  for (const family of [4, 6] as const) {
    const mine = server.addresses.filter((a) => a.family === family);
    const theirs = transit.addresses.filter((a) => a.family === family);
    if (mine.length > theirs.length) {
      return `${server.name} has ${mine.length} IPv${family} address${mine.length > 1 ? 'es' : ''} but ${transit.name} has ${theirs.length}`;
    }
    mine.forEach((a, i) => out.push({ address: a.address, transitAddress: theirs[i].address, family }));
  }
  // keep the server's own order
  const order = new Map(server.addresses.map((a, i) => [a.address, i]));
  return out.sort((x, y) => order.get(x.address)! - order.get(y.address)!);
}

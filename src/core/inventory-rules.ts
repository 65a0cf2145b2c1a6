/**
 * Rules across inventory entries, beyond what each entry's schema checks: one host per name, one
 * owner per address, pairs that work, accounts on known servers owning their zones alone. They
 * read what each entry gives even where other fields are invalid (those are reported by the
 * schema), so that one run reports every problem. Pure.
 */
import type { IpAddress } from './addresses.js';
import { formatPath, type ConfigPath, type FieldProblem } from './config-fields.js';
import { HOST_NAME, pairAddresses, profileOf, type HostRouting, type Server } from './inventory.js';

/** A server or transit as far as its entry is valid, with where it is in the data. */
export interface HostView extends Server {
  path: ConfigPath;
  /** Its `addresses` in their order, undefined where invalid. */
  listed: readonly (IpAddress | undefined)[];
  /** Its valid routing settings. */
  routing?: HostRouting;
  /** The keys its `routing` settings give, valid or not. */
  given: ReadonlySet<string>;
}

/** An account as far as its entry is valid. */
export interface AccountView {
  path: ConfigPath;
  name?: string;
  server?: string;
  /** Its zones in their order: the text given and its key, undefined where invalid. */
  zones: readonly ({ text: string; key: string } | undefined)[];
  /** Its mail domains in their order, normalised, undefined where invalid. */
  mailDomains?: readonly (string | undefined)[];
}

/** Names used once over servers and transits; addresses owned once; pairs that work. */
export function inventoryProblems(servers: readonly HostView[], transits: readonly HostView[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const names = new Map<string, string>();
  const owner = new Map<string, string>(); // address -> "servers[0].addresses[1] (srv-42)"
  for (const h of [...servers, ...transits]) {
    if (HOST_NAME.test(h.name)) {
      if (names.has(h.name)) problems.push({ path: [...h.path, 'name'], message: `${JSON.stringify(h.name)} is already used by ${names.get(h.name)}` });
      else names.set(h.name, formatPath(h.path));
    }
    h.listed.forEach((a, j) => {
      if (!a) return;
      const path = [...h.path, 'addresses', j];
      const other = owner.get(a.address);
      if (other) problems.push({ path, message: `${a.address} is already listed at ${other}` });
      else owner.set(a.address, `${formatPath(path)} (${h.name})`);
    });
  }
  // after every host is read
  const after: ConfigPath = ['transits', Infinity];
  for (const s of servers) {
    for (const t of transits) {
      if (profileOf(s) !== profileOf(t)) continue; // a transit only stands in for its own profile
      const r = pairAddresses(s, t);
      if (typeof r === 'string') problems.push({ path: [...s.path, s.pairs?.[t.name] ? 'pairs' : 'addresses'], message: `${r} (${formatPath(t.path)})`, after });
    }
    for (const transit of Object.keys(s.pairs ?? {})) {
      if (!transits.some((t) => t.name === transit)) problems.push({ path: [...s.path, 'pairs', transit], message: `no transit named ${JSON.stringify(transit)}`, after });
    }
  }
  return problems;
}

/** Account names used once, home servers that exist, each zone owned by one account. */
export function accountProblems(accounts: readonly AccountView[], serverNames: ReadonlySet<string>): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const names = new Map<string, number>();
  const zoneOwner = new Map<string, string>();
  const mailOwner = new Map<string, string>();
  for (const a of accounts) {
    const index = a.path[a.path.length - 1];
    if (a.name !== undefined && HOST_NAME.test(a.name)) {
      if (names.has(a.name)) problems.push({ path: [...a.path, 'name'], message: `${JSON.stringify(a.name)} is already accounts[${names.get(a.name)}]` });
      else names.set(a.name, index as number);
    }
    if (a.server !== undefined && !serverNames.has(a.server)) problems.push({ path: [...a.path, 'server'], message: `no server named ${JSON.stringify(a.server)}` });
    a.zones.forEach((z, j) => {
      if (!z) return;
      const other = zoneOwner.get(z.key);
      if (other) problems.push({ path: [...a.path, 'zones', j], message: `${z.text} already belongs to account ${other}` });
      else zoneOwner.set(z.key, a.name ?? '?');
    });
    // a mail domain is audited for one account
    (a.mailDomains ?? []).forEach((d, j) => {
      if (!d) return;
      const other = mailOwner.get(d);
      if (other !== undefined && other !== (a.name ?? '?')) problems.push({ path: [...a.path, 'mail_domains', j], message: `${d} is already a mail domain of account ${other}` });
      else mailOwner.set(d, a.name ?? '?');
    });
  }
  return problems;
}

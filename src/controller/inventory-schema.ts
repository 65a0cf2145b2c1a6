/**
 * The inventory sections of the config (`servers`, `transits`, `accounts`): one schema per entry,
 * used for the file and for the entries edited through the API alike, and views of the entries
 * as far as they are valid, for the rules across entries (src/core/inventory-rules.ts,
 * src/routing/config-rules.ts).
 */
import { z } from 'zod';
import { validateDomain } from '../audit/domain-name.js';
import { parseAddress, type IpAddress } from '../core/addresses.js';
import { describe, httpUrl, ipAddress, isMapping, nonEmptyList, readOr, section, text, valid, type ConfigPath, type FieldProblem } from '../core/config-fields.js';
import { HOST_NAME, type Account, type Server, type Transit } from '../core/inventory.js';
import type { AccountView, HostView } from '../core/inventory-rules.js';
import { parseMoney } from '../core/money.js';
import { nameKey } from '../dns/name.js';
import { hostRoutingSchema, hostRoutingShape } from '../routing/config-schema.js';

const mapping = (iss: { input?: unknown }) => (iss.input == null ? 'is required' : `must be a mapping, not ${describe(iss.input)}`);

const name = (rule: string) => text().check(valid((v) => HOST_NAME.test(v), (v) => `${JSON.stringify(v)} is not a valid name (${rule})`));

const ADDRESSES = 'must be a non-empty list of IP addresses';
const addresses = nonEmptyList(ipAddress(), ADDRESSES);

/**
 * Explicit pairs per transit, server address → transit address, normalised: the valid ones, and
 * the problems of the others (at [transit, server address]).
 */
function readPairs(p: Record<string, Record<string, unknown>>): { pairs: Record<string, Record<string, string>>; problems: FieldProblem[] } {
  const pairs: Record<string, Record<string, string>> = {};
  const problems: FieldProblem[] = [];
  for (const [transit, m] of Object.entries(p)) {
    pairs[transit] = {};
    for (const [from, to] of Object.entries(m)) {
      const f = parseAddress(from);
      const t = parseAddress(typeof to === 'string' ? to : JSON.stringify(to));
      if (typeof f === 'string' || typeof t === 'string') problems.push({ path: [transit, from], message: typeof f === 'string' ? f : (t as string) });
      else pairs[transit][f.address] = t.address;
    }
  }
  return { pairs, problems };
}

const pairsShape = z.record(z.string(), z.record(z.string(), z.unknown(), { error: mapping }), { error: mapping });
const pairs = pairsShape.transform((p, ctx) => {
  const r = readPairs(p);
  for (const { path, message } of r.problems) ctx.issues.push({ code: 'custom', path, message, input: p });
  return r.pairs;
});

const profile = text().check(valid((v) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(v), (v) => `${JSON.stringify(v)} is not a profile name (letters, digits, . _ -)`));

/** A monthly price: a quoted decimal, in billing.currency. */
const monthlyPrice = z.unknown().transform((v, ctx) => {
  if (typeof v !== 'string' && typeof v !== 'number') {
    ctx.issues.push({ code: 'custom', message: `must be a quoted decimal string (e.g. "29.99"), not ${describe(v)}`, input: v });
    return z.NEVER;
  }
  const m = parseMoney(typeof v === 'string' ? v : String(v));
  if (typeof m === 'string') ctx.issues.push({ code: 'custom', message: `${m} (write it as a quoted decimal, e.g. "29.99")`, input: v });
  else if (typeof v !== 'string') ctx.issues.push({ code: 'custom', message: `must be a quoted decimal string (e.g. "29.99"), not the number ${v}`, input: v });
  else return v;
  return z.NEVER;
});

/** A zone name, as its key ("acme.example."). */
const zoneName = z.unknown().transform((v, ctx) => {
  try {
    if (typeof v !== 'string') throw new Error('not a string');
    return nameKey(v.endsWith('.') ? v : v + '.');
  } catch (err) {
    ctx.issues.push({ code: 'custom', message: `${JSON.stringify(v)} is not a zone name: ${(err as Error).message}`, input: v });
    return z.NEVER;
  }
});

const serverShape = {
  name: name('lower-case letters, digits and hyphens, at most 63'),
  addresses,
  pairs: pairs.optional(),
  profile: profile.optional(),
  monthly_price: monthlyPrice.optional(),
  routing: hostRoutingSchema.optional(),
};
const transitShape = { name: serverShape.name, addresses, profile: profile.optional(), routing: hostRoutingSchema.optional() };
const ZONES = 'must be a non-empty list of zone names';
/** A mail domain, normalised (lower case, A-labels, no trailing dot). */
const mailDomain = z.unknown().transform((v, ctx) => {
  const d = validateDomain(v);
  if (d.ok) return d.domain;
  ctx.issues.push({ code: 'custom', message: `${JSON.stringify(v)} is not a domain name: ${d.reason}`, input: v });
  return z.NEVER;
});
const mailDomains = z.array(mailDomain, { error: 'must be a list of domain names' }).transform((list, ctx) => {
  const twice = list.filter((d, i) => list.indexOf(d) !== i);
  if (twice.length) ctx.issues.push({ code: 'custom', message: `${[...new Set(twice)].join(', ')} listed more than once`, input: list });
  return list;
});

const accountShape = {
  name: name('lower-case letters, digits and hyphens'),
  /** The home server. */
  server: text(),
  zones: nonEmptyList(zoneName, ZONES),
  /** Probed during each move through the controller's own DNS answers. */
  probe: section({ url: httpUrl(), identity_header: text().optional() }).optional(),
  /** Domains on external DNS whose mail is at the provider: MX-audited at each migration. */
  mail_domains: mailDomains.optional(),
};

/** Drops the keys whose value is undefined. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

const serverSchema = section(serverShape).transform((s): Server => compact({
  name: s.name, addresses: s.addresses, pairs: s.pairs, profile: s.profile, monthlyPrice: s.monthly_price, routing: s.routing,
}));
const transitSchema = section(transitShape).transform((t): Transit => compact({ name: t.name, addresses: t.addresses, profile: t.profile, routing: t.routing }));
const accountSchema = section(accountShape).transform((a): Account => ({
  name: a.name,
  server: a.server,
  zones: a.zones,
  probe: a.probe && { url: a.probe.url, identityHeader: a.probe.identity_header?.toLowerCase() },
  ...(a.mail_domains?.length ? { mailDomains: a.mail_domains } : {}),
}));

const list = <T extends z.ZodType>(entry: T) => z.array(entry, { error: 'must be a list' }).default(() => []);

/** The schema of one entry of each inventory section (the API's PUT bodies are validated with it). */
export const inventoryEntrySchemas = { servers: serverSchema, transits: transitSchema, accounts: accountSchema };

/** The schemas of the inventory sections (absent: empty). */
export const inventorySchemas = { servers: list(serverSchema), transits: list(transitSchema), accounts: list(accountSchema) };

/** The inventory sections that the API can edit. */
export type InventoryKind = keyof typeof inventorySchemas;

/** The keys of each inventory entry (the file's form and the API's). */
export const INVENTORY_KEYS: Readonly<Record<InventoryKind, readonly string[]>> = {
  servers: Object.keys(serverShape),
  transits: Object.keys(transitShape),
  accounts: Object.keys(accountShape),
};

/** The valid keys of `v` among `shape`'s (each read alone). */
function validKeys(shape: Record<string, z.ZodType>, v: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(v).filter(([k, x]) => shape[k]?.safeParse(x).success));
}

/** The valid pairs of a server's entry (each transit's mapping read alone). */
function lenientPairs(v: unknown): Record<string, Record<string, string>> | undefined {
  if (!isMapping(v)) return undefined;
  return readPairs(Object.fromEntries(Object.entries(v).filter((e): e is [string, Record<string, unknown>] => isMapping(e[1])))).pairs;
}

/** The servers or transits of config data, each as far as its entry is valid. */
export function hostViews(kind: 'servers' | 'transits', entries: unknown): HostView[] {
  if (!Array.isArray(entries)) return [];
  return entries.flatMap((raw: unknown, i): HostView[] => {
    if (!isMapping(raw)) return [];
    const path: ConfigPath = [kind, i];
    const listed: (IpAddress | undefined)[] = Array.isArray(raw.addresses) ? raw.addresses.map((a: unknown) => readOr(ipAddress(), a)) : [];
    const routing = isMapping(raw.routing) ? raw.routing : undefined;
    return [{
      path,
      name: typeof raw.name === 'string' && raw.name !== '' ? raw.name : `?${i}`,
      addresses: listed.filter((a): a is IpAddress => a !== undefined),
      listed,
      pairs: kind === 'servers' ? lenientPairs(raw.pairs) : undefined,
      profile: typeof raw.profile === 'string' ? raw.profile : undefined,
      routing: routing && readOr(hostRoutingSchema, validKeys(hostRoutingShape, routing)),
      given: new Set(routing ? Object.keys(routing) : []),
    }];
  });
}

/** The accounts of config data, each as far as its entry is valid. */
export function accountViews(entries: unknown): AccountView[] {
  if (!Array.isArray(entries)) return [];
  return entries.flatMap((raw: unknown, i): AccountView[] => {
    if (!isMapping(raw)) return [];
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    return [{
      path: ['accounts', i],
      name: str(raw.name),
      server: str(raw.server),
      zones: Array.isArray(raw.zones) ? raw.zones.map((z: unknown) => {
        const key = readOr(zoneName, z);
        return key === undefined ? undefined : { text: z as string, key };
      }) : [],
      mailDomains: Array.isArray(raw.mail_domains) ? raw.mail_domains.map((d: unknown) => readOr(mailDomain, d)) : [],
    }];
  });
}

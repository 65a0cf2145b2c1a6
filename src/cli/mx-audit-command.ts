/**
 * `failoverctl mx-audit`: audits the MX records of domains that use the provider's mail servers.
 * A table by default, one JSON object per line with --json, and a CSV file with --csv; domains
 * from the arguments, a file (--file FILE, "-" for stdin) and/or the mail domains of the
 * inventory's accounts (--server SERVER, --all-accounts); a progress bar on stderr when it is a TTY.
 * Exit codes: 0 every domain OK/INFO/WARN, 1 any FAIL (or an invalid name), 3 no FAIL but some
 * UNKNOWN, 2 usage error.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { MxAuditSettings } from '../audit/audit-settings.js';
import { parseServerAddress } from '../audit/dns-client.js';
import { createMxAuditor, type AuditResult, type MxAuditor } from '../audit/mx-audit.js';
import type { Account } from '../core/inventory.js';

/** Exit codes of the command. */
export const MX_AUDIT_EXIT = { OK: 0, FAIL: 1, USAGE: 2, UNKNOWN: 3 } as const;

export const MX_AUDIT_USAGE = `Usage: failoverctl mx-audit [--config FILE] [--resolver HOST:PORT] [--json] [--csv FILE]
                            [--concurrency N] [--file FILE|-] [--server SERVER | --all-accounts]
                            [--api URL [--token-env NAME | --token-file FILE]] [DOMAIN...]

Checks that domains whose DNS is hosted elsewhere but whose mail is at the provider have the
right MX records (mx_audit section of the config): the per-server MX deleted, the required MX
present with their priorities, no foreign MX, valid targets, consistent authoritative servers,
an SPF record including the provider's.

Options:
  --config FILE         config file (its mx_audit section)
  --resolver HOST:PORT  recursive resolver to ask (default: config, else the system's)
  --json                one JSON object per line and domain: domain, verdict, checks
                        (and account, for the domains of --server / --all-accounts)
  --csv FILE            also write FILE: a header, then one row per domain and check that is
                        not OK (one row without check for a domain whose checks are all OK):
                        account, domain, verdict, check, check_verdict, evidence, fix
  --file FILE|-         read domains from FILE (one per line, # comments), "-" for stdin
  --server SERVER       the mail domains of SERVER's accounts (accounts[].mail_domains): the
                        controller's inventory with --api, else the --config file's
  --all-accounts        the mail domains of every account (the same inventory)
  --api URL             read that inventory from the controller's API (GET /v1/inventory, the
                        edits made through the API included); the token from $FAILOVER_API_TOKEN
  --token-env NAME      environment variable holding the API token (default FAILOVER_API_TOKEN)
  --token-file FILE     read the API token from FILE instead
  --concurrency N       domains audited at once (default: config, 64)
  -h, --help            this help

Verdicts: OK < INFO < WARN < UNKNOWN < FAIL (a domain's is its worst check's);
INVALID for a name that is not a domain name (not looked up).
Exit codes: 0 all OK/INFO/WARN, 1 some FAIL or INVALID, 3 no FAIL but some UNKNOWN
(a lookup failed: never reported as OK), 2 usage error.
`;

/** Streams and factories, replaceable in tests. */
export interface MxAuditIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown; isTTY?: boolean; columns?: number };
  readStdin: () => Promise<string>;
  createAuditor: (settings: MxAuditSettings) => MxAuditor;
  /**
   * The inventory for --server and --all-accounts: the controller's (GET /v1/inventory, API edits
   * included) when `api` is set, else the config file's; rejects when it cannot be read.
   */
  loadInventory: (from: { configFile?: string; api?: { url?: string; tokenEnv?: string; tokenFile?: string } }) => Promise<MailInventory>;
}

/** What --server and --all-accounts read: the servers' names, the accounts with their mail domains. */
export interface MailInventory {
  servers: readonly string[];
  accounts: readonly Pick<Account, 'name' | 'server' | 'mailDomains'>[];
}

/** The inventory in the API's form (GET /v1/inventory: the entries as in the config file). */
export function mailInventoryOf(body: unknown): MailInventory {
  const list = (k: string): Record<string, unknown>[] => {
    const v = (body as Record<string, unknown> | null)?.[k];
    return Array.isArray(v) ? v.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null) : [];
  };
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    servers: list('servers').map((x) => str(x.name)),
    accounts: list('accounts').map((a) => ({
      name: str(a.name), server: str(a.server),
      mailDomains: Array.isArray(a.mail_domains) ? a.mail_domains.map(String) : undefined,
    })),
  };
}

/** The columns of --csv. */
export const MX_AUDIT_CSV_COLUMNS = ['account', 'domain', 'verdict', 'check', 'check_verdict', 'evidence', 'fix'] as const;

/** One CSV field (RFC 4180: quoted when it holds a comma, a quote or a line break). */
function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** The CSV rows of one result: one per check that is not OK, or one without check when all are. */
export function csvRows(r: AuditResult & { account?: string }): string {
  const base = [r.account ?? '', r.domain, r.verdict];
  const checks = r.checks.filter((c) => c.verdict !== 'OK');
  const rows = checks.length
    ? checks.map((c) => [...base, c.check, c.verdict, c.evidence, c.fix ?? ''])
    : [[...base, '', '', r.error?.message ?? '', '']];
  return rows.map((row) => row.map(csvField).join(',') + '\r\n').join('');
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Domains of a file: one per line (first word), blank lines and # comments skipped. */
export function parseDomainList(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const t = line.replace(/#.*$/, '').trim();
    if (t) out.push(t.split(/[\s,;]+/)[0]);
  }
  return out;
}

/** Exit code for a set of results. */
export function exitCodeFor(results: readonly AuditResult[]): number {
  if (results.some((r) => r.verdict === 'FAIL' || r.verdict === 'INVALID')) return MX_AUDIT_EXIT.FAIL;
  if (results.some((r) => r.verdict === 'UNKNOWN')) return MX_AUDIT_EXIT.UNKNOWN;
  return MX_AUDIT_EXIT.OK;
}

/** The readable form of one result: a header line, then the checks that are not OK. */
export function formatResultText(r: AuditResult, width: number): string {
  const lines = [`${r.domain.padEnd(width)}  ${r.verdict}`];
  if (r.error) lines.push(`    ${r.error.message}`);
  for (const c of r.checks) {
    if (c.verdict === 'OK') continue;
    lines.push(`    ${c.verdict.padEnd(7)} ${c.check}: ${c.evidence}`);
    if (c.fix) lines.push(`            fix: ${c.fix}`);
  }
  return lines.join('\n') + '\n';
}

/** Runs the command; returns the exit code. */
export async function runMxAuditCommand(
  argv: string[],
  loadSettings: (configFile?: string) => MxAuditSettings,
  io: Partial<MxAuditIo> = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const usage = (msg: string) => {
    stderr.write(`failoverctl mx-audit: ${msg}\n\n${MX_AUDIT_USAGE}`);
    return MX_AUDIT_EXIT.USAGE;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        resolver: { type: 'string' },
        json: { type: 'boolean', default: false },
        file: { type: 'string' },
        concurrency: { type: 'string' },
        csv: { type: 'string' },
        server: { type: 'string' },
        'all-accounts': { type: 'boolean', default: false },
        api: { type: 'string' },
        'token-env': { type: 'string' },
        'token-file': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    stdout.write(MX_AUDIT_USAGE);
    return MX_AUDIT_EXIT.OK;
  }
  let settings: MxAuditSettings;
  try {
    settings = { ...loadSettings(values.config) };
  } catch (e) {
    return usage(`cannot load the configuration: ${(e as Error).message}`);
  }
  if (values.resolver !== undefined) {
    try {
      parseServerAddress(values.resolver);
    } catch (e) {
      return usage(`--resolver: ${(e as Error).message}`);
    }
    settings.resolver = values.resolver;
  }
  if (values.concurrency !== undefined) {
    const n = Number(values.concurrency);
    if (!Number.isInteger(n) || n < 1 || n > 4096) return usage('--concurrency must be an integer from 1 to 4096');
    settings.concurrency = n;
  }
  const domains = [...positionals];
  if (values.file !== undefined) {
    try {
      const text = values.file === '-' ? await (io.readStdin ?? (() => readAll(process.stdin)))() : readFileSync(values.file, 'utf8');
      domains.push(...parseDomainList(text));
    } catch (e) {
      return usage(`cannot read ${values.file === '-' ? 'stdin' : values.file}: ${(e as Error).message}`);
    }
  }
  // the mail domains of the inventory's accounts, each with its account
  const accountOf = new Map<number, string>();
  if (values.server !== undefined || values['all-accounts']) {
    if (values.server !== undefined && values['all-accounts']) return usage('--server and --all-accounts exclude each other');
    if (!io.loadInventory) return usage('--server and --all-accounts need the inventory (--config FILE or --api URL)');
    const api = values.api !== undefined || values['token-env'] !== undefined || values['token-file'] !== undefined
      ? { url: values.api, tokenEnv: values['token-env'], tokenFile: values['token-file'] }
      : undefined;
    let inv;
    try {
      inv = await io.loadInventory({ configFile: values.config, api });
    } catch (e) {
      return usage(`cannot load the inventory: ${(e as Error).message}`);
    }
    if (values.server !== undefined && !inv.servers.includes(values.server)) return usage(`--server: no server named ${JSON.stringify(values.server)} in the inventory`);
    for (const a of inv.accounts) {
      if (values.server !== undefined && a.server !== values.server) continue;
      for (const d of a.mailDomains ?? []) {
        accountOf.set(domains.length, a.name);
        domains.push(d);
      }
    }
    if (accountOf.size === 0) {
      stderr.write(`failoverctl mx-audit: no account ${values.server !== undefined ? `of ${values.server} ` : ''}has mail domains (accounts[].mail_domains)\n`);
      if (domains.length === 0) return MX_AUDIT_EXIT.OK;
    }
  }
  if (domains.length === 0) return usage('no domain given (arguments, --file, --server or --all-accounts)');
  let csv: string | undefined;
  if (values.csv !== undefined) {
    csv = `${MX_AUDIT_CSV_COLUMNS.join(',')}\r\n`;
    try {
      writeFileSync(values.csv, csv);
    } catch (e) {
      return usage(`--csv: cannot write ${values.csv}: ${(e as Error).message}`);
    }
  }

  let auditor: MxAuditor;
  try {
    auditor = (io.createAuditor ?? ((s) => createMxAuditor(s)))(settings);
  } catch (e) {
    return usage((e as Error).message);
  }

  // progress bar on a TTY only; results in input order as soon as they are known
  const showProgress = stderr.isTTY === true && domains.length > 1;
  const started = Date.now();
  let barShown = false;
  const clearBar = () => {
    if (barShown) stderr.write('\r\x1b[K');
    barShown = false;
  };
  let lastDraw = 0;
  const drawBar = (done: number, total: number) => {
    const now = Date.now();
    if (done !== total && now - lastDraw < 100) return;
    lastDraw = now;
    const cols = Math.max(20, Math.min(40, (stderr.columns ?? 80) - 45));
    const filled = Math.round((cols * done) / total);
    const rate = done / Math.max(0.001, (now - started) / 1000);
    stderr.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(cols - filled)}] ${done}/${total} ${rate.toFixed(0)} domains/s`);
    barShown = true;
  };
  const label = (i: number) => (accountOf.has(i) ? `${domains[i]} (${accountOf.get(i)})` : String(domains[i]));
  const width = Math.min(40, Math.max(...domains.map((_, i) => label(i).length)));
  if (!values.json) stdout.write(`${'DOMAIN'.padEnd(width)}  VERDICT\n`);
  const pending = new Map<number, AuditResult>();
  let nextOut = 0;
  const withAccount = (r: AuditResult, i: number) => (accountOf.has(i) ? { account: accountOf.get(i)!, ...r } : r);
  const emit = (r: AuditResult, i: number) => {
    if (csv !== undefined) csv += csvRows(withAccount(r, i));
    if (values.json) return `${JSON.stringify(withAccount(r, i))}\n`;
    return formatResultText(accountOf.has(i) ? { ...r, domain: label(i) } : r, width);
  };
  const results = await auditor.auditMany(domains, {
    concurrency: settings.concurrency,
    onResult: (r, i) => {
      pending.set(i, r);
      let chunk = '';
      while (pending.has(nextOut)) {
        chunk += emit(pending.get(nextOut)!, nextOut);
        pending.delete(nextOut++);
      }
      if (chunk) {
        if (showProgress) clearBar();
        stdout.write(chunk);
      }
    },
    onProgress: showProgress ? drawBar : undefined,
  });
  if (showProgress) clearBar();
  if (csv !== undefined && values.csv !== undefined) {
    try {
      writeFileSync(values.csv, csv);
    } catch (e) {
      stderr.write(`failoverctl mx-audit: cannot write ${values.csv}: ${(e as Error).message}\n`);
      return MX_AUDIT_EXIT.FAIL;
    }
  }
  if (!values.json && domains.length > 1) {
    const counts: Record<string, number> = {};
    for (const r of results) counts[r.verdict] = (counts[r.verdict] ?? 0) + 1;
    const secs = (Date.now() - started) / 1000;
    stderr.write(`${results.length} domains in ${secs.toFixed(1)} s: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
  }
  return exitCodeFor(results);
}

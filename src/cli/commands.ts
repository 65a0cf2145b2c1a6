/**
 * `failoverctl cutover|cutback|status`: thin clients of the HTTP API for reinstall jobs and
 * operators. Exit codes: 0 ok, 1 the operation or the API call failed, 2 usage.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ApiClientError, createApiClient, type ApiClient } from './api-client.js';

/** Thrown for a command line that cannot be run; exit code 2. */
export class UsageError extends Error {}

export const CLIENT_HELP = {
  cutover: `Usage: failoverctl cutover SERVER --transit TRANSIT [--wait] [options]

Cuts SERVER over to TRANSIT: DNS answers carry the transit's addresses before the command
returns; routing follows. With --wait, waits for routing to finish (a live progress line on a
terminal) and exits 1 when the operation failed. Mail domains of the server's accounts that the
migration's last MX audit found still sending their mail to SERVER are warned about on stderr.
`,
  cutback: `Usage: failoverctl cutback SERVER [--wait] [options]

Routes SERVER's addresses back to it, then lifts the DNS overlay. With --wait, waits for it.
`,
  status: `Usage: failoverctl status [SERVER] [options]

Shows where each address of SERVER is routed, whether a DNS overlay is active, the last
operations, and its migration (with the MX audit of its accounts' mail domains). Without
SERVER, one line per server.
`,
};

const COMMON_HELP = `
Options:
  --api URL           the controller's API (default: $FAILOVER_API_URL or http://127.0.0.1:8080)
  --token-env NAME    environment variable holding the bearer token (default FAILOVER_API_TOKEN)
  --token-file FILE   read the token from FILE instead (e.g. the generated api-token file)
  --json              print the API's JSON instead of text
  -h, --help          show this help
`;

const WAIT_HELP = `  --wait              wait until the operation finishes
  --timeout SECONDS   with --wait: give up waiting after this long (default 900); the operation goes on
`;

export function clientHelp(cmd: keyof typeof CLIENT_HELP): string {
  return CLIENT_HELP[cmd] + COMMON_HELP + (cmd === 'status' ? '' : WAIT_HELP) + '\nExit codes: 0 ok, 1 failed, 2 usage error.\n';
}

interface Op {
  id: string; server: string; transit: string; direction: string; state: string; attempts: number;
  durations_ms: { dns_switch: number | null; routing: number | null };
  addresses: { address: string; routed_to: string | null; result: string; error: string | null; transit_address: string }[];
  error: { code: string; message: string } | null;
  timestamps: Record<string, string | null>;
  /** The cutover's warnings (domains still sending their mail to the server). */
  warnings?: { code: string; message: string }[];
}

interface Status {
  name: string;
  addresses: { address: string; routed_to: string | null; dns_answer: string; routing?: { state: string; reason: string | null; drift_since: string | null } | null }[];
  overlay: { active: boolean; transit?: string; since?: string; operation?: string };
  operations: Op[];
}

/** An API client from --api, --token-env, --token-file (the defaults: $FAILOVER_API_URL, $FAILOVER_API_TOKEN); UsageError when they cannot be used. */
export function client(values: { api?: string; 'token-env'?: string; 'token-file'?: string }): ApiClient {
  const api = values.api ?? process.env.FAILOVER_API_URL ?? 'http://127.0.0.1:8080';
  if (!/^https?:\/\/[^\s/]+/.test(api)) throw new UsageError(`--api ${JSON.stringify(api)} is not an http(s) URL`);
  let token: string | undefined;
  if (values['token-file']) {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${values['token-file']}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else {
    const name = values['token-env'] ?? 'FAILOVER_API_TOKEN';
    token = process.env[name];
    if (!token) throw new UsageError(`the environment variable ${name} (the API token) is not set; or use --token-file FILE`);
  }
  return createApiClient(api, token);
}

const COMMON_OPTIONS = {
  api: { type: 'string' },
  'token-env': { type: 'string' },
  'token-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function fmtMs(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function describeOp(op: Op): string {
  const lines = [
    `${op.direction} ${op.server} ${op.direction === 'cutover' ? '->' : '<-'} ${op.transit}: ${op.state}  (${op.id})`,
    `  DNS switched in ${fmtMs(op.durations_ms.dns_switch)}, routes applied in ${fmtMs(op.durations_ms.routing)}, attempts ${op.attempts}`,
  ];
  for (const a of op.addresses) {
    lines.push(`  ${a.address.padEnd(40)} ${a.result.padEnd(8)} ${a.routed_to ? 'routed to ' + a.routed_to : ''}${a.error ? '  ' + a.error : ''}`);
  }
  if (op.error) lines.push(`  error ${op.error.code}: ${op.error.message}`);
  return lines.join('\n');
}

function progress(op: Op, elapsedMs: number): string {
  const done = op.addresses.filter((a) => a.result !== 'pending').length;
  return `${op.direction} ${op.server} -> ${op.transit}: ${op.state}, DNS switched in ${fmtMs(op.durations_ms.dns_switch)}, ${done}/${op.addresses.length} addresses done, ${(elapsedMs / 1000).toFixed(1)} s`;
}

async function waitForOp(api: ApiClient, op: Op, timeoutS: number): Promise<Op> {
  const start = Date.now();
  const tty = process.stderr.isTTY;
  let cur = op;
  while (cur.state === 'running' || cur.state === 'pending') {
    if (tty) process.stderr.write(`\r\x1b[2K${progress(cur, Date.now() - start)}`);
    if (Date.now() - start > timeoutS * 1000) break;
    await new Promise((r) => setTimeout(r, tty ? 200 : 500));
    cur = (await api.request<Op>('GET', `/v1/operations/${encodeURIComponent(cur.id)}`)).body;
  }
  if (tty) process.stderr.write(`\r\x1b[2K`);
  return cur;
}

/** cutover / cutback. */
export async function runOperationCommand(cmd: 'cutover' | 'cutback', argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, transit: { type: 'string' }, wait: { type: 'boolean' }, timeout: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(clientHelp(cmd));
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`${cmd}: exactly one SERVER is required`);
  if (cmd === 'cutover' && !values.transit) throw new UsageError('cutover: --transit TRANSIT is required');
  if (cmd === 'cutback' && values.transit) throw new UsageError('cutback: --transit is not an option of cutback');
  const timeout = values.timeout === undefined ? 900 : Number(values.timeout);
  if (!(timeout > 0)) throw new UsageError(`--timeout ${JSON.stringify(values.timeout)} is not a number of seconds`);
  const api = client(values);
  const path = `/v1/servers/${encodeURIComponent(positionals[0])}/${cmd}`;
  try {
    let op = (await api.request<Op>('POST', path, cmd === 'cutover' ? { transit: values.transit } : {})).body;
    if (values.wait) op = await waitForOp(api, op, timeout);
    process.stdout.write(values.json ? JSON.stringify(op) + '\n' : describeOp(op) + '\n');
    // a cutover is never refused for a customer's DNS: support is told
    if (!values.json) for (const w of op.warnings ?? []) process.stderr.write(`failoverctl: warning: ${w.message}\n`);
    return op.state === 'failed' ? 1 : 0;
  } catch (err) {
    return reportApiError(err);
  }
}

/** status [SERVER]. */
export async function runStatusCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: COMMON_OPTIONS, allowPositionals: true, strict: true });
  if (values.help) {
    process.stdout.write(clientHelp('status'));
    return 0;
  }
  if (positionals.length > 1) throw new UsageError('status: at most one SERVER');
  const api = client(values);
  try {
    if (positionals.length === 1) {
      const name = encodeURIComponent(positionals[0]);
      const s = (await api.request<Status>('GET', `/v1/servers/${name}`)).body;
      let migration: Migration | null = null;
      try {
        migration = (await api.request<Migration>('GET', `/v1/servers/${name}/migration`)).body;
      } catch (err) {
        if (!(err instanceof ApiClientError && err.status === 404)) throw err;
      }
      if (values.json) process.stdout.write(JSON.stringify({ ...s, migration }) + '\n');
      else process.stdout.write(describeStatus(s) + (migration ? '\n' + describeMigration(migration) : '') + '\n');
    } else {
      const all = (await api.request<{ servers: Status[] }>('GET', '/v1/servers')).body;
      if (values.json) process.stdout.write(JSON.stringify(all) + '\n');
      else {
        for (const s of all.servers) {
          const last = s.operations[0];
          process.stdout.write(`${s.name.padEnd(24)} ${s.overlay.active ? `cut over to ${s.overlay.transit}` : 'home'}${last ? `  last: ${last.direction} ${last.state}` : ''}\n`);
        }
      }
    }
    return 0;
  } catch (err) {
    return reportApiError(err);
  }
}

function describeStatus(s: Status): string {
  const lines = [
    s.overlay.active
      ? `${s.name}: cut over to ${s.overlay.transit} since ${s.overlay.since} (DNS overlay active, operation ${s.overlay.operation})`
      : `${s.name}: home (no DNS overlay)`,
    '  address                                  routed to            DNS answers                              routing',
  ];
  for (const a of s.addresses) {
    const r = a.routing;
    const routing = r ? `${r.state}${r.state === 'drifted' || r.state === 'unknown' || r.state === 'held' ? ` (${r.reason}${r.drift_since ? `, since ${r.drift_since}` : ''})` : ''}` : '';
    lines.push(`  ${a.address.padEnd(40)} ${(a.routed_to ?? 'not moved').padEnd(20)} ${a.dns_answer.padEnd(40)} ${routing}`.trimEnd());
  }
  if (s.operations.length > 0) {
    lines.push('  last operations:');
    for (const op of s.operations.slice(0, 5)) {
      lines.push(`    ${op.timestamps.accepted}  ${op.direction.padEnd(8)} ${op.state.padEnd(10)} dns ${fmtMs(op.durations_ms.dns_switch)}, routing ${fmtMs(op.durations_ms.routing)}  ${op.id}${op.error ? '  ' + op.error.message : ''}`);
    }
  }
  return lines.join('\n');
}

interface Migration {
  state: string; transit: string | null; queue_position: number | null; assigned_at: string | null; free_until: string | null;
  reinstall_at: string | null; profile: string;
  billing: { currency: string; billable_days: number; amount: string } | null;
  ttl_plan: { lower_from: string; cache_safe_at: string; lowered_ttl: number } | null;
  accounts: { name: string; location: string; moves: { direction: string; downtime_ms: number | null; completed_at: string | null }[] }[];
  mx_audit?: MxAudit | null;
  allowed: string[];
}

interface MxAudit {
  state: string; trigger: string; started_at: string; reason: string | null; audited_at: string | null;
  counts: Record<string, number>;
  domains: { account: string; domain: string; verdict: string; checks: { check: string; verdict: string; evidence: string; fix: string | null }[] }[];
}

const TRIGGER: Record<string, string> = { request: 'the migration request', cutover: 'the cutover request' };

/** A migration's MX audit: when, its counts, and each domain that is not fine with the records to fix. */
export function describeMxAudit(a: MxAudit): string[] {
  const counts = Object.entries(a.counts).filter(([, n]) => n > 0).map(([v, n]) => `${n} ${v}`).join(', ');
  const latest = a.state === 'running' ? `running since ${a.started_at} (at ${TRIGGER[a.trigger] ?? a.trigger})`
    : a.state === 'missing' ? `missing: the audit at ${TRIGGER[a.trigger] ?? a.trigger} (${a.started_at}) gave no result: ${a.reason}`
      : `at ${TRIGGER[a.trigger] ?? a.trigger}`;
  const lines = [`    MX audit of the mail domains: ${a.audited_at ? `audited ${a.audited_at}: ${counts || 'no domain'}` : 'no result yet'}; ${latest}`];
  for (const d of a.domains) {
    if (d.verdict === 'OK' || d.verdict === 'INFO') continue;
    lines.push(`      ${`${d.domain} (${d.account})`.padEnd(40)} ${d.verdict}`);
    for (const c of d.checks) {
      if (c.verdict === 'OK' || c.verdict === 'INFO') continue;
      lines.push(`        ${c.verdict.padEnd(7)} ${c.check}: ${c.fix ? `fix: ${c.fix}` : c.evidence}`);
    }
  }
  return lines;
}

const LOCATION: Record<string, string> = { home: 'home', transit: 'on the transit', moving_to_transit: 'moving to the transit', moving_home: 'moving home' };

/** A migration as a person reads it: state, transit, accounts and where each is, free until, amount so far. */
export function describeMigration(m: Migration): string {
  const lines = [`  migration: ${m.state.replace(/_/g, ' ')}${m.transit ? `, transit ${m.transit}` : ''}${m.queue_position ? `, position ${m.queue_position} in the queue for ${m.profile}` : ''}`];
  if (m.assigned_at) lines.push(`    transit assigned ${m.assigned_at}, free until ${m.free_until}`);
  if (m.billing) lines.push(`    billed so far: ${m.billing.amount} ${m.billing.currency} (${m.billing.billable_days} billable day${m.billing.billable_days === 1 ? '' : 's'})`);
  else if (m.assigned_at) lines.push('    billed so far: nothing (no monthly_price for this server)');
  if (m.reinstall_at) lines.push(`    reinstall planned ${m.reinstall_at}${m.ttl_plan ? `; TTLs lowered to ${m.ttl_plan.lowered_ttl} s from ${m.ttl_plan.lower_from}, cutover cache-safe from ${m.ttl_plan.cache_safe_at}` : ''}`);
  if (m.accounts.length > 0) {
    lines.push('    accounts:');
    for (const a of m.accounts) {
      const last = a.moves.at(-1);
      lines.push(`      ${a.name.padEnd(24)} ${(LOCATION[a.location] ?? a.location).padEnd(22)}${last?.downtime_ms !== null && last?.downtime_ms !== undefined ? ` last move ${fmtMs(last.downtime_ms)} down` : ''}`);
    }
  }
  if (m.mx_audit) lines.push(...describeMxAudit(m.mx_audit));
  if (m.allowed.length > 0) lines.push(`    next: ${m.allowed.join(', ')}`);
  return lines.join('\n');
}

function reportApiError(err: unknown): number {
  if (err instanceof ApiClientError) {
    process.stderr.write(`failoverctl: ${err.code}${err.status ? ` (HTTP ${err.status})` : ''}: ${err.message}\n`);
    return 1;
  }
  throw err;
}

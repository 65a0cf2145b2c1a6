/**
 * Runs batches of queries with `dig` (Debian package bind9-dnsutils) and parses its `+yaml`
 * output, so that tests can query any DNS server with a client independent of our code.
 *
 * One dig process per batch (`dig -f FILE`). The transport / EDNS options are given on the
 * command line for the whole batch, because dig 9.18 ignores some per-line options in batch
 * mode (+tcp on a batch line is silently ignored). Each batch line is just "QNAME QTYPE".
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

export const DIG_BIN = process.env.DIG_BIN ?? '/usr/bin/dig';

export function assertDigInstalled(): void {
  if (!existsSync(DIG_BIN)) {
    throw new Error(`dig is not installed (${DIG_BIN} missing): install the Debian package "bind9-dnsutils"`);
  }
}

export function digVersion(): string {
  assertDigInstalled();
  const r = spawnSync(DIG_BIN, ['-v'], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`.trim();
}

export interface DigQuery {
  qname: string;
  qtype: string;
}

export interface DigRR {
  owner: string;
  ttl: number;
  cls: string;
  type: string;
  rdata: string;
}

export interface DigOpt {
  version: number;
  flags: string[];
  udp: number;
  /** Other OPT fields as printed by dig (COOKIE, EDE, NSID...). */
  options: Record<string, unknown>;
}

export interface DigAnswer {
  ok: true;
  rcode: string;
  flags: string[];
  protocol: string;
  size: number;
  question: string[];
  answer: DigRR[];
  authority: DigRR[];
  additional: DigRR[];
  opt: DigOpt | null;
}

export interface DigFailure {
  ok: false;
  error: string;
}

export type DigResult = DigAnswer | DigFailure;

export interface DigBatchOptions {
  server?: string;
  port: number;
  /** dig options for the whole batch, e.g. ["+noedns"], ["+bufsize=512", "+ignore"], ["+tcp"]. */
  opts?: string[];
  /** Default ["+tries=1", "+time=2"]. */
  timeouts?: string[];
  /** Kills dig when aborted (then digBatch rejects). */
  signal?: AbortSignal;
}

/** Splits a presentation-format RR as printed by dig: owner ttl class type rdata. */
export function parseRR(line: string): DigRR {
  const m = /^(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(.*)$/.exec(line.trim());
  if (!m) throw new Error(`cannot parse RR line from dig: ${line}`);
  return { owner: m[1], ttl: Number(m[2]), cls: m[3], type: m[4], rdata: m[5].trim() };
}

function rrs(x: unknown): DigRR[] {
  if (!Array.isArray(x)) return [];
  return x.map((l) => parseRR(String(l)));
}

function toResult(entry: unknown): DigResult {
  const e = entry as { type?: string; message?: unknown };
  if (e?.type === 'DIG_ERROR') return { ok: false, error: String(e.message ?? 'dig error').trim() };
  if (e?.type !== 'MESSAGE') return { ok: false, error: `unexpected dig output entry ${JSON.stringify(entry)}` };
  const msg = e.message as Record<string, unknown>;
  const d = (msg.response_message_data ?? {}) as Record<string, unknown>;
  const flagsRaw = d.flags == null ? '' : String(d.flags);
  const optRaw = (d.OPT_PSEUDOSECTION as Record<string, unknown> | undefined)?.EDNS as
    | Record<string, unknown>
    | undefined;
  let opt: DigOpt | null = null;
  if (optRaw) {
    const { version, flags, udp, ...options } = optRaw;
    opt = {
      version: Number(version),
      flags: flags == null ? [] : String(flags).split(/\s+/).filter(Boolean),
      udp: Number(udp),
      options,
    };
  }
  return {
    ok: true,
    rcode: String(d.status),
    flags: flagsRaw.split(/\s+/).filter(Boolean).sort(),
    protocol: String(msg.socket_protocol ?? ''),
    size: parseInt(String(msg.message_size ?? '0'), 10),
    question: Array.isArray(d.QUESTION_SECTION) ? d.QUESTION_SECTION.map(String) : [],
    answer: rrs(d.ANSWER_SECTION),
    authority: rrs(d.AUTHORITY_SECTION),
    additional: rrs(d.ADDITIONAL_SECTION),
    opt,
  };
}

/** Parses the YAML that `dig +yaml` prints (a list of MESSAGE / DIG_ERROR entries). */
export function parseDigYaml(text: string): DigResult[] {
  // dig may print ";; Warning ..." comment lines outside the YAML structure: drop them
  const clean = text
    .split('\n')
    .filter((l) => !l.startsWith(';'))
    .join('\n');
  const doc = parse(clean, { schema: 'yaml-1.1', uniqueKeys: false, logLevel: 'silent' }) as unknown;
  if (doc == null) return [];
  if (!Array.isArray(doc)) throw new Error(`dig +yaml output is not a list:\n${text.slice(0, 2000)}`);
  return doc.map(toResult);
}

/**
 * Sends the queries with one dig process and returns one result per query, in order. A query
 * that got no answer (timeout, connection refused) yields { ok: false }.
 */
export async function digBatch(queries: DigQuery[], o: DigBatchOptions): Promise<DigResult[]> {
  assertDigInstalled();
  if (queries.length === 0) return [];
  for (const qq of queries) {
    if (!/^[A-Za-z0-9_.*/-]+$/.test(qq.qname) || /^[-+]/.test(qq.qname) || !/^[A-Za-z0-9]+$/.test(qq.qtype)) {
      throw new Error(`query not usable in a dig batch file: ${qq.qname} ${qq.qtype}`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'fc-dig-'));
  try {
    const file = join(dir, 'queries.txt');
    writeFileSync(file, queries.map((qq) => `${qq.qname} ${qq.qtype}\n`).join(''));
    const args = [
      `@${o.server ?? '127.0.0.1'}`,
      '-p',
      String(o.port),
      '+yaml',
      '+noidnin',
      '+noidnout',
      ...(o.timeouts ?? ['+tries=1', '+time=2']),
      ...(o.opts ?? []),
      '-f',
      file,
    ];
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string; code: number | null }>(
      (res, rej) => {
        if (o.signal?.aborted) return rej(new Error('aborted'));
        const p = spawn(DIG_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        const onAbort = () => p.kill('SIGKILL');
        o.signal?.addEventListener('abort', onAbort, { once: true });
        p.on('close', () => o.signal?.removeEventListener('abort', onAbort));
        let so = '';
        let se = '';
        p.stdout.on('data', (d) => (so += d));
        p.stderr.on('data', (d) => (se += d));
        p.on('error', rej);
        p.on('close', (code) =>
          o.signal?.aborted ? rej(new Error('aborted')) : res({ stdout: so, stderr: se, code }),
        );
      },
    );
    const results = parseDigYaml(stdout);
    if (results.length !== queries.length) {
      throw new Error(
        `dig printed ${results.length} results for ${queries.length} queries (args ${args.join(' ')})\n` +
          `stderr: ${stderr.slice(0, 2000)}`,
      );
    }
    // sanity: each answer must be for the query at the same position
    results.forEach((r, i) => {
      if (!r.ok || r.question.length === 0) return;
      const [qn, , qt] = r.question[0].split(/\s+/);
      const want = queries[i];
      if (qn.toLowerCase() !== `${want.qname.replace(/\.$/, '')}.`.toLowerCase() || qt !== want.qtype.toUpperCase()) {
        throw new Error(`dig result ${i} is for "${r.question[0]}", expected ${want.qname} ${want.qtype}`);
      }
    });
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

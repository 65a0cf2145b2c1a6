/**
 * The configuration: one YAML file, validated as a whole at start. Every problem is reported
 * with its path, its line and the reason (`dns.listen[1]: "1.2.3.4" is not host:port`);
 * an invalid file starts nothing. The result is frozen.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Address4, Address6 } from 'ip-address';
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';

/** An IP literal and port to bind. */
export interface HostPort {
  host: string;
  port: number;
  family: 4 | 6;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** The validated configuration. Paths are absolute. */
export interface Config {
  readonly file: string;
  readonly dns: {
    readonly listen: readonly HostPort[];
    readonly zones: string;
    readonly tcpIdleTimeoutMs: number;
    readonly tcpMaxConnections: number;
    readonly cacheEntries: number;
  };
  readonly api: {
    readonly listen: HostPort;
    readonly tokenEnv: string;
    /** Where a generated token is written when the env var is unset. */
    readonly tokenFile: string;
  };
  readonly log: { readonly level: LogLevel };
}

/** One problem: `path: message` with the line when known. */
export interface ConfigProblem {
  path: string;
  message: string;
  line?: number;
}

/** An invalid configuration; `problems` lists every problem found. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly file: string, readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${file}${p.line ? `:${p.line}` : ''}: ${p.path ? p.path + ': ' : ''}${p.message}`).join('\n'));
  }
}

type Json = unknown;

/** Validation context: collects problems with their position in the file. */
class Checker {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly doc: Document, private readonly lines: LineCounter) {}

  line(path: (string | number)[]): number | undefined {
    const node = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    if (!range) return path.length > 0 ? this.line(path.slice(0, -1)) : undefined;
    return this.lines.linePos(range[0]).line;
  }

  fail(path: (string | number)[], message: string): void {
    this.problems.push({ path: fmtPath(path), message, line: this.line(path) });
  }

  /** An object with only the given keys; unknown keys are problems. */
  object(path: (string | number)[], v: Json, keys: string[], required = true): Record<string, Json> | undefined {
    if (v === undefined || v === null) {
      if (required) this.fail(path, 'is required');
      return undefined;
    }
    if (typeof v !== 'object' || Array.isArray(v)) {
      this.fail(path, `must be a mapping, not ${describe(v)}`);
      return undefined;
    }
    for (const k of Object.keys(v)) {
      if (!keys.includes(k)) this.fail([...path, k], `unknown key (allowed: ${keys.join(', ')})`);
    }
    return v as Record<string, Json>;
  }

  string(path: (string | number)[], v: Json, dflt?: string): string | undefined {
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(path, 'is required');
      return dflt;
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.fail(path, `must be a non-empty string, not ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  integer(path: (string | number)[], v: Json, dflt: number, min: number, max: number): number {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(path, `must be an integer from ${min} to ${max}, not ${describe(v)}`);
      return dflt;
    }
    return v;
  }

  hostPort(path: (string | number)[], v: Json): HostPort | undefined {
    if (typeof v !== 'string') {
      this.fail(path, `must be a "host:port" string, not ${describe(v)}`);
      return undefined;
    }
    const hp = parseHostPort(v);
    if (typeof hp === 'string') {
      this.fail(path, hp);
      return undefined;
    }
    return hp;
  }
}

function fmtPath(path: (string | number)[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${p}` : p;
  return s;
}

function describe(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

/**
 * Parses "a.b.c.d:port" or "[v6]:port" (IP literals only). Returns the address or a message.
 */
export function parseHostPort(text: string): HostPort | string {
  const m = /^\[([^\]]+)\]:([0-9]+)$/.exec(text) ?? /^([^:[\]]+):([0-9]+)$/.exec(text);
  if (!m) return `${JSON.stringify(text)} is not host:port (IPv6 as [addr]:port)`;
  const port = Number(m[2]);
  if (!(port >= 1 && port <= 65535)) return `${JSON.stringify(text)}: port must be from 1 to 65535`;
  const host = m[1];
  if (text.startsWith('[')) {
    if (!Address6.isValid(host) || host.includes('%')) return `${JSON.stringify(text)}: ${JSON.stringify(host)} is not an IPv6 address`;
    return { host: new Address6(host).correctForm(), port, family: 6 };
  }
  if (!Address4.isValid(host) || !/^[0-9.]+$/.test(host)) return `${JSON.stringify(text)}: ${JSON.stringify(host)} is not an IPv4 address (host names are not accepted)`;
  return { host: new Address4(host).correctForm(), port, family: 4 };
}

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** Validates a configuration text. `file` locates relative paths and names the file in messages. */
export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({
      path: '', message: `YAML: ${e.message.split('\n')[0]}`, line: e.linePos?.[0]?.line,
    })));
  }
  if (doc.contents !== null && !isMap(doc.contents)) {
    throw new ConfigError(file, [{ path: '', message: 'the top level must be a mapping', line: 1 }]);
  }
  const c = new Checker(doc, lines);
  const root = (doc.toJS() ?? {}) as Record<string, Json>;
  const base = dirname(resolve(file));
  const top = c.object([], root, ['dns', 'api', 'log'])!;

  const dns = c.object(['dns'], top.dns, ['listen', 'zones', 'tcp_idle_timeout_ms', 'tcp_max_connections', 'cache_entries']);
  const listen: HostPort[] = [];
  if (dns) {
    const l = dns.listen;
    if (!Array.isArray(l) || l.length === 0) {
      c.fail(['dns', 'listen'], l === undefined ? 'is required (a list of "host:port")' : 'must be a non-empty list of "host:port"');
    } else {
      const seen = new Map<string, number>();
      l.forEach((v, i) => {
        const hp = c.hostPort(['dns', 'listen', i], v);
        if (!hp) return;
        const k = `${hp.host}|${hp.port}`;
        if (seen.has(k)) c.fail(['dns', 'listen', i], `${JSON.stringify(v)} is already listed at dns.listen[${seen.get(k)}]`);
        seen.set(k, i);
        listen.push(hp);
      });
    }
  }
  const zones = dns ? c.string(['dns', 'zones'], dns.zones) : undefined;
  const tcpIdle = c.integer(['dns', 'tcp_idle_timeout_ms'], dns?.tcp_idle_timeout_ms, 10_000, 100, 600_000);
  const tcpMax = c.integer(['dns', 'tcp_max_connections'], dns?.tcp_max_connections, 1000, 1, 100_000);
  const cacheEntries = c.integer(['dns', 'cache_entries'], dns?.cache_entries, 200_000, 1000, 10_000_000);

  const api = c.object(['api'], top.api, ['listen', 'token_env', 'token_file']);
  let apiListen: HostPort | undefined;
  if (api) {
    if (api.listen === undefined) c.fail(['api', 'listen'], 'is required');
    else apiListen = c.hostPort(['api', 'listen'], api.listen);
  }
  const tokenEnv = api ? c.string(['api', 'token_env'], api.token_env, 'FAILOVER_API_TOKEN') : undefined;
  if (tokenEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(tokenEnv)) c.fail(['api', 'token_env'], `${JSON.stringify(tokenEnv)} is not an environment variable name`);
  const tokenFile = api ? c.string(['api', 'token_file'], api.token_file, 'api-token') : undefined;

  const log = c.object(['log'], top.log, ['level'], false);
  let level: LogLevel = 'info';
  if (log?.level !== undefined) {
    if (LOG_LEVELS.includes(log.level as LogLevel)) level = log.level as LogLevel;
    else c.fail(['log', 'level'], `must be one of ${LOG_LEVELS.join(', ')}, not ${describe(log.level)}`);
  }

  if (c.problems.length > 0) throw new ConfigError(file, c.problems);
  return deepFreeze({
    file: resolve(file),
    dns: { listen, zones: resolve(base, zones!), tcpIdleTimeoutMs: tcpIdle, tcpMaxConnections: tcpMax, cacheEntries },
    api: { listen: apiListen!, tokenEnv: tokenEnv!, tokenFile: resolve(base, tokenFile!) },
    log: { level },
  });
}

/** Reads and validates a configuration file. Throws ConfigError. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  return parseConfig(text, file);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}


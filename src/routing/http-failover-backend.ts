/**
 * The `http` routing backend: a provider's failover-IP API in the shape of Hetzner Robot's
 * (https://robot.hetzner.com/doc/webservice/en.html#failover).
 *
 * - GET  /failover/{failover-ip} answers {"failover":{ip, netmask, server_ip, server_ipv6_net,
 *   server_number, active_server_ip}}; active_server_ip is the main IP (IPv4) or the main IPv6
 *   net address of the server the failover IP/net is routed to now (null when unrouted).
 * - GET  /failover answers the list of them all: [{"failover":{…the same fields…}}, …], and
 *   404 NOT_FOUND when the account has none. current() reads only this list: one request per call.
 * - POST /failover/{failover-ip} with the form field active_server_ip routes it there; the call
 *   returns once the switch is done. IPv6 failover nets are addressed by their net address, and
 *   their active_server_ip is the net address of the destination server's main IPv6 net.
 * - Errors are {"error":{status, code, message}}: 400 INVALID_INPUT, 404 NOT_FOUND,
 *   404 FAILOVER_NEW_SERVER_NOT_FOUND, 409 FAILOVER_ALREADY_ROUTED, 409 FAILOVER_LOCKED,
 *   500 FAILOVER_FAILED, 500 FAILOVER_NOT_COMPLETE; 401 on bad credentials (three failures block
 *   the client IP for 10 minutes), 403 RATE_LIMIT_EXCEEDED, 503 during maintenance.
 *
 * The backend never retries itself: it throws RouteError with `retryable` set, and withRetry
 * (retrying-backend.ts) decides. Credentials go only into the Authorization header: never into a
 * URL, a message or a log. Text from outside (provider answers, transport errors) may echo them:
 * every error leaving apply()/current() is scrubbed of each form they can take (see
 * credentialForms: the header value, base64 in any alignment, `user:password`, the password and
 * the user alone; percent-, form-, JSON- and hex-encoded).
 */
import { addressBytes, parseAddress, parsePrefix } from '../core/addresses.js';
import { RouteError, type ApplyResult, type CurrentRoute, type DesiredRoute, type RouteBackend } from '../core/ports.js';

/** Options of HttpFailoverBackend. */
export interface HttpFailoverBackendOptions {
  /** API root, e.g. https://robot-ws.your-server.de (no credentials in it). */
  baseUrl: string;
  /** Webservice user (HTTP basic auth); read from the environment by the caller. */
  username: string;
  /** Webservice password (HTTP basic auth); read from the environment by the caller. Never logged. */
  password: string;
  /**
   * Host name → that host's main IP: the active_server_ip sent for IPv4 failover IPs. A value that
   * is an IPv6 net address (with or without /64) serves IPv6 failover nets of a host without IPv4.
   */
  serverIps: Record<string, string>;
  /**
   * Host name → that host's main IPv6 net (e.g. 2a01:4f8:0:5176::/64): the active_server_ip sent
   * for IPv6 failover nets, as the provider wants the subnet address there, not the IPv4 main IP.
   */
  serverIpv6Nets?: Record<string, string>;
  /** Per HTTP call (AbortSignal.timeout); default 10000. A call that hangs fails retryable. */
  timeoutMs?: number;
  /** Injected fetch (tests); default globalThis.fetch. */
  fetch?: typeof fetch;
}

/** One failover IP/net as the provider describes it. */
export interface FailoverRecord {
  ip: string;
  netmask: string;
  server_ip: string;
  server_ipv6_net?: string;
  server_number: number;
  active_server_ip: string | null;
}

/** A service address resolved to the failover IP/net that carries it. */
interface FailoverKey {
  /** As the caller gave it (returned as-is in CurrentRoute). */
  address: string;
  family: 4 | 6;
  /** The failover net address that goes into the URL (validated, canonical). */
  net: string;
}

/**
 * Resolves an address to the failover IP/net it belongs to. IPv4 defaults to /32 (a failover IP),
 * IPv6 to /64 (the size of a failover net); an explicit prefix is honoured. Returns null when
 * `text` is not an IP address (or has a zone id, spaces, or anything that is not an address).
 */
export function failoverNetOf(text: string): { family: 4 | 6; net: string } | null {
  const p = parsePrefix(text, { defaultLength: { 4: 32, 6: 64 } });
  return typeof p === 'string' ? null : { family: p.family, net: p.address };
}

/** The canonical form of a host IP or IPv6 net address as the provider reports it, or null. */
function canonicalHostIp(text: string): string | null {
  const p = text.includes('/') ? parsePrefix(text, { family: 6 }) : parseAddress(text);
  return typeof p === 'string' ? null : p.address;
}

/**
 * The key of an entry of GET /failover: its ip masked by its netmask (dotted IPv4 or IPv6 mask), in
 * the canonical form failoverNetOf gives an address asked for, so both meet as apply() addresses
 * them. A netmask missing, unreadable or not contiguous leaves the ip alone. Null: ip is no address.
 */
function listedNetOf(ip: string, netmask: unknown): string | null {
  const a = parseAddress(ip);
  if (typeof a === 'string') return null;
  const m = typeof netmask === 'string' ? parseAddress(netmask) : null;
  let length = a.family === 4 ? 32 : 128;
  if (m !== null && typeof m !== 'string' && m.family === a.family) {
    const bits = [...addressBytes(m)].map((b) => b.toString(2).padStart(8, '0')).join('');
    if (/^1*0*$/.test(bits)) length = bits.indexOf('0') < 0 ? bits.length : bits.indexOf('0');
  }
  const p = parsePrefix(`${a.address}/${length}`);
  return typeof p === 'string' ? null : p.address;
}

/** The routing backend for a Robot-style failover-IP API. */
export class HttpFailoverBackend implements RouteBackend {
  readonly name = 'http';
  private readonly baseUrl: string;
  private readonly authHeader: string;
  /** Replaces every form of the credentials in a text by `***`. */
  private readonly redact: (text: string) => string;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;
  /** host → IPv4 main IP / IPv6 net address (canonical). */
  private readonly v4Targets = new Map<string, string>();
  private readonly v6Targets = new Map<string, string>();
  /** canonical active_server_ip → host. */
  private readonly hostByIp = new Map<string, string>();

  constructor(opts: HttpFailoverBackendOptions) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new TypeError('http backend: baseUrl is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('http backend: baseUrl must be http(s)');
    if (url.username || url.password) throw new TypeError('http backend: baseUrl must not carry credentials; pass username and password');
    if (url.search || url.hash) throw new TypeError('http backend: baseUrl must not have a query or fragment');
    this.baseUrl = url.href.replace(/\/+$/, '');
    if (!opts.username || !opts.password) throw new TypeError('http backend: username and password are required');
    this.redact = credentialRedactor(opts.username, opts.password);
    this.authHeader = `Basic ${Buffer.from(`${opts.username}:${opts.password}`, 'utf8').toString('base64')}`;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new TypeError('http backend: timeoutMs must be a positive number');
    this.fetchFn = opts.fetch ?? globalThis.fetch;

    const add = (host: string, value: string, field: string, v6Only: boolean) => {
      const ip = canonicalHostIp(value);
      if (ip === null || (v6Only && !ip.includes(':'))) {
        throw new TypeError(`http backend: ${field}[${JSON.stringify(host)}] = ${JSON.stringify(value)} is not ${v6Only ? 'an IPv6 net' : 'an IP address'}`);
      }
      (ip.includes(':') ? this.v6Targets : this.v4Targets).set(host, ip);
      const other = this.hostByIp.get(ip);
      if (other !== undefined && other !== host) throw new TypeError(`http backend: ${ip} is configured for both ${other} and ${host}`);
      this.hostByIp.set(ip, host);
    };
    for (const [host, ip] of Object.entries(opts.serverIps)) add(host, ip, 'serverIps', false);
    for (const [host, net] of Object.entries(opts.serverIpv6Nets ?? {})) add(host, net, 'serverIpv6Nets', true);
  }

  /** Routes every address to its `to` host: GET first, POST only where it differs. */
  async apply(desired: DesiredRoute[]): Promise<ApplyResult> {
    try {
      return await this.applyPlan(desired);
    } catch (err) {
      throw this.scrub(err);
    }
  }

  /**
   * Reads where each address is routed now with ONE request, `GET /failover` (the account's list),
   * whatever the number of addresses (none: no request). Each address is looked up by its failover
   * IP/net, keyed as apply() keys it (failoverNetOf). `to` is null for unrouted or routed to a host
   * not configured. An address the list does not hold (or the provider's 404 NOT_FOUND: the account
   * has no failover IPs) is `unknown`: not a failover IP/net of this account, a configuration error
   * that no apply() can repair; an entry without a readable active_server_ip likewise. Throws
   * RouteError for an invalid address (before any request) and when the list cannot be read: final
   * on 401 and on an answer that is no list; retryable on 5xx, 403 RATE_LIMIT_EXCEEDED, timeout,
   * refused connection (see failure()). Messages carry no form of the credentials.
   */
  async current(addresses: string[]): Promise<CurrentRoute[]> {
    try {
      return await this.currentRoutes(addresses);
    } catch (err) {
      throw this.scrub(err);
    }
  }

  /**
   * The error as it may leave this backend: a RouteError whose message carries no form of the
   * credentials (a new one when redaction changed it, so the stack does not carry them either).
   */
  private scrub(err: unknown): RouteError {
    if (err instanceof RouteError) {
      const message = this.redact(err.message);
      const stack = err.stack ?? '';
      if (message === err.message && this.redact(stack) === stack) return err;
      return err instanceof CredentialsError ? new CredentialsError(message, err.address) : new RouteError(message, err.retryable, err.address);
    }
    return new RouteError(`http: ${this.redact(err instanceof Error ? err.message : String(err))}`, false);
  }

  private async applyPlan(desired: DesiredRoute[]): Promise<ApplyResult> {
    // Everything is checked before the first request: a config mistake changes nothing.
    // Addresses in the same failover net (two IPv6 addresses of one /64) share one step.
    const plan = new Map<string, { key: FailoverKey; to: string; target: string; addresses: string[] }>();
    for (const d of desired) {
      const key = this.keyOf(d.address, d.family);
      const target = this.targetOf(key, d.to);
      const prev = plan.get(key.net);
      if (prev === undefined) plan.set(key.net, { key, to: d.to, target, addresses: [d.address] });
      else if (prev.target === target) prev.addresses.push(d.address);
      else throw new RouteError(`http: ${d.address}: failover net ${key.net} is asked to go to two different hosts in one apply`, false, d.address);
    }

    const result: ApplyResult = { changed: [], unchanged: [] };
    const errors: RouteError[] = [];
    for (const step of plan.values()) {
      try {
        const outcome = await this.route(step.key, step.to, step.target);
        result[outcome].push(...step.addresses);
      } catch (err) {
        const e = err instanceof RouteError ? err : new RouteError(`http: ${step.key.address}: ${this.redact(String(err))}`, false, step.key.address);
        // A rejected login is the same for every address, and three of them block this client IP.
        if (e instanceof CredentialsError) throw e;
        errors.push(e);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) {
      throw new RouteError(
        `http: ${errors.length} of ${plan.size} failover IPs/nets failed: ${errors.map((e) => e.message).join('; ')}`,
        errors.every((e) => e.retryable),
        errors[0].address,
      );
    }
    return result;
  }

  private async currentRoutes(addresses: string[]): Promise<CurrentRoute[]> {
    if (!Array.isArray(addresses)) throw new RouteError('http: addresses must be an array', false);
    const keys = addresses.map((a) => this.keyOf(a));
    if (keys.length === 0) return [];
    const listed = await this.list();
    return keys.map((key): CurrentRoute => {
      const entry = listed.get(key.net);
      if (entry === undefined) {
        const why = listed.size === 0 ? 'the provider says the account has none' : `GET /failover does not list ${key.net}`;
        return { address: key.address, to: null, unknown: this.redact(`http: ${key.address}: not a failover IP/net of this account (${why}): check the address and the account of the credentials`) };
      }
      const active = entry.active_server_ip;
      if (active !== null && typeof active !== 'string') {
        return { address: key.address, to: null, unknown: this.redact(`http: ${key.address}: GET /failover: the entry for ${key.net} has no active_server_ip`) };
      }
      const ip = active === null ? null : canonicalHostIp(active);
      return { address: key.address, to: ip === null ? null : (this.hostByIp.get(ip) ?? null) };
    });
  }

  /**
   * GET /failover: the account's failover IPs/nets by their net address (the entry's ip masked by
   * its netmask). Empty when the provider answers 404 NOT_FOUND (the account has none). Entries it
   * cannot read (no ip) are left out. Throws RouteError when the list cannot be read.
   */
  private async list(): Promise<Map<string, Partial<FailoverRecord>>> {
    const what = 'GET /failover';
    const res = await this.call('GET', '/failover', undefined, what);
    if (res.status !== 200) {
      const err = apiError(res.body, this.redact);
      if (res.status === 404 && err.code === 'NOT_FOUND') return new Map();
      if (res.status === 404) {
        // Not the provider's documented answer: a wrong baseUrl, not an empty account.
        throw new RouteError(`http: ${what}: 404${err.code ? ` ${err.code}` : ''} (no failover list there: check baseUrl)`, false);
      }
      throw this.failureAt(`http: ${what}`, undefined, res.status, err);
    }
    if (!Array.isArray(res.body)) throw new RouteError(`http: ${what}: the answer is not a list of failover IPs (is baseUrl the failover API?)`, false);
    const byNet = new Map<string, Partial<FailoverRecord>>();
    for (const item of res.body as unknown[]) {
      const f = (item as { failover?: unknown } | null)?.failover as Partial<FailoverRecord> | undefined;
      if (!f || typeof f !== 'object' || typeof f.ip !== 'string') continue;
      const net = listedNetOf(f.ip, f.netmask);
      if (net !== null && !byNet.has(net)) byNet.set(net, f);
    }
    return byNet;
  }

  private keyOf(address: string, family?: 4 | 6): FailoverKey {
    const net = typeof address === 'string' ? failoverNetOf(address) : null;
    if (net === null) throw new RouteError(`http: ${JSON.stringify(address)} is not an IP address`, false, String(address));
    if (family !== undefined && family !== net.family) throw new RouteError(`http: ${address} is not an IPv${family} address`, false, address);
    return { address, ...net };
  }

  private targetOf(key: FailoverKey, host: string): string {
    const target = key.family === 4 ? this.v4Targets.get(host) : this.v6Targets.get(host);
    if (target === undefined) {
      const field = key.family === 4 ? 'main_ip' : 'ipv6_net';
      throw new RouteError(`http: ${key.address}: no ${key.family === 4 ? 'main IPv4 address' : 'main IPv6 net'} configured for host ${JSON.stringify(host)} in ${field}`, false, key.address);
    }
    return target;
  }

  /** Makes one failover IP/net routed to `target`; says whether that changed anything. */
  private async route(key: FailoverKey, host: string, target: string): Promise<'changed' | 'unchanged'> {
    const before = await this.get(key);
    if (before.active_server_ip !== null && canonicalHostIp(before.active_server_ip) === target) return 'unchanged';

    const what = `POST /failover/${key.net} -> ${host} (${target})`;
    const res = await this.call('POST', `/failover/${key.net}`, key.address, what, new URLSearchParams({ active_server_ip: target }));
    if (res.status === 200 || res.status === 201) {
      const after = this.failoverOf(res.body, key, what);
      const active = after.active_server_ip === null ? null : canonicalHostIp(after.active_server_ip);
      if (active !== target) {
        throw new RouteError(`http: ${key.address}: ${what}: the provider answered active_server_ip ${this.redact(String(after.active_server_ip)).slice(0, 100)}`, true, key.address);
      }
      return 'changed';
    }
    const err = apiError(res.body, this.redact);
    // Already where we want it: someone (or our own timed-out earlier call) got there first.
    if (res.status === 409 && err.code === 'FAILOVER_ALREADY_ROUTED') return 'unchanged';
    throw this.failure(key, what, res.status, err);
  }

  private async get(key: FailoverKey): Promise<FailoverRecord> {
    const what = `GET /failover/${key.net}`;
    // key.net is a canonical address (hex digits, dots, colons): safe in a path segment as it is.
    const res = await this.call('GET', `/failover/${key.net}`, key.address, what);
    if (res.status !== 200) throw this.failure(key, what, res.status, apiError(res.body, this.redact));
    return this.failoverOf(res.body, key, what);
  }

  private failoverOf(body: unknown, key: FailoverKey, what: string): FailoverRecord {
    const f = (body as { failover?: Partial<FailoverRecord> } | null)?.failover;
    if (!f || typeof f !== 'object' || !('active_server_ip' in f) || (f.active_server_ip !== null && typeof f.active_server_ip !== 'string')) {
      throw new RouteError(`http: ${key.address}: ${what}: the answer has no failover.active_server_ip (is baseUrl the failover API?)`, false, key.address);
    }
    return f as FailoverRecord;
  }

  /**
   * One HTTP exchange on `path` (canonical addresses only: no escaping needed), body read included,
   * under the per-call timeout. Transport failures are retryable; `address` names the message.
   */
  private async call(method: 'GET' | 'POST', path: string, address: string | undefined, what: string, form?: URLSearchParams): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { authorization: this.authHeader, accept: 'application/json' };
    if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
    let status: number;
    let text: string;
    try {
      const res = await this.fetchFn(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: form?.toString(),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
      const reason =
        e?.name === 'TimeoutError'
          ? `no answer within ${this.timeoutMs} ms`
          : e?.name === 'AbortError'
            ? 'request aborted'
            : `connection failed (${this.redact(String(e?.cause?.code ?? e?.cause?.message ?? e?.message ?? err))})`;
      throw new TransportError(`http: ${address === undefined ? '' : `${address}: `}${what}: ${reason}`, address);
    }
    let body: unknown = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    return { status, body };
  }

  private failure(key: FailoverKey, what: string, status: number, err: ApiError): RouteError {
    return this.failureAt(`http: ${key.address}: ${what}`, key.address, status, err);
  }

  /** The RouteError for a provider's error answer; `prefix` starts the message (`http: ADDRESS: WHAT`). */
  private failureAt(prefix: string, address: string | undefined, status: number, err: ApiError): RouteError {
    // code and message come from the provider: redacted before they go anywhere.
    const detail = this.redact(`${status}${err.code ? ` ${err.code}` : ''}${err.message ? `: ${err.message}` : ''}`);
    const say = (hint: string, retryable: boolean) =>
      new RouteError(`${prefix}: ${detail}${hint ? ` (${hint})` : ''}`, retryable, address);
    if (status === 401) {
      return new CredentialsError(
        `${prefix}: 401 unauthorized: check credentials (webservice user and password of the http backend); the provider blocks the client IP for 10 minutes after 3 failed logins`,
        address,
      );
    }
    if (status === 403 && err.code === 'RATE_LIMIT_EXCEEDED') {
      const limit = err.maxRequest !== undefined ? `${err.maxRequest} requests per ${err.interval ?? '?'} s` : 'request limit';
      return say(`${limit} reached; retrying later may help`, true);
    }
    if (status === 404 && err.code === 'FAILOVER_NEW_SERVER_NOT_FOUND') return say('the destination is not a server of this account: check the host\'s main_ip / ipv6_net', false);
    if (status === 404) return say('not a failover IP/net of this account', false);
    if (status === 409 && err.code === 'FAILOVER_LOCKED') return say('another switch of it is in progress', true);
    if (status === 409 || status === 408 || status === 425 || status === 429) return say('', true);
    if (status >= 500) return say('provider error', true);
    if (status >= 300 && status < 400) return say('unexpected redirect: check baseUrl', false);
    return say('', false);
  }

}

/**
 * Every form in which basic-auth credentials can come back in a text, longest first: the
 * Authorization header value; base64 of `user:password`, of the password, of the user and of the
 * header itself (standard and URL-safe, with and without padding, and the part of it that is the
 * same at any alignment inside a longer base64 text); `user:password`, the password, the user; each
 * of these also
 * percent-encoded (encodeURIComponent, form encoding, encodeURI), JSON-escaped and hex-encoded.
 * Shifted base64 and hex forms shorter than 8 characters are left out (they would match at random).
 */
export function credentialForms(username: string, password: string): string[] {
  const login = `${username}:${password}`;
  const b64 = Buffer.from(login, 'utf8').toString('base64');
  const forms = new Set<string>([`Basic ${b64}`, login, password, username]);
  const long = (s: string) => s.length >= 8;
  for (const secret of [`Basic ${b64}`, b64, login, password, username]) {
    const bytes = Buffer.from(secret, 'utf8');
    const std = bytes.toString('base64');
    forms.add(std);
    forms.add(std.replace(/=+$/, ''));
    forms.add(bytes.toString('base64url'));
    // the same bytes at offsets 1 and 2 of a longer base64 text: the characters that depend only on them
    for (const shift of [0, 1, 2]) {
      const enc = Buffer.concat([Buffer.alloc(shift), bytes]).toString('base64').replace(/=+$/, '');
      const total = shift + bytes.length;
      const head = shift === 0 ? 0 : shift + 1;
      const tail = total % 3 === 0 ? 0 : 1;
      const core = enc.slice(head, enc.length - tail);
      if (long(core)) {
        forms.add(core);
        forms.add(core.replace(/\+/g, '-').replace(/\//g, '_'));
      }
    }
    const hex = bytes.toString('hex');
    if (long(hex)) forms.add(hex);
  }
  for (const f of [...forms]) {
    forms.add(encodeURIComponent(f));
    forms.add(encodeURI(f));
    forms.add(new URLSearchParams({ x: f }).toString().slice(2));
    forms.add(JSON.stringify(f).slice(1, -1));
    forms.add(encodeURIComponent(encodeURIComponent(f)));
  }
  forms.delete('');
  return [...forms].sort((a, b) => b.length - a.length);
}

/**
 * A function replacing every form of the credentials (credentialForms) in a text by `***`.
 * Percent-encoded and hex forms match in either letter case.
 */
export function credentialRedactor(username: string, password: string): (text: string) => string {
  const pattern = credentialForms(username, password)
    .map((f) => {
      const escaped = f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      // %2f and %2F are the same character; hex digits likewise
      return /^[0-9a-f]+$/.test(f) ? caseless(escaped) : escaped.replace(/%([0-9A-Fa-f])([0-9A-Fa-f])/g, (_m, a: string, b: string) => `%${caseless(a)}${caseless(b)}`);
    })
    .join('|');
  const re = new RegExp(pattern, 'g');
  return (text: string) => text.replace(re, '***');
}

/** A regular-expression source matching `s` in either letter case (letters only change). */
function caseless(s: string): string {
  return s.replace(/[A-Za-z]/g, (c) => `[${c.toLowerCase()}${c.toUpperCase()}]`);
}

/** No HTTP answer (timeout, connection refused or reset): retryable. */
class TransportError extends RouteError {
  constructor(message: string, address?: string) {
    super(message, true, address);
  }
}

/** A rejected login (401): final, and no further request is made in the same apply() or current(). */
export class CredentialsError extends RouteError {
  constructor(message: string, address?: string) {
    super(message, false, address);
  }
}

interface ApiError {
  code?: string;
  message?: string;
  maxRequest?: number;
  interval?: number;
}

/** The provider's error object; its texts redacted (before they are cut to 300 characters, so no part of a secret survives). */
function apiError(body: unknown, redact: (text: string) => string): ApiError {
  const e = (body as { error?: Record<string, unknown> } | null)?.error;
  if (!e || typeof e !== 'object') return {};
  const str = (v: unknown) => (typeof v === 'string' ? redact(v).slice(0, 300) : undefined);
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  return { code: str(e.code), message: str(e.message), maxRequest: num(e.max_request), interval: num(e.interval) };
}

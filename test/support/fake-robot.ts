/**
 * A loopback imitation of the failover part of the Hetzner Robot webservice, as documented at
 * https://robot.hetzner.com/doc/webservice/en.html#failover (and its "Errors" preface):
 *
 * - HTTP basic auth; a wrong user/password answers 401 {"error":{"status":401,"code":"UNAUTHORIZED",…}}.
 * - GET /failover/{failover-ip} answers {"failover":{ip, netmask, server_ip, server_ipv6_net,
 *   server_number, active_server_ip}}; an unknown IP answers 404 NOT_FOUND.
 * - GET /failover answers the list of them all, [{"failover":{…}}, …], and 404 NOT_FOUND when the
 *   account has none. Its own faults (FakeListFaults, `faultList`): 500, 503, 403
 *   RATE_LIMIT_EXCEEDED (with max_request 100 and interval 3600, the documented GET limit), hangs.
 * - POST /failover/{failover-ip} with the form field active_server_ip (x-www-form-urlencoded):
 *   400 INVALID_INPUT when missing or not an address of the right kind, 404 NOT_FOUND,
 *   404 FAILOVER_NEW_SERVER_NOT_FOUND for a destination that is not a known server,
 *   409 FAILOVER_ALREADY_ROUTED for the current destination, 409 FAILOVER_LOCKED while another
 *   switch of the same IP is in progress; otherwise 200 with the new state, answered when the
 *   switch is done (the real switch takes 40-60 s; here `routeDelayMs`).
 * - IPv6 failover nets are addressed by their net address (2a01:4f8:fff1::) and routed to the
 *   destination's main IPv6 net address (2a01:4f8:0:5176::), as the documentation's examples show.
 *
 * Scriptable faults per IP (see FakeFaults), and every request is recorded (never its credentials).
 * A provider that echoes what it got can be imitated too (`echoCredentials`): its error texts then
 * carry the request's Authorization header or the credentials decoded from it, in one encoding
 * after another (`credentialEchoes`), and each text sent is kept in `echoed`.
 * Guesses where the documentation is silent: an IPv4 destination for an IPv6 net (and the reverse)
 * answers 400 INVALID_INPUT; the 401 body's code is UNAUTHORIZED; the 3-failed-logins block of the
 * real service is not imitated; the texts of the list's 404, of 403 RATE_LIMIT_EXCEEDED and of 503
 * (code MAINTENANCE) are made up; the rate limit fires only when scripted (no real budget).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Address4, Address6 } from 'ip-address';

/** One failover IP/net of the fake account. */
export interface FakeFailover {
  /** Failover IPv4 address or IPv6 net address (2a01:4f8:fff0::). */
  ip: string;
  /** Default 255.255.255.255 (IPv4) / ffff:ffff:ffff:ffff:: (IPv6). */
  netmask?: string;
  /** Main IP of the server the failover IP belongs to (not where it is routed). */
  serverIp: string;
  serverIpv6Net?: string;
  serverNumber?: number;
  /** Where it is routed now: a server's main IPv4 (IPv4) or main IPv6 net address (IPv6); null = unrouted. */
  activeServerIp: string | null;
}

/** A server of the fake account: a possible destination. */
export interface FakeServer {
  ip: string;
  ipv6Net?: string;
}

/**
 * The texts credentials must never be seen as (tests assert none appears): the header value, the
 * base64 (padded or not, URL-safe), `user:password`, the user, the password; each also
 * percent-encoded (either hex case), form-encoded and JSON-escaped.
 */
export function credentialTexts(user: string, password: string): string[] {
  const login = `${user}:${password}`;
  const b64 = Buffer.from(login, 'utf8').toString('base64');
  const plain = [`Basic ${b64}`, b64, b64.replace(/=+$/, ''), Buffer.from(login, 'utf8').toString('base64url'), login, user, password];
  const form = (x: string) => new URLSearchParams({ x }).toString().slice(2);
  return [...new Set(plain.flatMap((f) => [
    f, encodeURIComponent(f), form(f), JSON.stringify(f).slice(1, -1), encodeURIComponent(f).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()),
  ]))];
}

/** Options of FakeRobot.start. */
export interface FakeRobotOptions {
  username: string;
  password: string;
  failovers: FakeFailover[];
  servers: FakeServer[];
}

type MethodFilter = 'GET' | 'POST' | 'ANY';

/** Faults for one failover IP; counts are consumed as they fire. */
export interface FakeFaults {
  /** The next N POSTs answer 409 FAILOVER_LOCKED. */
  locked?: number;
  /** The next N requests of `serverErrorMethod` (default POST) answer 500 (FAILOVER_FAILED for POST, INTERNAL_ERROR for GET). */
  serverErrors?: number;
  serverErrorMethod?: MethodFilter;
  /** The next N requests of `hangMethod` (default ANY) are never answered (until close()). */
  hangs?: number;
  hangMethod?: MethodFilter;
  /** A switch takes this long: the POST answers after it, GET shows the old destination meanwhile, and other POSTs get FAILOVER_LOCKED. */
  routeDelayMs?: number;
  /**
   * Error answers for this IP echo the request's credentials: the n-th error answer's message (and
   * code) ends with the n-th form of credentialEchoes (cycling), the way a provider that puts the
   * Authorization header into its error texts would.
   */
  echoCredentials?: boolean;
}

/** Faults of GET /failover (the list); counts are consumed as they fire, in this order. */
export interface FakeListFaults {
  /** The next N list GETs are never answered (until close()). */
  hangs?: number;
  /** The next N list GETs answer 403 RATE_LIMIT_EXCEEDED. */
  rateLimited?: number;
  /** The next N list GETs answer 500 INTERNAL_ERROR. */
  serverErrors?: number;
  /** The next N list GETs answer 503 (maintenance). */
  unavailable?: number;
  /** Its error answers echo the request's credentials (as FakeFaults.echoCredentials). */
  echoCredentials?: boolean;
}

/**
 * The forms a provider could echo the credentials of an Authorization header in: the header value,
 * its base64, `user:password`, the password, the user; URL-encoded (encodeURIComponent and form
 * encoding), base64url, JSON-escaped, and base64 inside a longer base64 text.
 */
export function credentialEchoes(authorization: string): string[] {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization);
  const b64 = m ? m[1] : Buffer.from(authorization, 'utf8').toString('base64');
  const login = Buffer.from(b64, 'base64').toString('utf8');
  const i = login.indexOf(':');
  const user = i >= 0 ? login.slice(0, i) : login;
  const password = i >= 0 ? login.slice(i + 1) : '';
  const form = (x: string) => new URLSearchParams({ x }).toString().slice(2);
  return [
    `Authorization: ${authorization}`,
    b64,
    login,
    `user ${user} password ${password}`,
    encodeURIComponent(authorization),
    encodeURIComponent(login),
    form(login),
    `user=${encodeURIComponent(user)}&password=${encodeURIComponent(password)}`,
    `user=${form(user)}&password=${form(password)}`,
    Buffer.from(login, 'utf8').toString('base64url'),
    JSON.stringify(login).slice(1, -1),
    Buffer.from(`header=${authorization}`, 'utf8').toString('base64'),
    Buffer.from(`u=${login}`, 'utf8').toString('base64'),
    encodeURIComponent(b64).replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()),
  ];
}

/** One request as the fake saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  /** The failover IP of the path, canonical; null for other paths. */
  ip: string | null;
  /** Form fields of the body (POST). */
  body: Record<string, string>;
  contentType: string | undefined;
  authOk: boolean;
  /** The answer's status; null while unanswered (or never, for a hang). */
  status: number | null;
  at: number;
  /** When the answer was sent (Date.now()); null while unanswered. */
  answeredAt: number | null;
}

interface State {
  record: Required<Omit<FakeFailover, 'serverIpv6Net'>> & { serverIpv6Net: string | null };
  faults: FakeFaults;
  switching: boolean;
}

function canonical(text: string): string | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  if (text.includes(':')) return Address6.isValid(text) ? new Address6(text).correctForm() : null;
  return Address4.isValid(text) ? new Address4(text).correctForm() : null;
}

/** The fake Robot webservice on 127.0.0.1, a random port. */
export class FakeRobot {
  readonly requests: RecordedRequest[] = [];
  /** Every credential echo sent in an error answer (see FakeFaults.echoCredentials). */
  readonly echoed: string[] = [];
  private readonly states = new Map<string, State>();
  private listFaults: FakeListFaults = {};
  private readonly v4Servers = new Set<string>();
  private readonly v6Servers = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server!: Server;
  /** http://127.0.0.1:PORT */
  url = '';
  /** Every GET is answered this long after it arrived (all IPs; default 0): lets requests pile up. */
  getDelayMs = 0;
  /** Requests received and not answered yet, and the most there ever were at once. */
  inFlight = 0;
  maxInFlight = 0;

  private constructor(private readonly opts: FakeRobotOptions) {
    for (const s of opts.servers) {
      this.v4Servers.add(canonical(s.ip) ?? s.ip);
      if (s.ipv6Net) this.v6Servers.add(canonical(s.ipv6Net.replace(/\/\d+$/, '')) ?? s.ipv6Net);
    }
    for (const f of opts.failovers) {
      const ip = canonical(f.ip);
      if (!ip) throw new Error(`fake robot: bad failover ip ${f.ip}`);
      const v6 = ip.includes(':');
      this.states.set(ip, {
        record: {
          ip,
          netmask: f.netmask ?? (v6 ? 'ffff:ffff:ffff:ffff::' : '255.255.255.255'),
          serverIp: f.serverIp,
          serverIpv6Net: f.serverIpv6Net ?? null,
          serverNumber: f.serverNumber ?? 321,
          activeServerIp: f.activeServerIp === null ? null : canonical(f.activeServerIp),
        },
        faults: {},
        switching: false,
      });
    }
  }

  /** Starts a fake on 127.0.0.1 with an ephemeral port. */
  static async start(opts: FakeRobotOptions): Promise<FakeRobot> {
    const fake = new FakeRobot(opts);
    fake.server = createServer((req, res) => fake.handle(req, res));
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** Adds faults for `ip` (replacing the fields given). */
  fault(ip: string, faults: FakeFaults): void {
    const s = this.state(ip);
    s.faults = { ...s.faults, ...faults };
  }

  /** Adds faults for GET /failover, the list (replacing the fields given). */
  faultList(faults: FakeListFaults): void {
    this.listFaults = { ...this.listFaults, ...faults };
  }

  /** Where `ip` is routed now. */
  activeServerIp(ip: string): string | null {
    return this.state(ip).record.activeServerIp;
  }

  /** Routes `ip` directly (someone else acting on the account, e.g. switching it in the Robot panel): `active` is a main IP / IPv6 net address, or null (unrouted). */
  setActive(ip: string, active: string | null): void {
    this.state(ip).record.activeServerIp = active === null ? null : canonical(active);
  }

  /** The recorded requests, optionally only one method, failover IP and/or path (`/failover`: the list). */
  requestsFor(filter: { method?: string; ip?: string; path?: string } = {}): RecordedRequest[] {
    const ip = filter.ip === undefined ? undefined : canonical(filter.ip);
    return this.requests.filter((r) => (filter.method === undefined || r.method === filter.method) && (ip === undefined || r.ip === ip)
      && (filter.path === undefined || r.path === filter.path));
  }

  /** Stops listening and drops every connection (hanging ones included). */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private state(ip: string): State {
    const s = this.states.get(canonical(ip) ?? ip);
    if (!s) throw new Error(`fake robot: no failover ${ip}`);
    return s;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const path = url.pathname.replace(/\.json$/, '');
      const m = /^\/failover\/([^/]+)$/.exec(path);
      let ip: string | null = null;
      if (m) {
        try {
          ip = canonical(decodeURIComponent(m[1]));
        } catch {
          ip = null;
        }
      }
      const contentType = req.headers['content-type'];
      const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      const rec: RecordedRequest = { method: req.method ?? '', path, ip, body, contentType, authOk: this.authOk(req), status: null, at: Date.now(), answeredAt: null };
      this.requests.push(rec);
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      const write = (status: number, payload: unknown) => {
        rec.status = status;
        rec.answeredAt = Date.now();
        this.inFlight--;
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...(status === 401 ? { 'www-authenticate': 'Basic realm="Webservice"' } : {}) });
        res.end(JSON.stringify(payload));
      };
      const send = (status: number, payload: unknown) => {
        if (req.method !== 'GET' || this.getDelayMs <= 0) return write(status, payload);
        const t = setTimeout(() => {
          this.timers.delete(t);
          write(status, payload);
        }, this.getDelayMs);
        this.timers.add(t);
      };
      let echo = false;
      const error = (status: number, code: string, message: string, extra: Record<string, unknown> = {}) => {
        if (!echo) return send(status, { error: { status, code, message, ...extra } });
        const forms = credentialEchoes(req.headers.authorization ?? '');
        const text = forms[this.echoed.length % forms.length];
        this.echoed.push(text);
        return send(status, { error: { status, code: `${code} ${text}`, message: `${message} (request: ${text})`, ...extra } });
      };

      if (!rec.authOk) return error(401, 'UNAUTHORIZED', 'Unable to authenticate');
      if (req.method === 'GET' && path === '/failover') {
        const lf = this.listFaults;
        echo = lf.echoCredentials === true;
        const take = (k: 'hangs' | 'rateLimited' | 'serverErrors' | 'unavailable') => {
          if ((lf[k] ?? 0) <= 0) return false;
          lf[k]! -= 1;
          return true;
        };
        if (take('hangs')) return; // never answered; close() drops the connection
        if (take('rateLimited')) return error(403, 'RATE_LIMIT_EXCEEDED', 'Rate limit exceeded', { max_request: 100, interval: 3600 });
        if (take('serverErrors')) return error(500, 'INTERNAL_ERROR', 'Internal error');
        if (take('unavailable')) return error(503, 'MAINTENANCE', 'Maintenance');
        if (this.states.size === 0) return error(404, 'NOT_FOUND', 'No failover IP addresses found');
        return send(200, [...this.states.values()].map((s) => ({ failover: this.view(s) })));
      }
      if (!m || (req.method !== 'GET' && req.method !== 'POST')) return error(404, 'NOT_FOUND', 'Not found');
      const s = ip === null ? undefined : this.states.get(ip);
      if (!s) return error(404, 'NOT_FOUND', 'Failover IP address not found');

      const f = s.faults;
      echo = f.echoCredentials === true;
      const applies = (filter: MethodFilter | undefined, dflt: MethodFilter) => (filter ?? dflt) === 'ANY' || (filter ?? dflt) === req.method;
      if ((f.hangs ?? 0) > 0 && applies(f.hangMethod, 'ANY')) {
        f.hangs!--;
        return; // never answered; close() drops the connection
      }
      if ((f.serverErrors ?? 0) > 0 && applies(f.serverErrorMethod, 'POST')) {
        f.serverErrors!--;
        return req.method === 'POST'
          ? error(500, 'FAILOVER_FAILED', 'Due to an internal error switching of the failover IP address failed')
          : error(500, 'INTERNAL_ERROR', 'Internal error');
      }
      if (req.method === 'GET') return send(200, { failover: this.view(s) });

      if ((f.locked ?? 0) > 0) {
        f.locked!--;
        return error(409, 'FAILOVER_LOCKED', 'Switching the failover IP address is blocked due to another active request');
      }
      if (!/^application\/x-www-form-urlencoded\b/.test(contentType ?? '')) {
        return error(400, 'INVALID_INPUT', 'invalid input', { missing: ['active_server_ip'], invalid: null });
      }
      const wanted = body.active_server_ip;
      if (wanted === undefined || wanted === '') return error(400, 'INVALID_INPUT', 'invalid input', { missing: ['active_server_ip'], invalid: null });
      const target = canonical(wanted);
      const v6 = s.record.ip.includes(':');
      if (target === null || target.includes(':') !== v6) return error(400, 'INVALID_INPUT', 'invalid input', { missing: null, invalid: ['active_server_ip'] });
      if (!(v6 ? this.v6Servers : this.v4Servers).has(target)) return error(404, 'FAILOVER_NEW_SERVER_NOT_FOUND', 'Destination server not found');
      if (s.switching) return error(409, 'FAILOVER_LOCKED', 'Switching the failover IP address is blocked due to another active request');
      if (s.record.activeServerIp === target) {
        return error(409, 'FAILOVER_ALREADY_ROUTED', 'The failover IP address is already routed to the selected server');
      }
      const finish = () => {
        s.record.activeServerIp = target;
        s.switching = false;
        send(200, { failover: this.view(s) });
      };
      const delay = f.routeDelayMs ?? 0;
      if (delay <= 0) return finish();
      s.switching = true;
      const t = setTimeout(() => {
        this.timers.delete(t);
        finish();
      }, delay);
      this.timers.add(t);
    });
  }

  private authOk(req: IncomingMessage): boolean {
    const h = req.headers.authorization ?? '';
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(h);
    if (!m) return false;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    return i >= 0 && decoded.slice(0, i) === this.opts.username && decoded.slice(i + 1) === this.opts.password;
  }

  private view(s: State) {
    const r = s.record;
    return {
      ip: r.ip,
      netmask: r.netmask,
      server_ip: r.serverIp,
      server_ipv6_net: r.serverIpv6Net,
      server_number: r.serverNumber,
      active_server_ip: r.activeServerIp,
    };
  }
}

/**
 * A small client of gobgpd's gRPC API (GoBGP 3.x, package `apipb`): announce, withdraw and list
 * the host prefixes of the global RIB; list the neighbours and enable an admin-down one. The API definitions are read at run time from the
 * `api/*.proto` files of Debian's `golang-github-osrg-gobgp-dev` (@grpc/proto-loader); calls go
 * through @grpc/grpc-js. Every call has a deadline; failures are RouteErrors.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { RouteError } from '../core/ports.js';

/** Where Debian's golang-github-osrg-gobgp-dev installs the API definitions. */
export const DEFAULT_PROTO_DIR = '/usr/share/gocode/src/github.com/osrg/gobgp/api';

/** One announced host prefix (/32, /128). */
export interface GobgpPath {
  /** Normalised address. */
  address: string;
  family: 4 | 6;
  /** The next hop the router must use: a concrete unicast address of the same family. */
  nextHop: string;
  /** Standard communities as 32-bit numbers (ASN << 16 | value). */
  communities: number[];
}

/** A path read back from gobgpd. */
export interface AnnouncedPath {
  nextHop: string | null;
  communities: number[];
}

/** The calls the BGP backend makes; GobgpGrpcClient talks to a real gobgpd, tests inject fakes. */
export interface GobgpApi {
  /** Announces every path in one AddPathStream; a path for a prefix already announced replaces it (implicit withdraw). */
  addPaths(paths: GobgpPath[]): Promise<void>;
  /** Withdraws each address's local path (one DeletePath per address, each with its path). */
  deletePaths(paths: GobgpPath[]): Promise<void>;
  /** The local host-prefix paths of one family in the global RIB: normalised address → path. */
  listPaths(family: 4 | 6): Promise<Map<string, AnnouncedPath>>;
  /** Lets a neighbour configured admin-down start its session (after the desired paths are replayed). */
  enablePeer(address: string): Promise<void>;
  /** gobgpd's neighbours: address, whether it is admin-down, the session state (ESTABLISHED, ACTIVE...). */
  listPeers(): Promise<GobgpPeer[]>;
  /** Ends the channel. */
  close(): void;
}

/** One neighbour of gobgpd as ListPeer shows it. */
export interface GobgpPeer {
  address: string;
  /** Kept down by configuration (`admin-down = true`) or by DisablePeer: no session until EnablePeer. */
  adminDown: boolean;
  /** ESTABLISHED when the session is up; IDLE, CONNECT, ACTIVE, OPENSENT, OPENCONFIRM, UNKNOWN otherwise. */
  session: string;
}

/** Options of GobgpGrpcClient. */
export interface GobgpGrpcClientOptions {
  /** gobgpd's API: `HOST:PORT` (`127.0.0.1:50051`) or `unix:///run/gobgpd.sock`. Plaintext. */
  api: string;
  /** Directory of gobgp.proto, attribute.proto, capability.proto (default DEFAULT_PROTO_DIR). */
  protoDir?: string;
  /** Deadline of each call in ms (default 10000). */
  timeoutMs?: number;
}

const TYPE = 'type.googleapis.com/apipb.';
const FAMILY = { 4: { afi: 'AFI_IP', safi: 'SAFI_UNICAST' }, 6: { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' } } as const;

/** The request object of one path (proto-loader with keepCase and json: Any as `@type` objects). */
export function pathMessage(p: GobgpPath): Record<string, unknown> {
  const nlri = { '@type': `${TYPE}IPAddressPrefix`, prefix: p.address, prefix_len: p.family === 4 ? 32 : 128 };
  const pattrs: Record<string, unknown>[] = [{ '@type': `${TYPE}OriginAttribute`, origin: 0 }];
  // Without an explicit next hop gobgpd refuses the path ("nexthop not found"); an unspecified one
  // (0.0.0.0, ::) becomes the session address: the speaker itself (IPv4) or an IPv4 address the
  // router drops as invalid (IPv6). The backend only passes concrete ones.
  if (p.family === 4) pattrs.push({ '@type': `${TYPE}NextHopAttribute`, next_hop: p.nextHop });
  else pattrs.push({ '@type': `${TYPE}MpReachNLRIAttribute`, family: FAMILY[6], next_hops: [p.nextHop], nlris: [nlri] });
  if (p.communities.length > 0) pattrs.push({ '@type': `${TYPE}CommunitiesAttribute`, communities: p.communities });
  return { family: FAMILY[p.family], nlri, pattrs };
}

/** The host prefixes and next hops of ListPath answers (`destination` objects); other entries are skipped. */
export function announcedPaths(answers: unknown[], family: 4 | 6): Map<string, AnnouncedPath> {
  const out = new Map<string, AnnouncedPath>();
  const full = family === 4 ? 32 : 128;
  for (const a of answers) {
    const dest = (a as { destination?: { paths?: unknown[] } } | null)?.destination;
    for (const raw of Array.isArray(dest?.paths) ? dest.paths : []) {
      const p = raw as { nlri?: { prefix?: unknown; prefix_len?: unknown }; pattrs?: unknown[]; best?: boolean; neighbor_ip?: unknown };
      // local paths only (gobgpd prints "<nil>" for their neighbour); the best one per prefix
      if (typeof p?.nlri?.prefix !== 'string' || p.nlri.prefix_len !== full) continue;
      if (typeof p.neighbor_ip === 'string' && p.neighbor_ip !== '<nil>' && p.neighbor_ip !== '') continue;
      let nextHop: string | null = null;
      let communities: number[] = [];
      for (const attr of Array.isArray(p.pattrs) ? p.pattrs : []) {
        const t = (attr as { '@type'?: string })?.['@type'];
        if (t === `${TYPE}NextHopAttribute`) nextHop = String((attr as { next_hop?: unknown }).next_hop ?? '') || null;
        else if (t === `${TYPE}MpReachNLRIAttribute`) nextHop = String((attr as { next_hops?: unknown[] }).next_hops?.[0] ?? '') || null;
        else if (t === `${TYPE}CommunitiesAttribute`) communities = ((attr as { communities?: unknown[] }).communities ?? []).map(Number);
      }
      if (!out.has(p.nlri.prefix) || p.best) out.set(p.nlri.prefix, { nextHop, communities });
    }
  }
  return out;
}

/** The neighbours in ListPeer answers (proto-loader with enums as strings, defaults left out: UP and UNKNOWN are absent). */
export function peersOf(answers: unknown[]): GobgpPeer[] {
  const out: GobgpPeer[] = [];
  for (const a of answers) {
    const p = (a as { peer?: { conf?: { neighbor_address?: unknown }; state?: { neighbor_address?: unknown; admin_state?: unknown; session_state?: unknown } } } | null)?.peer;
    const address = p?.state?.neighbor_address || p?.conf?.neighbor_address;
    if (typeof address !== 'string' || address === '') continue;
    const admin = p?.state?.admin_state;
    out.push({ address, adminDown: admin === 'DOWN' || admin === 1, session: typeof p?.state?.session_state === 'string' ? p.state.session_state : 'UNKNOWN' });
  }
  return out;
}

/**
 * Channel options: after a gobgpd restart the channel reconnects within about a second (grpc-js
 * waits 1 s, then up to 120 s, by default).
 */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 };

/** gRPC status codes after which a retry may help (anything gobgpd sends as UNKNOWN included). */
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED, grpc.status.ABORTED, grpc.status.RESOURCE_EXHAUSTED, grpc.status.INTERNAL, grpc.status.UNKNOWN]);

/** A RouteError for a failed call: `what` and gobgpd's message; `address` when one path is concerned. */
export function grpcFailure(what: string, err: unknown, address?: string): RouteError {
  const e = err as Partial<grpc.ServiceError>;
  const code = typeof e?.code === 'number' ? e.code : grpc.status.UNKNOWN;
  const name = grpc.status[code] ?? String(code);
  const details = e?.details || (err instanceof Error ? err.message : String(err));
  const final = code === grpc.status.UNKNOWN && /nexthop not found|invalid|unsupported|not supported/i.test(details);
  return new RouteError(`${what}: ${name}: ${details}`, RETRYABLE.has(code) && !final, address);
}

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => grpc.ClientUnaryCall;
interface ApiStub extends grpc.Client {
  AddPathStream(opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void): grpc.ClientWritableStream<unknown>;
  DeletePath: Unary;
  EnablePeer: Unary;
  ListPeer(req: unknown, opts: grpc.CallOptions): grpc.ClientReadableStream<unknown>;
  ListPath(req: unknown, opts: grpc.CallOptions): grpc.ClientReadableStream<unknown>;
}

/** gobgpd over gRPC. The definitions are loaded by the first call (a missing file is a final error). */
export class GobgpGrpcClient implements GobgpApi {
  private stub: Promise<ApiStub> | undefined;
  private readonly protoDir: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: GobgpGrpcClientOptions) {
    this.protoDir = opts.protoDir ?? DEFAULT_PROTO_DIR;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  private api(): Promise<ApiStub> {
    this.stub ??= (async () => {
      let def: protoLoader.PackageDefinition;
      try {
        def = await protoLoader.load(['gobgp.proto', 'attribute.proto', 'capability.proto'], {
          keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, json: true, includeDirs: [this.protoDir],
        });
      } catch (err) {
        this.stub = undefined;
        throw new RouteError(`bgp: cannot load the GoBGP API definitions from ${this.protoDir} (Debian package golang-github-osrg-gobgp-dev): ${(err as Error).message}`, false);
      }
      const pkg = grpc.loadPackageDefinition(def) as unknown as { apipb: { GobgpApi: new (target: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ApiStub } };
      return new pkg.apipb.GobgpApi(this.opts.api, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    })();
    return this.stub;
  }

  private deadline(): grpc.CallOptions {
    return { deadline: Date.now() + this.timeoutMs };
  }

  async addPaths(paths: GobgpPath[]): Promise<void> {
    if (paths.length === 0) return;
    const api = await this.api();
    await new Promise<void>((resolve, reject) => {
      const s = api.AddPathStream(this.deadline(), (err) => (err ? reject(grpcFailure(`bgp: AddPathStream (${paths.length} paths)`, err, paths.length === 1 ? paths[0].address : undefined)) : resolve()));
      s.on('error', () => {}); // reported through the callback
      s.write({ table_type: 'GLOBAL', paths: paths.map(pathMessage) });
      s.end();
    });
  }

  async deletePaths(paths: GobgpPath[]): Promise<void> {
    const api = await this.api();
    for (const p of paths) {
      // Never without a path: DeletePath with a family and no path withdraws every path of the family.
      const req = { table_type: 'GLOBAL', family: FAMILY[p.family], path: pathMessage(p) };
      await new Promise<void>((resolve, reject) => api.DeletePath(req, this.deadline(), (err) => (err ? reject(grpcFailure(`bgp: DeletePath ${p.address}`, err, p.address)) : resolve())));
    }
  }

  async listPaths(family: 4 | 6): Promise<Map<string, AnnouncedPath>> {
    const api = await this.api();
    return announcedPaths(await this.collect(api.ListPath({ table_type: 'GLOBAL', family: FAMILY[family] }, this.deadline()), `bgp: ListPath IPv${family}`), family);
  }

  async listPeers(): Promise<GobgpPeer[]> {
    const api = await this.api();
    return peersOf(await this.collect(api.ListPeer({}, this.deadline()), 'bgp: ListPeer'));
  }

  /** Every answer of a server stream. */
  private collect(s: grpc.ClientReadableStream<unknown>, what: string): Promise<unknown[]> {
    return new Promise<unknown[]>((resolve, reject) => {
      const out: unknown[] = [];
      s.on('data', (d) => out.push(d));
      s.on('error', (err) => reject(grpcFailure(what, err)));
      s.on('end', () => resolve(out));
    });
  }

  async enablePeer(address: string): Promise<void> {
    const api = await this.api();
    await new Promise<void>((resolve, reject) => api.EnablePeer({ address }, this.deadline(), (err) => (err ? reject(grpcFailure(`bgp: EnablePeer ${address}`, err)) : resolve())));
  }

  close(): void {
    void this.stub?.then((s) => s.close(), () => {});
    this.stub = undefined;
  }
}

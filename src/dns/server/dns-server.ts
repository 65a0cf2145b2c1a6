/**
 * UDP and TCP listeners (node:dgram, node:net) in front of a Responder. TCP: 2-byte length
 * framing (RFC 1035 4.2.2), pipelining, idle timeout, connection cap, output backpressure.
 * Nothing a client sends can stop the listeners: errors are logged (rate-limited) and counted.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { isTransferPath } from '../wire/query.js';
import type { Responder } from './responder.js';

/** Where a message came from. */
export interface Remote {
  address: string;
  port: number;
}

/**
 * What the listeners hand zone transfers (AXFR, IXFR) and TSIG-signed messages to instead of the
 * responder (src/dns/xfr). Never throws; a failure is answered or the connection closed by it.
 */
export interface TransferHandler {
  /** UDP: the one reply, or null to send nothing. */
  udp(msg: Buffer, remote: Remote): Buffer | null;
  /**
   * TCP: sends the reply messages one by one through `send` (the listener frames them; the
   * promise resolves once the socket can take more, rejects when the connection is gone).
   * Messages pipelined after this one wait until it resolves.
   */
  tcp(msg: Buffer, remote: Remote, send: (msg: Buffer) => Promise<void>): Promise<void>;
}

/** A listen address as validated by the config. */
export interface ListenAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

export interface DnsServerOptions {
  listen: ListenAddress[];
  responder: Responder;
  logger: Logger;
  /** Close a TCP connection idle this long (default 10 s). */
  tcpIdleTimeoutMs?: number;
  /** At most this many TCP connections at once, over all listeners (default 1000). */
  tcpMaxConnections?: number;
  /** Zone transfers and TSIG-signed messages; without it they go to the responder (REFUSED, FORMERR). */
  transfers?: TransferHandler;
}

/** Counters kept by the listeners. */
export interface ListenerStats {
  tcpConnections: number;
  tcpRejected: number;
  tcpIdleClosed: number;
  socketErrors: number;
}

export interface DnsServer {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly stats: ListenerStats;
}

/** Logs at most `perSecond` warnings a second; counts the rest. */
export function rateLimited(logger: Logger, perSecond = 10): (obj: object, msg: string) => void {
  let windowStart = 0;
  let inWindow = 0;
  let suppressed = 0;
  return (obj, msg) => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      if (suppressed > 0) logger.warn({ suppressed }, 'log messages suppressed');
      windowStart = now;
      inWindow = 0;
      suppressed = 0;
    }
    if (inWindow++ < perSecond) logger.warn(obj, msg);
    else suppressed++;
  };
}

const MAX_PENDING_OUTPUT = 1 << 20;

/** Creates the listeners; nothing is bound until start(). */
export function createDnsServer(opts: DnsServerOptions): DnsServer {
  const log = opts.logger;
  const warn = rateLimited(log);
  const idleMs = opts.tcpIdleTimeoutMs ?? 10_000;
  const maxConn = opts.tcpMaxConnections ?? 1000;
  const responder = opts.responder;
  const stats: ListenerStats = { tcpConnections: 0, tcpRejected: 0, tcpIdleClosed: 0, socketErrors: 0 };
  const udp: UdpSocket[] = [];
  const tcp: Server[] = [];
  /** Open connections and when each last received data. */
  const conns = new Map<Socket, number>();

  function onUdpSocket(sock: UdpSocket): void {
    sock.on('message', (msg, rinfo) => {
      const out = opts.transfers && isTransferPath(msg) ? opts.transfers.udp(msg, { address: rinfo.address, port: rinfo.port }) : responder.respond(msg, false);
      if (out) sock.send(out, rinfo.port, rinfo.address);
    });
    sock.on('error', (err) => {
      stats.socketErrors++;
      warn({ err: err.message }, 'udp socket error');
    });
  }

  function onTcpConnection(sock: Socket): void {
    if (conns.size >= maxConn) {
      // RFC 7766 6.2.3: at the cap, make room by closing the connection idle the longest
      let oldest: Socket | undefined;
      let oldestAt = Infinity;
      for (const [c, at] of conns) {
        if (at < oldestAt) {
          oldestAt = at;
          oldest = c;
        }
      }
      stats.tcpRejected++;
      if (!oldest) {
        sock.destroy();
        return;
      }
      conns.delete(oldest);
      oldest.destroy();
    }
    conns.set(sock, Date.now());
    stats.tcpConnections = conns.size;
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => {
      stats.tcpIdleClosed++;
      sock.destroy();
    });
    let pending: Buffer = Buffer.alloc(0);
    /** A transfer is being sent: later messages wait in `pending`. */
    let busy = false;
    const remote: Remote = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
    const frame = (out: Buffer) => {
      const f = Buffer.allocUnsafe(2 + out.length);
      f.writeUInt16BE(out.length, 0);
      out.copy(f, 2);
      return f;
    };
    const writeReplies = (replies: Buffer[]) => {
      if (replies.length === 0) return;
      const ok = sock.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
      if (!ok && sock.writableLength > MAX_PENDING_OUTPUT) {
        sock.pause();
        sock.once('drain', () => sock.resume());
      }
    };
    /** Sends one message of a transfer; resolves once the socket's buffer is below the cap. */
    const send = (out: Buffer): Promise<void> => {
      if (sock.destroyed) return Promise.reject(new Error('connection closed'));
      conns.set(sock, Date.now());
      if (sock.write(frame(out)) || sock.writableLength <= MAX_PENDING_OUTPUT) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const done = (err?: Error) => {
          sock.off('drain', onDrain);
          sock.off('close', onClose);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = () => done();
        const onClose = () => done(new Error('connection closed'));
        sock.once('drain', onDrain);
        sock.once('close', onClose);
      });
    };
    const drainPending = () => {
      const replies: Buffer[] = [];
      while (!busy && pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (len < 12) {
          // cannot be a DNS message: the stream is out of sync, close it
          sock.destroy();
          return;
        }
        if (pending.length < 2 + len) break;
        const msg = pending.subarray(2, 2 + len);
        pending = pending.subarray(2 + len);
        if (opts.transfers && isTransferPath(msg)) {
          writeReplies(replies.splice(0));
          busy = true;
          sock.pause();
          const copy = Buffer.from(msg);
          void opts.transfers.tcp(copy, remote, send)
            .catch((err: unknown) => {
              warn({ err: (err as Error).message, remote: remote.address }, 'transfer stopped');
              sock.destroy();
            })
            .finally(() => {
              busy = false;
              if (sock.destroyed) return;
              sock.resume();
              drainPending();
            });
          break;
        }
        const out = responder.respond(msg, true);
        if (out) replies.push(frame(out));
      }
      if (pending.length > 0 && pending.byteOffset > 0) pending = Buffer.from(pending);
      writeReplies(replies);
    };
    sock.on('data', (chunk: Buffer) => {
      conns.set(sock, Date.now());
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      drainPending();
    });
    sock.on('error', () => {
      /* resets are normal; the socket is closed below */
    });
    sock.on('close', () => {
      conns.delete(sock);
      stats.tcpConnections = conns.size;
    });
  }

  return {
    stats,
    async start() {
      for (const a of opts.listen) {
        const u = createSocket({
          type: a.family === 6 ? 'udp6' : 'udp4',
          ipv6Only: a.family === 6,
          recvBufferSize: 8 << 20,
          sendBufferSize: 8 << 20,
        });
        onUdpSocket(u);
        await new Promise<void>((res, rej) => {
          u.once('error', rej);
          u.bind(a.port, a.host, () => {
            u.off('error', rej);
            res();
          });
        });
        udp.push(u);
        const t = createServer({ noDelay: true }, onTcpConnection);
        t.on('error', (err) => warn({ err: err.message }, 'tcp listener error'));
        await new Promise<void>((res, rej) => {
          t.once('error', rej);
          t.listen({ port: a.port, host: a.host, ipv6Only: a.family === 6, backlog: 1024 }, () => {
            t.off('error', rej);
            res();
          });
        });
        tcp.push(t);
        log.info({ address: a.host, port: a.port }, 'dns listening (udp, tcp)');
      }
    },
    async stop() {
      for (const u of udp) await new Promise<void>((res) => u.close(() => res()));
      for (const c of conns.keys()) c.destroy();
      for (const t of tcp) await new Promise<void>((res) => t.close(() => res()));
      udp.length = 0;
      tcp.length = 0;
    },
  };
}

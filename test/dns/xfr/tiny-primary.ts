/**
 * A tiny loopback primary for transfer tests: serves snapshots and journals through our transfer
 * encoder. TCP: AXFR, IXFR (serial from the query's authority SOA) and SOA queries; UDP: SOA
 * queries, and IXFR answered with the single current SOA (RFC 1995 2: "use TCP"). Anything else
 * is dropped. Not the server (the lead's); just enough for dig and real secondaries.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { ZoneSnapshot } from '../../../src/dns/engine/snapshot.js';
import { RRType } from '../../../src/dns/wire/constants.js';
import { decodeMessage, encodeMessage, type Message } from '../../../src/dns/wire/message.js';
import type { Journal } from '../../../src/dns/xfr/journal.js';
import { axfrMessages, ixfrForm, ixfrMessages, paced, type IxfrForm } from '../../../src/dns/xfr/transfer.js';

export interface PrimaryState {
  snaps: Map<string, ZoneSnapshot>;
  journals: Map<string, Journal>;
  maxMessageSize: number;
  reserve: number;
  /** Passed to the transfer (default 1). */
  maxIxfrRatio?: number;
  /** Every transfer served: zone, kind, form. */
  log: { zone: string; kind: 'AXFR' | 'IXFR'; form?: IxfrForm; serial?: number }[];
}

export interface Primary {
  port: number;
  state: PrimaryState;
  close(): Promise<void>;
}

function soaAnswer(q: Message, snap: ZoneSnapshot): Buffer {
  return encodeMessage({
    id: q.id, opcode: 0, flags: { qr: true, aa: true, rd: q.flags.rd },
    question: [q.question[0]],
    answer: [{ name: snap.origin, type: RRType.SOA, ttl: snap.soa.ttl, rdata: snap.soa.rdata }],
  });
}

export async function startPrimary(state: Partial<PrimaryState> = {}): Promise<Primary> {
  const st: PrimaryState = { snaps: new Map(), journals: new Map(), maxMessageSize: 16384, reserve: 0, log: [], ...state };

  function messages(q: Message, tcp: boolean): Iterable<Buffer> {
    const question = q.question[0];
    const snap = question && st.snaps.get(question.name);
    if (!snap || q.flags.qr || q.opcode !== 0) return [];
    const o = { id: q.id, question, rd: q.flags.rd, maxMessageSize: st.maxMessageSize, reserve: st.reserve, maxIxfrRatio: st.maxIxfrRatio };
    if (question.type === RRType.SOA) return [soaAnswer(q, snap)];
    if (question.type === RRType.AXFR && tcp) {
      st.log.push({ zone: snap.origin, kind: 'AXFR' });
      return axfrMessages(snap, o);
    }
    if (question.type === RRType.IXFR) {
      const soa = q.authority.find((r) => r.type === RRType.SOA);
      if (!soa) return [];
      const serial = soa.rdata.readUInt32BE(soa.rdata.length - 20);
      if (!tcp) return [soaAnswer(q, snap)];
      const diffs = st.journals.get(snap.origin)?.diffsSince(serial) ?? null;
      st.log.push({ zone: snap.origin, kind: 'IXFR', form: ixfrForm(snap, serial, diffs, st.maxIxfrRatio), serial });
      return ixfrMessages(snap, serial, diffs, o);
    }
    return [];
  }

  const open = new Set<Socket>();
  const tcp: Server = createServer((sock: Socket) => {
    open.add(sock);
    sock.on('close', () => open.delete(sock));
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    sock.on('error', () => sock.destroy());
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        // one response stream at a time per connection, in order
        chain = chain.then(() => answerTcp(sock, q)).catch(() => void sock.destroy());
      }
    });
  });
  async function answerTcp(sock: Socket, raw: Buffer): Promise<void> {
    for await (const m of paced(messages(decodeMessage(raw), true))) {
      const framed = Buffer.alloc(2 + m.length);
      framed.writeUInt16BE(m.length, 0);
      m.copy(framed, 2);
      if (!sock.write(framed)) await new Promise((res) => sock.once('drain', res));
    }
  }
  // a TCP port from the kernel, then UDP on the same number; another process may hold that UDP
  // port (an ephemeral one of some client): then both are tried again elsewhere
  let port = 0;
  let udp: UdpSocket | undefined;
  for (let attempt = 0; !udp; attempt++) {
    await new Promise<void>((res) => tcp.listen(0, '127.0.0.1', () => res()));
    port = (tcp.address() as { port: number }).port;
    const u = createSocket('udp4');
    const bound = await new Promise<boolean>((res, rej) => {
      u.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' && attempt < 20 ? res(false) : rej(err)));
      u.bind(port, '127.0.0.1', () => res(true));
    });
    if (bound) udp = u;
    else await new Promise((res) => tcp.close(res));
  }
  udp.on('message', (raw, rinfo) => {
    try {
      for (const m of messages(decodeMessage(raw), false)) udp!.send(m, rinfo.port, rinfo.address);
    } catch {
      // malformed: dropped
    }
  });

  return {
    port,
    state: st,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((res) => tcp.close(res));
      await new Promise<void>((res) => udp!.close(() => res()));
    },
  };
}

/**
 * Seeded packet mutator and a windowed UDP blaster for the robustness test.
 * Every packet that must not be answered (shorter than 12 bytes, or QR=1) goes out on a
 * separate "silent" socket, so any datagram arriving there is a violation.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  buildQuery, decode, encodeName, encodeOpt, prng, rcodeName, udpExchange, T, RC, DecodeError,
} from './tiny-dns.js';

export type Rnd = () => number;
const int = (r: Rnd, n: number) => Math.floor(r() * n);
const pick = <X>(r: Rnd, xs: readonly X[]): X => xs[int(r, xs.length)];
const randBytes = (r: Rnd, n: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(r, 256);
  return b;
};

export const ZONE = 'robust.example.';
const NAMES = [
  'www.robust.example.', 'mail.robust.example.', 'alias.robust.example.', 'txt.robust.example.',
  'nope.robust.example.', 'robust.example.', 'sub.robust.example.', 'deep.sub.robust.example.',
  'ns1.robust.example.', 'WwW.RoBuSt.ExAmPlE.', 'a.b.c.d.e.f.nope.robust.example.',
  'www.example.org.', 'org.', '.', 'localhost.',
];
const TYPES = [T.A, T.AAAA, T.MX, T.TXT, T.NS, T.SOA, T.CNAME, T.ANY, 99, 65280];

/** A random valid query. */
export function baseQuery(r: Rnd): Buffer {
  const edns = r() < 0.5 ? { udpSize: pick(r, [512, 1232, 4096, 65535, 0]), do: r() < 0.3 } : null;
  return buildQuery(pick(r, NAMES), { id: int(r, 65536), type: pick(r, TYPES), rd: r() < 0.5, edns });
}

function header(id: number, flags: number, qd: number, an: number, ns: number, ar: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  h.writeUInt16BE(ns, 8);
  h.writeUInt16BE(ar, 10);
  return h;
}
const qtail = (type: number = T.A, klass = 1) => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(klass, 2);
  return b;
};
/** Name wire made of `n` labels of length `len`. */
export const longName = (n: number, len: number) => {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) parts.push(Buffer.from([len]), Buffer.alloc(len, 0x61 + (i % 26)));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
};

/** Hand-made malformed questions: compression tricks, bad labels, long names. */
export function badQuestion(r: Rnd, which = int(r, 9)): Buffer {
  const h = header(0, 0x0100, 1, 0, 0, 0);
  switch (which) {
    case 0: // pointer to itself
      return Buffer.concat([h, Buffer.from([0xc0, 12]), qtail()]);
    case 1: // label then pointer back to the start of the same name: a loop
      return Buffer.concat([h, Buffer.from([1, 0x61, 0xc0, 12]), qtail()]);
    case 2: { // forward pointer to a valid name placed after the question
      const target = 12 + 2 + 4;
      return Buffer.concat([h, Buffer.from([0xc0, target]), qtail(), encodeName('www.robust.example.')]);
    }
    case 3: // pointer past the end
      return Buffer.concat([h, Buffer.from([0xff, 0xff]), qtail()]);
    case 4: // label length 64..191 (reserved label types 01/10)
      return Buffer.concat([h, Buffer.from([64 + int(r, 128)]), randBytes(r, 64 + int(r, 40)), qtail()]);
    case 5: // name longer than 255 bytes
      return Buffer.concat([h, longName(4 + int(r, 4), 63), qtail()]);
    case 6: // two-pointer loop inside a name that starts after a valid label
      return Buffer.concat([h, Buffer.from([1, 0x61, 0xc0, 16, 0xc0, 14]), qtail()]);
    case 7: // truncated pointer
      return Buffer.concat([h, Buffer.from([3, 0x77, 0x77, 0x77, 0xc0])]);
    default: // pointer into the header
      return Buffer.concat([h, Buffer.from([0xc0, int(r, 12)]), qtail()]);
  }
}

/** Hand-made bad OPT records. */
export function badOpt(r: Rnd, which = int(r, 7)): Buffer {
  const q = buildQuery(pick(r, NAMES), { id: 0, type: T.A });
  const withAr = (n: number, ...rest: Buffer[]) => {
    const b = Buffer.concat([q, ...rest]);
    b.writeUInt16BE(n, 10);
    return b;
  };
  switch (which) {
    case 0: { // rdlen past the end
      const o = encodeOpt({ options: Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]) });
      o.writeUInt16BE(200 + int(r, 1000), 9);
      return withAr(1, o);
    }
    case 1: // two OPTs
      return withAr(2, encodeOpt({}), encodeOpt({ udpSize: 4096 }));
    case 2: // OPT owner not the root
      return withAr(1, encodeOpt({}, encodeName('robust.example.')));
    case 3: // EDNS version != 0
      return withAr(1, encodeOpt({ version: 1 + int(r, 255) }));
    case 4: // option length past the end of RDATA
      return withAr(1, encodeOpt({ options: Buffer.from([0, 10, 0, 200, 1, 2, 3, 4]) }));
    case 5: // OPT truncated in its fixed part
      return withAr(1, encodeOpt({}).subarray(0, 1 + int(r, 10)));
    default: // arcount says 1 but nothing there
      return withAr(1);
  }
}

export type Mutator = { name: string; weight: number; fn: (r: Rnd) => Buffer };

export const MUTATORS: Mutator[] = [
  { name: 'bitflip', weight: 30, fn: (r) => {
    const b = Buffer.from(baseQuery(r));
    const n = 1 + int(r, r() < 0.7 ? 2 : 8);
    for (let i = 0; i < n; i++) {
      const bit = 16 + int(r, b.length * 8 - 16);
      b[bit >> 3] ^= 0x80 >> (bit & 7);
    }
    return b;
  } },
  { name: 'truncate', weight: 10, fn: (r) => { const b = baseQuery(r); return Buffer.from(b.subarray(0, int(r, b.length))); } },
  { name: 'counts', weight: 10, fn: (r) => {
    const b = Buffer.from(baseQuery(r));
    const n = 1 + int(r, 2);
    for (let i = 0; i < n; i++) b.writeUInt16BE(pick(r, [65535, 0, 2, 3, int(r, 65536)]), pick(r, [4, 6, 8, 10]));
    return b;
  } },
  { name: 'badQuestion', weight: 8, fn: (r) => badQuestion(r) },
  { name: 'badOpt', weight: 8, fn: (r) => badOpt(r) },
  { name: 'opcode', weight: 5, fn: (r) => {
    const b = Buffer.from(baseQuery(r));
    b[2] = (b[2] & 0x87) | ((1 + int(r, 15)) << 3);
    return b;
  } },
  { name: 'random', weight: 10, fn: (r) => {
    const b = randBytes(r, 12 + int(r, r() < 0.9 ? 120 : 1400));
    if (r() < 0.9) b[2] &= 0x7f;
    if (r() < 0.5) b[2] &= 0x87; // opcode 0
    if (r() < 0.5) b.writeUInt16BE(int(r, 3), 4);
    return b;
  } },
  { name: 'splice', weight: 8, fn: (r) => {
    let b = Buffer.from(baseQuery(r));
    const at = 12 + int(r, b.length - 12);
    switch (int(r, 4)) {
      case 0: b = Buffer.concat([b.subarray(0, at), randBytes(r, 1 + int(r, 40)), b.subarray(at)]); break;
      case 1: b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(r, 10)))]); break;
      case 2: b = Buffer.concat([b, baseQuery(r).subarray(12)]); break;
      default: b[at] = pick(r, [0, 0xff, 0xc0, 0x3f, 0x40, 0x80]);
    }
    return b;
  } },
  { name: 'qr', weight: 6, fn: (r) => {
    const b = r() < 0.7 ? Buffer.from(baseQuery(r)) : randBytes(r, 12 + int(r, 100));
    b[2] |= 0x80;
    return b;
  } },
  { name: 'short', weight: 5, fn: (r) => (r() < 0.5 ? randBytes(r, int(r, 12)) : Buffer.from(baseQuery(r).subarray(0, int(r, 12)))) },
];
const TOTAL_WEIGHT = MUTATORS.reduce((s, m) => s + m.weight, 0);
function pickMutator(r: Rnd): Mutator {
  let x = r() * TOTAL_WEIGHT;
  for (const m of MUTATORS) if ((x -= m.weight) < 0) return m;
  return MUTATORS[MUTATORS.length - 1];
}

/** Whether the server must stay silent for this datagram. */
export const mustBeSilent = (p: Buffer) => p.length < 12 || (p[2] & 0x80) !== 0;

const NOT_SERVFAIL = new Set([0, 1, 3, 4, 5, 16]);
/** The rcodes acceptable for an answered query (QR=0, at least 12 bytes). */
export function allowedRcodes(p: Buffer): { allowed: Set<number>; why: string } {
  const opcode = (p[2] >> 3) & 0xf;
  if (opcode === 4) return { allowed: NOT_SERVFAIL, why: 'NOTIFY' };
  if (opcode !== 0) return { allowed: new Set([RC.NOTIMP, RC.FORMERR]), why: `opcode ${opcode}` };
  let d;
  try {
    d = decode(p);
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return { allowed: new Set([RC.FORMERR]), why: `malformed (${e.message})` };
  }
  if (d.qdcount !== 1) return { allowed: new Set([RC.FORMERR, RC.BADVERS]), why: `qdcount ${d.qdcount}` };
  if (d.opt && d.opt.version !== 0) return { allowed: new Set([RC.BADVERS, RC.FORMERR]), why: `EDNS version ${d.opt.version}` };
  return { allowed: new Set([RC.NOERROR, RC.FORMERR, RC.NXDOMAIN, RC.NOTIMP, RC.REFUSED]), why: 'well-formed' };
}

/**
 * Checks one UDP reply against the query; returns the violation kinds (empty when fine).
 * `rcode` is the full rcode when the reply decodes, else the header rcode.
 */
export function checkReply(q: Buffer, reply: Buffer): { problems: string[]; rcode: number } {
  const problems: string[] = [];
  if (reply.length < 12) return { problems: ['reply shorter than 12 bytes'], rcode: -1 };
  let rcode = reply[3] & 0xf;
  try {
    rcode = decode(reply).rcode;
  } catch (e) {
    problems.push(`reply does not decode: ${(e as Error).message}`);
  }
  if (reply.readUInt16BE(0) !== q.readUInt16BE(0)) problems.push('reply ID differs');
  if ((reply[2] & 0x80) === 0) problems.push('reply has QR=0');
  if (((reply[2] >> 3) & 0xf) !== ((q[2] >> 3) & 0xf)) problems.push('opcode not copied');
  if (reply.length > 1232) problems.push(`UDP reply of ${reply.length} bytes > 1232`);
  else if (q.readUInt16BE(10) === 0 && reply.length > 512) problems.push(`UDP reply of ${reply.length} bytes > 512 without EDNS`);
  if (rcode === RC.SERVFAIL) problems.push('SERVFAIL');
  else {
    const { allowed, why } = allowedRcodes(q);
    if (!allowed.has(rcode)) {
      problems.push(`${rcodeName(rcode)} for ${why} (want ${[...allowed].map(rcodeName).join('|')})`);
    }
  }
  return { problems, rcode };
}

export interface Sample { kind: string; mutator: string; query: string; reply?: string }

export interface FuzzStats {
  seed: number;
  sent: number;
  sentSilent: number;
  answered: number;
  unansweredFirstTry: number;
  unanswered: number;
  late: number;
  stray: number;
  silentAnswered: number;
  byRcode: Record<string, number>;
  byMutator: Record<string, number>;
  violations: Record<string, number>;
  samples: Sample[];
  elapsedMs: number;
  qps: number;
  aborted: string | null;
  dumpFile?: string;
}

/**
 * Sends `count` mutated packets to 127.0.0.1:`port` with at most `window` outstanding.
 * Unanswered packets are retried once, slowly, before being counted as unanswered.
 */
export async function udpFuzz(port: number, seed: number, count: number, window = 128): Promise<FuzzStats> {
  const r = prng(seed);
  const st: FuzzStats = {
    seed, sent: 0, sentSilent: 0, answered: 0, unansweredFirstTry: 0, unanswered: 0, late: 0, stray: 0,
    silentAnswered: 0, byRcode: {}, byMutator: {}, violations: {}, samples: [], elapsedMs: 0, qps: 0, aborted: null,
  };
  const addViolation = (kind: string, mutator: string, q: Buffer, reply?: Buffer) => {
    st.violations[kind] = (st.violations[kind] ?? 0) + 1;
    if (st.samples.filter((s) => s.kind === kind).length < 3) {
      const s: Sample = { kind, mutator, query: q.toString('hex') };
      if (reply) s.reply = reply.toString('hex');
      st.samples.push(s);
    }
  };
  const main: UdpSocket = createSocket({ type: 'udp4', recvBufferSize: 1 << 22 });
  const silent: UdpSocket = createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
  await Promise.all([main, silent].map((s) => new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()))));

  type Flight = { q: Buffer; mutator: string; at: number };
  const inflight = new Map<number, Flight>();
  const timedOut = new Map<number, Flight>();
  const silentSent: (Flight | undefined)[] = new Array(65536);
  let seq = 0;
  let silentSeq = 0;
  let generated = 0;
  let lastReply = Date.now();
  const t0 = Date.now();

  silent.on('message', (m) => {
    st.silentAnswered++;
    const f = m.length >= 2 ? silentSent[m.readUInt16BE(0)] : undefined;
    addViolation('answered a packet that must get no answer (QR=1 or < 12 bytes)', f?.mutator ?? '?', f?.q ?? Buffer.alloc(0), m);
  });

  await new Promise<void>((resolveAll) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(sweeper);
      resolveAll();
    };
    const pump = () => {
      while (!finished && inflight.size < window && generated < count) {
        const m = pickMutator(r);
        const p = m.fn(r);
        generated++;
        st.byMutator[m.name] = (st.byMutator[m.name] ?? 0) + 1;
        if (mustBeSilent(p)) {
          const id = silentSeq++ & 0xffff;
          if (p.length >= 2) p.writeUInt16BE(id, 0);
          silentSent[id] = { q: p, mutator: m.name, at: Date.now() };
          st.sentSilent++;
          silent.send(p, port, '127.0.0.1');
          continue;
        }
        const id = seq++ & 0xffff;
        p.writeUInt16BE(id, 0);
        inflight.set(id, { q: p, mutator: m.name, at: Date.now() });
        st.sent++;
        main.send(p, port, '127.0.0.1');
      }
      if (generated >= count && inflight.size === 0) finish();
    };
    main.on('message', (m) => {
      lastReply = Date.now();
      if (m.length < 2) {
        st.stray++;
        addViolation('reply shorter than 12 bytes', '?', Buffer.alloc(0), m);
        return;
      }
      const id = m.readUInt16BE(0);
      const f = inflight.get(id);
      if (!f) {
        if (timedOut.has(id)) st.late++;
        else {
          st.stray++;
          addViolation('reply with an ID we did not send', '?', Buffer.alloc(0), m);
        }
        return;
      }
      inflight.delete(id);
      st.answered++;
      const { problems, rcode } = checkReply(f.q, m);
      const rn = rcode < 0 ? 'short' : rcodeName(rcode);
      st.byRcode[rn] = (st.byRcode[rn] ?? 0) + 1;
      for (const p of problems) addViolation(p, f.mutator, f.q, m);
      pump();
    });
    const sweeper = setInterval(() => {
      const now = Date.now();
      for (const [id, f] of inflight) {
        if (now - f.at > 1500) {
          inflight.delete(id);
          timedOut.set(id, f);
          st.unansweredFirstTry++;
        }
      }
      if (now - lastReply > 5000 && now - t0 > 5000) {
        st.aborted = `no reply for 5 s after ${generated} packets (${inflight.size} in flight)`;
        const dump = join(tmpdir(), `fc-fuzz-${seed}-${Date.now()}.txt`);
        writeFileSync(dump, [...inflight.values(), ...[...timedOut.values()].slice(-200)]
          .map((f) => `${f.mutator} ${f.q.toString('hex')}`).join('\n') + '\n');
        st.dumpFile = dump;
        finish();
        return;
      }
      pump();
    }, 100);
    pump();
  });
  st.elapsedMs = Date.now() - t0;
  st.qps = Math.round((st.sent + st.sentSilent) / (st.elapsedMs / 1000));
  await new Promise((res) => setTimeout(res, 300)); // late replies to silent packets
  main.close();
  silent.close();

  // Retry what got no answer once, slowly, so that a lost datagram is not a failure.
  const retry = st.aborted ? [] : [...timedOut.values()];
  st.unanswered = Math.max(0, retry.length - 200);
  for (let i = 0; i < Math.min(retry.length, 200); i += 20) {
    await Promise.all(retry.slice(i, i + 20).map(async (f) => {
      const m = await udpExchange(port, f.q, 1000);
      if (!m) {
        st.unanswered++;
        addViolation('no answer (even on retry)', f.mutator, f.q);
        return;
      }
      st.answered++;
      const { problems, rcode } = checkReply(f.q, m);
      const rn = rcode < 0 ? 'short' : rcodeName(rcode);
      st.byRcode[rn] = (st.byRcode[rn] ?? 0) + 1;
      for (const p of problems) addViolation(p, f.mutator, f.q, m);
    }));
  }
  if (st.aborted) st.unanswered = inflight.size + timedOut.size;
  return st;
}

/**
 * The zone parser process: reads, parses, checks and packs zone files in a process of its own,
 * so that the serving process's heap, garbage collector and share of the CPU stay its own (a
 * 1,000,000-record zone needs about 600 MB of heap while it is parsed; all of it goes back to the
 * system when this process exits).
 *
 * Protocol (zone-loader.ts is the other end): one {@link ParseRequest} as JSON on stdin; for each
 * file, in order, one frame on stdout ({@link encodeFrame}): the {@link ParseReply} as JSON, a
 * packed zone's typed arrays left out and written to a file of the request's `outDir`
 * ({@link writeZoneData}), which the serving process reads straight into the arrays it keeps
 * ({@link readZoneData}): no chunk of a pipe to allocate and collect per 64 KiB (on a
 * 1,000,000-record zone those chunks cost the serving thread five major collections in a row).
 * Exits 0 after the last frame.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { HELPER_THREAD_NICE, setThreadsNice } from '../server/thread-priority.js';
import { describeLoadError, loadZoneFile } from './zone-file.js';
import { packZone, type PackedZone } from './zone-transfer.js';

/**
 * Files to parse: path and the zone name from the file name; `maxBytes` per zone with includes;
 * `background` while zones are being served (a reload): the process then runs at nice PARSER_NICE.
 */
export interface ParseRequest {
  jobs: { file: string; originText: string }[];
  maxBytes: number;
  background: boolean;
  /** A directory of the serving process (mode 0700) for the zones' arrays, one file per zone. */
  outDir: string;
}

/** The outcome for one file. */
export type ParseReply =
  | { file: string; ok: true; zone: PackedZone; includes: string[]; fingerprint: string }
  | { file: string; ok: false; line?: number; reason: string };

/** A reply as framed: a packed zone without its arrays, which are in the file `data` (their byte lengths in `lengths`). */
export type FramedReply =
  | { file: string; ok: true; zone: Omit<PackedZone, ArrayKey>; includes: string[]; fingerprint: string; data: string; lengths: number[] }
  | { file: string; ok: false; line?: number; reason: string };

/** Warnings handed over per zone; the rest are counted in one more line. */
const MAX_WARNINGS = 100;

/** Nice value of the parser during a reload: when CPUs are scarce, the process that answers goes first. */
export const PARSER_NICE = HELPER_THREAD_NICE;

/** The typed arrays of a packed zone, in frame order, with their element types. */
const ARRAYS = [
  ['names', Uint8Array], ['nameEnds', Uint32Array], ['hashes', Uint32Array], ['table', Uint32Array],
  ['nodeStarts', Uint32Array], ['index', Uint32Array], ['cuts', Uint8Array], ['rdata', Uint8Array], ['canonical', Uint32Array],
] as const;
type ArrayKey = (typeof ARRAYS)[number][0];

/** Most bytes of a frame's JSON part (a reply with 100 warnings is far below). */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/**
 * Most bytes per read or write system call of this process. The kernel may run a system call to
 * its end before it lets another thread have the CPU (no kernel preemption, the default of
 * Debian's kernels): one write of a 100 MB array kept a CPU for tens of milliseconds, while the
 * serving thread waited for it.
 */
export const IO_CHUNK = 1024 * 1024;

/** Writes a packed zone's arrays to `path` (created, mode 0600), in {@link ARRAYS} order; returns their byte lengths. */
export function writeZoneData(path: string, zone: PackedZone): number[] {
  const fd = openSync(path, 'wx', 0o600);
  try {
    return ARRAYS.map(([key]) => {
      const a = zone[key];
      const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, Math.min(IO_CHUNK, bytes.length - at));
      return a.byteLength;
    });
  } finally {
    closeSync(fd);
  }
}

/** Chunk of one read of a zone's arrays (the reads run in libuv's pool, not on the serving thread). */
const READ_CHUNK = IO_CHUNK;

/**
 * Reads the arrays of a framed reply and deletes the file; the reply as sent. The arrays are views
 * on one buffer: one allocation, so the garbage collector reacts to the new memory once, not once
 * per array (each reaction can be a major collection of the serving thread's heap).
 */
export async function readZoneData(reply: Extract<FramedReply, { ok: true }>): Promise<Extract<ParseReply, { ok: true }>> {
  const offsets: number[] = [];
  let total = 0;
  for (let i = 0; i < ARRAYS.length; i++) {
    const [key, Kind] = ARRAYS[i];
    const n = reply.lengths[i];
    if (!Number.isInteger(n) || n < 0 || n % Kind.BYTES_PER_ELEMENT !== 0) throw new Error(`array ${key} of ${n} bytes`);
    offsets.push(total);
    total += Math.ceil(n / 8) * 8; // every view aligned for its element size
  }
  const backing = new ArrayBuffer(total);
  const fh = await open(reply.data, 'r');
  const zone: Record<string, unknown> = { ...reply.zone };
  try {
    let position = 0;
    for (let i = 0; i < ARRAYS.length; i++) {
      const [key, Kind] = ARRAYS[i];
      const n = reply.lengths[i];
      const bytes = new Uint8Array(backing, offsets[i], n);
      for (let at = 0; at < n; ) {
        const { bytesRead } = await fh.read(bytes, at, Math.min(READ_CHUNK, n - at), position);
        if (bytesRead === 0) throw new Error(`${reply.data} ends at ${position} bytes, before array ${key}'s end`);
        at += bytesRead;
        position += bytesRead;
      }
      zone[key] = new Kind(backing, offsets[i], n / Kind.BYTES_PER_ELEMENT);
    }
  } finally {
    await fh.close();
    await unlink(reply.data).catch(() => undefined);
  }
  const { data: _data, lengths: _lengths, ...rest } = reply;
  return { ...rest, zone: zone as unknown as PackedZone };
}

/** A reply as frame bytes: u32 LE length of the JSON, the JSON ({@link FramedReply}). */
export function encodeFrame(reply: FramedReply): Buffer {
  const json = Buffer.from(JSON.stringify(reply));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([len, json]);
}

/** Reads frames from chunks as they arrive. Throws on a malformed frame. */
export class FrameReader {
  private head: Buffer = Buffer.alloc(0);

  constructor(private readonly onReply: (reply: FramedReply) => void) {}

  push(chunk: Buffer): void {
    this.head = this.head.length === 0 ? chunk : Buffer.concat([this.head, chunk]);
    while (this.head.length >= 4) {
      const len = this.head.readUInt32LE(0);
      if (len > MAX_HEADER_BYTES) throw new Error(`a reply header of ${len} bytes`);
      if (this.head.length < 4 + len) return;
      const reply = JSON.parse(this.head.subarray(4, 4 + len).toString()) as FramedReply;
      this.head = this.head.subarray(4 + len);
      if (reply.ok && (!Array.isArray(reply.lengths) || reply.lengths.length !== ARRAYS.length || typeof reply.data !== 'string')) {
        throw new Error('a reply without its arrays');
      }
      this.onReply(reply);
    }
  }

  /** Whether a frame is partly read. */
  get midFrame(): boolean {
    return this.head.length > 0;
  }
}

function parseAll(req: ParseRequest): void {
  if (req.background) setThreadsNice(PARSER_NICE, false); // every thread: on Linux a nice value is per thread
  req.jobs.forEach((job, i) => {
    let reply: FramedReply;
    try {
      const loaded = loadZoneFile(job.file, job.originText, req.maxBytes);
      const zone = packZone(loaded.zone);
      if (zone.warnings.length > MAX_WARNINGS) {
        const more = zone.warnings.length - MAX_WARNINGS;
        zone.warnings = [...zone.warnings.slice(0, MAX_WARNINGS), `${more} more warnings like these not shown`];
      }
      const data = join(req.outDir, `${i}.bin`);
      const lengths = writeZoneData(data, zone);
      const meta: Record<string, unknown> = { ...zone };
      for (const [key] of ARRAYS) delete meta[key];
      reply = { file: job.file, ok: true, zone: meta as Omit<PackedZone, ArrayKey>, includes: loaded.includes, fingerprint: loaded.fingerprint, data, lengths };
    } catch (err) {
      reply = { file: job.file, ok: false, ...describeLoadError(err, job.file) };
    }
    // stdout is a pipe: on Linux this write is synchronous, the frame is out when it returns
    process.stdout.write(encodeFrame(reply));
  });
}

if (process.env.FAILOVER_ZONE_PARSER === '1') {
  const chunks: Buffer[] = [];
  process.stdin.on('data', (c: Buffer) => chunks.push(c));
  process.stdin.on('end', () => {
    parseAll(JSON.parse(Buffer.concat(chunks).toString()) as ParseRequest);
    process.stdout.end(() => process.exit(0));
  });
}

/**
 * A {@link QueryStream} in a process of its own (started by bench:zone-load with fork): its
 * timestamps are then not delayed by the bench's own pauses (its garbage collector, its sampling),
 * which would read as gaps in the server's answers. Options come as JSON in argv[2]; every answer
 * goes to the parent over IPC in batches, times as epoch milliseconds (performance.timeOrigin +
 * performance.now(), so that the parent can put them on its own clock); "stop" ends it.
 */
import { QueryStream, type Answered } from '../test/dns/query-stream.js';

interface Options { port: number; zone: string; groups: number }

const o = JSON.parse(process.argv[2] ?? '{}') as Options;
// one query per millisecond: the resolution a 50 ms target needs, and little of a CPU the load generator shares
const stream = new QueryStream({ port: o.port, zone: o.zone, names: (i) => `host${(i * 7919) % o.groups}.${o.zone}`, burst: 1 });
const epoch = (t: number) => performance.timeOrigin + t;
let sent = 0;
const flush = (): void => {
  const batch: Answered[] = stream.answered.slice(sent).map((a) => ({ ...a, sentAt: epoch(a.sentAt), answeredAt: epoch(a.answeredAt) }));
  sent = stream.answered.length;
  if (batch.length > 0) process.send?.({ type: 'answers', batch });
};
await stream.start();
const timer = setInterval(flush, 20);
process.send?.({ type: 'started', port: stream.localPort });
process.on('message', (m: { type?: string }) => {
  if (m?.type !== 'stop') return;
  clearInterval(timer);
  stream.stop();
  flush();
  process.send?.({ type: 'stopped', lost: stream.lost, inFlightAtStop: stream.inFlightAtStop }, () => process.exit(0));
});
process.on('disconnect', () => process.exit(0));

/**
 * Sliced work gives way to answering (runSliced): between two slices the event loop serves what
 * is waiting, every queued datagram and not one batch of 32 per slice (what one turn of the loop
 * reads from a UDP socket), and the work still advances when the loop never runs out of work.
 */
import { afterEach, expect, test } from '@jest/globals';
import { createSocket, type Socket } from 'node:dgram';
import { runSliced } from '../../../src/dns/engine/snapshot.js';

/** Keeps the CPU busy for `ms` (the cost of a slice or of answering a query). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

const sockets: Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

async function bound(): Promise<Socket> {
  const s = createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  return s;
}

test('datagrams queued during a slice are all served before the next slices', async () => {
  const DATAGRAMS = 160; // well within a default receive buffer
  const server = await bound();
  const client = await bound();
  let step = 0;
  /** Per datagram served: the step that ran last before it. */
  const servedAfter: number[] = [];
  server.on('message', () => {
    spin(0.02); // answering a query
    servedAfter.push(step);
  });
  function* work(): Generator<void, number> {
    for (step = 0; step < 40; step++) {
      if (step === 0) for (let i = 0; i < DATAGRAMS; i++) client.send(Buffer.from([i]), server.address().port, '127.0.0.1');
      spin(2); // a slice
      yield;
    }
    return step;
  }
  expect(await runSliced(work())).toBe(40);
  expect(servedAfter).toHaveLength(DATAGRAMS);
  // one turn per slice would serve 32 per step: the last ones after step 4
  expect(Math.max(...servedAfter)).toBeLessThanOrEqual(2);
});

test('the work advances while every turn of the loop is busy', async () => {
  let busy = true;
  const load = () => {
    spin(1);
    if (busy) setImmediate(load);
  };
  setImmediate(load);
  function* work(): Generator<void, string> {
    for (let i = 0; i < 20; i++) {
      spin(1);
      yield;
    }
    return 'done';
  }
  try {
    expect(await runSliced(work())).toBe('done');
  } finally {
    busy = false;
  }
});

/**
 * An account with a probe, moved during a migration in the namespace lab: the controller (in the
 * client namespace) probes the account's site through its own DNS answers while the account moves,
 * and records the probe-measured gap on the move.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { createLab, labSections, type Lab } from '../support/netns-lab.js';
import { waitFor } from '../support/wait-for.js';

let lab: Lab;
let ctl: ControllerHandle;
beforeAll(async () => {
  lab = await createLab();
  ctl = await startController({
    netns: lab.ns.client,
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'migration'),
    sections: {
      ...labSections(lab, { profile: 'vps' }),
      accounts: [{ name: 'acme', server: 'srv-42', zones: ['acme.test'], probe: { url: 'http://www.acme.test/', identity_header: 'x-served-by' } }],
      // A probe timeout of seconds: both hosts serve the site throughout, so any failed probe
      // would be a slow answer on a loaded machine, not an outage.
      health: { interval_ms: 10, timeout_ms: 3000, deadline_s: 30, recovery_probes: 20 },
    },
  });
}, 90_000);
afterAll(async () => {
  await ctl?.stop();
  await lab?.destroy();
});

describe('account probe', () => {
  test("the account's site is probed through our own DNS during its move; the gap is recorded", async () => {
    expect((await ctl.post('/v1/servers/srv-42/migration')).status).toBe(201);
    expect((await ctl.post('/v1/accounts/acme/move', { to: 'transit', phase: 'started' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300)); // the move itself (copying files and databases)
    expect((await ctl.post('/v1/accounts/acme/move', { to: 'transit', phase: 'completed' })).status).toBe(200);
    const probe = await waitFor(
      'the probe result of the move',
      async () => JSON.parse((await ctl.get('/v1/servers/srv-42/migration')).body).accounts[0].moves[0].probe as Record<string, unknown> | null,
      { pollMs: 100, timeoutMs: 45_000 },
    );
    console.log('acme move to transit, probe:', JSON.stringify(probe));
    expect(probe).toMatchObject({ recovered: true, downtime_ms: 0, probes_failed: 0 });
    expect(probe.probes_sent as number).toBeGreaterThan(20);
  }, 90_000);
});

/**
 * Credentials never reach a log, an operation or an API answer, in any encoding: the controller
 * runs the http backend against the fake provider, which echoes the request's Authorization header
 * and the credentials in it (base64, plain, URL-, form- and JSON-encoded, inside longer base64) in
 * every error it answers. A cutover fails after many such answers, is retried through the API, and
 * then every API answer and the controller's whole log output are searched for every form.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { join } from 'node:path';
import { REPO_ROOT, startController, type ControllerHandle } from '../support/controller.js';
import { FakeRobot, credentialEchoes, credentialTexts } from '../support/fake-robot.js';

// characters that each encoding treats differently: + / = & " \ space, a colon and a non-ASCII letter
const USER = 'ws+u7Xq';
const PASSWORD = 'pw S3cr3t/+="\\&é:x';
const SRV = '192.0.2.42';
const TRANSIT = '192.0.2.43';
const FAILOVERS = ['203.0.113.10', '203.0.113.11'];

let robot: FakeRobot;
let ctl: ControllerHandle;
const answers: string[] = [];

beforeAll(async () => {
  robot = await FakeRobot.start({
    username: USER, password: PASSWORD,
    servers: [{ ip: SRV }, { ip: TRANSIT }],
    failovers: FAILOVERS.map((ip) => ({ ip, serverIp: SRV, activeServerIp: SRV })),
  });
  for (const ip of FAILOVERS) robot.fault(ip, { serverErrors: 1_000_000, serverErrorMethod: 'ANY', echoCredentials: true });
  ctl = await startController({
    zonesDir: join(REPO_ROOT, 'test', 'fixtures', 'cutover'),
    sections: {
      servers: [{ name: 'srv-42', addresses: FAILOVERS }],
      transits: [{ name: 'transit-3', addresses: ['198.51.100.20', '198.51.100.21'] }],
      state: { path: './state.db' },
      routing: {
        backend: 'http',
        retry: { deadline_s: 2, min_delay_ms: 1, max_delay_ms: 10 },
        http: { base_url: robot.url, username_env: 'ROBOT_USER', password_env: 'ROBOT_PASSWORD', timeout_ms: 2000, server_ips: { 'srv-42': SRV, 'transit-3': TRANSIT } },
      },
    },
    env: { ROBOT_USER: USER, ROBOT_PASSWORD: PASSWORD },
  });
});
afterAll(async () => {
  await ctl?.stop();
  await robot?.close();
});

const keep = (r: { status: number; body: string }) => {
  answers.push(r.body);
  return { status: r.status, body: JSON.parse(r.body) as Record<string, any> };
};

describe('a provider that echoes the credentials', () => {
  test('cutover fails on echoed errors, is retried, fails again; nothing anywhere carries the credentials', async () => {
    const cut = keep(await ctl.post('/v1/servers/srv-42/cutover', { transit: 'transit-3' }));
    expect(cut.status).toBe(202);
    const failed = await ctl.waitOperation(cut.body.id);
    expect(failed.state).toBe('failed');
    const retry = keep(await ctl.post(`/v1/operations/${cut.body.id}/retry?wait=30`));
    expect(retry.body.state).toBe('failed');
    const op = keep(await ctl.get(`/v1/operations/${cut.body.id}`));
    keep(await ctl.get('/v1/servers/srv-42'));
    keep(await ctl.get('/v1/servers'));

    // the provider did echo every form, several times, and the errors went everywhere
    const forms = credentialEchoes(`Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
    expect(robot.echoed.length).toBeGreaterThanOrEqual(2 * forms.length);
    for (const f of forms) expect(robot.echoed).toContain(f);
    expect(op.body.error.code).toBe('ROUTING_FAILED');
    expect(op.body.error.message).toContain('***');
    const log = ctl.output();
    expect(log.match(/routing attempt failed; retrying/g)?.length ?? 0).toBeGreaterThanOrEqual(forms.length);
    expect(log).toContain('***');

    const texts = credentialTexts(USER, PASSWORD);
    const leaks = (where: string, text: string) => texts.filter((t) => text.includes(t)).map((t) => `${where}: ${t}`);
    expect([
      ...leaks('operation error', JSON.stringify(op.body)),
      ...answers.flatMap((a, i) => leaks(`API answer ${i}`, a)),
      ...leaks('log', log),
    ]).toEqual([]);
  });
});

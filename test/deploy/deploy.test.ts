/**
 * Operator artefacts: the alert rules pass `promtool check rules` and their own `promtool test
 * rules` cases; the Grafana dashboard and the rules only use metrics the controller defines.
 */
import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { createAuditMetrics } from '../../src/audit/metrics.js';
import { createControllerMetrics } from '../../src/controller/metrics.js';
import { createDnsMetrics } from '../../src/dns/metrics.js';
import { createHealthMetrics } from '../../src/health/metrics.js';
import { createRegistry } from '../../src/metrics/registry.js';
import { createRoutingMetrics } from '../../src/routing/metrics.js';
import { createStateMetrics } from '../../src/store/metrics.js';
import { REPO_ROOT } from '../support/controller.js';

const PROM = join(REPO_ROOT, 'deploy', 'prometheus');
const promtool = (args: string[]) => {
  try {
    return { code: 0, out: execFileSync('promtool', args, { cwd: PROM, encoding: 'utf8' }) };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new Error('promtool is missing: apt-get install prometheus');
    return { code: e.status ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
};

/** Every series name the controller can export (histograms with their suffixes). */
async function exportedNames(): Promise<Set<string>> {
  const registry = createRegistry();
  createDnsMetrics(registry, () => undefined);
  createControllerMetrics(registry, () => undefined);
  createRoutingMetrics(registry);
  createHealthMetrics(registry);
  createAuditMetrics(registry);
  createStateMetrics(registry, { isLeader: () => true, revision: () => 0, lagSeconds: () => 0 });
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
  }
  return names;
}

const metricNames = (expr: string) => [...expr.matchAll(/\b(failover_[a-z0-9_]+)/g)].map((m) => m[1]);

describe('deploy/', () => {
  test('alerts.yml passes promtool check rules', () => {
    const r = promtool(['check', 'rules', 'alerts.yml']);
    expect(r.out).toContain('SUCCESS: 16 rules found');
    expect(r.code).toBe(0);
  });

  test('alerts.yml passes its promtool test rules cases', () => {
    const r = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(r.out).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  test('the rules and the dashboard use only metrics the controller exports', async () => {
    const names = await exportedNames();
    const rules = parse(readFileSync(join(PROM, 'alerts.yml'), 'utf8')) as { groups: { rules: { expr: string }[] }[] };
    const dash = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy', 'grafana', 'failover-controller.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const used = [
      ...rules.groups.flatMap((g) => g.rules.flatMap((r) => metricNames(r.expr))),
      ...dash.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr))),
    ];
    expect(used.length).toBeGreaterThan(15);
    expect(used.filter((n) => !names.has(n))).toEqual([]);
    expect(dash.panels.every((p) => p.targets.length > 0)).toBe(true);
  });
});

/**
 * bench:mx — 10,000 domains audited against the local DNS lab (test/support/dns-lab.ts: NSD +
 * unbound on loopback). The domains are copies of the lab's cases (OK, INFO, WARN and FAIL
 * ones) plus a few made to fail (all name servers dead -> UNKNOWN). Prints domains/s, the time
 * for all, the verdict counts, and fails (exit 1) when a domain's verdict differs from its case's,
 * i.e. UNKNOWN anywhere but in the domains made to fail.
 *
 * Environment: MX_BENCH_DOMAINS (default 10000), MX_BENCH_CONCURRENCY (default 256),
 * MX_BENCH_TARGET_S (default 30).
 * Needs root (port 53 on 127.B.C.x) and the Debian packages nsd, unbound, ldnsutils.
 */
import { createMxAuditor } from '../src/audit/mx-audit.js';
import { loadLabCases, startDnsLab, type LabCase } from '../test/support/dns-lab.js';

const TEMPLATES = [
  'good.com', 'good.com', 'good.com', 'good.com', 'provider-hosted.com', 'forbidden-mx.com', 'missing-mx2.com',
  'wrong-priority.com', 'foreign-mixed.com', 'spf-missing.com', 'spf-no-include.com', 'duplicate-host.com',
  'no-mx.com', 'null-mx.com', 'lame-refused.com', 'stale-secondary.com',
];
const DEAD = 'dead-ns.com';

async function main(): Promise<void> {
  const total = Number(process.env.MX_BENCH_DOMAINS ?? 10_000);
  const concurrency = Number(process.env.MX_BENCH_CONCURRENCY ?? 256);
  const targetS = Number(process.env.MX_BENCH_TARGET_S ?? 30);
  const byName = new Map(loadLabCases().map((c) => [c.domain, c]));
  const dead = Math.max(1, Math.round(total / 1000));
  const cases: LabCase[] = [];
  for (let i = 0; i < total; i++) {
    const tpl = byName.get(i < dead ? DEAD : TEMPLATES[i % TEMPLATES.length])!;
    const label = tpl.domain.replace(/\.com$/, '');
    cases.push({ ...tpl, domain: `b${String(i).padStart(5, '0')}-${label}.com` });
  }
  const t0 = Date.now();
  const lab = await startDnsLab({ cases, resolverThreads: 2 });
  const setupS = (Date.now() - t0) / 1000;
  console.log(`bench:mx lab up in ${setupS.toFixed(1)} s (${total} zones, resolver ${lab.resolver})`);
  let code = 0;
  try {
    const auditor = createMxAuditor(lab.settings({ timeout_ms: 2000, retries: 2 }));
    const domains = cases.map((c) => c.domain);
    // shuffle so that the cases are mixed as in real life
    for (let i = domains.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [domains[i], domains[j]] = [domains[j], domains[i]];
    }
    const start = process.hrtime.bigint();
    let lastPrint = Date.now();
    const results = await auditor.auditMany(domains, {
      concurrency,
      onProgress: (done, n) => {
        if (process.stderr.isTTY && Date.now() - lastPrint > 500) {
          lastPrint = Date.now();
          process.stderr.write(`\r${done}/${n}`);
        }
      },
    });
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    const counts: Record<string, number> = {};
    const expected = new Map(cases.map((c) => [c.domain, c.expect!.verdict]));
    const wrong: string[] = [];
    for (const r of results) {
      counts[r.verdict] = (counts[r.verdict] ?? 0) + 1;
      if (expected.get(r.domain) !== r.verdict) wrong.push(`${r.domain}: ${r.verdict} (expected ${expected.get(r.domain)})`);
    }
    console.log(`bench:mx ${results.length} domains in ${secs.toFixed(2)} s: ${(results.length / secs).toFixed(0)} domains/s (concurrency ${concurrency})`);
    console.log(`bench:mx verdicts: ${Object.entries(counts).sort().map(([k, v]) => `${k} ${v}`).join(', ')} (made to fail: ${dead})`);
    if (wrong.length) {
      console.log(`bench:mx ${wrong.length} unexpected verdicts, e.g.:\n  ${wrong.slice(0, 10).join('\n  ')}`);
      code = 1;
    }
    if (secs > targetS) {
      console.log(`bench:mx slower than the target of ${targetS} s`);
      code = 1;
    }
  } finally {
    await lab.stop();
  }
  process.exitCode = code;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

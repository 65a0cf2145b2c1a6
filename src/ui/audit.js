// MX audit: domains pasted or read from a file, audited in batches of 200 (POST /v1/mx-audit)
// with live progress; a results table with each verdict and the exact records to change; a CSV download.
import { api, el, failureText, showError, table } from './lib.js';

const BATCH = 200;

/** The domains of a text: one per line, the first comma/semicolon/tab-separated column; blank lines and # comments skipped. */
export function domainsOf(text) {
  const seen = new Set();
  const out = [];
  for (const line of text.split(/\r?\n/)) {
    const d = line.split(/[,;\t]/)[0].trim().replace(/^"|"$/g, '');
    if (!d || d.startsWith('#') || d.toLowerCase() === 'domain' || seen.has(d.toLowerCase())) continue;
    seen.add(d.toLowerCase());
    out.push(d);
  }
  return out;
}

/** The records to change of a result: each check's fix (or the reason for INVALID). */
export function fixesOf(r) {
  if (r.verdict === 'INVALID') return [r.error?.message ?? 'not a domain name'];
  return r.checks.filter((c) => c.verdict !== 'OK' && c.fix).map((c) => c.fix);
}

/** One CSV cell (RFC 4180), with a leading ' before = + - @ so a spreadsheet never runs it as a formula. */
export function csvCell(v) {
  let s = String(v ?? '');
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The CSV of results: domain, verdict, fix (fixes joined by "; "). */
export function csvOf(results) {
  const rows = [['domain', 'verdict', 'fix'], ...results.map((r) => [r.domain, r.verdict, fixesOf(r).join('; ')])];
  return rows.map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

export function auditView(main) {
  let results = [];
  const text = el('textarea', { id: 'domains', rows: '8', spellcheck: 'false' });
  const file = el('input', { id: 'domains-file', type: 'file', accept: '.txt,.csv,text/plain,text/csv' });
  const progress = el('progress', { id: 'audit-progress', max: '1', value: '0' });
  const progressText = el('span', { id: 'audit-progress-text', role: 'status', text: '' });
  const out = el('section', { 'aria-label': 'Results' });
  const run = el('button', { type: 'submit', text: 'Audit' });
  const download = el('button', { type: 'button', text: 'Download CSV', disabled: true, onclick: () => {
    const url = URL.createObjectURL(new Blob([csvOf(results)], { type: 'text/csv' }));
    const a = el('a', { href: url, download: 'mx-audit.csv', hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } });

  function renderResults() {
    const counts = {};
    for (const r of results) counts[r.verdict] = (counts[r.verdict] ?? 0) + 1;
    out.replaceChildren(
      el('p', { text: Object.entries(counts).map(([v, n]) => `${n} ${v}`).join(', ') }),
      table('MX audit results', ['Domain', 'Verdict', 'What to change at the DNS provider'], results.map((r) => [
        r.domain,
        el('span', { class: `verdict verdict-${r.verdict}`, text: r.verdict }),
        fixesOf(r).length ? el('ul', { class: 'fixes' }, fixesOf(r).map((f) => el('li', { text: f }))) : 'nothing',
      ])));
  }

  const form = el('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      showError(null);
      let domains = domainsOf(text.value);
      if (file.files && file.files[0]) domains = [...new Set([...domains, ...domainsOf(await file.files[0].text())])];
      if (domains.length === 0) {
        showError('Give at least one domain.');
        return;
      }
      results = [];
      run.disabled = true;
      download.disabled = true;
      progress.max = domains.length;
      progress.value = 0;
      progressText.textContent = `0 / ${domains.length}`;
      try {
        for (let i = 0; i < domains.length; i += BATCH) {
          const r = await api('POST', '/v1/mx-audit', { domains: domains.slice(i, i + BATCH) });
          results.push(...r.results);
          progress.value = results.length;
          progressText.textContent = `${results.length} / ${domains.length}`;
          renderResults();
        }
        download.disabled = false;
      } catch (err) {
        showError(failureText(err));
      } finally {
        run.disabled = false;
      }
    },
  },
  el('label', { for: 'domains', text: 'Domains, one per line' }), text,
  el('label', { for: 'domains-file', text: 'Or a file (.txt or .csv, first column)' }), file,
  el('div', {}, run, download),
  el('label', { for: 'audit-progress', text: 'Progress' }), progress, ' ', progressText);

  main.replaceChildren(el('h1', { tabindex: '-1', text: 'MX audit' }),
    el('p', { class: 'muted', text: "Checks each domain's MX records as the world's resolvers see them, and says which record to add or delete." }),
    form, out);
  return {};
}

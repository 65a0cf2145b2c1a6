// A server: its addresses (where routed, what DNS answers and why, routing state), its overlay, its
// last operations with each address's measured downtime as a bar chart, propagation to the
// secondaries; its migration with each account and where it is. Cut over / Cut back and account
// moves (operate and admin tokens) behind a confirmation naming the server.
import { api, el, failureText, renderIfChanged, showError, table, when } from './lib.js';

const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs = {}, text) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
};
const msText = (v) => (v === null || v === undefined ? 'not measured' : `${v} ms`);

/** A horizontal bar chart of each address's measured downtime in an operation, with a table of the same figures. */
export function downtimeChart(op) {
  const rows = op.addresses;
  const max = Math.max(1, ...rows.map((a) => a.downtime_ms ?? 0));
  const labelW = 170;
  const barW = 320;
  const rowH = 24;
  const height = rows.length * rowH + 4;
  const chart = svg('svg', { class: 'bars', role: 'img', width: labelW + barW + 110, height, viewBox: `0 0 ${labelW + barW + 110} ${height}`,
    'aria-label': `Measured downtime per address of operation ${op.id}` });
  rows.forEach((a, i) => {
    const y = i * rowH + 2;
    const w = a.downtime_ms === null ? 0 : Math.max(2, (a.downtime_ms / max) * barW);
    chart.append(svg('text', { x: 0, y: y + 15 }, a.address));
    const bar = svg('rect', { x: labelW, y, width: w, height: rowH - 6, 'data-address': a.address, 'data-downtime-ms': a.downtime_ms ?? '' });
    bar.append(svg('title', {}, `${a.address}: ${msText(a.downtime_ms)}`));
    chart.append(bar);
    chart.append(svg('text', { x: labelW + w + 6, y: y + 15 }, msText(a.downtime_ms)));
  });
  return el('figure', { class: 'downtime', 'data-operation': op.id },
    el('figcaption', { text: `Measured downtime, ${op.direction} ${op.id} (${op.state})` }), chart,
    table(`Downtime per address, ${op.id}`, ['Address', 'Downtime', 'Probes failed / sent', 'Recovered'],
      rows.map((a) => [a.address, msText(a.downtime_ms), `${a.probes_failed} / ${a.probes_sent}`, a.recovered === null ? '—' : a.recovered ? 'yes' : 'no'])));
}

export function serverView(main, ctx, name) {
  let status = null;
  let watching = null; // the operation id followed every 500 ms
  const data = el('div', {});
  const opStatus = el('p', { id: 'operation-status', role: 'status', 'aria-live': 'polite' });
  const select = el('select', { id: 'transit' });
  const cutover = el('button', { type: 'button', id: 'cutover', text: 'Cut over' });
  const cutback = el('button', { type: 'button', id: 'cutback', text: 'Cut back' });
  const question = el('p', { id: 'confirm-question' });
  const confirm = el('button', { type: 'button', id: 'confirm-yes', text: 'Confirm' });
  const cancel = el('button', { type: 'button', id: 'confirm-no', text: 'Cancel', onclick: () => dialog.close() });
  const dialog = el('dialog', { 'aria-labelledby': 'confirm-question' }, question, confirm, cancel);
  let pending = null;

  function ask(text, action) {
    question.textContent = text;
    confirm.textContent = action.label;
    pending = action.run;
    dialog.showModal();
    cancel.focus();
  }
  confirm.addEventListener('click', async () => {
    dialog.close();
    const run = pending;
    pending = null;
    showError(null);
    try {
      const out = await run();
      if (out.direction) {
        watching = out.id;
        opStatus.textContent = `Operation ${out.id} (${out.direction}): ${out.state}`;
      } else {
        opStatus.textContent = `Account ${out.account}: ${out.location.replace(/_/g, ' ')}`;
      }
      await refresh();
    } catch (err) {
      showError(failureText(err));
    }
  });
  cutover.addEventListener('click', () => {
    const t = select.value;
    if (!t) return showError('Choose a transit first.');
    ask(`Cut ${name} over to ${t}?`, { label: `Cut ${name} over`, run: () => api('POST', `/v1/servers/${name}/cutover?wait=0`, { transit: t }) });
  });
  cutback.addEventListener('click', () => {
    ask(`Cut ${name} back from ${status?.overlay?.transit ?? 'its transit'}?`, { label: `Cut ${name} back`, run: () => api('POST', `/v1/servers/${name}/cutback?wait=0`, {}) });
  });

  const actions = ctx.canOperate
    ? el('section', { 'aria-labelledby': 'actions-h' }, el('h2', { id: 'actions-h', text: 'Actions' }),
      el('label', { for: 'transit', text: 'Transit' }), select, el('div', {}, cutover, cutback), dialog)
    : el('p', { class: 'muted', text: `Your token has the ${ctx.caller.role} role: cutover and cutback need operate.` });

  main.replaceChildren(el('h1', { tabindex: '-1', text: `Server ${name}` }), el('p', {}, el('a', { href: '#/board', text: 'All servers' })), actions, opStatus, data);

  async function loadTransits() {
    const inv = await api('GET', '/v1/inventory');
    const me = (inv.servers ?? []).find((s) => s.name === name);
    const fits = (inv.transits ?? []).filter((t) => !me?.profile || !t.profile || t.profile === me.profile);
    select.replaceChildren(...fits.map((t) => el('option', { value: t.name, text: t.name })));
  }
  if (ctx.canOperate) loadTransits().catch((err) => showError(failureText(err)));

  /** The next move report of an account, by where it is. */
  const NEXT_MOVE = {
    home: { to: 'transit', phase: 'started', label: (a, t) => `Start moving ${a} to ${t}` },
    moving_to_transit: { to: 'transit', phase: 'completed', label: (a, t) => `Moved ${a} to ${t}` },
    transit: { to: 'home', phase: 'started', label: (a) => `Start moving ${a} home` },
    moving_home: { to: 'home', phase: 'completed', label: (a) => `Moved ${a} home` },
  };
  function moveButton(m, acc) {
    const next = NEXT_MOVE[acc.location];
    if (!ctx.canOperate || !next || !m.transit) return '—';
    const label = next.label(acc.name, m.transit);
    return el('button', { type: 'button', text: label, onclick: () => ask(`${name}: report "${label}"?`,
      { label: `Report: ${label}`, run: () => api('POST', `/v1/accounts/${acc.name}/move`, { to: next.to, phase: next.phase }) }) });
  }

  async function refresh() {
    status = await api('GET', `/v1/servers/${name}`);
    let migration = null;
    try {
      migration = await api('GET', `/v1/servers/${name}/migration`);
    } catch (err) {
      if (err.status !== 404) throw err;
    }
    const active = status.overlay.active;
    cutover.hidden = active;
    select.disabled = active;
    cutback.hidden = !active;
    if (watching) {
      const op = status.operations.find((o) => o.id === watching) ?? await api('GET', `/v1/operations/${watching}`);
      opStatus.textContent = `Operation ${op.id} (${op.direction}): ${op.state}${op.error ? ` (${op.error.code ?? ''} ${op.error.message ?? ''})` : ''}`;
      if (op.state === 'succeeded' || op.state === 'failed') watching = null;
    }
    const ops = status.operations.slice(0, 5); // newest first
    const propagation = ops.filter((o) => o.dns_propagated && Object.keys(o.dns_propagated).length);
    renderIfChanged(data, { status, migration }, () => [
      el('p', { text: active ? `Cut over to ${status.overlay.transit} since ${when(status.overlay.since)} (operation ${status.overlay.operation})` : 'Served from its own addresses (no overlay).' }),
      table('Addresses', ['Address', 'Family', 'Routed to', 'DNS answers', 'Why', 'Per account', 'Routing'], status.addresses.map((a) => [
        a.address, a.family, a.routed_to ?? '—', a.dns_answer, a.dns?.reason ?? '—',
        (a.dns?.accounts ?? []).map((x) => el('span', { class: 'chip', text: `${x.account}: ${x.answer} (${x.reason})` })),
        a.routing ? `${a.routing.state ?? ''}${a.routing.drift ? ' (drift)' : ''}` : '—',
      ])),
      ...(migration ? [
        el('p', { text: `Migration: ${migration.state}${migration.transit ? ` on ${migration.transit}` : ''}; free until ${when(migration.free_until)}; next allowed: ${migration.allowed.join(', ') || 'none'}` }),
        table('Accounts', ['Account', 'Where', 'Report'], migration.accounts.map((a) => [a.name, a.location.replace(/_/g, ' '), moveButton(migration, a)])),
      ] : []),
      table('Last operations', ['Operation', 'Direction', 'Transit', 'State', 'Requested by', 'Accepted', 'Finished', 'Max downtime'], ops.map((o) => [
        o.id, o.direction, o.transit, el('span', { class: `state state-${o.state}`, 'data-operation': o.id, text: o.state }), o.requested_by ?? '—',
        when(o.timestamps.accepted), when(o.timestamps.finished), o.measurement ? msText(o.measurement.max_downtime_ms) : 'not measured',
      ])),
      ...ops.filter((o) => o.measurement).map(downtimeChart),
      ...propagation.map((o) => table(`DNS propagation to the secondaries, ${o.id}`, ['Secondary', 'Serving since'],
        Object.entries(o.dns_propagated).map(([k, t]) => [k, when(t)]))),
    ]);
  }
  return { refresh, pollMs: () => (watching ? 500 : 2000) };
}

// The migrations board: every server with its migration (state, transit, accounts and where each
// is, free until, amount so far, next allowed step); a server's name opens its page.
import { api, el, renderIfChanged, table, when } from './lib.js';

export function boardView(main) {
  const data = el('div', {});
  main.replaceChildren(el('h1', { tabindex: '-1', text: 'Migrations' }), data);
  async function refresh() {
    const { servers } = await api('GET', '/v1/servers');
    const got = await Promise.all(servers.map(async (s) => {
      try {
        return { s, m: await api('GET', `/v1/servers/${s.name}/migration`) };
      } catch (err) {
        if (err.status !== 404) throw err;
        return { s, m: null };
      }
    }));
    renderIfChanged(data, got.map(({ s, m }) => [s.name, s.overlay, m]), () => [table('Servers and their migrations', ['Server', 'State', 'Transit', 'Accounts', 'Free until', 'Amount so far', 'Next allowed step'],
      got.map(({ s, m }) => [
        el('a', { href: `#/servers/${s.name}`, text: s.name }),
        m ? m.state : s.overlay.active ? `cut over to ${s.overlay.transit}` : 'no migration',
        m?.transit ?? (m?.queue_position ? `queued (#${m.queue_position})` : '—'),
        m ? m.accounts.map((a) => el('span', { class: 'chip', text: `${a.name}: ${a.location.replace(/_/g, ' ')}` })) : '—',
        m ? when(m.free_until) : '—',
        m?.billing ? `${m.billing.amount} ${m.billing.currency}` : '—',
        m ? (m.allowed.length ? m.allowed.join(', ') : 'none') : '—',
      ]))]);
  }
  return { refresh };
}

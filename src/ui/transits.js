// The transit pool: per profile, each transit, who holds it since when, and the queue.
import { api, el, renderIfChanged, table, when } from './lib.js';

export function transitsView(main) {
  const data = el('div', {});
  main.replaceChildren(el('h1', { tabindex: '-1', text: 'Transits' }), data);
  async function refresh() {
    const t = await api('GET', '/v1/transits');
    renderIfChanged(data, t, () => [
      table('Pool per profile', ['Profile', 'Transits', 'Free', 'Servers waiting'], t.profiles.map((p) => [p.profile, String(p.transits), String(p.free), String(p.waiting)])),
      table('Transits', ['Transit', 'Profile', 'Held by', 'Since', 'In a cutover'], t.transits.map((x) => [
        x.name, x.profile, x.held_by ? el('a', { href: `#/servers/${x.held_by}`, text: x.held_by }) : 'free', when(x.since), x.in_cutover ? 'yes' : 'no',
      ])),
      table('Queue', ['Position', 'Server', 'Profile', 'Requested'], t.queue.map((q) => [String(q.position), q.server, q.profile, when(q.requested_at)])),
    ]);
  }
  return { refresh };
}

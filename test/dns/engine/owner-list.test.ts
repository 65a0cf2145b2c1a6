import { describe, expect, test } from '@jest/globals';
import { OwnerList, OwnerListBuilder } from '../../../src/dns/engine/owner-list.js';

const names = Buffer.from('example.test.www.example.test.mail.example.test.', 'latin1');
/** [start, end) of each key in `names`. */
const ranges: [number, number][] = [[0, 13], [13, 30], [30, 48]];

/** Lists built the three ways a snapshot builds them, all with the same keys. */
const builds: { name: string; build: () => OwnerList }[] = [
  { name: 'keys pushed as strings', build: () => { const b = new OwnerListBuilder(1); for (const [s, e] of ranges) b.push(names.toString('latin1', s, e)); return b.build(); } },
  { name: 'ranges of one lent buffer', build: () => { const b = new OwnerListBuilder(); for (const [s, e] of ranges) b.pushRange(names, s, e); return b.build(); } },
  { name: 'lent ranges, then a string (the lent ones copied)', build: () => { const b = new OwnerListBuilder(); b.pushRange(names, 0, 13); b.pushRange(names, 13, 30); b.push('mail.example.test.'); return b.build(); } },
];

describe('OwnerList', () => {
  test.each(builds)('$name: keys by position, compared in place', ({ build }) => {
    const l = build();
    expect(l.length).toBe(3);
    expect([...l]).toEqual(['example.test.', 'www.example.test.', 'mail.example.test.']);
    expect(l.at(1)).toBe('www.example.test.');
    expect(l.bytesAt(2).toString('latin1')).toBe('mail.example.test.');
    expect(l.is(0, 'example.test.')).toBe(true);
    expect(l.is(0, 'example.tesT.')).toBe(false);
    expect(l.is(1, 'example.test.')).toBe(false);
    const other = builds[0].build();
    expect([0, 1, 2].map((k) => l.same(k, other, k))).toEqual([true, true, true]);
    expect(l.same(0, other, 1)).toBe(false);
  });

  test('a list whose keys are ranges of one buffer shares it (no copy)', () => {
    const shared = Buffer.from(names);
    const b = new OwnerListBuilder();
    b.pushRange(shared, 13, 30);
    const l = b.build();
    shared.write('W', 13, 'latin1');
    expect(l.at(0)).toBe('Www.example.test.');
  });

  test('grows past its expected size', () => {
    const b = new OwnerListBuilder(1);
    for (let i = 0; i < 1000; i++) b.push(`h${i}.example.test.`);
    const l = b.build();
    expect(l.length).toBe(1000);
    expect(l.at(999)).toBe('h999.example.test.');
  });
});

/**
 * The README's configuration table and the config schemas list the same keys with the same
 * defaults: every key the schemas accept has a row, every row names keys the schemas accept, and
 * each row's default is the schema's ("required" where the key must be given, "none" where it may
 * be left out and has no default).
 */
import { describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema } from '../../src/config/config-schema.js';

/** The parts of a zod schema's definition this walk reads. */
interface Def {
  type: string;
  shape?: Record<string, Schema>;
  in?: Schema;
  innerType?: Schema;
  element?: Schema;
  options?: Schema[];
  defaultValue?: unknown;
}
interface Schema { _zod: { def: Def; optin?: string } }

interface Key { key: string; required: boolean; default?: unknown }

/** The schema under its wrappers (pipes, defaults, optionals), and the default met on the way. */
function unwrap(s: Schema): { inner: Schema; default?: unknown } {
  let dflt: unknown;
  for (;;) {
    const d = s._zod.def;
    if (d.type === 'default' && dflt === undefined) dflt = d.defaultValue;
    if (d.type === 'pipe') s = d.in!;
    else if (['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch'].includes(d.type)) s = d.innerType!;
    else return { inner: s, default: dflt };
  }
}

/** The mappings a schema accepts: one, or each option of a union. */
function shapes(s: Schema): Record<string, Schema>[] {
  const d = s._zod.def;
  if (d.type === 'object') return [d.shape!];
  if (d.type === 'union') return d.options!.flatMap((o) => shapes(unwrap(o).inner));
  return [];
}

/** Every key the schema accepts, with its default; lists of mappings as `list[].key` (one row when the list has a default). */
function schemaKeys(s: Schema, prefix = ''): Key[] {
  const keys = new Map<string, Key & { schema: Schema }>();
  for (const shape of shapes(s)) {
    for (const [k, child] of Object.entries(shape)) {
      const { inner, default: dflt } = unwrap(child);
      const seen = keys.get(prefix + k);
      keys.set(prefix + k, {
        key: prefix + k, schema: inner,
        required: (seen?.required ?? false) || child._zod.optin !== 'optional',
        default: seen?.default ?? dflt,
      });
    }
  }
  return [...keys.values()].flatMap(({ schema, ...key }) => {
    if (shapes(schema).length > 0) return schemaKeys(schema, key.key + '.');
    const d = schema._zod.def;
    const entry = d.type === 'array' ? unwrap(d.element!).inner : undefined;
    const listDefault = Array.isArray(key.default) && key.default.length > 0;
    if (entry && shapes(entry).length > 0 && !listDefault) return schemaKeys(entry, key.key + '[].');
    return [key];
  });
}

/** A default as the README writes it: numbers and booleans bare, text in backticks, lists and mappings as YAML flow in backticks. */
function shown(v: unknown): string {
  const flow = (x: unknown): string => Array.isArray(x) ? `[${x.map(flow).join(', ')}]`
    : x && typeof x === 'object' ? `{${Object.entries(x).map(([k, y]) => `${k}: ${flow(y)}`).join(', ')}}` : String(x);
  return typeof v === 'number' || typeof v === 'boolean' ? String(v) : `\`${flow(v)}\``;
}

/** The table's rows: the keys of the first column (in backticks), the default of the second. */
function readmeRows(): { keys: string[]; defaults: string[] }[] {
  const readme = readFileSync(join(import.meta.dirname ?? process.cwd(), '..', '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 5));
  return section.split('\n').filter((l) => l.startsWith('| `')).map((l) => {
    const [keys, dflt] = l.slice(1).split(' | ');
    const list = [...keys.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    const parts = dflt.trim().split(' / ');
    return { keys: list, defaults: parts.length === list.length ? parts : list.map(() => dflt.trim()) };
  });
}

describe('README configuration table', () => {
  const keys = schemaKeys(configSchema as unknown as Schema);
  const rows = readmeRows().flatMap((r) => r.keys.map((key, i) => ({ key, dflt: r.defaults[i] })));

  test('lists every key of the schemas once, and no other', () => {
    const listed = rows.map((r) => r.key);
    expect(listed.filter((k, i) => listed.indexOf(k) !== i)).toEqual([]);
    expect(keys.map((k) => k.key).filter((k) => !listed.includes(k))).toEqual([]);
    expect(listed.filter((k) => !keys.some((s) => s.key === k))).toEqual([]);
  });

  test('gives each key the schema default', () => {
    const wrong = keys.flatMap((k) => {
      const row = rows.find((r) => r.key === k.key);
      if (!row) return [];
      const want = k.default !== undefined ? shown(k.default) : k.required ? 'required' : 'none';
      const ok = row.dflt === want || row.dflt.startsWith(want + ' ') || row.dflt.startsWith(want + ':');
      return ok ? [] : [`${k.key}: README says ${JSON.stringify(row.dflt)}, the schema ${JSON.stringify(want)}`];
    });
    expect(wrong).toEqual([]);
  });
});

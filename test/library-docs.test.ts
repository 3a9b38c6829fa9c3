/**
 * docs/library.md's examples run: every ```ts block is written to a file under tmp/ in this checkout and run with
 * tsx, as a user's program would be, with the package's entry points (`loom`: index.ts, the core and runtime API;
 * `loom/plugins`: the built-in plugins) mapped to this checkout's sources. A block that throws or exits non-zero
 * fails its test, with its output.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const doc = fs.readFileSync(path.join(repo, 'docs/library.md'), 'utf8');
const work = path.join(repo, 'tmp', `library-docs-${process.pid}`);

/** The ```ts blocks of the guide with the heading each sits under. */
function examples(markdown: string): { heading: string; code: string }[] {
  const out: { heading: string; code: string }[] = [];
  let heading = '';
  for (const m of markdown.matchAll(/^(## .+)$|^```ts\n([\s\S]*?)^```$/gm)) {
    if (m[1]) heading = m[1].slice(3);
    else out.push({ heading, code: m[2]! });
  }
  return out;
}

/** The block with `loom` and `loom/plugins` imported from this checkout (what the package's exports map to). */
function resolved(code: string, dir: string): string {
  const rel = (p: string) => path.relative(dir, path.join(repo, p)).split(path.sep).join('/');
  return code.replace(/from 'loom'/g, `from '${rel('index')}'`).replace(/from 'loom\/plugins'/g, `from '${rel('plugins')}'`);
}

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

describe('docs/library.md', () => {
  const blocks = examples(doc);

  it('has runnable examples, each a complete program importing loom', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    for (const b of blocks) expect(b.code).toMatch(/from 'loom'/);
  });

  blocks.forEach((block, i) => {
    it(`example ${i + 1} (${block.heading}) runs`, { timeout: 180_000 }, () => {
      const dir = path.join(work, `example-${i + 1}`);
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, 'example.ts');
      fs.writeFileSync(file, resolved(block.code, dir));
      const tsx = path.join(repo, 'node_modules/tsx/dist/cli.mjs');
      const r = spawnSync(process.execPath, [tsx, '--tsconfig', path.join(repo, 'tsconfig.json'), file], {
        encoding: 'utf8',
        cwd: dir,
        env: { ...process.env, MLFLOW_TRACKING_URI: '' },
      });
      expect(r.status, `example ${i + 1} failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    });
  });
});

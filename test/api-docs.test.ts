/**
 * The API reference (issue 22, item 6): TypeDoc builds it from the doc comments of the package's entry points
 * (typedoc.json, `npm run docs:api`) with its link validation on and warnings as errors, so a broken {@link} or
 * a malformed comment fails CI here. The reference is written to a temporary folder, not docs/api.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const typedoc = path.join(repo, 'node_modules/typedoc/bin/typedoc');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-api-docs-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const run = (args: string[], cwd = repo) => spawnSync(process.execPath, [typedoc, ...args], { cwd, encoding: 'utf8' });

describe('the API reference', () => {
  it('builds from the entry points with no broken link or other warning', () => {
    const out = path.join(tmp, 'api');
    const r = run(['--out', out]);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    for (const page of ['index.html', 'modules/index.html', 'modules/testing.html']) expect(fs.existsSync(path.join(out, page)), page).toBe(true);
    expect(fs.readFileSync(path.join(out, 'modules/testing.html'), 'utf8')).toContain('checkPlugin');
  }, 300_000);

  it('fails on a broken {@link} (the validation the check relies on is on)', () => {
    const dir = path.join(tmp, 'broken');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'index.ts'), '/** Half of {@link Nowhere}. */\nexport const half = 0.5;\n');
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true }, include: ['index.ts'] }));
    // loom's options (validation, warnings as errors) on a one-file project.
    const options = JSON.parse(fs.readFileSync(path.join(repo, 'typedoc.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '')) as Record<string, unknown>;
    expect(options.treatWarningsAsErrors).toBe(true);
    fs.writeFileSync(path.join(dir, 'typedoc.json'), JSON.stringify({ ...options, entryPoints: ['index.ts'], tsconfig: 'tsconfig.json', out: 'api' }));
    const r = run(['--options', 'typedoc.json'], dir);
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/Nowhere/);
  }, 300_000);
});

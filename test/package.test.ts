/**
 * loom installs as a package (issue 22, items 1-3): `npm pack` of loom (its prepack builds dist/) and of the example
 * plugin package, installed into a scratch project outside the repository; there a script imports loom, trains a
 * model on arrays and saves it, `npx loom plugins` lists the example package's plugins (found by its package.json),
 * the example package's own test runs loom/testing's conformance properties on them, and a TypeScript file using the
 * three entry points type-checks against the declarations (nodenext, no decorator setting). Nothing in the scratch
 * project runs TypeScript (no tsx; the type check only reads declarations). loom's install script compiles the native
 * addon there as it does in a checkout, and the installed package runs on it (native-cpu); the example package is
 * installed without compiling again (LOOM_SKIP_NATIVE). The npm registry is read through npm's cache.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-package-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs a command, failing with its output when it fails; returns stdout. */
function sh(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts, env: { ...process.env, LOOM_SKIP_NATIVE: '1', ...opts.env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}\n${r.stderr}`);
  return String(r.stdout);
}

/** npm pack of the package in `dir` into tmp; returns the tarball's path. */
function pack(dir: string): string {
  const out = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', tmp, '--loglevel=error'], { cwd: dir })) as { filename: string }[];
  return path.join(tmp, out[0]!.filename);
}

const TRAIN = `import * as fs from 'node:fs';
import { createRegistry, Learner, loadModel } from 'loom';
import { registerBuiltins } from 'loom/plugins';

// Two blobs in the plane, classes 0 and 1.
const x = [], y = [];
for (let i = 0; i < 64; i++) { const c = i % 2; x.push([c ? 2 + (i % 5) / 10 : -2 - (i % 7) / 10, (i % 3) / 3]); y.push(c); }
const registry = registerBuiltins(createRegistry());
const learner = await Learner.create({
  registry,
  model: { inputShape: [2], layers: [{ type: 'dense', units: 8, activation: 'relu' }, { type: 'dense', units: 2 }] },
  loss: 'sparse-categorical-crossentropy',
  optimizer: { type: 'adam', lr: 0.05 },
  metrics: ['accuracy'],
  trackers: [],
  epochs: 5,
  batchSize: 16,
  seed: 1,
});
await learner.fit({ x, y });
const logs = await learner.evaluate({ x, y });
learner.save('model');
const loaded = loadModel('model', registry);
console.log(JSON.stringify({ accuracy: logs.accuracy, saved: fs.readdirSync('model').sort(), params: loaded.parameters().length }));
`;

/** Uses the three entry points' types; a type that did not resolve (any) would not fail on its own, so one use is wrong on purpose. */
const CHECK = `import { createRegistry, Learner, loadPlugins, type History } from 'loom';
import { registerBuiltins } from 'loom/plugins';
import { checkPlugin } from 'loom/testing';
const registry = registerBuiltins(createRegistry());
await loadPlugins(registry, []);
const learner = await Learner.create({ registry, model: { inputShape: [2], layers: [{ type: 'dense', units: 2 }] }, loss: 'mse', optimizer: 'sgd' });
const history: History = await learner.fit({ x: [[0, 1]], y: [[1, 0]] });
await checkPlugin(registry, 'layer', 'dense', ['cpu']);
// @ts-expect-error checkPlugin takes a plugin kind, not any string
await checkPlugin(registry, 'no-such-kind', 'dense');
void history;
`;

/** Prints the backend loom selects in the scratch project and its SIMD level. */
const BACKEND = `import { createRegistry, selectBackend } from 'loom';
import { registerBuiltins } from 'loom/plugins';
const { tags } = await selectBackend(registerBuiltins(createRegistry()));
console.log(\`\${tags.backend} (\${tags['backend.simd'] ?? tags['backend.kernels']})\`);
`;

describe('the npm package', () => {
  it('installs from its tarball into a scratch project: imports, trains and saves; the example plugin package is found and conforms', () => {
    const loomTgz = pack(repo);
    const exampleTgz = pack(path.join(repo, 'examples/loom-plugin-example'));
    const listed = sh('tar', ['-tzf', loomTgz]);
    expect(listed).toMatch(/package\/dist\/index\.js/);
    expect(listed).toMatch(/package\/dist\/index\.d\.ts/);
    expect(listed).not.toMatch(/package\/core\/.*\.ts\n/); // no sources: the build runs

    const project = path.join(tmp, 'project');
    fs.mkdirSync(project);
    // loom's install script builds the addon from the sources in the tarball (LOOM_SKIP_NATIVE unset for it); the
    // project allows it as the README tells users to (npm 11.16+ reads allowScripts; npm 12 runs no unlisted script).
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module', allowScripts: { loom: true } }));
    sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', loomTgz, exampleTgz], {
      cwd: project,
      env: { LOOM_SKIP_NATIVE: '' },
    });
    expect(fs.existsSync(path.join(project, 'node_modules/loom/native/build/Release/loom_native.node')), 'the addon was compiled at install').toBe(true);
    fs.writeFileSync(path.join(project, 'backend.mjs'), BACKEND);
    expect(sh(process.execPath, ['backend.mjs'], { cwd: project }).trim()).toMatch(/^native-cpu \((avx512|avx2|baseline|scalar|neon)/);

    fs.writeFileSync(path.join(project, 'train.mjs'), TRAIN);
    const result = JSON.parse(sh(process.execPath, ['train.mjs'], { cwd: project }).trim().split('\n').at(-1)!) as {
      accuracy: number;
      saved: string[];
      params: number;
    };
    expect(result.accuracy).toBeGreaterThan(0.9);
    expect(result.saved.length).toBeGreaterThan(0);
    expect(result.params).toBe(4);

    // A TypeScript user's check against the declarations, with Node's own resolution (nodenext) and no decorator
    // setting; skipLibCheck as tsc --init sets it (tfjs's own declarations do not pass without it).
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true },
        files: ['check.ts'],
      }),
    );
    fs.writeFileSync(path.join(project, 'check.ts'), CHECK);
    sh(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', '.'], { cwd: project });

    const loom = path.join(project, 'node_modules/.bin/loom');
    expect(sh(loom, ['plugins', '--kind', 'layer'], { cwd: project })).toMatch(/layer\s+weight-norm-dense\s+dense layer with weight normalization/);
    expect(sh(loom, ['plugins', '--kind', 'optimizer'], { cwd: project })).toMatch(/optimizer\s+lion\s+Lion/);

    // The example package's own test (vitest, loom/testing), as its author runs it: a checkout of the package inside
    // the project (its imports of loom, tfjs and zod resolve to the project's node_modules), with loom's vitest.
    const checkout = path.join(project, 'loom-plugin-example');
    fs.cpSync(path.join(repo, 'examples/loom-plugin-example'), checkout, { recursive: true, filter: (f) => !f.includes('node_modules') });
    const vitest = path.join(repo, 'node_modules/vitest/vitest.mjs');
    const out = sh(process.execPath, [vitest, 'run', '--root', checkout, '--reporter=verbose'], { cwd: checkout });
    expect(out).toMatch(/layer weight-norm-dense conforms/);
    expect(out).toMatch(/optimizer lion conforms/);
  }, 600_000);
});

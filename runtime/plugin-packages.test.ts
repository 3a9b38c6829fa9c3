/**
 * Plugin packages are found without editing loom: installed packages with a `loom` field or a `loom-plugin-*` name,
 * `--plugin <module>` on the command line, `plugins: [...]` in a config; a bad module is a ConfigError naming it.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigPlugins, run } from '../cli/loom';
import { ConfigError, createRegistry, parseExperimentConfig } from '../core';
import { registerBuiltins } from '../plugins';
import { discoverPluginPackages, loadPluginModule, loadPlugins } from './plugin-packages';

const zod = pathToFileURL(createRequire(import.meta.url).resolve('zod')).href;
const project = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-plugin-packages-'));
afterAll(() => fs.rmSync(project, { recursive: true, force: true }));

/** An activation plugin module's source: the identity, registered as `name`. */
const activation = (name: string, exportAs: 'default' | 'plugins' = 'default') => `import { z } from '${zod}';
const def = { kind: 'activation', name: '${name}', description: 'identity (test)', schema: z.object({}).strict(), create: () => ({ apply: (x) => x }) };
${exportAs === 'default' ? 'export default def;' : 'export const plugins = [def];'}
`;

function write(rel: string, text: string): string {
  const file = path.join(project, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

// Found by name (loom-plugin-*), by the `loom` field (scoped, entry in a subfolder), and one that is neither.
write('node_modules/loom-plugin-named/package.json', JSON.stringify({ name: 'loom-plugin-named', type: 'module', exports: { '.': './index.js' } }));
write('node_modules/loom-plugin-named/index.js', activation('named-act'));
write('node_modules/@acme/fields/package.json', JSON.stringify({ name: '@acme/fields', type: 'module', loom: { plugins: './lib/plugins.js' } }));
write('node_modules/@acme/fields/lib/plugins.js', activation('field-act', 'plugins'));
write('node_modules/unrelated/package.json', JSON.stringify({ name: 'unrelated' }));
const local = write('local-plugin.mjs', activation('local-act'));
const bad = write('bad-plugin.mjs', 'export default { name: "x" };\n');

const fresh = () => registerBuiltins(createRegistry());

describe('plugin packages', () => {
  it('discovers installed packages by the loom field and the loom-plugin-* name, and nothing else', () => {
    expect(discoverPluginPackages(project)).toEqual(['@acme/fields', 'loom-plugin-named']);
  });

  it('registers the discovered packages and named modules (paths and package names), each once', async () => {
    const registry = fresh();
    const loaded = await loadPlugins(registry, ['./local-plugin.mjs', 'loom-plugin-named'], { from: project });
    expect(loaded).toEqual(['@acme/fields', 'loom-plugin-named', './local-plugin.mjs']);
    for (const name of ['named-act', 'field-act', 'local-act']) expect(registry.has('activation', name)).toBe(true);
  });

  it('a missing package, a missing file or a module without definitions is a ConfigError naming it', async () => {
    await expect(loadPluginModule('loom-plugin-absent', project)).rejects.toThrow(ConfigError);
    await expect(loadPluginModule('loom-plugin-absent', project)).rejects.toThrow(/loom-plugin-absent.*not installed/);
    await expect(loadPluginModule('./nope.mjs', project)).rejects.toThrow(/"\.\/nope\.mjs" not found/);
    await expect(loadPluginModule(bad, project)).rejects.toThrow(/bad-plugin\.mjs.*exports no plugin definitions/);
  });
});

describe('plugins: [...] in a config', () => {
  it('is part of the experiment schema (a list of module names) and loads the modules it names', async () => {
    const config = {
      experiment: 'e',
      data: { source: 'mnist' },
      model: { inputShape: [2], layers: [{ type: 'dense', units: 1 }] },
      loss: 'mse',
      optimizer: 'sgd',
      trainer: { epochs: 1, batchSize: 2 },
    };
    expect(parseExperimentConfig({ ...config, plugins: [local] }).plugins).toEqual([local]);
    expect(() => parseExperimentConfig({ ...config, plugins: 'x' })).toThrow(/plugins/);
    const registry = fresh();
    await loadConfigPlugins(registry, { plugins: [local] });
    expect(registry.has('activation', 'local-act')).toBe(true);
  });
});

describe('loom --plugin', () => {
  const cli = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await run(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  };

  it('loads the module for any command, before or after the command name, and `loom plugins` lists its plugins', async () => {
    for (const args of [
      ['--plugin', local, 'plugins', '--kind', 'activation'],
      ['plugins', `--plugin=${local}`, '--kind', 'activation'],
    ]) {
      const r = await cli(...args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/activation\s+local-act\s+identity \(test\)/);
    }
  });

  it('without a value, or naming a bad module, exits 2 naming the flag or module, without a stack trace', async () => {
    const none = await cli('plugins', '--plugin');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--plugin.*expects a module/);
    const wrong = await cli('plugins', '--plugin', bad);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/bad-plugin\.mjs/);
    expect(wrong.stderr).not.toMatch(/\n\s+at /);
  });
});

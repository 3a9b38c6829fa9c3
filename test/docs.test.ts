/** docs/plugins.md is generated from the registry: it must match what `npm run docs` produces now. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createRegistry } from '../core';
import { registerBuiltins } from '../plugins';
import { pluginDocs } from '../cli/plugin-docs';

describe('docs/plugins.md', () => {
  it('is up to date with the registry (regenerate with `npm run docs`)', () => {
    const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../docs/plugins.md');
    expect(fs.readFileSync(file, 'utf8'), 'docs/plugins.md is stale: run `npm run docs`').toBe(pluginDocs(registerBuiltins(createRegistry())));
  });

  it('lists every registered plugin with a description', () => {
    const registry = registerBuiltins(createRegistry());
    const doc = pluginDocs(registry);
    for (const p of registry.list()) {
      expect(p.description.length, `${p.kind} ${p.name} has a description`).toBeGreaterThan(10);
      expect(doc).toContain(`| \`${p.name}\` |`);
    }
  });
});

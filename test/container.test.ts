/** The run container: every token resolves in a fresh child container, and runs do not share state. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { container as root, type InjectionToken } from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildRunContainer, createRegistry, disposeRun, FACTORY_TOKENS, selectBackend, TOKENS, Trainer, type PluginRegistry } from '../core';
import { registerBuiltins } from '../plugins';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-container-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('run container', () => {
  it('resolves every token, every factory and the trainer', async () => {
    const c = await buildRunContainer({ registry, config: toyConfig(dir) });
    for (const [name, token] of Object.entries(TOKENS) as [string, InjectionToken<unknown>][]) {
      expect(c.isRegistered(token), `TOKENS.${name} is registered`).toBe(true);
      const value = c.resolve(token);
      if (name !== 'ValidationData' && name !== 'TestData' && name !== 'Schedule') expect(value, `TOKENS.${name}`).toBeTruthy();
    }
    for (const [kind, token] of Object.entries(FACTORY_TOKENS) as [string, InjectionToken<unknown>][]) expect(typeof c.resolve(token), `factory for ${kind}`).toBe('function');
    expect(c.resolve(FACTORY_TOKENS.activation)('relu').spec.type).toBe('relu');
    const trainer = c.resolve(Trainer);
    expect(trainer.model).toBe(c.resolve(TOKENS.Model));
    expect(trainer.optimizer).toBe(c.resolve(TOKENS.Optimizer));
    disposeRun(c);
  });

  it('gives each run its own instances and leaves the root container empty', async () => {
    const a = await buildRunContainer({ registry, config: toyConfig(dir) });
    const b = await buildRunContainer({ registry, config: toyConfig(dir) });
    expect(a.resolve(TOKENS.Model)).not.toBe(b.resolve(TOKENS.Model));
    expect(a.resolve(TOKENS.Rng)).not.toBe(b.resolve(TOKENS.Rng));
    expect(root.isRegistered(TOKENS.Model)).toBe(false);
    disposeRun(a);
    disposeRun(b);
  });
});

describe('backend selection', () => {
  it('falls back to tfjs cpu kernels, recording why, when the native addon is unavailable', async () => {
    const before = process.env.LOOM_NATIVE;
    process.env.LOOM_NATIVE = '0';
    try {
      const r = registerBuiltins(createRegistry());
      const { backend, tags } = await selectBackend(r);
      expect(backend.spec.type).toBe('cpu');
      expect(tags['backend.skipped']).toMatch(/native-cpu: disabled by LOOM_NATIVE=0/);
      expect(tags['backend.skipped']).toMatch(/tfjs-node: @tensorflow\/tfjs-node is not installed/);
      await expect(selectBackend(r, 'native-cpu')).rejects.toThrow(/--backend: backend "native-cpu" is not available here: disabled by LOOM_NATIVE=0/);
    } finally {
      if (before === undefined) delete process.env.LOOM_NATIVE;
      else process.env.LOOM_NATIVE = before;
    }
  });
});

// The package's plugins pass loom's own conformance properties (loom/testing): spec round trip, gradients against
// finite differences, no tensor leak, the optimizer minimises a quadratic; on every CPU backend available here.
import { checkPlugin, testRegistry } from 'loom/testing';
import { describe, it } from 'vitest';
import plugins from '../index.js';

describe('loom-plugin-example', () => {
  for (const plugin of plugins) {
    it(`${plugin.kind} ${plugin.name} conforms`, async () => {
      const registry = await testRegistry(plugins);
      await checkPlugin(registry, plugin.kind, plugin.name);
    });
  }
});

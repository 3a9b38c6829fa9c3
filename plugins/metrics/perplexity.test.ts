/** Perplexity is exp of the mean token cross-entropy over all tokens, however they are batched. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('perplexity', () => {
  it('equals exp of the mean token cross-entropy (float64), whatever the batching', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 1e6 }),
        async (vocab, time, batches, seed) => {
          const m = registry.create('metric', 'perplexity');
          m.reset();
          let nll = 0;
          let n = 0;
          let s = seed;
          const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 8 - 4;
          for (let b = 0; b < batches; b++) {
            const rows = 1 + (b % 3);
            const logits = Array.from({ length: rows }, () => Array.from({ length: time }, () => Array.from({ length: vocab }, rnd)));
            const labels = logits.map((r) => r.map((z) => Math.floor(((z[0]! + 4) / 8) * vocab) % vocab));
            for (const [i, r] of logits.entries())
              for (const [t, z] of r.entries()) {
                const mx = Math.max(...z);
                nll += mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0)) - z[labels[i]![t]!]!;
                n++;
              }
            const [y, p] = [tf.tensor2d(labels, undefined, 'int32'), tf.tensor3d(logits)];
            await m.update(y, p);
            tf.dispose([y, p]);
          }
          expect(m.result() / Math.exp(nll / n)).toBeCloseTo(1, 4);
        },
      ),
    );
  });
});

/**
 * Perplexity is exp of the mean token cross-entropy over all tokens, however they are batched, with tokens equal to
 * `ignoreIndex` left out; on each CPU backend (native-cpu computes it with its fused cross-entropy kernel, tfjs's
 * cpu with the composite of max, exp, log and gather).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect } from 'vitest';
import { FUSED_KERNELS, hasKernel } from '../../core';
import { conformanceRegistry, onEachBackend } from '../../test/harness';

const { registry, backends } = await conformanceRegistry();

/** Random batches of logits and labels; the float64 sum of −log softmax(z)[y] over the kept tokens, and their count. */
async function check(ignore: number | 'K' | undefined) {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 6 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 0, max: 1e6 }),
      async (vocab, time, batches, seed) => {
        const ignoreIndex = ignore === 'K' ? vocab : ignore; // 'K': the first id past the vocabulary
        const m = registry.create('metric', ignoreIndex === undefined ? 'perplexity' : { type: 'perplexity', ignoreIndex });
        m.reset();
        let nll = 0;
        let n = 0;
        let s = seed;
        const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 8 - 4;
        for (let b = 0; b < batches; b++) {
          const rows = 1 + (b % 3);
          const logits = Array.from({ length: rows }, () => Array.from({ length: time }, () => Array.from({ length: vocab }, rnd)));
          let k = 0;
          // An ignoreIndex outside 0..K−1 (PyTorch's −100, or K) pads every third token.
          const outside = ignoreIndex !== undefined && (ignoreIndex < 0 || ignoreIndex >= vocab);
          const labels = logits.map((r) => r.map((z) => (outside && k++ % 3 === 1 ? ignoreIndex : Math.floor(((z[0]! + 4) / 8) * vocab) % vocab)));
          for (const [i, r] of logits.entries())
            for (const [t, z] of r.entries()) {
              if (labels[i]![t] === ignoreIndex) continue;
              const mx = Math.max(...z);
              nll += mx + Math.log(z.reduce((a, v) => a + Math.exp(v - mx), 0)) - z[labels[i]![t]!]!;
              n++;
            }
          const [y, p] = [tf.tensor2d(labels, undefined, 'int32'), tf.tensor3d(logits)];
          await m.update(y, p);
          tf.dispose([y, p]);
        }
        if (n === 0) expect(m.result()).toBeNaN();
        else expect(m.result() / Math.exp(nll / n)).toBeCloseTo(1, 4);
      },
    ),
  );
}

describe('perplexity', () => {
  onEachBackend(registry, backends, 'equals exp of the mean token cross-entropy (float64), whatever the batching', async (backend) => {
    expect(hasKernel(FUSED_KERNELS.crossEntropy)).toBe(backend === 'native-cpu'); // which way it is computed here
    await check(undefined);
  });
  onEachBackend(registry, backends, 'leaves out the tokens equal to ignoreIndex', () => check(0));
  // Before, tfjs's cpu backend read an ignored id of −100 or K as an index into the logits: it threw (GatherV2).
  onEachBackend(registry, backends, 'leaves out the tokens equal to an ignoreIndex outside the vocabulary (−100, K)', async () => {
    await check(-100);
    await check('K');
  });
});

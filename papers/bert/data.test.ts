/** The bag-of-words baseline's vectors: fixed length, binary, one column per vocabulary word. */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TensorDataset } from '../../core/data';
import type { PluginRegistry } from '../../core/registry';
import { testRegistry } from '../../test/harness';
import * as tf from '@tensorflow/tfjs-core';
import { bowData } from './data';

/** All of a split's vectors, through the public batch(). */
const vectors = (d: TensorDataset) => tf.tidy(() => d.batch(Array.from({ length: d.size }, (_, i) => i)).x.dataSync() as Float32Array);

let registry: PluginRegistry;
beforeAll(async () => {
  registry = (await testRegistry()).register(bowData);
});

const build = (options: object) => registry.create('dataset', { type: 'spam-bow', ...options });

describe('spam-bow', () => {
  it('has `features` columns whatever the training subset, so the few-shot grid keeps one input shape', () => {
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 40 }), fc.integer({ min: 0, max: 1000 }), (size, seed) => {
        const features = 5000; // far more distinct words than a few messages hold
        const data = build({ features, trainSubset: { size, seed } });
        for (const split of ['train', 'test']) {
          const d = data.load(split) as TensorDataset;
          expect(d.xShape).toEqual([features]);
          const x = vectors(d);
          expect(x.length).toBe(d.size * features);
          expect(x.every((v) => v === 0 || v === 1)).toBe(true);
        }
        // Only the subset's words have columns: the trailing ones stay zero in the training vectors.
        const x = vectors(data.load('train') as TensorDataset);
        let last = -1;
        for (let i = 0; i < x.length; i++) if (x[i] === 1) last = Math.max(last, i % features);
        expect(last).toBeLessThan(features - 1);
      }),
      { numRuns: 3 },
    );
  });
});

/** mergeConfig, the deep merge behind presets' `extends` and `--set`: what merges, what replaces. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mergeConfig } from './config';
import type { JsonObject } from './interfaces';

const options = fc.dictionary(fc.constantFrom('lr', 'alpha', 'labelSmoothing', 'ignoreIndex', 'epsilon'), fc.integer({ min: -9, max: 9 }));

describe('mergeConfig', () => {
  it('merges the options of one plugin type key by key, the patch winning', () => {
    fc.assert(
      fc.property(fc.constantFrom('adam', 'sgd'), options, options, (type, base, patch) => {
        const out = mergeConfig({ optimizer: { type, ...base } }, { optimizer: { type, ...patch } });
        expect(out.optimizer).toEqual({ type, ...base, ...patch });
        // Without a type in the patch too (how `--set optimizer.lr=...` reaches in).
        expect(mergeConfig({ optimizer: { type, ...base } }, { optimizer: patch }).optimizer).toEqual({ type, ...base, ...patch });
      }),
    );
  });

  it("replaces a plugin spec whole when the patch names another type: the base's options were its plugin's", () => {
    fc.assert(
      fc.property(options, options, (base, patch) => {
        const out = mergeConfig({ loss: { type: 'sparse-categorical-crossentropy', ...base }, seed: 1 } as JsonObject, {
          loss: { type: 'distillation', ...patch },
        });
        expect(out.loss).toEqual({ type: 'distillation', ...patch });
        expect(out.seed).toBe(1);
      }),
    );
  });
});

/**
 * loom/testing's properties fail when they should: a layer whose gradient is wrong, an optimizer that leaks a tensor
 * per step and one that does not minimise are each caught with a ConformanceError naming the plugin; a sound plugin
 * passes. (Loom's own plugins pass them in conformance.test.ts; a property that cannot fail would check nothing.)
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { definePlugin, layerOptions, LayerBase, type Parameter, type Rng, type Shape, SlotOptimizer } from '../core';
import { checkPlugin, ConformanceError, testRegistry } from '../testing';
import { z } from 'zod';

/** y = 2x, with a gradient of `slope` (2 is right). */
function doubling(name: string, slope: number) {
  class Double extends LayerBase {
    protected buildLayer(inputShape: Shape, _rng: Rng): Shape {
      return inputShape;
    }
    apply(x: tf.Tensor): tf.Tensor {
      const f = tf.customGrad((a) => ({ value: tf.mul(a as tf.Tensor, 2), gradFunc: (dy) => tf.mul(dy, slope) }));
      return f(x);
    }
  }
  return definePlugin({
    kind: 'layer',
    name,
    description: 'doubles its input (test)',
    schema: layerOptions,
    examples: [{ inputShape: [2, 3] }],
    create: (o) => new Double(o.name ?? name),
  });
}

const optSchema = z.object({ lr: z.number().default(0.05) });
/** Plain SGD, that also leaks a tensor per step when `leak`, or steps the wrong way when `ascend`. */
function sgdLike(name: string, { leak = false, ascend = false }) {
  class Opt extends SlotOptimizer<z.output<typeof optSchema>> {
    protected readonly slotNames: readonly string[] = [];
    constructor(o: z.output<typeof optSchema>) {
      super(o, {});
    }
    protected update(p: Parameter, g: tf.Tensor, _s: Record<string, tf.Variable>, lr: number): void {
      p.variable.assign(tf.sub(p.variable, tf.mul(g, ascend ? -lr : lr)));
      if (leak) tf.keep(tf.zeros([1]));
    }
  }
  return definePlugin({ kind: 'optimizer', name, description: 'test optimizer', schema: optSchema, create: (o) => new Opt(o) });
}

describe('loom/testing', () => {
  it('passes sound plugins and catches a wrong gradient, a leak and an optimizer that does not minimise', async () => {
    const plugins = [
      doubling('double-ok', 2),
      doubling('double-wrong', 3),
      sgdLike('sgd-ok', {}),
      sgdLike('sgd-leak', { leak: true }),
      sgdLike('sgd-up', { ascend: true }),
    ];
    const registry = await testRegistry(plugins);
    const backends = ['cpu'];
    await checkPlugin(registry, 'layer', 'double-ok', backends);
    await checkPlugin(registry, 'optimizer', 'sgd-ok', backends);
    await expect(checkPlugin(registry, 'layer', 'double-wrong', backends)).rejects.toThrow(ConformanceError);
    await expect(checkPlugin(registry, 'layer', 'double-wrong', backends)).rejects.toThrow(/layer double-wrong.*directional derivative.*backend cpu/);
    await expect(checkPlugin(registry, 'optimizer', 'sgd-leak', backends)).rejects.toThrow(/optimizer sgd-leak: live tensors/);
    await expect(checkPlugin(registry, 'optimizer', 'sgd-up', backends)).rejects.toThrow(/optimizer sgd-up: loss/);
  });
});

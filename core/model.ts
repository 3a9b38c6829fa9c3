/**
 * Sequential: a stack of layers, each fed the previous one's output (Keras's Sequential, PyTorch's nn.Sequential).
 * It owns its layers and therefore their parameters; its config is plain JSON (input shape + layer specs with
 * names), so `saveModel`/`loadModel` can rebuild it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, ShapeError } from './errors';
import type { ForwardContext, Json, JsonObject, Layer, Model, Parameter, PluginSpec, Shape } from './interfaces';
import { formatShape, LayerStack } from './layer';
import type { Rng } from './random';
import { pluginSpecSchema, type PluginRegistry } from './registry';

export const sequentialConfigSchema = z.object({
  /** Shape of one example, without the batch dimension, e.g. [28, 28, 1]. */
  inputShape: z.array(z.number().int().positive()).min(1),
  layers: z.array(pluginSpecSchema).min(1),
});
export type SequentialConfig = z.infer<typeof sequentialConfigSchema>;

export class Sequential implements Model {
  readonly name = 'sequential';
  readonly spec: { type: string } & JsonObject;
  readonly layers: Layer[];
  readonly inputShape: Shape;
  private output: Shape | null = null;

  constructor(
    config: SequentialConfig,
    registry: PluginRegistry,
    /** Where the config sits in the experiment config, for messages. */
    private readonly path = 'model',
  ) {
    const parsed = sequentialConfigSchema.safeParse(config);
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new ConfigError(`${path}.${i.path.join('.')}`, i.message);
    }
    this.inputShape = [null, ...config.inputShape];
    const used = new Set<string>();
    const specs: PluginSpec[] = [];
    this.layers = config.layers.map((raw, i) => {
      const normal = registry.normalize('layer', raw, `${path}.layers[${i}]`);
      const name = typeof normal.name === 'string' ? normal.name : `${normal.type}_${i + 1}`;
      if (used.has(name)) throw new ConfigError(`${path}.layers[${i}].name`, `duplicate layer name "${name}"`);
      used.add(name);
      const spec = { ...normal, name };
      specs.push(spec);
      return registry.create('layer', spec, `${path}.layers[${i}]`);
    });
    this.spec = { type: 'sequential', inputShape: config.inputShape, layers: specs as JsonObject[] };
  }

  get outputShape(): Shape {
    if (!this.output) throw new Error('model: build() must be called before outputShape is known');
    return this.output;
  }

  /**
   * Builds every layer in order, creating parameters from `rng`. A layer's shape error is prefixed with its place
   * in the config (`model.layers[1]: layer "max-pool2d_2" ...`), the field to change.
   */
  build(inputShape: Shape = this.inputShape, rng: Rng): Shape {
    let shape = inputShape;
    for (const [i, layer] of this.layers.entries()) {
      try {
        shape = layer.build(shape, rng);
      } catch (e) {
        if (e instanceof ShapeError) throw new ShapeError(`${this.path}.layers[${i}]: ${e.where}`, e.expected, e.actual);
        throw e;
      }
    }
    this.output = shape;
    return shape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const expected = this.inputShape.slice(1);
    if (x.rank !== this.inputShape.length || expected.some((d, i) => d !== x.shape[i + 1])) {
      throw new ShapeError('model input', formatShape(this.inputShape), [null, ...x.shape.slice(1)]);
    }
    let y = x;
    for (const layer of this.layers) y = layer.apply(y, ctx);
    return y;
  }

  parameters(): Parameter[] {
    return LayerStack.of(this.layers).parameters();
  }

  buffers(): Parameter[] {
    return LayerStack.of(this.layers).buffers();
  }

  resetStates(): void {
    LayerStack.of(this.layers).resetStates();
  }

  /** State carried between batches by its layers (stateful RNNs), by layer name. */
  getState(): JsonObject {
    return Object.fromEntries(this.layers.filter((l) => l.getState).map((l) => [l.name, l.getState!()]));
  }

  setState(state: Json): void {
    for (const l of this.layers) if (l.setState && l.name in (state as JsonObject)) l.setState((state as JsonObject)[l.name]!);
  }

  /** Parameters and buffers: everything saved with the weights. */
  weights(): Parameter[] {
    return [...this.parameters(), ...this.buffers()];
  }

  countParams(): number {
    return this.parameters().reduce((n, p) => n + p.variable.size, 0);
  }

  summary(): string {
    const lines = [`Sequential (input ${formatShape(this.inputShape)})`];
    for (const l of this.layers) {
      const n = l.parameters().reduce((s, p) => s + p.variable.size, 0);
      lines.push(`  ${l.name.padEnd(16)} ${l.spec.type.padEnd(12)} params ${n}`);
    }
    lines.push(`  total trainable parameters: ${this.countParams()}`);
    return lines.join('\n');
  }

  dispose(): void {
    LayerStack.of(this.layers).dispose();
  }
}

/**
 * Models: what the trainer fits, saves and checkpoints. A model config is either a {@link Sequential} (an input
 * shape and a list of layer specs, each fed the previous one's output: Keras's Sequential, PyTorch's nn.Sequential)
 * or a registered model (`{ "type": "gpt", ... }`, a plugin of kind `model`, built on {@link Module} in
 * core/module.ts: named sub-layers and a free-form forward). {@link buildModel} builds either; both name their
 * parameters `<layer>/<weight>`, save and load with core/serialization.ts and checkpoint the same way.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, ShapeError } from './errors';
import type { ForwardContext, Json, JsonObject, Layer, Model, Parameter, PluginSpec, Shape } from './interfaces';
import { formatShape, LayerStack } from './layer';
import type { Rng } from './random';
import { pluginSpecSchema, type PluginDefinition, type PluginRegistry } from './registry';

export const sequentialConfigSchema = z.object({
  /** Optional: a config without `type` is a Sequential. */
  type: z.literal('sequential').optional(),
  /** Shape of one example, without the batch dimension, e.g. [28, 28, 1]. */
  inputShape: z.array(z.number().int().positive()).min(1),
  layers: z.array(pluginSpecSchema).min(1),
});
export type SequentialConfig = z.infer<typeof sequentialConfigSchema>;

/** A registered model: its name and options, validated by the model's own schema when it is built. */
export type RegisteredModelConfig = { type: string } & JsonObject;
export type ModelConfig = SequentialConfig | RegisteredModelConfig;

/** A model config is a Sequential unless it names another type. */
export function isSequentialConfig(config: unknown): config is SequentialConfig {
  const type = config && typeof config === 'object' && !Array.isArray(config) ? (config as { type?: unknown }).type : undefined;
  return type === undefined || type === 'sequential';
}

/**
 * The `model` field of an experiment config: a Sequential (`{ inputShape, layers }`) or a registered model
 * (`{ type, ...options }`, whose options its plugin checks when the model is built).
 */
export const modelConfigSchema: z.ZodType<ModelConfig> = z.unknown().transform((raw, ctx) => {
  const schema = isSequentialConfig(raw) ? sequentialConfigSchema : z.looseObject({ type: z.string().min(1) });
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data as ModelConfig;
  for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
  return z.NEVER;
}) as unknown as z.ZodType<ModelConfig>;

/**
 * Configs written before GPT, BERT and the seq2seq Transformer were models named them as the one layer of a
 * Sequential (`{ inputShape, layers: [{ type: "gpt", ... }] }`): such a config (in a checkpoint or a saved model) is
 * read as the registered model it names. Any other config is returned as it is.
 */
export function upgradeModelConfig<T>(config: T, registry: PluginRegistry): T | RegisteredModelConfig {
  if (!isSequentialConfig(config) || !Array.isArray(config.layers) || config.layers.length !== 1) return config;
  const only = config.layers[0]!;
  const type = typeof only === 'string' ? only : only?.type;
  if (typeof type !== 'string' || registry.has('layer', type) || !registry.has('model', type)) return config;
  return typeof only === 'string' ? { type } : only;
}

/** Builds (but does not initialise: call `build`) the model a config describes. */
export function buildModel(config: ModelConfig, registry: PluginRegistry, path = 'model'): Model {
  const upgraded = upgradeModelConfig(config, registry);
  if (isSequentialConfig(upgraded)) return new Sequential(upgraded, registry, path);
  return registry.create('model', upgraded as PluginSpec, path);
}

/**
 * `model` as an instance of `type` (a paper's GPT, to generate with), or a ConfigError naming `field` when the
 * config built another kind of model: a checked narrowing instead of a cast.
 */
export function expectModel<T extends Model>(model: Model, type: abstract new (...args: never[]) => T, field = 'model'): T {
  if (model instanceof type) return model;
  throw new ConfigError(field, `expected a ${type.name} model, got ${model.spec.type === 'sequential' ? 'a Sequential' : `"${model.spec.type}"`}`);
}

/**
 * The options of a registered model's config as its plugin reads them (defaults applied, typed by its schema), or
 * a ConfigError naming `field` when the config is another model or its options do not fit.
 */
export function modelOptions<S extends z.ZodType>(def: PluginDefinition<'model', S>, config: ModelConfig, field = 'model'): z.output<S> {
  if (isSequentialConfig(config) || config.type !== def.name) {
    throw new ConfigError(`${field}.type`, `expected a "${def.name}" model, got ${isSequentialConfig(config) ? 'a Sequential' : `"${config.type}"`}`);
  }
  const { type: _t, ...options } = config;
  const parsed = def.schema.safeParse(options);
  if (!parsed.success) throw new ConfigError(`${field}.${parsed.error.issues[0]!.path.join('.')}`, parsed.error.issues[0]!.message);
  return parsed.data;
}

/**
 * What every model shares: its parts (named layers) give the parameters, buffers, carried state, summary and
 * disposal; the output shape is known once built.
 */
export abstract class ModelBase implements Model {
  abstract readonly name: string;
  abstract readonly spec: { type: string } & JsonObject;
  abstract readonly inputShape: Shape;
  protected output: Shape | null = null;

  /** The layers the model owns, in the order their parameters are listed (and saved). */
  protected abstract parts(): readonly Layer[];
  abstract build(inputShape: Shape, rng: Rng): Shape;
  abstract apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor;

  get outputShape(): Shape {
    if (!this.output) throw new Error('model: build() must be called before outputShape is known');
    return this.output;
  }

  parameters(): Parameter[] {
    return LayerStack.of([...this.parts()]).parameters();
  }

  buffers(): Parameter[] {
    return LayerStack.of([...this.parts()]).buffers();
  }

  resetStates(): void {
    LayerStack.of([...this.parts()]).resetStates();
  }

  carriedTensors(): tf.Tensor[] {
    return LayerStack.of([...this.parts()]).carriedTensors();
  }

  /** State carried between batches by its layers (stateful RNNs), by layer name. */
  getState(): JsonObject {
    return LayerStack.of([...this.parts()]).getState();
  }

  setState(state: Json): void {
    LayerStack.of([...this.parts()]).setState(state);
  }

  /** Parameters and buffers: everything saved with the weights. */
  weights(): Parameter[] {
    return [...this.parameters(), ...this.buffers()];
  }

  countParams(): number {
    return this.parameters().reduce((n, p) => n + p.variable.size, 0);
  }

  summary(): string {
    const lines = [`${this.title()} (input ${formatShape(this.inputShape)})`];
    for (const l of this.parts()) {
      const n = l.parameters().reduce((s, p) => s + p.variable.size, 0);
      lines.push(`  ${l.name.padEnd(16)} ${l.spec.type.padEnd(12)} params ${n}`);
    }
    lines.push(`  total trainable parameters: ${this.countParams()}`);
    return lines.join('\n');
  }

  /** The summary's first words. */
  protected title(): string {
    return `${this.spec.type} "${this.name}"`;
  }

  dispose(): void {
    LayerStack.of([...this.parts()]).dispose();
  }
}

export class Sequential extends ModelBase {
  readonly name = 'sequential';
  readonly spec: { type: string } & JsonObject;
  readonly layers: Layer[];
  readonly inputShape: Shape;

  constructor(
    config: SequentialConfig,
    registry: PluginRegistry,
    /** Where the config sits in the experiment config, for messages. */
    private readonly path = 'model',
  ) {
    super();
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

  protected parts(): readonly Layer[] {
    return this.layers;
  }

  protected override title(): string {
    return 'Sequential';
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
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i]!,
        next = this.layers[i + 1];
      const pair = next ? (layer.applyWithNext?.(next, y, ctx) ?? null) : null;
      if (pair) {
        y = pair;
        i++;
      } else y = layer.apply(y, ctx);
    }
    return y;
  }
}

/**
 * Shared machinery for layers: parameter creation and shape checks. A layer plugin extends {@link LayerBase},
 * implements `build` (create weights, return the output shape) and `apply` (the forward pass).
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ShapeError } from './errors';
import { disposeMasks } from './masks';
import type { ForwardContext, Initializer, Json, JsonObject, Layer, Parameter, ParamRole, PluginSpec, Regularizer, Shape } from './interfaces';
import type { Rng } from './random';
import type { PluginContext } from './registry';

/** Options every layer accepts; a layer's schema extends this. */
export const layerOptions = z.object({
  /** Instance name, unique in the model; Sequential assigns `<type>_<index>` when absent. */
  name: z.string().min(1).optional(),
});

export abstract class LayerBase implements Layer {
  declare readonly spec: { type: string } & JsonObject;
  protected readonly params: Parameter[] = [];
  private builtShape: Shape | null = null;

  constructor(readonly name: string) {}

  build(inputShape: Shape, rng: Rng): Shape {
    if (this.builtShape) throw new Error(`${this.name}: build() called twice`);
    const out = this.buildLayer(inputShape, rng);
    // An empty output (a pool or kernel larger than its input) would only fail later, inside a kernel.
    if (out.some((d, i) => i > 0 && d !== null && !(d > 0)))
      throw this.shapeError(`large enough for a non-empty output (this one would give [${out.map((d) => d ?? 'batch').join(', ')}])`, inputShape);
    this.builtShape = inputShape;
    return out;
  }

  /** Creates the weights for `inputShape` and returns the output shape (batch dimension stays `null`). */
  protected abstract buildLayer(inputShape: Shape, rng: Rng): Shape;
  abstract apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor;

  parameters(): Parameter[] {
    return this.params;
  }

  /** Creates a parameter named `<layer>/<weight>` initialised by `init`. */
  protected addWeight(weight: string, shape: number[], init: Initializer, rng: Rng, role: ParamRole, regularizer?: Regularizer): tf.Variable {
    // Made in tidy: tf.variable shares its initial value's data but leaves that tensor live (one leaked per weight).
    const variable = tf.tidy(() => tf.variable(init.init(shape, rng), true));
    this.params.push({ name: `${this.name}/${weight}`, variable, role, trainable: true, regularizer });
    return variable;
  }

  /**
   * Throws a ShapeError naming this layer unless `shape` has `rank` dimensions (batch included), each known and
   * positive except the axes in `variable` (e.g. [1]: sequences of any length), which may be `null`.
   */
  protected expectRank(shape: Shape, rank: number, described: string, variable: number[] = []): void {
    if (shape.length !== rank || shape.some((d, i) => i > 0 && (d === null ? !variable.includes(i) : d <= 0))) throw this.shapeError(described, shape);
  }

  /** A ShapeError naming this layer, what it expected and what it got. */
  protected shapeError(expected: string, actual: Shape): ShapeError {
    return new ShapeError(`layer "${this.name}" (${this.spec?.type ?? 'layer'})`, expected, actual);
  }

  dispose(): void {
    disposeMasks(this.params);
    for (const p of this.params) p.variable.dispose();
    this.params.length = 0;
  }
}

/** Formats a shape for messages: `[batch, 28, 28, 1]`. */
export function formatShape(shape: readonly (number | null)[]): string {
  return `[${shape.map((d) => (d === null ? 'batch' : d)).join(', ')}]`;
}

/**
 * Fan-in and fan-out of a weight tensor, as Glorot & Bengio (2010) and Keras define them: for a kernel of shape
 * [...receptive field, in, out], fanIn = receptive·in and fanOut = receptive·out; a vector counts as [n, n].
 */
export function computeFans(shape: number[]): { fanIn: number; fanOut: number } {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0]!, fanOut: shape[0]! };
  const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return { fanIn: receptive * shape[shape.length - 2]!, fanOut: receptive * shape[shape.length - 1]! };
}

/**
 * A registered layer built as the part `part` of the layer or model `parent`: it is named `<parent>/<part>`, so
 * its parameter names (`<parent>/<part>/<weight>`) stay unique in the model, and a config error in it names
 * `<ctx.path>.<part>`. With `type`, the layer must be an instance of it (a composite that calls a part's own
 * methods, such as a decoder layer's cached `step`).
 */
export function createPart(ctx: PluginContext, parent: string, part: string, spec: PartSpec): Layer;
export function createPart<T extends Layer>(ctx: PluginContext, parent: string, part: string, spec: PartSpec, type: LayerClass<T>): T;
export function createPart(ctx: PluginContext, parent: string, part: string, spec: PartSpec, type?: LayerClass<Layer>): Layer {
  const layer = ctx.create('layer', { ...spec, name: `${parent}/${part}` }, part);
  if (type && !(layer instanceof type)) throw new Error(`${parent}/${part}: layer "${spec.type}" is not a ${type.name}`);
  return layer;
}

/** The spec of a part: a registered layer type and its options (the part's name is added). */
export type PartSpec = { type: string } & JsonObject;
/** A layer class, to check a part's type at run time. */
export type LayerClass<T extends Layer> = abstract new (...args: never[]) => T;

/**
 * An ordered stack of sub-layers built from plugin specs, for composite layers (residual blocks, branches).
 * Sub-layers are named `<parent>/<name or type_i>` so their parameter names stay unique in the model.
 */
export class LayerStack {
  readonly layers: Layer[];

  /** A stack over layers that already exist (e.g. a Sequential's). */
  static of(layers: Layer[]): LayerStack {
    return Object.assign(Object.create(LayerStack.prototype) as LayerStack, { layers });
  }

  /**
   * The layers of `specs`, built as parts of `parent` (named `<parent>/<name or type_i>`) through the plugin
   * context of the layer that owns them; `field` is the option they come from (errors name `<path>.<field>[i]`).
   */
  constructor(specs: readonly PluginSpec[], ctx: PluginContext, parent: string, field: string) {
    this.layers = specs.map((raw, i) => {
      const normal = ctx.registry.normalize('layer', raw, `${ctx.path}.${field}[${i}]`);
      const own = typeof normal.name === 'string' ? normal.name : `${normal.type}_${i + 1}`;
      return ctx.create('layer', { ...normal, name: `${parent}/${own}` }, `${field}[${i}]`);
    });
  }

  build(inputShape: Shape, rng: Rng): Shape {
    return this.layers.reduce((shape, l) => l.build(shape, rng), inputShape);
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.layers.reduce((y, l) => l.apply(y, ctx), x);
  }

  parameters(): Parameter[] {
    return this.layers.flatMap((l) => l.parameters());
  }

  buffers(): Parameter[] {
    return this.layers.flatMap((l) => l.buffers?.() ?? []);
  }

  resetStates(): void {
    for (const l of this.layers) l.resetStates?.();
  }

  carriedTensors(): tf.Tensor[] {
    return this.layers.flatMap((l) => l.carriedTensors?.() ?? []);
  }

  /**
   * The state its layers carry between batches, by layer name: a stateful layer's own, a composite's that of its
   * parts (a composite with no stateful part gives `{}`, left out, so a model's state names only what it carries).
   */
  getState(): JsonObject {
    const out: JsonObject = {};
    for (const l of this.layers) {
      if (!l.getState) continue;
      const s = l.getState();
      if (s !== null && typeof s === 'object' && !Array.isArray(s) && Object.keys(s).length === 0) continue;
      out[l.name] = s;
    }
    return out;
  }

  /** Puts back {@link getState}'s state: each layer named in it gets its part (the others keep theirs). */
  setState(state: Json): void {
    const byName = (state ?? {}) as JsonObject;
    for (const l of this.layers) if (l.setState && l.name in byName) l.setState(byName[l.name]!);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

/**
 * What a stateful recurrent layer carries from one batch to the next (truncated backpropagation through time):
 * named [batch, units] tensors kept outside every tidy scope, written to checkpoints as JSON (`{ shape, <name>:
 * values }`), and dropped by `reset` (the trainer resets at every epoch start and evaluation). Its layer lists the
 * tensors in `carriedTensors()`, so the model that owns the layer finds them by walking its parts (no registry of
 * live states: two models in one process never see each other's).
 */
export class CarriedState<K extends string> {
  private tensors: Record<K, tf.Tensor> | null = null;

  /** The carried tensors, or null when there are none (the layer then starts from zeros). */
  get value(): Readonly<Record<K, tf.Tensor>> | null {
    return this.tensors;
  }

  /** The carried tensors as a list (empty when there are none): the layer's `carriedTensors()`. */
  tensorList(): tf.Tensor[] {
    return this.tensors ? (Object.values(this.tensors) as tf.Tensor[]) : [];
  }

  /** The batch size of the carried state, or null when there is none. */
  get batch(): number | null {
    const first = this.tensors && (Object.values(this.tensors) as tf.Tensor[])[0];
    return first ? first.shape[0]! : null;
  }

  /** Keeps copies of `next` (clones, so no later batch's tape reaches back into this one) and frees the old state. */
  carry(next: Record<K, tf.Tensor>): void {
    const old = this.tensors;
    this.tensors = Object.fromEntries(Object.entries(next).map(([k, t]) => [k, tf.keep(tf.clone(t as tf.Tensor))])) as Record<K, tf.Tensor>;
    if (old) tf.dispose(Object.values(old) as tf.Tensor[]);
  }

  getState(): Json {
    if (!this.tensors) return null;
    const entries = Object.entries(this.tensors) as [string, tf.Tensor][];
    return { shape: entries[0]![1].shape, ...Object.fromEntries(entries.map(([k, t]) => [k, Array.from(t.dataSync())])) };
  }

  setState(s: Json): void {
    this.reset();
    if (s === null) return;
    const { shape, ...values } = s as { shape: number[] } & Record<string, number[]>;
    this.tensors = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, tf.keep(tf.tensor(v, shape))])) as Record<K, tf.Tensor>;
  }

  reset(): void {
    if (this.tensors) tf.dispose(Object.values(this.tensors) as tf.Tensor[]);
    this.tensors = null;
  }
}

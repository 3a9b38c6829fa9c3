/**
 * Module: the base of registered models (kind `model`), after PyTorch's `nn.Module`: a model owns named parts,
 * each a registered layer ({@link Module.add}), and weights of its own ({@link Module.addWeight}), and writes its
 * forward pass as code. GPT's cached generation, beam search over an encoder's memory and a classifier that takes
 * a pretrained encoder's weights are loops and method calls over the parts, which a free-form forward expresses
 * directly; a functional graph (Keras's) would need every such loop outside the model.
 *
 * What a Module shares with a Sequential (core/model.ts): parameters named `<model>/<part>/<weight>` (the model's
 * name is the first segment), listed in the order the parts were added (the order weights are saved in and
 * gradients are clipped over); buffers, carried state, summary and disposal over the parts; a config that is
 * plain JSON (`{ "type": "gpt", ... }`), so `saveModel` / `loadModel`, checkpoints and resume work unchanged.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ShapeError } from './errors';
import type { JsonObject, Layer, Parameter, ParamRole, PluginSpec, Shape } from './interfaces';
import { createPart, type LayerClass, type PartSpec } from './layer';
import { disposeMasks } from './masks';
import { ModelBase } from './model';
import type { Rng } from './random';
import type { PluginContext } from './registry';

/** Options every registered model accepts; a model's schema extends this. */
export const moduleOptions = z.object({
  /** The model's name: the first segment of its parameter names (`gpt/token_embedding/embeddings`). */
  name: z.string().min(1).optional(),
});

export abstract class Module extends ModelBase {
  declare readonly spec: { type: string } & JsonObject;
  readonly inputShape: Shape;
  private readonly children: Layer[] = [];
  private readonly own: Parameter[] = [];

  /**
   * @param name the model's name (its parameters' first segment)
   * @param inputShape the shape of one batch of inputs (batch dimension `null`), checked against the data
   */
  protected constructor(
    readonly name: string,
    inputShape: Shape,
    private readonly context: PluginContext,
  ) {
    super();
    this.inputShape = inputShape;
  }

  /** Creates a registered layer as the part `part` (named `<model>/<part>`); with `type`, checked to be one. */
  protected add(part: string, spec: PartSpec): Layer;
  protected add<T extends Layer>(part: string, spec: PartSpec, type: LayerClass<T>): T;
  protected add(part: string, spec: PartSpec, type?: LayerClass<Layer>): Layer {
    const layer = type ? createPart(this.context, this.name, part, spec, type) : createPart(this.context, this.name, part, spec);
    this.children.push(layer);
    return layer;
  }

  /** A weight of the model itself, named `<model>/<weight>`, listed after the parts' parameters. */
  protected addWeight(weight: string, shape: number[], init: PluginSpec, rng: Rng, role: ParamRole): tf.Variable {
    const initializer = this.context.create('initializer', init, weight);
    // Made in tidy: tf.variable shares its initial value's data but leaves that tensor live (one leaked per weight).
    const variable = tf.tidy(() => tf.variable(initializer.init(shape, rng), true));
    this.own.push({ name: `${this.name}/${weight}`, variable, role, trainable: true });
    return variable;
  }

  protected parts(): readonly Layer[] {
    return this.children;
  }

  /** Builds the parts in the order the model's initial weights are drawn in; returns the output shape. */
  protected abstract buildParts(inputShape: Shape, rng: Rng): Shape;

  build(inputShape: Shape = this.inputShape, rng: Rng): Shape {
    if (this.output) throw new Error(`${this.name}: build() called twice`);
    this.output = this.buildParts(inputShape, rng);
    return this.output;
  }

  override parameters(): Parameter[] {
    return [...super.parameters(), ...this.own];
  }

  /** Throws a ShapeError unless `inputShape` is [batch, time] ids with time at most `max` (the option `option`). */
  protected expectIds(inputShape: Shape, max: number, option: string): void {
    if (inputShape.length !== 2 || (inputShape[1] !== null && inputShape[1]! > max))
      throw this.shapeError(`[batch, time ≤ ${option} = ${max}] ids`, inputShape);
  }

  /** A ShapeError naming this model, what it expected and what it got. */
  protected shapeError(expected: string, actual: Shape): ShapeError {
    return new ShapeError(`model "${this.name}" (${this.spec?.type ?? 'model'})`, expected, actual);
  }

  override dispose(): void {
    super.dispose();
    disposeMasks(this.own);
    for (const p of this.own) p.variable.dispose();
    this.own.length = 0;
  }
}

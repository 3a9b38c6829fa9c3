import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { CarriedState, LayerBase, layerOptions, type Initializer, type Json, type PluginContext, type PluginSpec, type Rng, type Shape } from '../../core';

/** Options every recurrent layer takes; a recurrent layer's schema extends this. */
export const recurrentOptions = layerOptions.extend({
  units: z.number().int().positive(),
  /** Output every time step ([batch, time, units]) or only the last ([batch, units]). */
  returnSequences: z.boolean().default(true),
  /**
   * Carry the final state of one batch into the next (truncated backpropagation through time, as language models
   * train); `resetStates()` zeroes it, e.g. at the start of an epoch.
   */
  stateful: z.boolean().default(false),
});
/** The options the shared part reads: the common ones and the two kernels' initializers. */
type RecurrentOptions = z.output<typeof recurrentOptions> & { kernelInitializer: PluginSpec; recurrentInitializer: PluginSpec };

/**
 * What GRU and LSTM share: the gates' input kernel W [features, gates · units] and recurrent kernel U
 * [units, gates · units], the output shape, and the state carried between batches when `stateful` (named tensors,
 * e.g. h, or h and c), which checkpoints save with getState/setState and resetStates zeroes.
 */
export abstract class RecurrentLayer<K extends string, O extends RecurrentOptions = RecurrentOptions> extends LayerBase {
  protected kernel!: tf.Variable;
  protected recurrent!: tf.Variable;
  protected readonly state = new CarriedState<K>();
  private readonly kernelInit: Initializer;
  private readonly recurrentInit: Initializer;

  constructor(
    protected readonly opts: O,
    ctx: PluginContext,
    defaultName: string,
    /** Gates computed from x_t and h_{t−1}: 3 for the GRU (z, r, h), 4 for the LSTM (i, f, g, o). */
    private readonly gates: number,
  ) {
    super(opts.name ?? defaultName);
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.recurrentInit = ctx.create('initializer', opts.recurrentInitializer, 'recurrentInitializer');
  }

  /** Creates W and U (in that order) for [batch, time, features] inputs, then the layer's biases; returns the output shape. */
  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, features]');
    const [, time, features] = inputShape as [null, number, number];
    const u = this.opts.units;
    this.kernel = this.addWeight('kernel', [features, this.gates * u], this.kernelInit, rng, 'kernel');
    this.recurrent = this.addWeight('recurrent_kernel', [u, this.gates * u], this.recurrentInit, rng, 'kernel');
    this.buildBiases(rng);
    return this.opts.returnSequences ? [null, time, u] : [null, u];
  }

  /** Adds the layer's biases after W and U. */
  protected abstract buildBiases(rng: Rng): void;

  /** Throws unless the carried state, if any, has `x`'s batch size (stateful layers keep their batch size). */
  protected expectCarriedBatch(x: tf.Tensor): void {
    if (this.state.batch !== null && this.state.batch !== x.shape[0]) {
      throw this.shapeError(`a batch of ${this.state.batch} (stateful layers keep their batch size)`, x.shape);
    }
  }

  /** The carried state as JSON (checkpoints), or null when there is none. */
  getState(): Json {
    return this.state.getState();
  }

  setState(s: Json): void {
    this.state.setState(s);
  }

  /** The tensors it carries now (h, or h and c; none unless stateful and past a batch). */
  carriedTensors(): tf.Tensor[] {
    return this.state.tensorList();
  }

  /** Zeroes the carried state (stateful layers): the next batch starts from zero state. */
  resetStates(): void {
    this.state.reset();
  }

  override dispose(): void {
    this.resetStates();
    super.dispose();
  }
}

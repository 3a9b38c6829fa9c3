/**
 * Weight masks for pruning: a parameter may carry a fixed 0/1 mask ({@link Parameter.mask}); where it is 0 the
 * weight is held at exactly 0. The trainer re-applies masks after every optimizer step (so an optimizer's moments
 * cannot bring a pruned weight back), saveModel stores them and loadModel puts them back. A mask belongs to its
 * parameter and nowhere else: `readToHost(model)` (core/backend.ts) finds a model's masks through its parameters.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from './errors';
import type { Parameter } from './interfaces';

/**
 * Gives `p` the mask `mask` (a 0/1 tensor of the variable's shape, kept by the parameter; null removes it), disposing
 * the one it had, and zeroes the masked weights at once.
 */
export function setMask(p: Parameter, mask: tf.Tensor | null): void {
  if (mask && mask.shape.join() !== p.variable.shape.join()) throw new ShapeError(`mask of parameter "${p.name}"`, `[${p.variable.shape}]`, mask.shape);
  const old = p.mask;
  if (mask) {
    p.mask = tf.keep(mask.dtype === 'float32' ? mask : tf.tidy(() => tf.cast(mask, 'float32')));
    if (p.mask !== mask) mask.dispose();
  } else delete p.mask;
  if (old && old !== p.mask) old.dispose();
  applyMasks([p]);
}

/** Multiplies every masked parameter among `params` by its mask, in place. */
export function applyMasks(params: readonly Parameter[]): void {
  for (const p of params) if (p.mask) tf.tidy(() => p.variable.assign(tf.mul(p.variable, p.mask!)));
}

/** Disposes the masks of `params` (a layer's `dispose`). */
export function disposeMasks(params: readonly Parameter[]): void {
  for (const p of params) {
    p.mask?.dispose();
    delete p.mask;
  }
}

/**
 * Differentiable ops that plugins share (as torch.nn.functional is to torch.nn): a fully connected product and a 2-D
 * convolution with bias and activation, softmax, layer normalisation and multi-head self-attention. Each runs one
 * backend kernel when the active backend has it (core/kernels.ts) and composes tfjs ops otherwise, with the same values
 * either way (the conformance tests compare the backends).
 *
 * Each op's file holds its gradient next to it (per input and lazy, so a gradient nobody needs is never computed).
 * The gradients go into tfjs's global gradient registry only through `installOpGradients`, which `selectBackend`
 * (core/backend.ts) calls when it activates a backend: importing loom changes no tfjs registry.
 */
import * as tf from '@tensorflow/tfjs-core';
import { selfAttentionGradConfig } from './attention';
import { conv2dMaxPoolGradConfig, fusedConv2dGradConfig } from './conv';
import { layerNormGradConfig } from './layer-norm';
import { fusedMatMulGradConfig } from './linear';
import { softmaxGradConfig } from './softmax';

export { selfAttention } from './attention';
export { conv2d, conv2dMaxPool, type ConvActivation } from './conv';
export { layerNorm } from './layer-norm';
export { linear, type LinearActivation } from './linear';
export { softmax } from './softmax';

/** The gradients of the kernels the ops run: tfjs's `_FusedMatMul` and `FusedConv2D` (which it registers none for) and the fused ones. */
export const OP_GRADIENTS: readonly tf.GradConfig[] = [
  fusedMatMulGradConfig,
  fusedConv2dGradConfig,
  conv2dMaxPoolGradConfig,
  softmaxGradConfig,
  selfAttentionGradConfig,
  layerNormGradConfig,
];

/**
 * Registers the ops' gradients with tfjs (`linear` and `conv2d` need `_FusedMatMul`'s and `FusedConv2D`'s on every
 * backend that has the kernel).
 * Idempotent; returns the kernel names whose gradient it registered now.
 */
export function installOpGradients(): string[] {
  const added: string[] = [];
  for (const config of OP_GRADIENTS) {
    if (tf.getGradient(config.kernelName) === config) continue;
    tf.registerGradient(config);
    added.push(config.kernelName);
  }
  return added;
}

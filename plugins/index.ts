/**
 * The built-in plugins. `registerBuiltins(registry)` adds them all; a user's own plugin is registered the same
 * way (`registry.register(myPlugin)`), and a new built-in is one file plus one line here.
 */
import type { PluginDefinition, PluginRegistry } from '../core';
import gelu from './activations/gelu';
import leakyRelu from './activations/leaky-relu';
import linear from './activations/linear';
import logSoftmax from './activations/log-softmax';
import relu from './activations/relu';
import sigmoid from './activations/sigmoid';
import softmax from './activations/softmax';
import tanh from './activations/tanh';
import randomCrop from './augmentations/random-crop';
import randomFlip from './augmentations/random-flip';
import randomRotation from './augmentations/random-rotation';
import randomTranslation from './augmentations/random-translation';
import randomZoom from './augmentations/random-zoom';
import cpu from './backends/cpu';
import nativeCpu from './backends/native-cpu';
import { tfjsNode, tfjsNodeGpu } from './backends/tfjs-node';
import webgpu from './backends/webgpu';
import earlyStopping from './callbacks/early-stopping';
import headPruning from './callbacks/head-pruning';
import magnitudePruning from './callbacks/magnitude-pruning';
import modelCheckpoint from './callbacks/model-checkpoint';
import progress from './callbacks/progress';
import reduceOnPlateau from './callbacks/reduce-on-plateau';
import brown from './data/brown';
import charText from './data/char-text';
import cmudict from './data/cmudict';
import mnist from './data/mnist';
import spamAssassin from './data/spam-assassin';
import constant from './initializers/constant';
import glorotNormal from './initializers/glorot-normal';
import glorotUniform from './initializers/glorot-uniform';
import heNormal from './initializers/he-normal';
import heUniform from './initializers/he-uniform';
import ones from './initializers/ones';
import orthogonal from './initializers/orthogonal';
import randomNormal from './initializers/random-normal';
import randomUniform from './initializers/random-uniform';
import truncatedNormal from './initializers/truncated-normal';
import varianceScaling from './initializers/variance-scaling';
import zeros from './initializers/zeros';
import activation from './layers/activation';
import avgPool2d from './layers/avg-pool2d';
import batchNorm from './layers/batch-norm';
import concatenate from './layers/concatenate';
import conv2d from './layers/conv2d';
import dense from './layers/dense';
import quantizedConv2d from './layers/quantized-conv2d';
import quantizedDense from './layers/quantized-dense';
import dropout from './layers/dropout';
import embedding from './layers/embedding';
import flatten from './layers/flatten';
import globalPool from './layers/global-pool';
import gru from './layers/gru';
import layerNorm from './layers/layer-norm';
import lstm from './layers/lstm';
import maxPool2d from './layers/max-pool2d';
import multiHeadAttention from './layers/multi-head-attention';
import positionalEncoding from './layers/positional-encoding';
import reshape from './layers/reshape';
import residual from './layers/residual';
import transformerDecoder from './layers/transformer-decoder';
import transformerEncoder from './layers/transformer-encoder';
import variationalDropout from './layers/variational-dropout';
import binaryCrossentropy from './losses/binary-crossentropy';
import categoricalCrossentropy from './losses/categorical-crossentropy';
import distillation from './losses/distillation';
import mae from './losses/mae';
import mse from './losses/mse';
import sparseCategoricalCrossentropy from './losses/sparse-categorical-crossentropy';
import accuracy from './metrics/accuracy';
import perplexity from './metrics/perplexity';
import bert from './models/bert';
import gpt from './models/gpt';
import transformerSeq2seq from './models/transformer-seq2seq';
import adagrad from './optimizers/adagrad';
import adam from './optimizers/adam';
import rmsprop from './optimizers/rmsprop';
import sgd from './optimizers/sgd';
import mpiDataParallel from './parallelism/mpi-data-parallel';
import singleProcess from './parallelism/single-process';
import pipeline from './parallelism/pipeline';
import hybrid from './parallelism/hybrid';
import {
  columnParallelDense,
  parallelAttention,
  parallelTransformerBlock,
  rowParallelDense,
  tensorParallel,
  vocabParallelCrossEntropy,
  vocabParallelEmbedding,
} from './parallelism/tensor-parallel';
import constantSchedule from './schedules/constant';
import cosineWarmup from './schedules/cosine-warmup';
import exponentialDecay from './schedules/exponential-decay';
import inverseTimeDecay from './schedules/inverse-time-decay';
import linearWarmupDecay from './schedules/linear-warmup-decay';
import noam from './schedules/noam';
import stepDecay from './schedules/step-decay';
import { l1, l1l2, l2 } from './regularizers/l1l2';
import consoleTracker from './trackers/console';
import mlflowFile from './trackers/mlflow-file';
import mlflowRest from './trackers/mlflow-rest';

// biome-ignore lint/suspicious/noExplicitAny: definitions of every kind and schema (PluginDefinition is invariant in both)
export const builtinPlugins: PluginDefinition<any, any>[] = [
  gelu,
  leakyRelu,
  linear,
  logSoftmax,
  relu,
  sigmoid,
  softmax,
  tanh,
  randomCrop,
  randomFlip,
  randomRotation,
  randomTranslation,
  randomZoom,
  cpu,
  nativeCpu,
  tfjsNode,
  tfjsNodeGpu,
  webgpu,
  earlyStopping,
  magnitudePruning,
  headPruning,
  modelCheckpoint,
  progress,
  reduceOnPlateau,
  brown,
  charText,
  cmudict,
  mnist,
  spamAssassin,
  constant,
  glorotNormal,
  glorotUniform,
  heNormal,
  heUniform,
  ones,
  orthogonal,
  randomNormal,
  randomUniform,
  truncatedNormal,
  varianceScaling,
  zeros,
  activation,
  avgPool2d,
  batchNorm,
  concatenate,
  conv2d,
  dense,
  quantizedDense,
  quantizedConv2d,
  dropout,
  embedding,
  flatten,
  globalPool,
  gru,
  layerNorm,
  lstm,
  maxPool2d,
  multiHeadAttention,
  positionalEncoding,
  reshape,
  residual,
  transformerDecoder,
  transformerEncoder,
  variationalDropout,
  bert,
  gpt,
  transformerSeq2seq,
  binaryCrossentropy,
  categoricalCrossentropy,
  distillation,
  mae,
  mse,
  sparseCategoricalCrossentropy,
  accuracy,
  perplexity,
  adagrad,
  adam,
  rmsprop,
  sgd,
  mpiDataParallel,
  pipeline,
  hybrid,
  singleProcess,
  tensorParallel,
  columnParallelDense,
  rowParallelDense,
  parallelAttention,
  parallelTransformerBlock,
  vocabParallelEmbedding,
  vocabParallelCrossEntropy,
  constantSchedule,
  cosineWarmup,
  exponentialDecay,
  inverseTimeDecay,
  linearWarmupDecay,
  noam,
  stepDecay,
  l1,
  l1l2,
  l2,
  consoleTracker,
  mlflowFile,
  mlflowRest,
];

export function registerBuiltins(registry: PluginRegistry): PluginRegistry {
  return registry.register(...builtinPlugins);
}

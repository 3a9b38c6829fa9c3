/**
 * Post-training quantization of a trained Sequential model (Jacob et al. 2018, §2–3; PyTorch's `quantize_dynamic` for
 * the dynamic mode): every top-level `dense` becomes a `quantized-dense` and every `conv2d` a `quantized-conv2d`, with
 * int8 weights quantized per output channel (symmetric) and, in static mode, each such layer's input range calibrated
 * on a sample of training data. The result is an ordinary model (plain-JSON config, saved and loaded as any other).
 *
 * Calibration takes each quantized layer's input minimum and maximum over the sample (PyTorch's default
 * MinMaxObserver): the layers here follow relu's or the pixels, whose ranges have no long tails to clip, and min/max
 * never saturates a value seen in calibration. A percentile observer would trade that for resolution.
 *
 * A composed model (a `Module`: gpt, bert, transformer) whose schema has a `quantization` option is quantized through
 * that option: every dense product inside it (the attention's fused q,k,v and output projections, the feed-forward
 * layers, dense heads) becomes int8, and the embeddings, layer norms, softmax and the attention's score and value
 * products (activation × activation) stay float32. Its static mode is calibrated on the model quantized in dynamic
 * mode: each product's input range is the min/max over the sample of the inputs the int8 model itself produces.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  activationQuant,
  buildModel,
  Module,
  observeInputRanges,
  QUANTIZATION_VERSION,
  quantizePerChannel,
  readsAsynchronously,
  readWeights,
  Rng,
  Sequential,
  writeWeights,
  type JsonObject,
  type Model,
  type ModelConfig,
  type NamedWeights,
  type Parameter,
  type PluginRegistry,
} from '../core';
import { z } from 'zod';

export type QuantizeMode = 'static' | 'dynamic';

export interface QuantizeOptions {
  mode: QuantizeMode;
  /** Static mode: inputs to calibrate on (a sample of training data), [samples, ...inputShape]. */
  calibration?: tf.Tensor;
  /** Calibration batch size (default 256). */
  batchSize?: number;
  /**
   * A Sequential's dense or conv2d layer whose product is shallower than this (depth k: a dense layer's inputs, a
   * convolution's kernel height × width × input channels) stays float32 (default {@link MIN_DEPTH}; 0 quantizes
   * every one). Composed models (gpt, bert, transformer) quantize every dense product whatever this says.
   */
  minDepth?: number;
}

/**
 * The depth below which int8 does not pay (`QuantizeOptions.minDepth`'s default). Quantizing the input and
 * dequantizing the output cost O(m·k + m·n) around an O(m·k·n) product, so a shallow product gains little from int8
 * arithmetic and can lose: measured on the native backend (benchmarks/results/quantization.json, 2-core Zen 4,
 * AVX-512 VNNI), int8/fp32 speed was 0.55 at k = 9 (MNIST's first convolution, im2col), 0.96 at k = 64 (its
 * 64→10 head), 1.44 at k = 5,408 and 2.9-4.6 at k = 768 (BERT and GPT-2 products). 128 sits in the gap.
 */
export const MIN_DEPTH = 128;

/** What `quantizeModel` did: the layers it quantized and their calibrated input ranges, and those it kept float32. */
export interface QuantizeReport {
  layers: { name: string; type: string; min?: number; max?: number; inputScale?: number; inputZeroPoint?: number }[];
  /** Layers left float32 because their depth is below `minDepth`. */
  kept?: { name: string; type: string; depth: number }[];
}

const QUANTIZED: Record<string, string> = { dense: 'quantized-dense', conv2d: 'quantized-conv2d' };
/** The options of the float layer that the quantized one keeps. */
const KEPT: Record<string, string[]> = {
  dense: ['name', 'units', 'activation', 'useBias'],
  conv2d: ['name', 'filters', 'kernelSize', 'strides', 'padding', 'activation', 'useBias'],
};

/** `ranges`' entry for `key` widened to take in [lo, hi]: a running min/max (MinMaxObserver). */
function observe<K>(ranges: Map<K, [number, number]>, key: K, lo: number, hi: number): void {
  const r = ranges.get(key);
  ranges.set(key, r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi]);
}

/**
 * The report row of the layer or product `name` calibrated to the range [lo, hi], with its uint8 input scale and
 * zero point; a ConfigError naming it for a range that is not finite.
 */
function calibratedRow(kind: 'layer' | 'product', name: string, type: string, [lo, hi]: [number, number]) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new ConfigError('calibration', `${kind} "${name}" saw a non-finite input (${lo}, ${hi})`);
  const q = activationQuant(lo, hi);
  return { name, type, min: lo, max: hi, inputScale: q.scale, inputZeroPoint: q.zeroPoint };
}

/** Each listed layer's input range over `calibration`, run in inference mode batch by batch. */
function calibrate(model: Sequential, which: Set<number>, calibration: tf.Tensor, batchSize: number): Map<number, [number, number]> {
  const ranges = new Map<number, [number, number]>();
  const n = calibration.shape[0]!;
  const rng = new Rng(0);
  for (let start = 0; start < n; start += batchSize) {
    tf.tidy(() => {
      let x = tf.slice(calibration, start, Math.min(batchSize, n - start));
      for (const [i, layer] of model.layers.entries()) {
        if (which.has(i)) {
          observe(ranges, i, tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!);
        }
        x = layer.apply(x, { training: false, rng });
      }
    });
  }
  return ranges;
}

/**
 * Post-training quantization reads on the host synchronously (the float weights, static mode's calibration ranges,
 * dynamic mode's per-batch ranges), which a backend that reads asynchronously (webgpu in Node) cannot do: there it
 * is refused up front with a ConfigError naming `field` (the CLI's flag), instead of failing inside with tfjs's message.
 */
export function refuseAsyncReads(field: string): void {
  if (readsAsynchronously())
    throw new ConfigError(
      field,
      `post-training quantization reads the weights and activation ranges on the host synchronously, which the ${tf.getBackend()} backend cannot do; quantize on native-cpu or cpu`,
    );
}

/**
 * A quantized copy of `model` (which is left as it is): see the file comment. Throws a ConfigError for a model that
 * is neither a Sequential nor a registered model with a `quantization` option, one with nothing to quantize, static
 * mode without calibration data, or a backend that reads asynchronously.
 */
export function quantizeModel(model: Model, registry: PluginRegistry, options: QuantizeOptions): { model: Model; report: QuantizeReport } {
  refuseAsyncReads('backend');
  if (model instanceof Module) return quantizeModule(model, registry, options);
  if (!(model instanceof Sequential)) {
    throw new ConfigError(
      'model',
      `quantization handles Sequential models and registered models with a "quantization" option; this one is a "${model.spec.type}" model`,
    );
  }
  const specs = model.spec.layers as JsonObject[];
  const candidates = specs.flatMap((s, i) => (QUANTIZED[s.type as string] ? [i] : []));
  if (candidates.length === 0) throw new ConfigError('model.layers', 'no dense or conv2d layer to quantize');
  const minDepth = options.minDepth ?? MIN_DEPTH;
  const depth = (i: number) => {
    const kernel = model.layers[i]!.parameters().find((p) => p.name.endsWith('kernel'));
    return kernel ? kernel.variable.shape.slice(0, -1).reduce((a, b) => a * b, 1) : Number.POSITIVE_INFINITY;
  };
  const which = new Set(candidates.filter((i) => depth(i) >= minDepth));
  const kept = candidates.filter((i) => !which.has(i)).map((i) => ({ name: specs[i]!.name as string, type: specs[i]!.type as string, depth: depth(i) }));
  if (options.mode === 'static' && !(options.calibration && options.calibration.shape[0]! > 0))
    throw new ConfigError('calibrationSamples', 'static quantization needs calibration samples (at least 1)');
  if (which.size === 0)
    throw new ConfigError(
      'minDepth',
      `every dense and conv2d layer is shallower than ${minDepth} (${kept.map((k) => `${k.name}: ${k.depth}`).join(', ')}), where int8 does not pay; a lower minDepth (0: all) quantizes them`,
    );
  let ranges = new Map<number, [number, number]>();
  if (options.mode === 'static') ranges = calibrate(model, which, options.calibration!, options.batchSize ?? 256); // checked above
  const report: QuantizeReport = { layers: [], ...(kept.length ? { kept } : {}) };
  const layers = specs.map((s, i) => {
    const type = s.type as string;
    if (!which.has(i)) return s;
    const kept = Object.fromEntries(KEPT[type]!.filter((k) => s[k] !== undefined).map((k) => [k, s[k]!]));
    const spec: JsonObject = { type: QUANTIZED[type]!, ...kept, mode: options.mode, version: QUANTIZATION_VERSION };
    if (options.mode === 'static') {
      const row = calibratedRow('layer', s.name as string, type, ranges.get(i)!);
      Object.assign(spec, { inputScale: row.inputScale, inputZeroPoint: row.inputZeroPoint });
      report.layers.push(row);
    } else report.layers.push({ name: s.name as string, type });
    return spec;
  });
  const config = { ...model.spec, layers } as unknown as ModelConfig;
  return { model: buildQuantized(config, model, registry), report };
}

/** Bytes of a model's weights as stored for inference: one for each int8 weight (Parameter.int8), four for the rest. */
export function inferenceBytes(model: Model): { float32: number; int8: number } {
  let float32 = 0,
    int8 = 0;
  for (const p of model.weights()) {
    if (p.int8) int8 += p.variable.size;
    else float32 += 4 * p.variable.size;
  }
  return { float32, int8 };
}

/**
 * The weights `quantized` (of a quantized model or layer) from the float ones, by name: an int8 weight is the float
 * weight of the same name quantized per output channel (its last axis), `<w>_scale` that weight's scales, and every
 * other weight is copied. Write them with `writeWeights(quantized, ...)`.
 */
export function quantizedWeightsFrom(float: readonly Parameter[], quantized: readonly Parameter[]): NamedWeights {
  const source = readWeights(float);
  const int8 = new Set(quantized.flatMap((p) => (p.int8 ? [p.name] : [])));
  const perChannel = new Map<string, ReturnType<typeof quantizePerChannel>>();
  const codes = (name: string) => {
    const w = source.get(name);
    if (!w) throw new ConfigError('model', `quantizeModel: the float model has no weight "${name}" to quantize`);
    if (!perChannel.has(name)) perChannel.set(name, quantizePerChannel(w.values, w.shape.at(-1)!));
    return { shape: w.shape, ...perChannel.get(name)! };
  };
  const out: NamedWeights = new Map();
  for (const p of quantized) {
    const base = p.name.endsWith('_scale') ? p.name.slice(0, -'_scale'.length) : '';
    if (int8.has(p.name)) {
      const c = codes(p.name);
      out.set(p.name, { shape: c.shape, values: c.q });
    } else if (int8.has(base)) {
      const c = codes(base);
      out.set(p.name, { shape: [c.scales.length], values: c.scales });
    } else {
      const w = source.get(p.name);
      if (w) out.set(p.name, { shape: w.shape, values: w.values });
    }
  }
  return out;
}

/** `model` built from `config`, with the weights of `float` quantized into it (disposed if that fails). */
function buildQuantized(config: ModelConfig, float: Model, registry: PluginRegistry): Model {
  const quantized = buildModel(config, registry);
  try {
    quantized.build(quantized.inputShape, new Rng(0));
    writeWeights(quantized.weights(), quantizedWeightsFrom(float.weights(), quantized.weights()), 'quantizeModel');
    return quantized;
  } catch (e) {
    quantized.dispose();
    throw e;
  }
}

/**
 * A registered model quantized through its `quantization` option (see the file comment). Static mode runs the
 * dynamic model on the calibration sample batch by batch, observing every product's input range, then writes each
 * range's scale and zero point into the option. The report lists the products by path (`block_1/ff1`).
 */
function quantizeModule(model: Module, registry: PluginRegistry, options: QuantizeOptions): { model: Model; report: QuantizeReport } {
  const type = model.spec.type;
  const schema = registry.get('model', type).schema;
  if (!(schema instanceof z.ZodObject) || !('quantization' in schema.shape)) {
    throw new ConfigError('model.type', `model "${type}" has no "quantization" option, so it cannot be quantized; gpt, bert and transformer have one`);
  }
  if (model.spec.quantization !== undefined) throw new ConfigError('model.quantization', `model "${model.name}" is already quantized`);
  const config = (quantization: JsonObject) => ({ ...model.spec, quantization }) as unknown as ModelConfig;
  const dynamic = buildQuantized(config({ mode: 'dynamic' }), model, registry);
  if (options.mode === 'dynamic') {
    const products = new Set<string>();
    const x = tf.zeros([1, ...model.inputShape.slice(1).map((d) => d ?? 1)], 'int32');
    try {
      observeInputRanges(
        (p) => products.add(p.slice(model.name.length + 1)),
        () => tf.tidy(() => dynamic.apply(x, { training: false, rng: new Rng(0) })),
      );
    } finally {
      x.dispose();
    }
    return { model: dynamic, report: { layers: [...products].map((name) => ({ name, type: 'dense' })) } };
  }
  const c = options.calibration;
  try {
    if (!c || c.shape[0] === 0) throw new ConfigError('calibrationSamples', 'static quantization needs calibration samples (at least 1)');
    const ranges = new Map<string, [number, number]>();
    const n = c.shape[0]!;
    const batch = options.batchSize ?? 256;
    observeInputRanges(
      (product, lo, hi) => observe(ranges, product.slice(model.name.length + 1), lo, hi),
      () => {
        for (let start = 0; start < n; start += batch)
          tf.tidy(() => dynamic.apply(tf.slice(c, start, Math.min(batch, n - start)), { training: false, rng: new Rng(0) }));
      },
    );
    const report: QuantizeReport = { layers: [] };
    const inputs: JsonObject = {};
    for (const [name, range] of ranges) {
      const row = calibratedRow('product', name, 'dense', range);
      inputs[name] = { inputScale: row.inputScale, inputZeroPoint: row.inputZeroPoint };
      report.layers.push(row);
    }
    return { model: buildQuantized(config({ mode: 'static', inputs }), model, registry), report };
  } finally {
    dynamic.dispose();
  }
}

/** The rows of a `--quantize` comparison. */
export type QuantizedRow = 'fp32' | 'int8 static' | 'int8 dynamic';

/**
 * A paper's `--quantize` comparison: `float` measured, then each of `modes` quantized from it and measured, as rows
 * `fp32`, `int8 static`, `int8 dynamic`. A static mode is calibrated on `calibration()`; each calibration sample and
 * quantized model is disposed once used, the float model is left to the caller.
 */
export async function measureQuantized<T extends object>(
  float: Model,
  registry: PluginRegistry,
  modes: readonly QuantizeMode[],
  calibration: () => tf.Tensor,
  measure: (model: Model) => T | Promise<T>,
): Promise<({ model: QuantizedRow } & T)[]> {
  const rows: ({ model: QuantizedRow } & T)[] = [{ model: 'fp32', ...(await measure(float)) }];
  for (const mode of modes) {
    const sample = mode === 'static' ? calibration() : undefined;
    let model: Model;
    try {
      model = quantizeModel(float, registry, { mode, calibration: sample }).model;
    } finally {
      sample?.dispose();
    }
    try {
      rows.push({ model: mode === 'static' ? 'int8 static' : 'int8 dynamic', ...(await measure(model)) });
    } finally {
      model.dispose();
    }
  }
  return rows;
}

/** What a paper's `--quantize` flag takes: one mode, or `all` (static then dynamic). */
export const QUANTIZE_CHOICES = ['static', 'dynamic', 'all'] as const;

/** The modes `--quantize <value>` asks for; anything else is a ConfigError naming `--quantize`. */
export function quantizeModes(value: string): QuantizeMode[] {
  if (!(QUANTIZE_CHOICES as readonly string[]).includes(value))
    throw new ConfigError('--quantize', `expected one of ${QUANTIZE_CHOICES.join(', ')}, got "${value}"`);
  return value === 'all' ? ['static', 'dynamic'] : [value as QuantizeMode];
}

/** A seeded sample of `count` examples of `data` (a Fisher-Yates shuffle by `seed`, then the first `count`): calibration inputs. */
export function calibrationSample(data: { size: number; batch(i: ArrayLike<number>): { x: tf.Tensor; y: tf.Tensor } }, count: number, seed: number): tf.Tensor {
  const rng = new Rng(seed);
  const order = Int32Array.from({ length: data.size }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const b = data.batch(order.slice(0, Math.min(count, data.size)));
  tf.dispose(b.y);
  return b.x;
}

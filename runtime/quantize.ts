/**
 * Post-training quantization of a trained Sequential model (Jacob et al. 2018, §2–3; PyTorch's `quantize_dynamic` for
 * the dynamic mode): every top-level `dense` becomes a `quantized-dense` and every `conv2d` a `quantized-conv2d`, with
 * int8 weights quantized per output channel (symmetric) and, in static mode, each such layer's input range calibrated
 * on a sample of training data. The result is an ordinary model (plain-JSON config, saved and loaded as any other).
 *
 * Calibration takes each quantized layer's input minimum and maximum over the sample (PyTorch's default
 * MinMaxObserver): the layers here follow relu's or the pixels, whose ranges have no long tails to clip, and min/max
 * never saturates a value seen in calibration. A percentile observer would trade that for resolution.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  activationQuant,
  buildModel,
  QUANTIZATION_VERSION,
  quantizePerChannel,
  readWeights,
  Rng,
  Sequential,
  writeWeights,
  type JsonObject,
  type Model,
  type ModelConfig,
  type NamedWeights,
  type PluginRegistry,
} from '../core';

export type QuantizeMode = 'static' | 'dynamic';

export interface QuantizeOptions {
  mode: QuantizeMode;
  /** Static mode: inputs to calibrate on (a sample of training data), [samples, ...inputShape]. */
  calibration?: tf.Tensor;
  /** Calibration batch size (default 256). */
  batchSize?: number;
}

/** What `quantizeModel` did: the layers it quantized and their calibrated input ranges. */
export interface QuantizeReport {
  layers: { name: string; type: string; min?: number; max?: number; inputScale?: number; inputZeroPoint?: number }[];
}

const QUANTIZED: Record<string, string> = { dense: 'quantized-dense', conv2d: 'quantized-conv2d' };
/** The options of the float layer that the quantized one keeps. */
const KEPT: Record<string, string[]> = {
  dense: ['name', 'units', 'activation', 'useBias'],
  conv2d: ['name', 'filters', 'kernelSize', 'strides', 'padding', 'activation', 'useBias'],
};

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
          const lo = tf.min(x).dataSync()[0]!,
            hi = tf.max(x).dataSync()[0]!;
          const r = ranges.get(i);
          ranges.set(i, r ? [Math.min(r[0], lo), Math.max(r[1], hi)] : [lo, hi]);
        }
        x = layer.apply(x, { training: false, rng });
      }
    });
  }
  return ranges;
}

/**
 * A quantized copy of `model` (which is left as it is): see the file comment. Throws a ConfigError for a model that
 * is not a Sequential, one with nothing to quantize, or static mode without calibration data.
 */
export function quantizeModel(model: Model, registry: PluginRegistry, options: QuantizeOptions): { model: Model; report: QuantizeReport } {
  if (!(model instanceof Sequential)) {
    throw new ConfigError('model', `quantization handles Sequential models (a list of layers); this one is a "${model.spec.type}" model`);
  }
  const specs = model.spec.layers as JsonObject[];
  const which = new Set(specs.flatMap((s, i) => (QUANTIZED[s.type as string] ? [i] : [])));
  if (which.size === 0) throw new ConfigError('model.layers', 'no dense or conv2d layer to quantize');
  let ranges = new Map<number, [number, number]>();
  if (options.mode === 'static') {
    const c = options.calibration;
    if (!c || c.shape[0] === 0) throw new ConfigError('calibrationSamples', 'static quantization needs calibration samples (at least 1)');
    ranges = calibrate(model, which, c, options.batchSize ?? 256);
  }
  const report: QuantizeReport = { layers: [] };
  const layers = specs.map((s, i) => {
    const type = s.type as string;
    if (!which.has(i)) return s;
    const kept = Object.fromEntries(KEPT[type]!.filter((k) => s[k] !== undefined).map((k) => [k, s[k]!]));
    const spec: JsonObject = { type: QUANTIZED[type]!, ...kept, mode: options.mode, version: QUANTIZATION_VERSION };
    const entry: QuantizeReport['layers'][number] = { name: s.name as string, type };
    if (options.mode === 'static') {
      const [lo, hi] = ranges.get(i)!;
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new ConfigError('calibration', `layer "${s.name}" saw a non-finite input (${lo}, ${hi})`);
      const q = activationQuant(lo, hi);
      Object.assign(spec, { inputScale: q.scale, inputZeroPoint: q.zeroPoint });
      Object.assign(entry, { min: lo, max: hi, inputScale: q.scale, inputZeroPoint: q.zeroPoint });
    }
    report.layers.push(entry);
    return spec;
  });
  const config = { ...model.spec, layers } as unknown as ModelConfig;
  const quantized = buildModel(config, registry);
  try {
    quantized.build(quantized.inputShape, new Rng(0));
    const float = readWeights(model.weights());
    const weights: NamedWeights = new Map();
    for (const p of quantized.weights()) {
      const layer = p.name.slice(0, p.name.lastIndexOf('/'));
      const fromFloat = float.get(p.name);
      if (p.name.endsWith('/kernel_scale') || (p.name.endsWith('/kernel') && specs.some((s, i) => which.has(i) && s.name === layer))) {
        const w = float.get(`${layer}/kernel`)!;
        const { q, scales } = quantizePerChannel(w.values, w.shape.at(-1)!);
        weights.set(p.name, p.name.endsWith('/kernel_scale') ? { shape: [scales.length], values: scales } : { shape: w.shape, values: q });
      } else if (fromFloat) {
        weights.set(p.name, fromFloat);
      }
    }
    writeWeights(quantized.weights(), weights, 'quantizeModel');
  } catch (e) {
    quantized.dispose();
    throw e;
  }
  return { model: quantized, report };
}

/** Bytes of a model's weights as stored for inference: int8 for the quantized kernels, float32 for the rest. */
export function inferenceBytes(model: Model): { float32: number; int8: number } {
  let float32 = 0,
    int8 = 0;
  const quantizedLayers = new Set((model.spec.layers as JsonObject[] | undefined)?.filter((s) => String(s.type).startsWith('quantized-')).map((s) => s.name));
  for (const p of model.weights()) {
    const layer = p.name.slice(0, p.name.lastIndexOf('/'));
    if (quantizedLayers.has(layer) && p.name.endsWith('/kernel')) int8 += p.variable.size;
    else float32 += 4 * p.variable.size;
  }
  return { float32, int8 };
}

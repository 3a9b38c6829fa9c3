/**
 * `loom quantize <saved model dir> --out DIR`: post-training int8 quantization of a saved Sequential model or a
 * registered gpt, bert or transformer-seq2seq model (runtime/quantize.ts, docs/quantization.md), static (calibrated on
 * a seeded sample of a data set's training split) or dynamic; the quantized model is saved to DIR like any other and
 * loads back with `loadModel`.
 */
import * as fs from 'node:fs';
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError, loadModel, saveModel, selectBackend, type PluginRegistry } from '../core';
import { calibrationSample, inferenceBytes, MIN_DEPTH, quantizeModel, refuseAsyncReads } from '../runtime/quantize';
import type { CliIO, Command } from './loom';

export const QUANTIZE_COMMAND: Command = {
  name: 'quantize',
  args: '<model dir> --out DIR [flags]',
  summary:
    'quantize a saved model to int8 (dense and conv2d layers; in gpt, bert and transformer-seq2seq every dense product; docs/quantization.md) and save it to --out',
  flags: {
    out: { value: 'DIR', help: 'where to save the quantized model, required (default: none)' },
    mode: { value: 'static|dynamic', help: "static: inputs' ranges calibrated on training data; dynamic: each batch's own (default: static)" },
    data: { value: 'NAME', help: 'the data set to calibrate on, a registered one such as mnist (default: none; static mode needs one)' },
    split: { value: 'S', help: "the data set's split to sample (default: train)" },
    'calibration-samples': { value: 'N', help: 'how many examples to calibrate on, a seeded random sample (default: 1000)' },
    'min-depth': {
      value: 'N',
      help: 'keep a dense or conv2d layer float32 when its product is shallower than N (inputs; kernel h × w × channels), where int8 does not pay; 0 quantizes all (default: 128)',
    },
    seed: { value: 'N', help: 'seed of the calibration sample (default: 0)' },
    backend: { value: 'B', help: 'force a backend: native-cpu or cpu (default: LOOM_BACKEND, else the fastest available)' },
    help: { help: 'print this help and exit' },
  },
};

export interface QuantizeFlags {
  out?: string;
  mode?: string;
  data?: string;
  split?: string;
  calibrationSamples?: number;
  minDepth?: number;
  seed?: number;
  backend?: string;
}

export async function quantizeCommand(registry: PluginRegistry, dir: string | undefined, flags: QuantizeFlags, io: CliIO): Promise<number> {
  if (!dir) throw new ConfigError('quantize', 'expects the directory of a saved model (model.json, weights.bin)');
  if (!flags.out) throw new ConfigError('--out', 'name the directory to save the quantized model to');
  const mode = flags.mode ?? 'static';
  if (mode !== 'static' && mode !== 'dynamic') throw new ConfigError('--mode', `expected static or dynamic, got "${mode}"`);
  if (mode === 'static' && !flags.data)
    throw new ConfigError('--data', 'static quantization calibrates on training data: name a data set (e.g. --data mnist), or use --mode dynamic');
  await selectBackend(registry, flags.backend);
  refuseAsyncReads('--backend');
  const model = loadModel(dir, registry);
  let calibration: tf.Tensor | undefined;
  try {
    if (mode === 'static') {
      const data = registry.create('dataset', flags.data!, '--data');
      const split = flags.split ?? 'train';
      if (!data.splits.includes(split)) throw new ConfigError('--split', `"${split}" is not a split of ${flags.data} (${data.splits.join(', ')})`);
      calibration = calibrationSample(data.load(split), flags.calibrationSamples ?? 1000, flags.seed ?? 0);
    }
    const { model: quantized, report } = quantizeModel(model, registry, { mode, calibration, minDepth: flags.minDepth });
    fs.mkdirSync(flags.out, { recursive: true });
    saveModel(quantized, flags.out);
    const before = inferenceBytes(model),
      after = inferenceBytes(quantized);
    for (const l of report.layers) {
      const range =
        l.min === undefined
          ? 'dynamic'
          : `input [${l.min.toPrecision(4)}, ${l.max!.toPrecision(4)}] → scale ${l.inputScale!.toPrecision(4)}, zero point ${l.inputZeroPoint}`;
      io.out(`  ${l.name} (${l.type}): ${range}`);
    }
    for (const k of report.kept ?? []) io.out(`  ${k.name} (${k.type}): kept float32, depth ${k.depth} < --min-depth ${flags.minDepth ?? MIN_DEPTH}`);
    io.out(
      `loom: quantized ${report.layers.length} layer(s) (${mode}); weights ${before.float32 + before.int8} → ${after.float32 + after.int8} bytes for inference; saved to ${flags.out}`,
    );
    quantized.dispose();
    return 0;
  } finally {
    calibration?.dispose();
    model.dispose();
  }
}

/**
 * Post-training int8 quantization (docs/quantization.md), measured:
 * 1. the int8 GEMM (quantize x, u8×s8 product, dequantize: the addon's int8Linear) against the fp32 GEMM with bias
 *    (batchMatMul) on the quantized products' shapes: the MNIST CNN's dense layers and its convolution's im2col
 *    product, BERT-base's and GPT-2-small's projections; in alternation (`interleaved`-style rounds), GFLOP/s;
 * 2. with a saved MNIST CNN (a model directory, default: the newest finished `mnist-cnn` run of preset `full`): test
 *    accuracy and loss in fp32, int8 static (calibrated on a seeded sample of training images) and int8 dynamic, the
 *    weights' inference bytes, and inference samples/s of each, in rounds.
 *   npx tsx benchmarks/quantization.ts [--model DIR] [--calibration N] [--seconds S] [--json FILE] [--gemm-only]
 * (`--gemm-only`: part 1 alone, no saved model needed.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createRegistry, Rng, loadModel, saveModel, selectBackend, type Model, type Dataset } from '../core';
import { registerBuiltins } from '../plugins';
import { loadAddon, nativeAddonInfo } from '../plugins/backends/native/addon';
import { latestRunArtifacts } from '../runtime';
import { inferenceBytes, quantizeModel } from '../runtime/quantize';
import { measure } from './harness';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const SECONDS = Number(flag('seconds', '1'));
const ROUNDS = 3;

/** fp32 vs int8 rates of two steps, alternated over ROUNDS rounds (load on a shared host drifts): the medians. */
async function alternate(fp32: () => unknown, int8: () => unknown, items: number): Promise<[number, number]> {
  const a: number[] = [],
    b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    a.push(await measure(fp32, items, { seconds: SECONDS, repeats: 1 }));
    b.push(await measure(int8, items, { seconds: SECONDS, repeats: 1 }));
  }
  const med = (v: number[]) => v.sort((x, y) => x - y)[v.length >> 1]!;
  return [med(a), med(b)];
}

async function gemms() {
  const addon = loadAddon();
  if (!addon) throw new Error(`the native addon is needed: ${nativeAddonInfo().reason}`);
  const shapes: [string, number, number, number][] = [
    ['mnist conv im2col (b128)', 128 * 26 * 26, 9, 32],
    ['mnist dense 5408→64 (b128)', 128, 5408, 64],
    ['mnist dense 64→10 (b128)', 128, 64, 10],
    ['bert-base qkv (128 tokens)', 128, 768, 2304],
    ['bert-base ffn 768→3072 (128 tokens)', 128, 768, 3072],
    ['gpt-2 small ffn 768→3072 (512 tokens)', 512, 768, 3072],
    ['decode 1 token 768→3072', 1, 768, 3072],
  ];
  const rows = [];
  const rng = new Rng(1);
  for (const [name, m, k, n] of shapes) {
    const x = Float32Array.from({ length: m * k }, () => rng.next() * 2 - 1);
    const wf = Float32Array.from({ length: k * n }, () => rng.next() * 2 - 1);
    const wq = addon.int8Pack(
      n,
      k,
      Int8Array.from({ length: k * n }, () => Math.round(rng.next() * 254 - 127)),
    );
    const bias = new Float32Array(n),
      scales = new Float32Array(n).fill(0.01),
      y = new Float32Array(m * n);
    const flops = 2 * m * n * k;
    const [f, q] = await alternate(
      () => addon.batchMatMul(x, wf, y, 1, m, n, k, false, false, 0, 0, bias, false),
      () => addon.int8Linear(m, n, k, x, 2 / 255, 128, wq, scales, bias, false, y),
      flops,
    );
    rows.push({ product: name, m, k, n, fp32_gflops: f / 1e9, int8_gops: q / 1e9, speedup: q / f });
  }
  return rows;
}

function evaluate(model: Model, test: Dataset, limit: number): { accuracy: number; loss: number } {
  let correct = 0,
    loss = 0;
  const n = Math.min(limit, test.size);
  for (let s = 0; s < n; s += 500) {
    const idx = Int32Array.from({ length: Math.min(500, n - s) }, (_, i) => s + i);
    const b = test.batch(idx);
    tf.tidy(() => {
      const logits = model.apply(b.x, { training: false, rng: new Rng(0) });
      const y = b.y as tf.Tensor1D;
      correct += tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(y, 'int32')), 'float32')).dataSync()[0]!;
      const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(tf.cast(y, 'int32'), 10), logits, undefined, 0, tf.Reduction.SUM);
      loss += ce.dataSync()[0]!;
    });
    tf.dispose([b.x, b.y]);
  }
  return { accuracy: correct / n, loss: loss / n };
}

async function mnist() {
  const registry = registerBuiltins(createRegistry());
  const backend = await selectBackend(registry);
  const dir = flag('model', '') || latestRunArtifacts('mnist-cnn', 'full', 'model');
  const float = loadModel(dir, registry);
  const source = registry.create('dataset', 'mnist');
  const train = source.load('train'),
    test = source.load('test');
  const calibrationSamples = Number(flag('calibration', '1000'));
  // A seeded sample of training images (Fisher–Yates on the indices).
  const rng = new Rng(0);
  const order = Int32Array.from({ length: train.size }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const calib = train.batch(order.slice(0, calibrationSamples));
  const t0 = performance.now();
  const { model: stat, report } = quantizeModel(float, registry, { mode: 'static', calibration: calib.x });
  const quantizeSec = (performance.now() - t0) / 1000;
  const { model: dyn } = quantizeModel(float, registry, { mode: 'dynamic' });
  tf.dispose([calib.x, calib.y]);
  const models: [string, Model][] = [
    ['fp32', float],
    ['int8 static', stat],
    ['int8 dynamic', dyn],
  ];
  const batch = test.batch(Int32Array.from({ length: 128 }, (_, i) => i));
  const infer = (m: Model) => () => tf.tidy(() => m.apply(batch.x, { training: false, rng: new Rng(0) }).dataSync());
  const [f32Rate, staticRate] = await alternate(infer(float), infer(stat), 128);
  const [, dynamicRate] = await alternate(infer(float), infer(dyn), 128);
  const rates: Record<string, number> = { fp32: f32Rate, 'int8 static': staticRate, 'int8 dynamic': dynamicRate };
  /** Bytes of weights.bin as saveModel writes it. */
  const saved = (m: Model) => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-quantization-bench-'));
    try {
      saveModel(m, tmp);
      return fs.statSync(path.join(tmp, 'weights.bin')).size;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  };
  const rows = models.map(([name, m]) => {
    const bytes = inferenceBytes(m);
    return { model: name, ...evaluate(m, test, 10_000), weightBytes: bytes.float32 + bytes.int8, weightsBinBytes: saved(m), samplesPerSec: rates[name]! };
  });
  return { dir, backend: backend.tags.backend, calibrationSamples, quantizeSec, calibration: report.layers, rows };
}

const info = nativeAddonInfo();
const out = {
  machine: { simd: info.simd, int8: info.int8, threads: info.threads },
  note: 'timings taken on a shared 2-core host: contended, indicative only',
  gemm: await gemms(),
  mnist: argv.includes('--gemm-only') ? null : await mnist(),
};
console.log(JSON.stringify(out, null, 2));
const json = flag('json', '');
if (json) fs.writeFileSync(json, `${JSON.stringify(out, null, 2)}\n`);

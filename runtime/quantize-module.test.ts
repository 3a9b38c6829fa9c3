/**
 * quantizeModel on composed models (gpt, bert, transformer). The quantized attention layer and the quantized GPT
 * block are checked against their float32 selves within a bound carried through every operation in float64 from the
 * quantization steps (interval arithmetic on |error|):
 *
 * - one int8 product y = x·W + b with x̃ (the input, already off by at most e_x) quantized per tensor with step S_x
 *   and W dequantized per output channel to W̃ (|W̃ − W| ≤ S_w[j]/2): x̃_q·W̃ − x·W = (x̃_q − x̃)·W̃ + (x̃ − x)·W̃ + x·(W̃ − W),
 *   so |Δy[i, j]| ≤ (S_x/2)·Σ_p |W̃[p, j]| + Σ_p e_x[i, p]·|W̃[p, j]| + (S_w[j]/2)·Σ_p |x[i, p]|. In dynamic mode S_x is
 *   the step of x̃'s own range, at most (max(x + e_x, 0) − min(x − e_x, 0))/255;
 * - scores s = q·k/√d_k: |Δs| ≤ (|q|·e_k + e_q·|k| + e_q·e_k)/√d_k;
 * - softmax: p̃_j/p_j = e^{Δs_j}/Σ_k p_k e^{Δs_k} lies in [e^{−e_j}/Σ_k p_k e^{e_k}, e^{e_j}/Σ_k p_k e^{−e_k}] (e the
 *   scores' bounds), which bounds |Δp_j|; the context c = Σ_j p_j v_j then moves by at most
 *   Σ_j |Δp_j|(|v_j| + e_v) + p_j e_v;
 * - layer norm (per row, ‖Δy‖∞ ≤ e): the centred values move by ≤ 2e and σ = √(var + ε) by ≤ 2e (σ is 1-Lipschitz in
 *   the centred values' RMS), so |ΔLN| ≤ |γ|·(2e/σ̃ + |y − μ|·2e/(σ·σ̃)) with σ̃ ≥ σ − 2e;
 * - GELU: times its Lipschitz constant (the largest |GELU'|, found numerically below).
 * The float32 arithmetic adds 1e-4·(1 + |y|) on top. Static mode calibrated on the same input is checked to give the
 * dynamic mode's output bit for bit (the calibrated scales are those the batch itself gives). Around these: the
 * models' products are all quantized and nothing else is, save/load round trips exactly, the GPT's cached decoding
 * works quantized (static: equal to the full forward pass), and inference leaves no tensor behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  activationQuant,
  buildModel,
  ConfigError,
  loadModel,
  observeInputRanges,
  readWeights,
  Rng,
  saveModel,
  selectBackend,
  writeWeights,
  type Layer,
  type Model,
  type ModelConfig,
  type PartSpec,
  type PluginRegistry,
} from '../core';
import type { GPT } from '../plugins/models/gpt';
import { TransformerSeq2Seq } from '../plugins/models/transformer-seq2seq';
import { cpuBackends, testRegistry } from '../test/harness';
import { inferenceBytes, quantizedWeightsFrom, quantizeModel } from './quantize';

let registry: PluginRegistry;
let backends: string[];
beforeAll(async () => {
  registry = await testRegistry();
  backends = await cpuBackends();
});

// ---------------------------------------------------------------- float64 reference with error bounds

/** A row-major matrix in float64 with an elementwise bound on its error. */
interface Bounded {
  rows: number;
  cols: number;
  v: Float64Array;
  e: Float64Array;
}

const exact = (rows: number, cols: number, v: ArrayLike<number>): Bounded => ({ rows, cols, v: Float64Array.from(v), e: new Float64Array(rows * cols) });

/** A product's weights: float W [n, m], dequantized W̃, per-channel step S_w, bias. */
interface Product {
  w: Float64Array;
  wq: Float64Array;
  step: Float64Array;
  bias: Float64Array;
  n: number;
  m: number;
}

/** The float product x·W + b and the bound on the int8 product's deviation from it (the file comment's first item). */
function qlinear(x: Bounded, p: Product): Bounded {
  let lo = 0,
    hi = 0;
  for (let i = 0; i < x.v.length; i++) {
    lo = Math.min(lo, x.v[i]! - x.e[i]!);
    hi = Math.max(hi, x.v[i]! + x.e[i]!);
  }
  const sx = (hi - lo) / 255;
  const v = new Float64Array(x.rows * p.m),
    e = new Float64Array(x.rows * p.m);
  for (let i = 0; i < x.rows; i++)
    for (let j = 0; j < p.m; j++) {
      let y = p.bias[j]!,
        err = 0;
      for (let k = 0; k < p.n; k++) {
        const xv = x.v[i * p.n + k]!,
          wq = Math.abs(p.wq[k * p.m + j]!);
        y += xv * p.w[k * p.m + j]!;
        err += (sx / 2) * wq + x.e[i * p.n + k]! * wq + (p.step[j]! / 2) * Math.abs(xv);
      }
      v[i * p.m + j] = y;
      e[i * p.m + j] = err;
    }
  return { rows: x.rows, cols: p.m, v, e };
}

/** Multi-head self-attention (Vaswani et al. eq. 1) on x [b·t, d] with the bound through scores, softmax and context. */
function attention(x: Bounded, b: number, t: number, h: number, causal: boolean, qkv: Product, out: Product): Bounded {
  const d = x.cols,
    dk = d / h;
  const proj = qlinear(x, qkv);
  const c = exact(b * t, d, new Float64Array(b * t * d));
  const at = (r: number, part: number, head: number, a: number) => r * 3 * d + part * d + head * dk + a;
  for (let n = 0; n < b; n++)
    for (let head = 0; head < h; head++)
      for (let i = 0; i < t; i++) {
        const keys = causal ? i + 1 : t;
        const s = new Float64Array(keys),
          es = new Float64Array(keys);
        for (let j = 0; j < keys; j++) {
          for (let a = 0; a < dk; a++) {
            const [qi, kj] = [at(n * t + i, 0, head, a), at(n * t + j, 1, head, a)];
            const [q, k, eq, ek] = [proj.v[qi]!, proj.v[kj]!, proj.e[qi]!, proj.e[kj]!];
            s[j] += (q * k) / Math.sqrt(dk);
            es[j] += (Math.abs(q) * ek + eq * Math.abs(k) + eq * ek) / Math.sqrt(dk);
          }
        }
        const max = Math.max(...s);
        const exps = Array.from(s, (v) => Math.exp(v - max));
        const total = exps.reduce((u, w) => u + w, 0);
        const p = exps.map((v) => v / total);
        // p̃_j/p_j = e^{Δs_j} / Σ_k p_k e^{Δs_k} lies between e^{−es_j}/Σ_k p_k e^{es_k} and e^{es_j}/Σ_k p_k e^{−es_k}.
        const up = p.reduce((u, pk, k) => u + pk * Math.exp(es[k]!), 0),
          down = p.reduce((u, pk, k) => u + pk * Math.exp(-es[k]!), 0);
        const dp = p.map((pj, j) => pj * Math.max(Math.exp(es[j]!) / down - 1, 1 - Math.exp(-es[j]!) / up));
        for (let a = 0; a < dk; a++) {
          let cv = 0,
            ce = 0;
          for (let j = 0; j < keys; j++) {
            const vi = at(n * t + j, 2, head, a);
            cv += p[j]! * proj.v[vi]!;
            ce += dp[j]! * (Math.abs(proj.v[vi]!) + proj.e[vi]!) + p[j]! * proj.e[vi]!;
          }
          c.v[(n * t + i) * d + head * dk + a] = cv;
          c.e[(n * t + i) * d + head * dk + a] = ce;
        }
      }
  return qlinear(c, out);
}

/** Layer norm per row (population variance, as loom's), with the file comment's bound. */
function layerNorm(x: Bounded, gamma: Float64Array, beta: Float64Array, eps: number): Bounded {
  const { rows, cols } = x;
  const v = new Float64Array(rows * cols),
    e = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = x.v.subarray(r * cols, (r + 1) * cols);
    const mu = row.reduce((a, b) => a + b, 0) / cols;
    const sigma = Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / cols + eps);
    const err = Math.max(...x.e.subarray(r * cols, (r + 1) * cols));
    const low = sigma - 2 * err;
    for (let j = 0; j < cols; j++) {
      const u = row[j]! - mu;
      v[r * cols + j] = (gamma[j]! * u) / sigma + beta[j]!;
      e[r * cols + j] = err === 0 ? 0 : low > 0 ? Math.abs(gamma[j]!) * ((2 * err) / low + (Math.abs(u) * 2 * err) / (sigma * low)) : Infinity;
    }
  }
  return { rows, cols, v, e };
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
/** The largest |GELU'(x)| (tanh form), by central differences on a fine grid, rounded up by 0.1 %. */
const GELU_LIPSCHITZ = (() => {
  let best = 0;
  for (let x = -10; x <= 10; x += 1e-3) best = Math.max(best, Math.abs(geluTanh(x + 1e-6) - geluTanh(x - 1e-6)) / 2e-6);
  return best * 1.001;
})();

const add = (a: Bounded, b: Bounded): Bounded => ({ ...a, v: a.v.map((x, i) => x + b.v[i]!), e: a.e.map((x, i) => x + b.e[i]!) });

/** Every |got − ref.v| within ref.e plus the float32 slack. */
function expectWithin(got: ArrayLike<number>, ref: Bounded, what: string): void {
  expect(got.length).toBe(ref.v.length);
  for (let i = 0; i < ref.v.length; i++) {
    const slack = 1e-4 * (1 + Math.abs(ref.v[i]!));
    expect(Number.isFinite(ref.e[i]!), `${what} [${i}]: the bound is finite`).toBe(true);
    expect(Math.abs(got[i]! - ref.v[i]!), `${what} [${i}]: bound ${ref.e[i]}`).toBeLessThanOrEqual(ref.e[i]! + slack);
  }
}

/** The float product and its quantized twin's dequantized weights, read from the two layers' weights by name. */
function product(
  float: Map<string, { values: Float32Array; shape: number[] }>,
  quant: Map<string, { values: Float32Array }>,
  prefix: string,
  bias: string,
): Product {
  const w = float.get(`${prefix}kernel`)!;
  const [n, m] = w.shape as [number, number];
  const codes = quant.get(`${prefix}kernel`)!.values,
    scale = quant.get(`${prefix}kernel_scale`)!.values;
  return {
    w: Float64Array.from(w.values),
    wq: Float64Array.from(codes, (q, i) => q * scale[i % m]!),
    step: Float64Array.from(scale),
    bias: Float64Array.from(float.get(bias)!.values),
    n,
    m,
  };
}

const ctx0 = () => ({ training: false, rng: new Rng(0) });

/** A float layer and the same layer quantized (dynamic) with its weights; biases and norms randomised first. */
function layerPair(spec: PartSpec, shape: number[], seed: number): { float: Layer; quant: Layer } {
  const float = registry.create('layer', spec) as Layer;
  float.build([null, ...shape.slice(1)], new Rng(seed));
  const rng = new Rng(seed + 1);
  for (const p of float.parameters())
    if (p.role !== 'kernel') tf.tidy(() => p.variable.assign(tf.add(p.variable, tf.randomNormal(p.variable.shape, 0, 0.1, 'float32', rng.nextSeed()))));
  const quant = registry.create('layer', { ...spec, quantization: { mode: 'dynamic' } }) as Layer;
  quant.build([null, ...shape.slice(1)], new Rng(seed));
  const all = (l: Layer) => [...l.parameters(), ...(l.buffers?.() ?? [])];
  writeWeights(all(quant), quantizedWeightsFrom(float.parameters(), all(quant)), 'test');
  return { float, quant };
}

/** The layer built with `spec` in static mode, calibrated by observing `dynamic` on x (the ranges x itself gives). */
function calibrated(spec: PartSpec, dynamic: Layer, x: tf.Tensor, seed: number): Layer {
  const inputs: Record<string, { inputScale: number; inputZeroPoint: number }> = {};
  const name = spec.name as string;
  observeInputRanges(
    (p, lo, hi) => {
      const q = activationQuant(lo, hi);
      inputs[p.slice(name.length + 1)] = { inputScale: q.scale, inputZeroPoint: q.zeroPoint };
    },
    () => tf.dispose(dynamic.apply(x, ctx0())),
  );
  const layer = registry.create('layer', { ...spec, quantization: { mode: 'static', inputs } }) as Layer;
  layer.build([null, ...x.shape.slice(1)], new Rng(seed));
  const all = (l: Layer) => [...l.parameters(), ...(l.buffers?.() ?? [])];
  writeWeights(all(layer), readWeights(all(dynamic)), 'test');
  return layer;
}

describe('quantized attention and Transformer block', () => {
  it('multi-head attention: within the bound carried from the quantization steps, every backend; static = dynamic on its calibration batch', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 6 }),
          fc.boolean(),
          fc.integer({ min: 0, max: 1e6 }),
          (b, t, h, dk, causal, seed) => {
            const d = h * dk;
            const spec = { type: 'multi-head-attention', name: 'mha', numHeads: h, causal };
            const x = tf.randomNormal([b, t, d], 0, 1, 'float32', seed);
            const { float, quant } = layerPair(spec, [b, t, d], seed);
            const stat = calibrated(spec, quant, x, seed);
            try {
              const f = readWeights(float.parameters()),
                q = readWeights(quant.buffers!());
              const ref = attention(
                exact(b * t, d, x.dataSync()),
                b,
                t,
                h,
                causal,
                product(f, q, 'mha/qkv_', 'mha/qkv_bias'),
                product(f, q, 'mha/out_', 'mha/out_bias'),
              );
              const before = tf.memory().numTensors;
              const [yf, yq, ys] = [float, quant, stat].map((l) => tf.tidy(() => l.apply(x, ctx0()).dataSync()));
              expect(tf.memory().numTensors).toBe(before);
              // The float layer is the reference itself up to float32 rounding; the int8 one within the bound.
              expectWithin(yf!, { ...ref, e: new Float64Array(ref.e.length) }, `${backend} float`);
              expectWithin(yq!, ref, `${backend} int8 dynamic`);
              expect(Array.from(ys!)).toEqual(Array.from(yq!));
            } finally {
              tf.dispose([x]);
              for (const l of [float, quant, stat]) l.dispose();
            }
          },
        ),
        { numRuns: 12 },
      );
    }
  });

  it('a pre-norm GPT block (attention, layer norms, GELU MLP): within the bound carried through it, every backend', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 2, max: 6 }),
          fc.integer({ min: 1, max: 16 }),
          fc.integer({ min: 0, max: 1e6 }),
          (b, t, h, dk, ff, seed) => {
            const d = h * dk;
            const gelu = { type: 'gelu', approximate: 'tanh' };
            // GPT-2's initialisation (N(0, 0.02) kernels, the residual ones smaller): the residual stream dominates, as in
            // a GPT, so the layer norm after the attention sees a perturbation well below its σ.
            const init = { kernelInitializer: { type: 'random-normal', stddev: 0.02 }, residualInitializer: { type: 'random-normal', stddev: 0.01 } };
            const spec = {
              type: 'transformer-decoder',
              name: 'blk',
              numHeads: h,
              ff,
              dropout: 0,
              preNorm: true,
              crossAttention: false,
              activation: gelu,
              ...init,
            };
            const x = tf.randomNormal([b, t, d], 0, 1, 'float32', seed);
            const { float, quant } = layerPair(spec, [b, t, d], seed);
            try {
              const f = readWeights(float.parameters()),
                q = readWeights(quant.buffers!());
              const vec = (n: string) => Float64Array.from(f.get(n)!.values);
              const norm = (n: string, v: Bounded) => layerNorm(v, vec(`blk/${n}/gamma`), vec(`blk/${n}/beta`), 1e-5);
              const x0 = exact(b * t, d, x.dataSync());
              const a = attention(
                norm('norm1', x0),
                b,
                t,
                h,
                true,
                product(f, q, 'blk/self_attention/qkv_', 'blk/self_attention/qkv_bias'),
                product(f, q, 'blk/self_attention/out_', 'blk/self_attention/out_bias'),
              );
              const y = add(x0, a);
              const h1 = qlinear(norm('norm3', y), product(f, q, 'blk/ff1/', 'blk/ff1/bias'));
              const act: Bounded = { ...h1, v: h1.v.map(geluTanh), e: h1.e.map((e) => e * GELU_LIPSCHITZ) };
              const ref = add(y, qlinear(act, product(f, q, 'blk/ff2/', 'blk/ff2/bias')));
              const [yf, yq] = [float, quant].map((l) => tf.tidy(() => l.apply(x, ctx0()).dataSync()));
              expectWithin(yf!, { ...ref, e: new Float64Array(ref.e.length) }, `${backend} float`);
              expectWithin(yq!, ref, `${backend} int8 dynamic`);
            } finally {
              x.dispose();
              float.dispose();
              quant.dispose();
            }
          },
        ),
        { numRuns: 10 },
      );
    }
  });
});

// ---------------------------------------------------------------- whole models

const gptConfig = (extra: Record<string, unknown> = {}) =>
  ({ type: 'gpt', vocabSize: 13, context: 10, dModel: 16, numHeads: 2, layers: 2, dropout: 0, ...extra }) as unknown as ModelConfig;

function built(config: ModelConfig, seed: number): Model {
  const m = buildModel(config, registry);
  m.build(m.inputShape, new Rng(seed));
  return m;
}

const ids = (rows: number, cols: number, vocab: number, seed: number, from = 0) =>
  tf.tensor2d(
    Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => from + ((seed * 7 + r * 5 + c * 3 + ((seed >> c) & 3)) % (vocab - from)))),
    undefined,
    'int32',
  );

/** Saved and loaded back: the loaded model's outputs on x, bit for bit. */
function roundTrip(model: Model, x: tf.Tensor): { loaded: Model; same: boolean; int8Entries: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-quantize-module-'));
  try {
    saveModel(model, dir);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8')) as { weights: { dtype?: string }[] };
    const loaded = loadModel(dir, registry);
    const [a, b] = [model, loaded].map((m) => tf.tidy(() => m.apply(x, ctx0()).dataSync()));
    return { loaded, same: Array.from(a!).every((v, i) => Object.is(v, b![i])), int8Entries: manifest.weights.filter((w) => w.dtype === 'int8').length };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('quantizeModel on composed models', () => {
  it('gpt: every attention projection and MLP product is int8, the rest float32; close to fp32; saves and loads exactly', async () => {
    await selectBackend(registry, backends[0]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e5 }), fc.constantFrom<'static' | 'dynamic'>('static', 'dynamic'), fc.boolean(), (seed, mode, tie) => {
        const float = built(gptConfig({ tieEmbeddings: tie }), seed);
        const x = ids(3, 10, 13, seed);
        const { model, report } = quantizeModel(float, registry, { mode, calibration: x });
        let loaded: Model | null = null;
        try {
          const products = ['self_attention/qkv', 'self_attention/out', 'ff1', 'ff2'];
          expect(report.layers.map((l) => l.name).sort()).toEqual(
            [...['block_1', 'block_2'].flatMap((b) => products.map((p) => `${b}/${p}`)), ...(tie ? [] : ['head'])].sort(),
          );
          // int8: exactly the kernels of those products; float32: embeddings, norms, biases and one scale per channel.
          const kernels = float.weights().filter((p) => p.role === 'kernel');
          expect(kernels.length).toBe(8 + (tie ? 0 : 1));
          const channels = kernels.reduce((n, p) => n + p.variable.shape.at(-1)!, 0);
          const others = float.weights().filter((p) => p.role !== 'kernel');
          expect(inferenceBytes(model)).toEqual({
            int8: kernels.reduce((n, p) => n + p.variable.size, 0),
            float32: 4 * (others.reduce((n, p) => n + p.variable.size, 0) + channels),
          });
          expect(model.parameters().filter((p) => p.trainable && p.role === 'kernel')).toEqual([]);
          const [yf, yq] = [float, model].map((m) => tf.tidy(() => m.apply(x, ctx0()).dataSync()));
          const range = Math.max(...yf!) - Math.min(...yf!);
          let worst = 0;
          for (let i = 0; i < yf!.length; i++) worst = Math.max(worst, Math.abs(yf![i]! - yq![i]!));
          // A sanity check on the whole model (the bounds above are the precise statement): 8-bit steps through two blocks.
          expect(worst).toBeLessThan(0.05 * range);
          const trip = roundTrip(model, x);
          loaded = trip.loaded;
          expect(trip.same).toBe(true);
          expect(trip.int8Entries).toBe(kernels.length);
          expect(loaded.spec.quantization).toEqual(model.spec.quantization);
        } finally {
          x.dispose();
          for (const m of [float, model, loaded]) m?.dispose();
        }
      }),
      { numRuns: 6 },
    );
  });

  it('gpt: cached generation works quantized; static decoding step by step equals the full forward pass; no tensor left', async () => {
    await selectBackend(registry, backends[0]);
    const float = built(gptConfig(), 4);
    const x = ids(2, 10, 13, 4);
    const prompt = [3, 1, 4, 1];
    for (const mode of ['static', 'dynamic'] as const) {
      const { model } = quantizeModel(float, registry, { mode, calibration: x });
      const gpt = model as GPT;
      try {
        const before = tf.memory().numTensors;
        const tokens = await gpt.generate(prompt, 6, { temperature: 0, rng: new Rng(0) });
        expect(tokens).toHaveLength(6);
        for (const tk of tokens) expect(tk >= 0 && tk < 13).toBe(true);
        expect(tf.memory().numTensors).toBe(before);
        if (mode === 'static') {
          // Static scales do not depend on the batch, so the cached step at each position equals the full pass's row.
          const all = [...prompt, ...tokens];
          const full = tf.tidy(() => gpt.apply(tf.tensor2d([all], undefined, 'int32'), ctx0()).arraySync() as number[][][]);
          const caches = [0, 1].map(() => ({ self: {}, cross: {} }));
          for (let i = 0; i < all.length; i++) {
            const step = tf.tidy(() => gpt.step(tf.tensor2d([[all[i]!]], undefined, 'int32'), i, caches, ctx0()).arraySync() as number[][]);
            for (let v = 0; v < 13; v++) expect(step[0]![v]!).toBeCloseTo(full[0]![i]![v]!, 4);
          }
          for (const c of caches) {
            tf.dispose(Object.values(c.self) as tf.Tensor[]);
          }
          expect(tf.memory().numTensors).toBe(before);
        }
      } finally {
        model.dispose();
      }
    }
    x.dispose();
    float.dispose();
  });

  it('bert classifier and the seq2seq Transformer (cross-attention): products quantized, outputs close, save/load exact', async () => {
    await selectBackend(registry, backends[0]);
    const cases: { config: ModelConfig; x: tf.Tensor; products: number }[] = [
      {
        config: {
          type: 'bert',
          vocabSize: 20,
          maxLength: 8,
          dModel: 8,
          numHeads: 2,
          layers: 2,
          dropout: 0,
          head: 'classifier',
          classes: 2,
        } as unknown as ModelConfig,
        x: ids(4, 8, 20, 1, 1),
        products: 2 * 4 + 2, // per encoder layer qkv, out, ff1, ff2; pooler and classifier
      },
      {
        config: {
          type: 'transformer-seq2seq',
          srcVocab: 9,
          tgtVocab: 7,
          srcLen: 5,
          tgtLen: 4,
          dModel: 8,
          numHeads: 2,
          ff: 12,
          layers: 1,
          dropout: 0,
        } as unknown as ModelConfig,
        x: ids(3, 9, 7, 2, 3),
        products: 4 + 7 + 1, // encoder: qkv, out, ff1, ff2; decoder: self qkv, out, cross qkv, memory, out, ff1, ff2; output
      },
    ];
    for (const { config, x, products } of cases) {
      const float = built(config, 2);
      for (const mode of ['static', 'dynamic'] as const) {
        const { model, report } = quantizeModel(float, registry, { mode, calibration: x });
        let loaded: Model | null = null;
        try {
          expect(report.layers).toHaveLength(products);
          const [yf, yq] = [float, model].map((m) => tf.tidy(() => m.apply(x, ctx0()).dataSync()));
          const range = Math.max(...yf!) - Math.min(...yf!);
          for (let i = 0; i < yf!.length; i++) expect(Math.abs(yf![i]! - yq![i]!)).toBeLessThan(0.05 * range + 1e-6);
          const trip = roundTrip(model, x);
          loaded = trip.loaded;
          expect(trip.same, `${config.type} ${mode}`).toBe(true);
          if (loaded instanceof TransformerSeq2Seq) {
            const src = tf.slice(x, [0, 0], [-1, 5]);
            expect(await loaded.greedy(src)).toEqual(await (model as TransformerSeq2Seq).greedy(src));
            src.dispose();
          }
        } finally {
          for (const m of [model, loaded]) m?.dispose();
        }
      }
      float.dispose();
      x.dispose();
    }
  });

  it('refuses what it cannot do with a ConfigError naming the field', () => {
    const float = built(gptConfig(), 0);
    const { model } = quantizeModel(float, registry, { mode: 'dynamic' });
    try {
      expect(() => quantizeModel(float, registry, { mode: 'static' })).toThrow(ConfigError);
      expect(() => quantizeModel(float, registry, { mode: 'static' })).toThrow(/calibrationSamples/);
      expect(() => quantizeModel(model, registry, { mode: 'dynamic' })).toThrow(/model\.quantization.*already quantized/);
      // Static mode without a calibrated input for a product: the attention names the missing entry.
      const spec = { type: 'multi-head-attention', name: 'a', numHeads: 1, quantization: { mode: 'static' } };
      const layer = registry.create('layer', spec) as Layer;
      layer.build([null, 2, 4], new Rng(0));
      const x = tf.ones([1, 2, 4]);
      expect(() => layer.apply(x, ctx0())).toThrow(/quantization\.inputs\.qkv/);
      x.dispose();
      layer.dispose();
    } finally {
      float.dispose();
      model.dispose();
    }
  });
});

/**
 * loom's WGSL kernels for webgpu (webgpu-kernels.ts) where Dawn finds an adapter (llvmpipe on a machine without a GPU;
 * skipped, with Dawn's reason in the name, where there is none). Each kernel against a float64 reference on random
 * shapes (fast-check; row lengths on both sides of the 64-wide workgroup, masked and fully masked attention rows), the
 * attention gradient against tfjs's autograd of the composed attention on the cpu backend; the dispatches each kernel
 * takes and those of a Transformer training step with and without the kernels (counted where every dispatch goes,
 * the backend's recordAndSubmit); and flat memory over training steps on the kernels.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS, Rng, selectBackend, TOKENS, Trainer, type PluginRegistry } from '../../core';
import { buildRunContainer, disposeRun } from '../../runtime';
import { expectFlatMemoryAcrossSteps, referenceSelfAttention, testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { webGpuAdapter } from './webgpu';
import { registerWebGpuKernels, WEBGPU_KERNELS } from './webgpu-kernels';

const adapter = await webGpuAdapter();
const why = adapter.ok ? '' : ` (skipped: ${adapter.reason})`;
const registry: PluginRegistry = (await testRegistry('cpu')).register(toyBlobs);
const RUNS = { numRuns: 6 };

/** Deterministic values in about [−3, 3] from a seed. */
function values(seed: number, n: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n }, () => rng.normal());
}
const f32 = (a: ArrayLike<number>, shape: number[]) => tf.tensor(Float32Array.from(a), shape, 'float32');
const run = (name: string, inputs: tf.NamedTensorMap, attrs: object = {}) => tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap);

/** Largest |got − want| must be ≤ rtol·max|want| + atol. */
function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, label: string, rtol: number, atol: number): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]!));
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!) || (Number.isNaN(got[i]!) ? Infinity : 0));
  }
  expect(diff, `${label}: max |webgpu − reference| = ${diff}, largest |reference| ${scale}`).toBeLessThanOrEqual(rtol * scale + atol);
}

async function read(t: tf.Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.data());
}

/** Counts the programs dispatched while `f` runs: tfjs's and loom's kernels all go through recordAndSubmit. */
async function dispatches<T>(f: () => Promise<T> | T): Promise<{ count: number; names: string[]; result: T }> {
  const gpu = tf.findBackend('webgpu') as unknown as { recordAndSubmit: (p: { constructor: { name: string }; label?: string }, ...rest: unknown[]) => void };
  const original = gpu.recordAndSubmit;
  const names: string[] = [];
  gpu.recordAndSubmit = function (this: unknown, p, ...rest) {
    names.push(p.label ?? p.constructor.name);
    return original.call(this, p, ...rest);
  };
  try {
    const result = await f();
    return { count: names.length, names, result };
  } finally {
    gpu.recordAndSubmit = original;
  }
}

/** Runs `f` with loom's WGSL kernels unregistered (the composed tfjs ops), then registers them again. */
async function withoutKernels<T>(f: () => Promise<T>): Promise<T> {
  for (const name of Object.keys(WEBGPU_KERNELS)) tf.unregisterKernel(name, 'webgpu');
  try {
    return await f();
  } finally {
    registerWebGpuKernels();
  }
}

describe.skipIf(!adapter.ok)(`webgpu WGSL kernels${why}`, () => {
  beforeAll(async () => {
    await selectBackend(registry, 'webgpu');
  });
  afterAll(async () => {
    await selectBackend(registry, 'cpu');
  });

  it('are registered for webgpu when the backend is activated', () => {
    for (const name of Object.keys(WEBGPU_KERNELS)) expect(tf.getKernel(name, 'webgpu'), name).toBeDefined();
  });

  it('read a float32 input that holds bool or int32 data (tfjs Cast relabels it) as its values, not as their bit patterns', async () => {
    // Read as f32, the stored int 1 is the subnormal 1.4e-45: softmax([1, 0, 1]) came out uniform, and an attention
    // mask made so (cast(notEqual(ids, pad))) masked every key on a GPU that flushes subnormals (an H200).
    const gpu = tf.backend() as unknown as { tensorMap: { get(id: object): { dtype: string } } };
    for (const stored of ['bool', 'int32'] as const) {
      const raw = stored === 'bool' ? tf.notEqual(tf.tensor2d([[3, 0, 5]]), 0) : tf.tensor2d([[1, 0, 1]], undefined, 'int32');
      const x = tf.cast(raw, 'float32');
      expect(gpu.tensorMap.get(x.dataId).dtype, `${stored}: tfjs keeps the data and relabels it`).toBe(stored);
      const y = run(FUSED_KERNELS.softmax, { logits: x }) as tf.Tensor;
      const e = Math.E;
      expectNear(await read(y), [e / (2 * e + 1), 1 / (2 * e + 1), e / (2 * e + 1)], `softmax of ${stored} data`, 1e-6, 1e-7);
      // The attention mask: the second key masked, the others kept, as with a float32 mask of the same values.
      const qkv = f32(values(7, 3 * 6), [1, 3, 6]);
      const fromData = run(FUSED_KERNELS.attention, { qkv, keep: x }, { numHeads: 1, causal: false }) as tf.Tensor[];
      const fromFloats = run(FUSED_KERNELS.attention, { qkv, keep: f32([1, 0, 1], [1, 3]) }, { numHeads: 1, causal: false }) as tf.Tensor[];
      expect(await read(fromData[0]!), `attention masked by ${stored} data`).toEqual(await read(fromFloats[0]!));
      tf.dispose([raw, x, y, qkv, ...fromData, ...fromFloats]);
    }
  });

  it('LoomAdam: 4 steps follow Kingma & Ba (2015) Algorithm 1 in float64 within 1e-5·max|θ| + 1e-6, one dispatch per step (three outputs)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.double({ min: 1e-4, max: 0.1, noNaN: true }),
        fc.constantFrom(0.9, 0.5, 0),
        fc.constantFrom(0.999, 0.9),
        async (n, seed, lr, b1, b2) => {
          const eps = 1e-8;
          const theta = Array.from(Float64Array.from(Float32Array.from(values(seed, n))));
          const m = new Array<number>(n).fill(0);
          const v = new Array<number>(n).fill(0);
          let [p, mt, vt] = [f32(theta, [n]), tf.zeros([n]), tf.zeros([n])];
          for (let t = 1; t <= 4; t++) {
            const g = Float32Array.from(values(seed + t, n));
            for (let i = 0; i < n; i++) {
              m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
              v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2;
              theta[i] = theta[i]! - (lr * (m[i]! / (1 - b1 ** t))) / (Math.sqrt(v[i]! / (1 - b2 ** t)) + eps);
            }
            const grad = f32(g, [n]);
            const attrs = { lr, beta1: b1, beta2: b2, epsilon: eps, c1: 1 - b1 ** t, c2: 1 - b2 ** t };
            const { count, result } = await dispatches(() => run(FUSED_KERNELS.adam, { param: p, grad, m: mt, v: vt }, attrs) as tf.Tensor[]);
            expect(count, 'dispatches of one Adam step').toBe(1);
            tf.dispose([p, mt, vt, grad]);
            [p, mt, vt] = result as [tf.Tensor, tf.Tensor, tf.Tensor];
          }
          expectNear(await read(p), theta, 'θ', 1e-5, 1e-6);
          expectNear(await read(mt), m, 'm', 1e-5, 1e-6);
          expectNear(await read(vt), v, 'v', 1e-5, 1e-6);
          tf.dispose([p, mt, vt]);
        },
      ),
      RUNS,
    );
  });

  it('LoomAdamMulti: 3 steps of 1-40 tensors (sizes 0-150, own rates, betas and AdamW decay) follow Algorithm 1 in float64 within 1e-5·max|θ| + 1e-6, in ⌈tensors / ⌊bindings / 7⌋⌉ dispatches', async () => {
    const limits = (tf.findBackend('webgpu') as unknown as { device: { limits: { maxStorageBuffersPerShaderStage: number } } }).device.limits;
    const per = Math.min(32, Math.floor(limits.maxStorageBuffersPerShaderStage / 7));
    const tensor = fc.record({
      n: fc.integer({ min: 0, max: 150 }),
      lr: fc.double({ min: 1e-4, max: 0.1, noNaN: true }),
      b1: fc.constantFrom(0.9, 0.5),
      b2: fc.constantFrom(0.999, 0.9),
      decay: fc.constantFrom(0, 0.01),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(tensor, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 2 ** 30 }), async (specs, seed) => {
        const eps = 1e-8;
        const ref = specs.map(({ n }, j) => ({
          theta: Array.from(Float64Array.from(Float32Array.from(values(seed + 100 * j, n)))),
          m: new Array<number>(n).fill(0),
          v: new Array<number>(n).fill(0),
        }));
        let state = specs.map(({ n }, j) => [f32(ref[j]!.theta, [n]), tf.zeros([n]), tf.zeros([n])] as tf.Tensor[]);
        for (let t = 1; t <= 3; t++) {
          const grads = specs.map(({ n }, j) => Float32Array.from(values(seed + 100 * j + t, n)));
          specs.forEach(({ n, lr, b1, b2, decay }, j) => {
            const r = ref[j]!;
            for (let i = 0; i < n; i++) {
              const g = grads[j]![i]!;
              r.m[i] = b1 * r.m[i]! + (1 - b1) * g;
              r.v[i] = b2 * r.v[i]! + (1 - b2) * g * g;
              r.theta[i] = r.theta[i]! * (1 - lr * decay) - (lr * (r.m[i]! / (1 - b1 ** t))) / (Math.sqrt(r.v[i]! / (1 - b2 ** t)) + eps);
            }
          });
          const inputs: tf.NamedTensorMap = {};
          const gradTensors = grads.map((g, j) => f32(g, [specs[j]!.n]));
          state.forEach(([p, m, v], j) => Object.assign(inputs, { [`param${j}`]: p, [`grad${j}`]: gradTensors[j], [`m${j}`]: m, [`v${j}`]: v }));
          const attrs = {
            lr: specs.map((x) => x.lr),
            beta1: specs.map((x) => x.b1),
            beta2: specs.map((x) => x.b2),
            epsilon: specs.map(() => eps),
            c1: specs.map((x) => 1 - x.b1 ** t),
            c2: specs.map((x) => 1 - x.b2 ** t),
            decay: specs.map((x) => 1 - x.lr * x.decay),
          };
          const { count, result } = await dispatches(() => run(FUSED_KERNELS.adamMulti, inputs, attrs) as tf.Tensor[]);
          const nonEmpty = specs.filter((x) => x.n > 0).length;
          expect(count, 'dispatches').toBe(Math.ceil(nonEmpty / per));
          tf.dispose([...state.flat(), ...gradTensors]);
          state = specs.map((_, j) => result.slice(3 * j, 3 * j + 3));
        }
        for (const [j, [p, m, v]] of state.entries()) {
          expectNear(await read(p!), ref[j]!.theta, `θ${j}`, 1e-5, 1e-6);
          expectNear(await read(m!), ref[j]!.m, `m${j}`, 1e-5, 1e-6);
          expectNear(await read(v!), ref[j]!.v, `v${j}`, 1e-5, 1e-6);
        }
        tf.dispose(state.flat());
      }),
      RUNS,
    );
  });

  it('the adam optimizer (AdamW, a parameter group with its own rate, a decayed kernel and an exempt bias) steps through LoomAdamMulti and reaches the weights the composed per-tensor update reaches within 1e-5·max + 1e-6', async () => {
    const spec = { type: 'adam', lr: 0.01, weightDecay: 0.1, groups: [{ match: '^b', lr: 0.03, beta1: 0.5 }] };
    const params = () => [
      { name: 'w', variable: tf.variable(f32(values(1, 12), [4, 3])), role: 'kernel' as const, trainable: true },
      { name: 'b', variable: tf.variable(f32(values(2, 3), [3])), role: 'bias' as const, trainable: true },
      { name: 'b2', variable: tf.variable(f32(values(3, 5), [5])), role: 'kernel' as const, trainable: true },
    ];
    const train = async () => {
      const ps = params();
      const opt = registry.create('optimizer', spec);
      const counts: number[] = [];
      for (let t = 0; t < 4; t++) {
        const grads = Object.fromEntries(ps.map((p, j) => [p.name, f32(values(10 * t + j, p.variable.size), p.variable.shape)]));
        const { names } = await dispatches(() => opt.step(ps, grads));
        counts.push(names.filter((n) => n.startsWith('LoomAdamMulti')).length);
        tf.dispose(Object.values(grads));
      }
      const weights = await Promise.all(ps.map((p) => read(p.variable)));
      tf.dispose(ps.map((p) => p.variable));
      opt.dispose();
      return { weights, counts };
    };
    const fused = await train();
    const composed = await withoutKernels(train);
    const per = Math.floor(
      (tf.findBackend('webgpu') as unknown as { device: { limits: { maxStorageBuffersPerShaderStage: number } } }).device.limits
        .maxStorageBuffersPerShaderStage / 7,
    );
    expect(fused.counts, 'LoomAdamMulti dispatches per step').toEqual(new Array(4).fill(Math.ceil(3 / Math.min(32, per))));
    expect(composed.counts).toEqual([0, 0, 0, 0]);
    fused.weights.forEach((w, j) => expectNear(w, composed.weights[j]!, `parameter ${j}`, 1e-5, 1e-6));
  });

  const rowShapes = fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 150 }), fc.integer({ min: 1, max: 3 }));
  const shapeOf = ([a, b, c, rank]: [number, number, number, number]) => (rank === 1 ? [c] : rank === 2 ? [a * b, c] : [a, b, c]);

  it('LoomSoftmax and LoomSoftmaxGrad equal float64 softmax and y ⊙ (dy − Σ dy ⊙ y) within 1e-6 (values ≤ 1), one dispatch each', async () => {
    await fc.assert(
      fc.asyncProperty(rowShapes, fc.integer({ min: 0, max: 2 ** 30 }), async (dims, seed) => {
        const shape = shapeOf(dims);
        const cols = shape.at(-1)!;
        const n = shape.reduce((a, b) => a * b, 1);
        const z = Float32Array.from(values(seed, n).map((x) => 4 * x));
        const dy = Float32Array.from(values(seed + 1, n));
        const y = new Float64Array(n);
        const dx = new Float64Array(n);
        for (let r = 0; r < n / cols; r++) {
          const row = Array.from(z.subarray(r * cols, (r + 1) * cols));
          const mx = Math.max(...row);
          const e = row.map((x) => Math.exp(x - mx));
          const s = e.reduce((a, b) => a + b, 0);
          e.forEach((x, j) => (y[r * cols + j] = x / s));
          let dot = 0;
          for (let j = 0; j < cols; j++) dot += dy[r * cols + j]! * y[r * cols + j]!;
          for (let j = 0; j < cols; j++) dx[r * cols + j] = y[r * cols + j]! * (dy[r * cols + j]! - dot);
        }
        const [zt, dyt] = [f32(z, shape), f32(dy, shape)];
        const fwd = await dispatches(() => run(FUSED_KERNELS.softmax, { logits: zt }) as tf.Tensor);
        const bwd = await dispatches(() => run(FUSED_KERNELS.softmaxGrad, { dy: dyt, y: fwd.result }) as tf.Tensor);
        expect([fwd.count, bwd.count]).toEqual([1, 1]);
        expect(fwd.result.shape).toEqual(shape);
        expectNear(await read(fwd.result), y, `softmax [${shape}]`, 0, 1e-6);
        expectNear(await read(bwd.result), dx, `softmax gradient [${shape}]`, 1e-5, 1e-6);
        tf.dispose([zt, dyt, fwd.result, bwd.result]);
      }),
      RUNS,
    );
  });

  it('LoomLayerNorm and LoomLayerNormGrad equal Ba et al. (2016) eq. 4 and its gradient in float64 within 1e-4·max + 1e-5; one dispatch forward, two backward', async () => {
    await fc.assert(
      fc.asyncProperty(rowShapes, fc.integer({ min: 0, max: 2 ** 30 }), fc.constantFrom(1e-5, 1e-3), async (dims, seed, eps) => {
        const shape = shapeOf(dims);
        const cols = shape.at(-1)!;
        const n = shape.reduce((a, b) => a * b, 1);
        const rows = n / cols;
        const x = Float32Array.from(values(seed, n).map((v, i) => v + (i % 3)));
        const dy = Float32Array.from(values(seed + 1, n));
        const gamma = Float32Array.from(values(seed + 2, cols));
        const beta = Float32Array.from(values(seed + 3, cols));
        const y = new Float64Array(n);
        const dx = new Float64Array(n);
        const dgamma = new Float64Array(cols);
        const dbeta = new Float64Array(cols);
        for (let r = 0; r < rows; r++) {
          const o = r * cols;
          let mu = 0;
          for (let j = 0; j < cols; j++) mu += x[o + j]! / cols;
          let s2 = 0;
          for (let j = 0; j < cols; j++) s2 += (x[o + j]! - mu) ** 2 / cols;
          const rs = 1 / Math.sqrt(s2 + eps);
          const xhat = Array.from({ length: cols }, (_, j) => (x[o + j]! - mu) * rs);
          const g = Array.from({ length: cols }, (_, j) => dy[o + j]! * gamma[j]!);
          const mg = g.reduce((a, b) => a + b, 0) / cols;
          const mgx = g.reduce((a, b, j) => a + b * xhat[j]!, 0) / cols;
          for (let j = 0; j < cols; j++) {
            y[o + j] = gamma[j]! * xhat[j]! + beta[j]!;
            dx[o + j] = rs * (g[j]! - mg - xhat[j]! * mgx);
            dgamma[j] += dy[o + j]! * xhat[j]!;
            dbeta[j] += dy[o + j]!;
          }
        }
        const [xt, dyt, gt, bt] = [f32(x, shape), f32(dy, shape), f32(gamma, [cols]), f32(beta, [cols])];
        const fwd = await dispatches(() => run(FUSED_KERNELS.layerNorm, { x: xt, gamma: gt, beta: bt }, { epsilon: eps }) as tf.Tensor);
        const bwd = await dispatches(() => run(FUSED_KERNELS.layerNormGrad, { dy: dyt, x: xt, gamma: gt }, { epsilon: eps }) as tf.Tensor[]);
        expect([fwd.count, bwd.count]).toEqual([1, 2]);
        expectNear(await read(fwd.result), y, `layer norm [${shape}]`, 1e-4, 1e-5);
        const [gx, gg, gb] = bwd.result as [tf.Tensor, tf.Tensor, tf.Tensor];
        expect([gx.shape, gg.shape, gb.shape]).toEqual([shape, [cols], [cols]]);
        expectNear(await read(gx), dx, `dx [${shape}]`, 1e-4, 1e-5);
        expectNear(await read(gg), dgamma, `dγ [${shape}]`, 1e-4, 1e-5);
        expectNear(await read(gb), dbeta, `dβ [${shape}]`, 1e-4, 1e-5);
        tf.dispose([xt, dyt, gt, bt, fwd.result, ...bwd.result]);
      }),
      RUNS,
    );
  });

  it('LoomAttention equals float64 masked multi-head attention (scores −1e9 where masked, causal) within 1e-5·max + 1e-6; LoomAttentionGrad equals autograd of the composed attention on cpu within 1e-4·max + 1e-6; one dispatch forward, two backward', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom(1, 3, 8, 66),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 30 }),
        async (b, t, heads, dk, causal, seed) => {
          const d = heads * dk;
          const qkv = Float32Array.from(values(seed, b * t * 3 * d));
          // Padding keys at random; the last batch row fully masked when b = 2 (its probabilities are uniform).
          const keep = Float32Array.from({ length: b * t }, (_, i) => (b === 2 && i >= t ? 0 : (i * 7 + seed) % 5 === 0 ? 0 : 1));
          const dy = Float32Array.from(values(seed + 1, b * t * d));
          const context = new Float64Array(b * t * d);
          const probs = new Float64Array(b * heads * t * t);
          for (let bb = 0; bb < b; bb++)
            for (let h = 0; h < heads; h++)
              for (let i = 0; i < t; i++) {
                const s = Array.from({ length: t }, (_, j) => {
                  if ((causal && j > i) || keep[bb * t + j] === 0) return -1e9;
                  let acc = 0;
                  for (let c = 0; c < dk; c++) acc += qkv[(bb * t + i) * 3 * d + h * dk + c]! * qkv[(bb * t + j) * 3 * d + d + h * dk + c]!;
                  return acc / Math.sqrt(dk);
                });
                const mx = Math.max(...s);
                const e = s.map((x) => Math.exp(x - mx));
                const sum = e.reduce((x, y) => x + y, 0);
                const p = ((bb * heads + h) * t + i) * t;
                e.forEach((x, j) => (probs[p + j] = x / sum));
                for (let c = 0; c < dk; c++) {
                  let acc = 0;
                  for (let j = 0; j < t; j++) acc += probs[p + j]! * qkv[(bb * t + j) * 3 * d + 2 * d + h * dk + c]!;
                  context[(bb * t + i) * d + h * dk + c] = acc;
                }
              }
          const [qt, kt, dyt] = [f32(qkv, [b, t, 3 * d]), f32(keep, [b, t]), f32(dy, [b, t, d])];
          const attrs = { numHeads: heads, causal };
          const fwd = await dispatches(() => run(FUSED_KERNELS.attention, { qkv: qt, keep: kt }, attrs) as tf.Tensor[]);
          const [ct, pt] = fwd.result as [tf.Tensor, tf.Tensor];
          const bwd = await dispatches(() => run(FUSED_KERNELS.attentionGrad, { dy: dyt, qkv: qt, keep: kt, probs: pt }, attrs) as tf.Tensor);
          expect([fwd.count, bwd.count]).toEqual([1, 2]);
          const label = `b ${b} t ${t} heads ${heads} dk ${dk}${causal ? ' causal' : ''}`;
          expectNear(await read(ct), context, `context ${label}`, 1e-5, 1e-6);
          expectNear(await read(pt), probs, `probs ${label}`, 0, 1e-6);
          const got = await read(bwd.result);
          tf.dispose([ct, pt, bwd.result]);
          // The reference gradient: tfjs's autograd through the composed attention, on the cpu backend.
          await selectBackend(registry, 'cpu');
          const [q2, k2, dy2] = [f32(qkv, [b, t, 3 * d]), f32(keep, [b, t]), f32(dy, [b, t, d])];
          const want = tf.tidy(() => tf.grad((q: tf.Tensor) => tf.sum(tf.mul(referenceSelfAttention(q, heads, k2, causal), dy2)))(q2));
          const wantValues = await read(want);
          tf.dispose([q2, k2, dy2, want]);
          await selectBackend(registry, 'webgpu');
          expectNear(got, wantValues, `dqkv ${label}`, 1e-4, 1e-6);
          tf.dispose([qt, kt, dyt]);
        },
      ),
      RUNS,
    );
  });

  /**
   * A toy Transformer classifier: dense → [4 positions × 8] → encoder layer (2 heads) → flatten → dense; Adam with
   * ε = 1e-3. The key projection's bias has a gradient of exactly 0 (softmax ignores a shift shared by all scores),
   * so in float32 it is rounding noise of ~1e-9, which Adam with a small ε turns into steps of ±lr in the noise's
   * direction: the two paths' weights would differ by lr there while agreeing everywhere else.
   */
  const transformerConfig = (dir: string) =>
    toyConfig(dir, {
      model: {
        inputShape: [2],
        layers: [
          { type: 'dense', units: 32 },
          { type: 'reshape', targetShape: [4, 8] },
          { type: 'transformer-encoder', numHeads: 2, ff: 16, dropout: 0 },
          { type: 'flatten' },
          { type: 'dense', units: 3 },
        ],
      },
      optimizer: { type: 'adam', lr: 0.05, epsilon: 1e-3 },
      trainer: { epochs: 1, batchSize: 16 },
    });

  it('a Transformer training step takes fewer dispatches with the kernels than composed (counts logged), and gives the same loss and weights within 1e-4·max + 1e-6', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-wgsl-'));
    const steps = async () => {
      const c = await buildRunContainer({ registry, backend: 'webgpu', config: transformerConfig(dir) });
      try {
        const trainer = c.resolve(Trainer);
        const data = c.resolve(TOKENS.TrainData);
        const counts: number[] = [];
        const losses: number[] = [];
        for (let s = 0; s < 3; s++) {
          const b = data.batch(Array.from({ length: 16 }, (_, i) => i + 16 * s));
          const { count, result } = await dispatches(() => trainer.trainStep(b, { step: s, epoch: 0 }));
          counts.push(count);
          losses.push(result as number);
          tf.dispose([b.x, b.y]);
        }
        const weights = await Promise.all(trainer.model.parameters().map((p) => read(p.variable)));
        return { counts, losses, weights };
      } finally {
        disposeRun(c);
      }
    };
    try {
      const fused = await steps();
      const composed = await withoutKernels(steps);
      console.info(
        `dispatches per Transformer training step (toy, steps 1-3): composed ${composed.counts.join(', ')}; with loom's WGSL kernels ${fused.counts.join(', ')}`,
      );
      expect(fused.counts[2]).toBeLessThan(composed.counts[2]!);
      expectNear(fused.losses, composed.losses, 'losses', 1e-4, 1e-6);
      fused.weights.forEach((w, i) => expectNear(w, composed.weights[i]!, `weight ${i}`, 1e-4, 1e-6));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  it('holds memory flat over 300 Transformer training steps on the kernels: tensors, bytes in tensors, and the buffer pool once warm', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-wgsl-'));
    const c = await buildRunContainer({ registry, backend: 'webgpu', config: transformerConfig(dir) });
    try {
      await expectFlatMemoryAcrossSteps(c.resolve(Trainer), c.resolve(TOKENS.TrainData), { steps: 300, warmup: 20, batchSize: 16 });
    } finally {
      disposeRun(c);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});

/**
 * Quantization's definitions (core/quantization.ts): quantize then dequantize is within half a step, for weights per
 * channel and activations per tensor; the quantized product is within the bound its scales give of the float product
 * with the same (dequantized) weights, on every CPU backend (native-cpu's int8 kernels and tfjs's reference path).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { cpuBackends, testRegistry } from '../test/harness';
import type { PluginRegistry } from './registry';
import { selectBackend } from './backend';
import { activationQuant, int8Conv2d, int8Linear, quantizeCentred, quantizePerChannel, roundHalfEven, WEIGHT_QMAX } from './quantization';

// (values below 1e-30 are flushed to 0: subnormal scales lose the relative precision the bound assumes)
const floats = (n: number, scale = 1) =>
  fc
    .array(fc.float({ min: -1, max: 1, noNaN: true }), { minLength: n, maxLength: n })
    .map((a) => Float32Array.from(a, (v) => (Math.abs(v) < 1e-30 ? 0 : v * scale)));

describe('quantization definitions', () => {
  it('roundHalfEven rounds ties to even', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e6, max: 1e6 }), (i) => {
        expect(roundHalfEven(i + 0.5)).toBe(Math.abs(i % 2) === 0 ? i : i + 1);
        expect(roundHalfEven(i + 0.25)).toBe(i);
      }),
    );
  });

  it('per-channel weights: integers in [−127, 127], dequantized within half a step of the original', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), (rows, out, mag) =>
        fc.assert(
          fc.property(floats(rows * out, mag), (w) => {
            const { q, scales } = quantizePerChannel(w, out);
            for (let i = 0; i < w.length; i++) {
              const s = scales[i % out]!;
              expect(Number.isInteger(q[i]) && Math.abs(q[i]!) <= WEIGHT_QMAX).toBe(true);
              expect(Math.abs(Math.fround(q[i]! * s) - w[i]!)).toBeLessThanOrEqual(s / 2 + 1e-6 * Math.abs(w[i]!));
            }
          }),
          { numRuns: 3 },
        ),
      ),
      { numRuns: 30 },
    );
  });

  it('activations: inside the calibrated range, quantize then dequantize is within half a step; 0 is exact', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -50, max: 50, noNaN: true }),
        fc.double({ min: 1e-3, max: 100, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 50 }),
        (lo, width, ts) => {
          const hi = lo + width;
          const quant = activationQuant(lo, hi);
          expect(quant.zeroPoint).toBeGreaterThanOrEqual(0);
          expect(quant.zeroPoint).toBeLessThanOrEqual(255);
          const x = Float32Array.from(ts, (t) => Math.min(lo, 0) + t * (Math.max(hi, 0) - Math.min(lo, 0)));
          const back = tf.tidy(() => tf.mul(quantizeCentred(tf.tensor1d([...x, 0]), quant), quant.scale).dataSync());
          // Half a step, plus the float32 rounding of x / scale and of the zero point's position (a few ulps of the range).
          const slack = 4e-7 * Math.max(Math.abs(lo), Math.abs(hi));
          for (let i = 0; i < x.length; i++) expect(Math.abs(back[i]! - x[i]!)).toBeLessThanOrEqual(quant.scale / 2 + slack);
          expect(back[x.length]).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('quantized products against float', () => {
  let registry: PluginRegistry;
  let backends: string[] = [];
  beforeAll(async () => {
    registry = await testRegistry();
    backends = await cpuBackends();
  });

  /** Σ_p |W[p, j]| · S_x / 2: the most the input's rounding (at most half a step each) moves output j. */
  const bound = (wdeq: tf.Tensor, xScale: number, axes: number[]) => tf.tidy(() => tf.mul(tf.sum(tf.abs(wdeq), axes), xScale / 2).dataSync());

  it('int8Linear is within the scales’ bound of the float product with the dequantized weights, on every backend', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 12 }),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 1, max: 40 }),
          fc.integer({ min: 0, max: 1e6 }),
          fc.boolean(),
          (m, k, n, seed, relu) => {
            tf.tidy(() => {
              const x = tf.randomNormal([m, k], 0.5, 1, 'float32', seed) as tf.Tensor2D;
              const w = tf.randomNormal([k, n], 0, 0.3, 'float32', seed + 1);
              const bias = tf.randomNormal([n], 0, 0.1, 'float32', seed + 2) as tf.Tensor1D;
              const { q, scales } = quantizePerChannel(w.dataSync() as Float32Array, n);
              const kernel = tf.tensor2d(q, [k, n]),
                scale = tf.tensor1d(scales);
              const quant = activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!);
              const wdeq = tf.mul(kernel, scale);
              const yq = int8Linear(x, kernel, scale, bias, quant, relu).dataSync();
              let yf = tf.add(tf.matMul(x, wdeq), bias);
              if (relu) yf = tf.relu(yf);
              const f = yf.dataSync(),
                b = bound(wdeq, quant.scale, [0]);
              for (let i = 0; i < m * n; i++)
                expect(Math.abs(yq[i]! - f[i]!), `${backend} [${i}]`).toBeLessThanOrEqual(b[i % n]! * 1.0001 + 1e-5 * (1 + Math.abs(f[i]!)));
            });
          },
        ),
        { numRuns: 25 },
      );
    }
  });

  it("int8Linear's and int8Conv2d's input gradient is the float layer's with the dequantized weights, through the relu", async () => {
    // Straight through the quantization; before, the relu was skipped: a unit the relu closed still passed gradient.
    for (const backend of backends) {
      await selectBackend(registry, backend);
      tf.tidy(() => {
        const x = tf.tensor2d([[1, 1, 1]]);
        const { q, scales } = quantizePerChannel(Float32Array.from([1, -1, 0.5, -0.5, 2, -2]), 2);
        const [kernel, scale] = [tf.tensor2d(q, [3, 2]), tf.tensor1d(scales)];
        const quant = activationQuant(0, 1);
        const wdeq = tf.mul(kernel, scale);
        for (const relu of [true, false]) {
          const gq = tf.grad((t: tf.Tensor) => tf.sum(int8Linear(t as tf.Tensor2D, kernel, scale, null, quant, relu)))(x);
          const gf = tf.grad((t: tf.Tensor) => {
            const y = tf.matMul(t as tf.Tensor2D, wdeq as tf.Tensor2D);
            return tf.sum(relu ? tf.relu(y) : y);
          })(x);
          Array.from(gq.dataSync()).forEach((v, i) => expect(v, `${backend} dense relu ${relu} [${i}]`).toBeCloseTo(gf.dataSync()[i]!, 5));
        }
        // The same kernel as a 1×1 convolution over a 1×1 image with 3 channels.
        const x4 = tf.reshape(x, [1, 1, 1, 3]) as tf.Tensor4D;
        const k4 = tf.reshape(kernel, [1, 1, 3, 2]) as tf.Tensor4D;
        const gc = tf.grad((t: tf.Tensor) => tf.sum(int8Conv2d(t as tf.Tensor4D, k4, scale, null, quant, true, [1, 1], 'valid')))(x4);
        // y = x·W: column 0 positive (its gradient is W's column 0, dequantized), column 1 negative (closed by the relu).
        const col0 = Array.from(tf.slice(wdeq, [0, 0], [3, 1]).dataSync());
        Array.from(gc.dataSync()).forEach((v, i) => expect(v, `${backend} conv [${i}]`).toBeCloseTo(col0[i]!, 5));
      });
    }
  });

  it('int8Conv2d is within the scales’ bound of the float convolution, on every backend', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.record({
            n: fc.integer({ min: 1, max: 2 }),
            h: fc.integer({ min: 3, max: 7 }),
            w: fc.integer({ min: 3, max: 7 }),
            c: fc.integer({ min: 1, max: 4 }),
          }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 5 }),
          fc.constantFrom<[number, number]>([1, 1], [2, 1], [2, 2]),
          fc.constantFrom<'valid' | 'same'>('valid', 'same'),
          fc.integer({ min: 0, max: 1e6 }),
          ({ n, h, w, c }, ksize, co, strides, pad, seed) => {
            tf.tidy(() => {
              const x = tf.randomNormal([n, h, w, c], 0, 1, 'float32', seed) as tf.Tensor4D;
              const wf = tf.randomNormal([ksize, ksize, c, co], 0, 0.3, 'float32', seed + 1);
              const { q, scales } = quantizePerChannel(wf.dataSync() as Float32Array, co);
              const kernel = tf.tensor4d(q, [ksize, ksize, c, co]),
                scale = tf.tensor1d(scales);
              const quant = activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!);
              const wdeq = tf.mul(kernel, scale) as tf.Tensor4D;
              const yq = int8Conv2d(x, kernel, scale, null, quant, false, strides, pad).dataSync();
              const f = tf.conv2d(x, wdeq, strides, pad).dataSync();
              const b = bound(wdeq, quant.scale, [0, 1, 2]);
              for (let i = 0; i < f.length; i++)
                expect(Math.abs(yq[i]! - f[i]!), `${backend} [${i}]`).toBeLessThanOrEqual(b[i % co]! * 1.0001 + 1e-5 * (1 + Math.abs(f[i]!)));
            });
          },
        ),
        { numRuns: 20 },
      );
    }
  });
});

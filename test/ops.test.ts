/**
 * core/ops on every CPU backend: `linear`, `conv2d`, `softmax` and `layerNorm` give the values and gradients of the
 * same maths composed from plain tfjs ops (whose gradients are tfjs's own), `linear` and `conv2d` compute only the
 * gradients that are needed, and none of them leaks tensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  conv2d,
  conv2dMaxPool,
  FUSED_KERNELS,
  hasKernel,
  layerNorm,
  linear,
  Rng,
  selfAttention,
  Sequential,
  softmax,
  type ConvActivation,
  type LinearActivation,
} from '../core';
import { cpuBackends, expectNoLeak, randomNormal, referenceSelfAttention, testRegistry } from './harness';

/** max |a − b| ≤ tol · max(1, max |b|), with equal shapes. */
function expectAllClose(a: tf.Tensor, b: tf.Tensor, tol: number, what: string): void {
  expect(a.shape, what).toEqual(b.shape);
  const av = a.dataSync(),
    bv = b.dataSync();
  let scale = 1,
    err = 0;
  for (let i = 0; i < bv.length; i++) {
    scale = Math.max(scale, Math.abs(bv[i]!));
    err = Math.max(err, Math.abs(av[i]! - bv[i]!));
  }
  expect(err, `${what}: max error ${err} at scale ${scale}`).toBeLessThanOrEqual(tol * scale);
}

/** Values and gradients (for a fixed random cotangent) of `f` and of `reference` at the same inputs. */
function compare(f: (...xs: tf.Tensor[]) => tf.Tensor, reference: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], rng: Rng, tol: number): void {
  tf.tidy(() => {
    const y = f(...inputs);
    const want = reference(...inputs);
    expectAllClose(y, want, tol, 'value');
    const dy = randomNormal(y.shape, rng);
    const got = tf.grads(f)(inputs, dy);
    const wantGrads = tf.grads(reference)(inputs, dy);
    got.forEach((g, i) => expectAllClose(g, wantGrads[i]!, tol, `gradient of input ${i}`));
  });
}

describe.each(await cpuBackends())('core ops on backend %s', (backend) => {
  beforeAll(async () => {
    await testRegistry(backend);
  });

  it('linear = act(x·W + b) with the gradients of the composed ops, for any leading shape, with and without bias', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom<LinearActivation>('linear', 'relu'),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (lead, inF, outF, act, withBias, seed) => {
          const rng = new Rng(seed);
          const x = randomNormal([...lead, inF], rng),
            w = randomNormal([inF, outF], rng) as tf.Tensor2D,
            b = randomNormal([outF], rng) as tf.Tensor1D;
          const reference = (xs: tf.Tensor, ws: tf.Tensor, bs?: tf.Tensor) => {
            const z = tf.reshape(tf.matMul(tf.reshape(xs, [-1, inF]), ws), [...lead, outF]);
            const zb = bs ? tf.add(z, bs) : z;
            return act === 'relu' ? tf.relu(zb) : zb;
          };
          if (withBias) compare((xs, ws, bs) => linear(xs, ws as tf.Tensor2D, bs as tf.Tensor1D, act), reference, [x, w, b], rng, 1e-5);
          else compare((xs, ws) => linear(xs, ws as tf.Tensor2D, null, act), reference, [x, w], rng, 1e-5);
          tf.dispose([x, w, b]);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('linear composes tfjs ops on a backend without the _FusedMatMul kernel, with the same values and gradients', () => {
    const kernel = tf.getKernel('_FusedMatMul', tf.getBackend())!;
    tf.unregisterKernel('_FusedMatMul', tf.getBackend());
    try {
      const rng = new Rng(3);
      const x = randomNormal([2, 3, 5], rng),
        w = randomNormal([5, 4], rng),
        b = randomNormal([4], rng);
      const reference = (xs: tf.Tensor, ws: tf.Tensor, bs: tf.Tensor) => tf.relu(tf.add(tf.reshape(tf.matMul(tf.reshape(xs, [-1, 5]), ws), [2, 3, 4]), bs));
      compare((xs, ws, bs) => linear(xs, ws as tf.Tensor2D, bs as tf.Tensor1D, 'relu'), reference, [x, w, b], rng, 1e-5);
      tf.dispose([x, w, b]);
    } finally {
      tf.registerKernel(kernel);
    }
  });

  it('linear computes only the gradients asked for: one product for dW when x needs none (tf.fused.matMul computes dx too)', () => {
    const rng = new Rng(1);
    const x = randomNormal([8, 6], rng),
      w = tf.variable(randomNormal([6, 4], rng)),
      b = tf.variable(randomNormal([4], rng));
    const kernels = async (f: () => tf.Scalar) => {
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(f, [w, b]);
        tf.dispose([value, ...Object.values(grads)]);
      });
      return info.kernels.map((k) => k.name);
    };
    const products = (names: string[]) => names.filter((n) => n === 'BatchMatMul' || n === '_FusedMatMul' || n === FUSED_KERNELS.matMulBiasGrad).length;
    return (async () => {
      // forward product + dW only; the tfjs op also multiplies dy·Wᵀ for x
      const ours = await kernels(() => tf.sum(linear(x, w as tf.Tensor2D, b as tf.Tensor1D, 'relu')));
      expect(products(ours)).toBe(2);
      // With the fused kernel the bias gradient comes with the weight's: the only Sum left is the loss's.
      expect(ours.filter((n) => n === 'Sum')).toHaveLength(hasKernel(FUSED_KERNELS.matMulBiasGrad) ? 1 : 2);
      expect(products(await kernels(() => tf.sum(tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }))))).toBe(3);
      tf.dispose([x, w, b]);
    })();
  });

  it('conv2d = act(x ⋆ W + b) with the gradients of the composed ops: strides, padding, with and without bias', () => {
    fc.assert(
      fc.property(
        fc.record({ n: fc.integer({ min: 1, max: 3 }), h: fc.integer({ min: 1, max: 9 }), w: fc.integer({ min: 1, max: 9 }) }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 2 }),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.constantFrom<ConvActivation>('linear', 'relu'),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 30 }),
        ({ n, h, w }, c, co, k, stride, pad, act, withBias, seed) => {
          if (pad === 'valid' && (k > h || k > w)) return;
          const rng = new Rng(seed);
          const x = randomNormal([n, h, w, c], rng),
            f = randomNormal([k, k, c, co], rng),
            b = randomNormal([co], rng);
          const reference = (xs: tf.Tensor, fs: tf.Tensor, bs?: tf.Tensor) => {
            const z = tf.conv2d(xs as tf.Tensor4D, fs as tf.Tensor4D, stride, pad);
            const zb = bs ? tf.add(z, bs) : z;
            return act === 'relu' ? tf.relu(zb) : zb;
          };
          const ours = (xs: tf.Tensor, fs: tf.Tensor, bs?: tf.Tensor) =>
            conv2d(xs as tf.Tensor4D, fs as tf.Tensor4D, [stride, stride], pad, (bs ?? null) as tf.Tensor1D | null, act);
          if (withBias) compare(ours, reference, [x, f, b], rng, 1e-4);
          else compare((xs, fs) => ours(xs, fs), reference, [x, f], rng, 1e-4);
          tf.dispose([x, f, b]);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('conv2d composes tfjs ops on a backend without the FusedConv2D kernel, with the same values and gradients', () => {
    const kernel = tf.getKernel('FusedConv2D', tf.getBackend())!;
    tf.unregisterKernel('FusedConv2D', tf.getBackend());
    try {
      const rng = new Rng(4);
      const x = randomNormal([2, 6, 5, 2], rng),
        f = randomNormal([3, 3, 2, 4], rng),
        b = randomNormal([4], rng);
      const reference = (xs: tf.Tensor, fs: tf.Tensor, bs: tf.Tensor) => tf.relu(tf.add(tf.conv2d(xs as tf.Tensor4D, fs as tf.Tensor4D, 1, 'same'), bs));
      compare((xs, fs, bs) => conv2d(xs as tf.Tensor4D, fs as tf.Tensor4D, [1, 1], 'same', bs as tf.Tensor1D, 'relu'), reference, [x, f, b], rng, 1e-4);
      tf.dispose([x, f, b]);
    } finally {
      tf.registerKernel(kernel);
    }
  });

  it("conv2d computes only the gradients asked for: no input gradient for a first layer, relu's and the bias's with the filter's", () => {
    const rng = new Rng(2);
    const x = randomNormal([3, 8, 8, 1], rng),
      f = tf.variable(randomNormal([3, 3, 1, 4], rng)),
      b = tf.variable(randomNormal([4], rng));
    const kernels = async (fn: () => tf.Scalar) => {
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(fn, [f, b]);
        tf.dispose([value, ...Object.values(grads)]);
      });
      return info.kernels.map((k) => k.name);
    };
    return (async () => {
      const ours = await kernels(() => tf.sum(conv2d(x as tf.Tensor4D, f as tf.Tensor4D, [1, 1], 'valid', b as tf.Tensor1D, 'relu')));
      expect(ours).not.toContain('Conv2DBackpropInput');
      expect(ours).toContain('FusedConv2D');
      if (hasKernel(FUSED_KERNELS.conv2dFilterBiasGrad)) {
        // One pass for the filter, the bias and relu's gradient: the only Sum is the loss's, and no mask is written out.
        expect(ours.filter((n) => n === FUSED_KERNELS.conv2dFilterBiasGrad)).toHaveLength(1);
        expect(ours.filter((n) => n === 'Sum')).toHaveLength(1);
        expect(ours).not.toContain(FUSED_KERNELS.reluGrad);
        expect(ours).not.toContain('Conv2DBackpropFilter');
      } else {
        expect(ours.filter((n) => n === 'Conv2DBackpropFilter')).toHaveLength(1);
      }
      tf.dispose([x, f, b]);
    })();
  });

  it('conv2dMaxPool = maxPool(conv2d(...)) with the gradients of the composed ops (input, filter, bias)', () => {
    fc.assert(
      fc.property(
        fc.record({ n: fc.integer({ min: 1, max: 3 }), h: fc.integer({ min: 2, max: 9 }), w: fc.integer({ min: 2, max: 9 }) }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 3 }),
        fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        fc.constantFrom<'same' | 'valid'>('same', 'valid'),
        fc.constantFrom<ConvActivation>('linear', 'relu'),
        fc.integer({ min: 0, max: 2 ** 30 }),
        ({ n, h, w }, c, co, k, pool, pad, act, seed) => {
          const oh = pad === 'same' ? h : h - k + 1,
            ow = pad === 'same' ? w : w - k + 1;
          if (oh < pool[0] || ow < pool[1]) return;
          const rng = new Rng(seed);
          const x = randomNormal([n, h, w, c], rng),
            f = randomNormal([k, k, c, co], rng),
            b = randomNormal([co], rng);
          const reference = (xs: tf.Tensor, fs: tf.Tensor, bs: tf.Tensor) => {
            const z = tf.add(tf.conv2d(xs as tf.Tensor4D, fs as tf.Tensor4D, 1, pad), bs);
            return tf.maxPool((act === 'relu' ? tf.relu(z) : z) as tf.Tensor4D, pool, pool, 'valid');
          };
          const ours = (xs: tf.Tensor, fs: tf.Tensor, bs: tf.Tensor) =>
            conv2dMaxPool(xs as tf.Tensor4D, fs as tf.Tensor4D, [1, 1], pad, bs as tf.Tensor1D, act, pool);
          compare(ours, reference, [x, f, b], rng, 1e-4);
          tf.dispose([x, f, b]);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a Sequential applies conv2d then a tiling max-pool2d as one op, with the values and gradients of the layers one by one', async () => {
    const registry = await testRegistry(tf.getBackend());
    const model = new Sequential(
      {
        inputShape: [9, 8, 2],
        layers: [{ type: 'conv2d', filters: 5, kernelSize: 3, activation: 'relu' }, { type: 'max-pool2d', poolSize: 2 }, { type: 'flatten' }],
      },
      registry,
    );
    model.build(undefined, new Rng(1));
    const x = randomNormal([3, 9, 8, 2], new Rng(2));
    const weights = model.parameters().map((p) => p.variable);
    const run = (fused: boolean) =>
      tf.tidy(() => {
        const f = () =>
          tf.sum(
            tf.square(
              fused ? model.apply(x, { training: true, rng: new Rng(3) }) : model.layers.reduce((y, l) => l.apply(y, { training: true, rng: new Rng(3) }), x),
            ),
          ) as tf.Scalar;
        const { value, grads } = tf.variableGrads(f, weights);
        return [value, ...weights.map((v) => grads[v.name]!)];
      });
    const [fused, layered] = [run(true), run(false)];
    const kernels = (await tf.profile(() => tf.dispose(model.apply(x, { training: false, rng: new Rng(3) })))).kernels.map((k) => k.name);
    if (hasKernel(FUSED_KERNELS.conv2dMaxPool)) {
      expect(kernels).toContain(FUSED_KERNELS.conv2dMaxPool);
      expect(kernels).not.toContain('MaxPool');
    } else expect(kernels).toContain('MaxPool');
    fused.forEach((t, i) => expectAllClose(t, layered[i]!, 1e-5, i === 0 ? 'loss' : `gradient ${i}`));
    tf.dispose([...fused, ...layered, x]);
    model.dispose();
  });

  it('softmax and layerNorm match the composed ops, values and gradients', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (lead, d, seed) => {
          const rng = new Rng(seed);
          const x = tf.add(randomNormal([...lead, d], rng, 3), 1),
            gamma = randomNormal([d], rng),
            beta = randomNormal([d], rng);
          compare(
            (v) => softmax(v),
            (v) => tf.softmax(v),
            [x],
            rng,
            1e-5,
          );
          const eps = 1e-5;
          const composed = (v: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
            const c = tf.sub(v, tf.mean(v, -1, true));
            return tf.add(tf.mul(tf.mul(c, tf.rsqrt(tf.add(tf.mean(tf.square(c), -1, true), eps))), g), b);
          };
          compare((v, g, b) => layerNorm(v, g as tf.Tensor1D, b as tf.Tensor1D, eps), composed, [x, gamma, beta], rng, 1e-3);
          tf.dispose([x, gamma, beta]);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('do not leak tensors across training steps', () => {
    const rng = new Rng(2);
    const x = randomNormal([4, 3, 8], rng);
    const w = tf.variable(randomNormal([8, 8], rng)),
      b = tf.variable(randomNormal([8], rng));
    const g = tf.variable(tf.ones([8])),
      be = tf.variable(tf.zeros([8]));
    expectNoLeak(() => {
      const { value, grads } = tf.variableGrads(
        () => tf.sum(softmax(layerNorm(linear(x, w as tf.Tensor2D, b as tf.Tensor1D, 'relu'), g as tf.Tensor1D, be as tf.Tensor1D, 1e-5))),
        [w, b, g, be],
      );
      tf.dispose([value, ...Object.values(grads)]);
    });
    tf.dispose([x, w, b, g, be]);
    // A convolution after a first one: its input, filter and bias gradients (relu's gradient written out once).
    const img = randomNormal([2, 7, 7, 2], rng);
    const f1 = tf.variable(randomNormal([3, 3, 2, 3], rng)),
      f2 = tf.variable(randomNormal([2, 2, 3, 4], rng)),
      b2 = tf.variable(randomNormal([4], rng));
    expectNoLeak(() => {
      const { value, grads } = tf.variableGrads(() => {
        const h = conv2d(img as tf.Tensor4D, f1 as tf.Tensor4D, [1, 1], 'same', null, 'relu');
        return tf.sum(conv2d(h, f2 as tf.Tensor4D, [2, 2], 'valid', b2 as tf.Tensor1D, 'relu'));
      }, [f1, f2, b2]);
      tf.dispose([value, ...Object.values(grads)]);
    });
    tf.dispose([img, f1, f2, b2]);
  });

  it('names the mismatch when shapes do not fit', () => {
    const x = tf.zeros([2, 5]),
      w = tf.zeros([4, 3]) as tf.Tensor2D;
    expect(() => linear(x, w)).toThrow(/linear: expected input shape \[\.\.\., 4\] \(the weight is \[4,3\]\), got \[2, 5\]/);
    expect(() => linear(tf.zeros([2, 4]), w, tf.zeros([2]) as tf.Tensor1D)).toThrow(/linear bias: expected input shape \[3\], got \[2\]/);
    const f = tf.zeros([3, 3, 2, 4]) as tf.Tensor4D;
    expect(() => conv2d(tf.zeros([1, 5, 5, 3]) as tf.Tensor4D, f, [1, 1], 'valid')).toThrow(/conv2d: expected input shape \[batch, height, width, 2\]/);
    expect(() => conv2d(tf.zeros([1, 5, 5, 2]) as tf.Tensor4D, f, [1, 1], 'valid', tf.zeros([3]) as tf.Tensor1D)).toThrow(
      /conv2d bias: expected input shape \[4\], got \[3\]/,
    );
    f.dispose();
    if (hasKernel(FUSED_KERNELS.attention)) {
      expect(() => selfAttention(tf.zeros([2, 3, 12]), 2, tf.ones([2, 4]), false)).toThrow(
        /selfAttention key mask: expected input shape \[2, 3\], got \[2, 4\]/,
      );
      expect(() => selfAttention(tf.zeros([2, 3, 12]), 3, null, false)).toThrow(
        /selfAttention: expected input shape \[batch, time, 3·d\] with d divisible by 3 heads/,
      );
    }
    tf.dispose([x, w]);
  });
});

// selfAttention exists where the backend has the fused kernel (native-cpu); multi-head-attention composes the
// same maths elsewhere. Skipped only when the native addon did not build here.
const native = (await cpuBackends()).includes('native-cpu');
if (!native) console.warn('selfAttention tests skipped: the native addon is not built here (no fused attention kernel)');
describe.skipIf(!native)('selfAttention on native-cpu', () => {
  beforeAll(async () => {
    await testRegistry('native-cpu');
  });

  it('matches attention composed from tfjs ops, values and gradients (key masks, causal)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 6 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (b, t, h, dk, causal, seed) => {
          const rng = new Rng(seed);
          const d = h * dk;
          const qkv = randomNormal([b, t, 3 * d], rng);
          const mask = tf.tensor(
            Array.from({ length: b * t }, (_, i) => (i % t === t - 1 && t > 1 ? 0 : 1)),
            [b, t],
          );
          compare(
            (x) => selfAttention(x, h, mask, causal),
            (x) => referenceSelfAttention(x, h, mask, causal),
            [qkv],
            rng,
            1e-4,
          );
          tf.dispose([qkv, mask]);
        },
      ),
      { numRuns: 30 },
    );
  });
});

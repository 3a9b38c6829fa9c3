/**
 * Fidelity to the papers' models (issue 17, item 4): with identical weights, loom's GPT, BERT and encoder-decoder
 * Transformer compute what the canonical definitions compute, outputs and gradients. Each reference below is written
 * from its paper in plain tfjs ops, independently of loom's layers (no fused kernels, no shared code), and reads
 * loom's parameters by name:
 *   GPT-2 (Radford et al. 2019, §2.3; nanoGPT's model.py): token + learned position embeddings, pre-norm blocks
 *     x + Attn(LN(x)), x + MLP(LN(x)) with the tanh GELU, a final LN, logits through the tied embedding;
 *   BERT (Devlin et al. 2018, §3; Google's modeling.py): LN(token + position embeddings), post-norm encoder layers
 *     LN(x + Attn(x)), LN(x + FFN(x)) with GELU, the masked-LM head LN(GELU(h W + b)) Eᵀ + bias, ε = 1e-12;
 *   the Transformer (Vaswani et al. 2017, §3): embeddings × √d plus sinusoidal positions, post-norm encoder and
 *     decoder layers with ReLU, causal self-attention, attention over the encoder output, padding masked.
 * The deviations loom keeps (BERT has no token-type embeddings; see each paper's README) are left out of the
 * references too, so what is compared is the rest. The initializers are checked against the papers' statistics.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel, type Model, type PluginRegistry, Rng } from '../core';
import { testRegistry } from './harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});
const models: Model[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

function build(spec: Record<string, unknown>, seed = 1): { model: Model; w: (name: string) => tf.Tensor } {
  const model = buildModel(spec as never, registry);
  model.build(model.inputShape, new Rng(seed));
  models.push(model);
  // Perturb every parameter (norms' γ = 1 and zero biases would hide a swapped γ/β or a missing bias).
  const rng = new Rng(seed + 100);
  for (const p of model.parameters()) {
    const noise = Float32Array.from({ length: p.variable.size }, () => (rng.next() - 0.5) * 0.2);
    p.variable.assign(tf.add(p.variable, tf.tensor(noise, p.variable.shape)));
  }
  const byName = new Map(model.parameters().map((p) => [p.name, p.variable as tf.Tensor]));
  const w = (name: string) => {
    const t = byName.get(name);
    if (!t) throw new Error(`no parameter ${name}; have ${[...byName.keys()].join(', ')}`);
    return t;
  };
  return { model, w };
}

const layerNorm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number) => {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
};
const dense = (x: tf.Tensor, k: tf.Tensor, b?: tf.Tensor) => {
  const [n, d] = [x.shape.slice(0, -1), x.shape.at(-1)!];
  const y = tf.matMul(tf.reshape(x, [-1, d]), k as tf.Tensor2D);
  return tf.reshape(b ? tf.add(y, b) : y, [...n, k.shape[1]!]);
};
const geluTanh = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));
const geluErf = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));

/**
 * softmax(QKᵀ/√d_k + M)V per head (Vaswani et al. eq. 1), Q from `xq` through the first third of the packed
 * [d, 3d] projection and K, V from `xkv` through the rest; `allowed` [b, tq, tk] is 1 where a query may attend.
 */
function attention(xq: tf.Tensor, xkv: tf.Tensor, prefix: string, w: (n: string) => tf.Tensor, heads: number, allowed: tf.Tensor | null) {
  const [b, tq, d] = xq.shape as [number, number, number];
  const tk = xkv.shape[1]!;
  const [wq, wk, wv] = tf.split(w(`${prefix}/qkv_kernel`), 3, 1);
  const [bq, bk, bv] = tf.split(w(`${prefix}/qkv_bias`), 3, 0);
  const dk = d / heads;
  const split = (x: tf.Tensor, t: number) => tf.transpose(tf.reshape(x, [b, t, heads, dk]), [0, 2, 1, 3]);
  const q = split(dense(xq, wq!, bq), tq);
  const k = split(dense(xkv, wk!, bk), tk);
  const v = split(dense(xkv, wv!, bv), tk);
  let scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(dk));
  if (allowed) scores = tf.add(scores, tf.mul(tf.sub(1, tf.expandDims(allowed, 1)), -1e9));
  const ctx = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [b, tq, d]);
  return dense(ctx, w(`${prefix}/out_kernel`), w(`${prefix}/out_bias`));
}

const causal = (b: number, t: number) => tf.tile(tf.expandDims(tf.linalg.bandPart(tf.ones([t, t]), -1, 0), 0), [b, 1, 1]);
const keysAllowed = (mask: tf.Tensor, tq: number) => tf.tile(tf.expandDims(mask, 1), [1, tq, 1]);

/** loom's output and the reference's, and their gradients with respect to every parameter, for a random cotangent. */
function compare(model: Model, x: tf.Tensor, reference: () => tf.Tensor, rtol = { out: 1e-4, grad: 2e-3 }) {
  const ctx = { training: false, rng: new Rng(0) };
  const ours = model.apply(x, ctx);
  const ref = reference();
  expect(ref.shape).toEqual(ours.shape);
  const scale = tf.max(tf.abs(ref)).dataSync()[0]!;
  expect(tf.max(tf.abs(tf.sub(ours, ref))).dataSync()[0]! / scale).toBeLessThan(rtol.out);
  const r = tf.randomNormal(ours.shape, 0, 1, 'float32', 7);
  const vars = model.parameters().map((p) => p.variable);
  const gOurs = tf.variableGrads(() => tf.sum(tf.mul(model.apply(x, ctx), r)) as tf.Scalar, vars).grads;
  const gRef = tf.variableGrads(() => tf.sum(tf.mul(reference(), r)) as tf.Scalar, vars).grads;
  for (const p of model.parameters()) {
    const [a, e] = [gOurs[p.variable.name]!, gRef[p.variable.name]!];
    const s = Math.max(tf.max(tf.abs(e)).dataSync()[0]!, 1e-6);
    expect(tf.max(tf.abs(tf.sub(a, e))).dataSync()[0]! / s, `gradient of ${p.name}`).toBeLessThan(rtol.grad);
  }
}

describe('GPT equals GPT-2 (pre-norm blocks, tanh GELU, tied logits)', () => {
  it('outputs and gradients, with identical weights', () =>
    tf.tidy(() => {
      const [vocab, d, heads, layers, t] = [11, 16, 4, 2, 7];
      const { model, w } = build({ type: 'gpt', vocabSize: vocab, context: 8, dModel: d, numHeads: heads, layers, dropout: 0 });
      const x = tf.tensor2d([0, 3, 5, 10, 2, 2, 7, 1, 1, 9, 4, 6, 8, 0], [2, t], 'int32');
      compare(model, x, () => {
        const E = w('gpt/token_embedding/embeddings');
        let h = tf.add(tf.gather(E, x), tf.slice(w('gpt/position_embedding/positions'), [0, 0], [t, d]));
        for (let i = 1; i <= layers; i++) {
          const p = `gpt/block_${i}`;
          const a = layerNorm(h, w(`${p}/norm1/gamma`), w(`${p}/norm1/beta`), 1e-5);
          h = tf.add(h, attention(a, a, `${p}/self_attention`, w, heads, causal(2, t)));
          const m = layerNorm(h, w(`${p}/norm3/gamma`), w(`${p}/norm3/beta`), 1e-5);
          h = tf.add(h, dense(geluTanh(dense(m, w(`${p}/ff1/kernel`), w(`${p}/ff1/bias`))), w(`${p}/ff2/kernel`), w(`${p}/ff2/bias`)));
        }
        h = layerNorm(h, w('gpt/final_norm/gamma'), w('gpt/final_norm/beta'), 1e-5);
        return tf.reshape(tf.matMul(tf.reshape(h, [-1, d]), E, false, true), [2, t, vocab]);
      });
    }));

  it('initializes as GPT-2: kernels N(0, 0.02), residual projections N(0, 0.02/√(2·layers)), biases 0, embeddings N(0, 0.02)', () => {
    const layers = 4;
    const { model } = build({ type: 'gpt', vocabSize: 50, context: 64, dModel: 64, numHeads: 4, layers, dropout: 0 });
    const fresh = buildModel(model.spec as never, registry);
    fresh.build(fresh.inputShape, new Rng(3));
    models.push(fresh);
    for (const p of fresh.parameters()) {
      const v = Array.from(p.variable.dataSync());
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      if (/bias|beta/.test(p.name)) expect(std, p.name).toBe(0);
      else if (/gamma/.test(p.name)) expect(Array.from(v).every((g) => g === 1)).toBe(true);
      else {
        const want = /out_kernel|ff2\/kernel/.test(p.name) ? 0.02 / Math.sqrt(2 * layers) : 0.02;
        // The sample std of n ≥ 3,200 normal draws is within 5 % of σ with overwhelming probability.
        expect(Math.abs(std / want - 1), `${p.name}: std ${std}, want ${want}`).toBeLessThan(0.05);
      }
    }
  });
});

describe('BERT equals the paper (post-norm encoder, GELU, masked-LM head, ε = 1e-12)', () => {
  it('outputs and gradients with padding, with identical weights', () =>
    tf.tidy(() => {
      const [vocab, d, heads, layers, t] = [13, 16, 2, 2, 6];
      const { model, w } = build({ type: 'bert', vocabSize: vocab, maxLength: 8, dModel: d, numHeads: heads, layers, dropout: 0 });
      const x = tf.tensor2d([1, 5, 7, 9, 2, 0, 1, 4, 12, 2, 0, 0], [2, t], 'int32'); // 0 is padding
      const eps = 1e-12;
      compare(model, x, () => {
        const E = w('bert/token_embedding/embeddings');
        const keep = tf.cast(tf.notEqual(x, 0), 'float32');
        let h = layerNorm(
          tf.add(tf.gather(E, x), tf.slice(w('bert/position_embedding/positions'), [0, 0], [t, d])),
          w('bert/embedding_norm/gamma'),
          w('bert/embedding_norm/beta'),
          eps,
        );
        for (let i = 1; i <= layers; i++) {
          const p = `bert/encoder_${i}`;
          h = layerNorm(tf.add(h, attention(h, h, `${p}/attention`, w, heads, keysAllowed(keep, t))), w(`${p}/norm1/gamma`), w(`${p}/norm1/beta`), eps);
          const f = dense(geluErf(dense(h, w(`${p}/ff1/kernel`), w(`${p}/ff1/bias`))), w(`${p}/ff2/kernel`), w(`${p}/ff2/bias`));
          h = layerNorm(tf.add(h, f), w(`${p}/norm2/gamma`), w(`${p}/norm2/beta`), eps);
        }
        const m = layerNorm(
          geluErf(dense(h, w('bert/mlm_transform/kernel'), w('bert/mlm_transform/bias'))),
          w('bert/mlm_norm/gamma'),
          w('bert/mlm_norm/beta'),
          eps,
        );
        return tf.add(tf.reshape(tf.matMul(tf.reshape(m, [-1, d]), E, false, true), [2, t, vocab]), w('bert/mlm_output_bias'));
      });
    }));

  it('initializes as BERT: weight matrices from the truncated normal (σ 0.02, cut at 2σ), biases 0', () => {
    const { model } = build({ type: 'bert', vocabSize: 60, maxLength: 64, dModel: 64, numHeads: 4, layers: 2, dropout: 0 });
    const fresh = buildModel(model.spec as never, registry);
    fresh.build(fresh.inputShape, new Rng(5));
    models.push(fresh);
    for (const p of fresh.parameters()) {
      const v = Array.from(p.variable.dataSync());
      if (/bias|beta/.test(p.name))
        expect(
          v.every((x) => x === 0),
          p.name,
        ).toBe(true);
      else if (/gamma/.test(p.name))
        expect(
          v.every((x) => x === 1),
          p.name,
        ).toBe(true);
      else {
        expect(Math.max(...v.map(Math.abs)), p.name).toBeLessThanOrEqual(0.04 + 1e-7);
        // A normal cut at ±2σ has std 0.8796σ.
        const std = Math.sqrt(v.reduce((a, b) => a + b * b, 0) / v.length);
        expect(Math.abs(std / (0.02 * 0.8796) - 1), `${p.name}: std ${std}`).toBeLessThan(0.06);
      }
    }
  });
});

describe('the encoder-decoder equals Vaswani et al. (post-norm, √d-scaled embeddings, sinusoids, masks)', () => {
  it('outputs and gradients with padded sources and targets, with identical weights', () =>
    tf.tidy(() => {
      const [sv, tv, d, heads, ff, layers, S, T] = [9, 7, 16, 4, 24, 2, 5, 4];
      const { model, w } = build({
        type: 'transformer-seq2seq',
        srcVocab: sv,
        tgtVocab: tv,
        srcLen: S,
        tgtLen: T,
        dModel: d,
        numHeads: heads,
        ff,
        layers,
        dropout: 0,
        trimPadding: false,
      });
      // Rows [source (5) | decoder input (4)], 0 = padding after each part.
      const x = tf.tensor2d([3, 4, 8, 5, 0, 1, 6, 2, 0, 7, 3, 0, 0, 0, 1, 5, 3, 4], [2, S + T], 'int32');
      const pe = (n: number) =>
        tf.tensor2d(
          Array.from({ length: n }, (_, pos) =>
            Array.from({ length: d }, (_, i) => (i % 2 === 0 ? Math.sin : Math.cos)(pos / 10000 ** ((2 * Math.floor(i / 2)) / d))),
          ),
        );
      const post = (h: tf.Tensor, y: tf.Tensor, p: string) => layerNorm(tf.add(h, y), w(`${p}/gamma`), w(`${p}/beta`), 1e-5);
      const ffn = (h: tf.Tensor, p: string) => dense(tf.relu(dense(h, w(`${p}/ff1/kernel`), w(`${p}/ff1/bias`))), w(`${p}/ff2/kernel`), w(`${p}/ff2/bias`));
      compare(model, x, () => {
        const src = tf.slice(x, [0, 0], [2, S]);
        const tgt = tf.slice(x, [0, S], [2, T]);
        const [sKeep, tKeep] = [tf.cast(tf.notEqual(src, 0), 'float32'), tf.cast(tf.notEqual(tgt, 0), 'float32')];
        let m = tf.add(tf.mul(tf.gather(w('transformer/src_embedding/embeddings'), src), Math.sqrt(d)), pe(S));
        for (let i = 1; i <= layers; i++) {
          const p = `transformer/encoder_${i}`;
          m = post(m, attention(m, m, `${p}/attention`, w, heads, keysAllowed(sKeep, S)), `${p}/norm1`);
          m = post(m, ffn(m, p), `${p}/norm2`);
        }
        let h = tf.add(tf.mul(tf.gather(w('transformer/tgt_embedding/embeddings'), tgt), Math.sqrt(d)), pe(T));
        for (let i = 1; i <= layers; i++) {
          const p = `transformer/decoder_${i}`;
          h = post(h, attention(h, h, `${p}/self_attention`, w, heads, tf.mul(causal(2, T), keysAllowed(tKeep, T))), `${p}/norm1`);
          h = post(h, attention(h, m, `${p}/cross_attention`, w, heads, keysAllowed(sKeep, T)), `${p}/norm2`);
          h = post(h, ffn(h, p), `${p}/norm3`);
        }
        return dense(h, w('transformer/output/kernel'), w('transformer/output/bias'));
      });
    }));
});

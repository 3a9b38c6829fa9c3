/**
 * Inference speed against PyTorch (torch.inference_mode, best of the thread settings TORCH_SETTINGS, on the
 * OpenBLAS core fastest at PyTorch's products: benchmarks/peer-blas.ts), each row measured in
 * alternation with its peer: the seed's MNIST CNN at batch 1 (latency, as inferences/s) and batch 128
 * (throughput); GPT generation at batch 1 with the key/value cache (a 1-token prompt, 256 new tokens, argmax);
 * G2P beam-4 decoding in words/s. Weights are random: speed does not depend on them. Each PyTorch row also runs
 * PyTorch's dynamic int8 quantization (its `quantize_dynamic` of the Linear layers) as a second peer, so the int8
 * figure a user would compare with is in the same row. Each model also has an int8 row, loom's int8 against
 * PyTorch int8 first: the MNIST CNN in static mode (runtime/quantize.ts, calibrated), GPT and G2P in dynamic mode
 * (each product's input range read per call, as PyTorch's `quantize_dynamic`; every dense product quantized, the
 * attention projections included, docs/quantization.md).
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, expectModel, Rng, Sequential, type ForwardContext, type Model, type PluginRegistry } from '../core';
import { MIN_DEPTH, quantizeModel } from '../runtime/quantize';
import papers from '../papers/mnist-cnn';
import { GPT } from '../plugins/models/gpt';
import { TransformerSeq2Seq } from '../plugins/models/transformer-seq2seq';
import g2pPaper from '../papers/transformer';
import { TORCH_SETTINGS, best, entry, interleaved, measure, pythonPeer, type BenchEntry, type Benchmark, type PeerResult } from './harness';

/** GPT at papers/gpt's gpu preset size (the nanoGPT "baby" model), with a context that holds 1 + 256 tokens. */
export const GPT_BENCH = { type: 'gpt', vocabSize: 89, context: 320, dModel: 384, numHeads: 6, layers: 6, dropout: 0 };
export const NEW_TOKENS = 256;
/** G2P decoding: words per call, positions decoded per word, beam width. */
export const G2P_BENCH = { words: 256, steps: 12, beam: 4 };

/**
 * The benchmark's G2P sources, [words, srcLen] ids: word i has 4 + (7i mod 9) letters, letter j is
 * 3 + ((13i + 5j) mod 27), then padding (0). The PyTorch peer builds the same rows from the same formula.
 */
export function g2pSources(words: number, srcLen: number): tf.Tensor2D {
  const ids = new Int32Array(words * srcLen);
  for (let i = 0; i < words; i++) for (let j = 0; j < 4 + ((7 * i) % 9); j++) ids[i * srcLen + j] = 3 + ((13 * i + 5 * j) % 27);
  return tf.tensor2d(ids, [words, srcLen], 'int32');
}

/**
 * PyTorch fp32 and int8 (dynamic), each the best of every {@link TORCH_SETTINGS} (1 thread, 2 threads, and 2 threads
 * whose idle threads sleep), as the training peers are: which wins depends on the model and on the moment.
 */
function torchPeers(script: string, args: (threads: number) => (string | number)[], unit: string): PeerResult[] {
  return ['fp32', 'int8'].map((precision) => {
    const r = best(TORCH_SETTINGS.map(({ threads: t, env }) => pythonPeer(script, [...args(t), precision], 'PyTorch', unit, t, env)));
    return { ...r, peer: `${r.peer} ${precision}` };
  });
}

/** Ours in alternation with both PyTorch peers; the ratio is against PyTorch fp32 (the first peer). */
async function row(name: string, unit: string, ours: () => Promise<number>, detail: string, peers: () => PeerResult[]): Promise<BenchEntry> {
  let last: PeerResult[] = [];
  const r = await interleaved(ours, () => {
    last = peers();
    return last[0]!;
  });
  return entry(name, unit, r.ours, detail, [r.peer, ...last.slice(1)], 1.2);
}

/** The row groups `npm run bench -- inference --rows=...` selects from. */
export const INFERENCE_ROWS = ['mnist-b1', 'mnist-b128', 'gpt', 'g2p'] as const;
export type InferenceRow = (typeof INFERENCE_ROWS)[number];

/** The inference rows; `rows` (default all) picks groups of them: the MNIST CNN at one batch size (fp32 and int8), GPT, G2P. */
export function inference(registry: PluginRegistry, backend: string, rows: readonly InferenceRow[] = INFERENCE_ROWS): Benchmark {
  return {
    name: 'inference',
    description: 'inference vs PyTorch: MNIST CNN b1 and b128, GPT generation b1 (KV cache, 256 tokens), G2P beam-4 words/s',
    async run() {
      const out: BenchEntry[] = [];
      const ctx: ForwardContext = { training: false, rng: new Rng(0) };

      const full = papers.presets.full! as { model: never };
      for (const batch of [1, 128].filter((b) => rows.includes(`mnist-b${b}` as InferenceRow))) {
        const model = new Sequential(full.model, registry);
        model.build(undefined, new Rng(0));
        // loom's int8: static post-training quantization of the layers deep enough for int8 to pay (runtime/quantize.ts,
        // MIN_DEPTH: the 5408→64 dense layer; the convolution, k = 9, and the 64→10 head stay float32),
        // calibrated on inputs of the data's range (speed does not depend on the values).
        const calibration = tf.randomUniform([256, 28, 28, 1], 0, 1, 'float32', 4);
        const int8 = quantizeModel(model, registry, { mode: 'static', calibration }).model;
        calibration.dispose();
        const x = tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 3);
        const infer = (m: Model) => () => {
          const y = tf.tidy(() => m.apply(x, ctx));
          y.dataSync();
          y.dispose();
        };
        const unit = batch === 1 ? 'inferences/s' : 'samples/s';
        const peers = () => torchPeers('mnist_cnn_torch_infer.py', (t) => [batch, t, 3], unit);
        out.push(
          await row(`mnist-cnn infer b${batch}`, unit, () => measure(infer(model), batch, { seconds: 3, repeats: 1 }), `loom on ${backend}, fp32`, peers),
        );
        // The int8 row: ours int8 against PyTorch int8 first (its dynamic mode quantizes the Linear layers only).
        const int8Row = await row(
          `mnist-cnn infer b${batch} int8`,
          unit,
          () => measure(infer(int8), batch, { seconds: 3, repeats: 1 }),
          `loom on ${backend}, int8 static (layers of depth ≥ ${MIN_DEPTH}: dense 5408→64; conv2d and dense 64→10 float32)`,
          () => peers().reverse(),
        );
        out.push(int8Row);
        x.dispose();
        model.dispose();
        int8.dispose();
      }

      if (rows.includes('gpt')) {
        const gpt = expectModel(buildModel(GPT_BENCH, registry), GPT);
        gpt.build(undefined, new Rng(0));
        const int8 = expectModel(quantizeModel(gpt, registry, { mode: 'dynamic' }).model, GPT);
        const generate = (m: GPT) => () => m.generate([0], NEW_TOKENS, { temperature: 0, rng: new Rng(0) });
        const peers = () => torchPeers('gpt_generate_torch.py', (t) => [t, 3, NEW_TOKENS], 'tokens/s');
        const detail = `d 384, 6 layers, ${NEW_TOKENS} new tokens, KV cache`;
        out.push(
          await row(
            'gpt generate b1',
            'tokens/s',
            () => measure(generate(gpt), NEW_TOKENS, { seconds: 3, repeats: 1, warmup: 1 }),
            `loom on ${backend}, fp32, ${detail}`,
            peers,
          ),
        );
        out.push(
          await row(
            'gpt generate b1 int8',
            'tokens/s',
            () => measure(generate(int8), NEW_TOKENS, { seconds: 3, repeats: 1, warmup: 1 }),
            `loom on ${backend}, int8 dynamic (every dense product; the logits through the tied embedding float32), ${detail}`,
            () => peers().reverse(),
          ),
        );
        gpt.dispose();
        int8.dispose();
      }
      if (!rows.includes('g2p')) return out;

      // The cpu preset's model; an end-of-sequence id outside the vocabulary, so every word decodes `steps` positions.
      const g2pModel = { ...(g2pPaper.presets.cpu as { model: Record<string, unknown> }).model, dropout: 0, eosId: 999 };
      const g2p = expectModel(buildModel(g2pModel as never, registry), TransformerSeq2Seq);
      g2p.build(undefined, new Rng(0));
      const { words, steps, beam } = G2P_BENCH;
      const g2pInt8 = expectModel(quantizeModel(g2p, registry, { mode: 'dynamic' }).model, TransformerSeq2Seq);
      const src = g2pSources(words, g2p.opts.srcLen);
      const decode = (m: TransformerSeq2Seq) => () => m.beamSearch(src, beam, steps, 0.6);
      const g2pPeers = () => torchPeers('g2p_beam_torch.py', (t) => [t, 3, words, steps, beam], 'words/s');
      const g2pDetail = `the cpu preset's 3x256 model, ${steps} positions a word, ${words} words a call`;
      out.push(
        await row(
          `g2p beam${beam}`,
          'words/s',
          () => measure(decode(g2p), words, { seconds: 3, repeats: 1, warmup: 1 }),
          `loom on ${backend}, fp32, ${g2pDetail}`,
          g2pPeers,
        ),
      );
      out.push(
        await row(
          `g2p beam${beam} int8`,
          'words/s',
          () => measure(decode(g2pInt8), words, { seconds: 3, repeats: 1, warmup: 1 }),
          `loom on ${backend}, int8 dynamic (every dense product, the attention projections included), ${g2pDetail}`,
          () => g2pPeers().reverse(),
        ),
      );
      src.dispose();
      g2p.dispose();
      g2pInt8.dispose();
      return out;
    },
  };
}

/**
 * Brown et al. (2020)'s GPT architecture at small scale: a decoder-only Transformer (learned positions, pre-norm,
 * causal attention, GELU, tied embeddings) trained as a character-level language model on Moby Dick with the
 * GPT-3 recipe (AdamW β2 = 0.95, weight decay 0.1 except biases and norms, cosine decay after warm-up, gradient
 * clipping at 1.0), at the sizes of nanoGPT's shakespeare_char configurations. The corpus differs from nanoGPT's
 * (Shakespeare), so the validation losses are comparable in kind, not in value.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadModel, loadPresets, modelOptions, Rng, selectBackend, type JsonObject, type PluginRegistry, type PluginSpec } from '../../core';
import { experimentPaper, latestRunArtifacts, localStore, type Paper } from '../../runtime';
import charText from '../../plugins/data/char-text';
import gptModel, { GPT } from '../../plugins/models/gpt';
import { quantizeMode } from './quantization';

const here = path.dirname(fileURLToPath(import.meta.url));
const presets = loadPresets(path.join(here, 'presets'));

const base = experimentPaper({
  name: 'gpt',
  title: 'Brown et al. 2020: the GPT architecture, character-level on Moby Dick (small scale)',
  presets,
  presetNotes: {
    smoke: 'a 1-layer, 32-wide model on 24,000 characters, one pass: the CI check (seconds)',
    cpu: "nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, context 64, batch 12, ~2,000 steps): about 25 minutes here",
    converge:
      'the cpu model trained to convergence: up to 10 shuffled passes (20,290 steps), the cosine decay stretched over all of them, early stopping on validation loss (patience 2, the best pass restored): hours here',
    gpu: "nanoGPT shakespeare_char's size (6 layers, 6 heads, 384 wide, context 256, batch 64): for a GPU",
  },
  references: [
    {
      metric: 'val_loss',
      label: 'nanoGPT shakespeare_char, 10.65M parameters, GPU (Shakespeare, not Moby Dick)',
      value: 1.47,
      source: 'nanoGPT README (Karpathy 2023)',
    },
    { metric: 'val_loss', label: "nanoGPT's CPU configuration (Shakespeare, not Moby Dick)", value: 1.88, source: 'nanoGPT README (Karpathy 2023)' },
  ],
  scale(config) {
    const g = modelOptions(gptModel, config.model);
    const steps = config.trainer.epochs;
    const size =
      g.dModel >= 384 && g.layers >= 6
        ? "nanoGPT shakespeare_char's size"
        : g.dModel >= 128 && g.layers >= 4
          ? "nanoGPT's CPU size"
          : "SMALLER THAN nanoGPT's CPU configuration";
    return `${size}: ${g.layers} layer(s), ${g.numHeads} heads, d_model ${g.dModel}, context ${g.context}, ${steps} pass(es) over the strided windows; Moby Dick, not Shakespeare`;
  },
});

/** The paper's own method: a prompt's continuation from a trained run (also its `--predict` mode). */
interface GptPaper extends Paper {
  /** `store`: the MLflow file store to find the trained run in (default ./mlruns). */
  predict(registry: PluginRegistry, preset: string, prompt: string, options?: Record<string, string>, store?: string): Promise<string>;
}

const paper: GptPaper = {
  ...base,
  modes: [
    {
      flag: 'predict',
      value: 'PROMPT',
      help: 'continue PROMPT with the newest trained run of the preset instead of training (train the preset first)',
      options: {
        temperature: { value: 'T', type: 'number', min: 0, help: 'sampling temperature, a number >= 0; 0 picks the most likely character (default: 0.8)' },
        'top-k': { value: 'K', type: 'integer', min: 1, help: 'sample among the K most likely characters, a positive integer (default: all)' },
        length: {
          value: 'N',
          type: 'integer',
          min: 1,
          help: 'characters to generate, a positive integer (default: 200; past the context, in chunks conditioned on the last half-context)',
        },
      },
      run: async (ctx) => {
        const options = Object.fromEntries(
          Object.entries({ ...ctx.options, seed: ctx.seed })
            .filter(([, v]) => v !== undefined)
            .map(([k, v]) => [k, String(v)]),
        );
        ctx.out(await paper.predict(ctx.registry, ctx.preset, ctx.input, options, localStore(ctx.trackingUri)));
      },
    },
    quantizeMode(presets),
  ],
  /** `--predict PROMPT`: continues the prompt with the newest finished run of the preset (options: temperature, top-k, length). */
  async predict(registry: PluginRegistry, preset: string, prompt: string, options: Record<string, string> = {}, store = 'mlruns') {
    await selectBackend(registry, process.env.LOOM_BACKEND);
    const p = presets[preset];
    if (!p) throw new ConfigError('--preset', `paper "gpt" has no preset "${preset}"`);
    const gpt = loadModel(latestRunArtifacts('gpt', preset, 'model', store), registry, GPT);
    try {
      const source = registry.build(charText, (p.data as JsonObject).source as PluginSpec, 'data.source');
      const num = (k: string, d: number) => {
        const v = options[k] === undefined ? d : Number(options[k]);
        if (!Number.isFinite(v) || v < 0) throw new ConfigError(`--${k}`, `expected a non-negative number, got "${options[k]}"`);
        return v;
      };
      // Longer than the context (learned positions stop there): generate in chunks, each conditioned on the last
      // half-context of what is written so far (nanoGPT crops to the last block_size tokens at every step instead).
      const ids = source.encode(prompt.length > 0 ? prompt : '\n');
      const half = Math.floor(gpt.opts.context / 2);
      const length = Math.floor(num('length', 200));
      if (length < 1) throw new ConfigError('--length', `expected a positive integer, got "${options.length}"`);
      const topK = options['top-k'] === undefined ? undefined : Math.max(1, Math.floor(num('top-k', 0)));
      const rng = new Rng(num('seed', 0));
      const out: number[] = [];
      while (out.length < length) {
        const window = [...ids, ...out].slice(-half);
        const n = Math.min(length - out.length, gpt.opts.context - window.length);
        out.push(...(await gpt.generate(window, n, { temperature: num('temperature', 0.8), topK, rng })));
      }
      return prompt + source.decode(out);
    } finally {
      gpt.dispose();
    }
  },
};

export default paper;

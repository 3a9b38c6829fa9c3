/**
 * Every paper's smoke preset on the webgpu backend (issue 19, item 4), run as a user runs it: `loom paper <name>
 * --preset smoke --backend webgpu --max-steps K --json F` in a scratch folder, to the end: training, validation, the
 * test evaluation and the paper's own evaluation (the G2P Transformer's greedy and beam decoding and its validation
 * callback, MC dropout, BERT's fine-tuning scores), then the modes that decode from the trained model (`gpt --predict`
 * with the KV cache, `transformer --predict`). Each of these read tensors synchronously before, which webgpu in Node
 * cannot do (plugins/backends/webgpu.test.ts pins that); now they read with `await data()`.
 *
 * The same command on native-cpu (tfjs's `cpu` backend where the native addon is not built) is the reference. The
 * two train from the same initial weights and data order, so after K steps their losses and perplexities differ only by float32 rounding carried through the steps:
 * they must agree within {@link RTOL} (relative). Counted metrics (accuracy, WER, PER, precision, recall, F1) flip
 * with any near-tie among hundreds of predictions, so they are held to be finite and in range, and to agree within a
 * few examples ({@link COUNT_TOL}). The modes decode one model (the webgpu run's, in the same folder) on both backends
 * and must print the same text: sampling and beam search compare logits, which agree to float32 rounding.
 *
 * Scale: llvmpipe runs the WGSL kernels on the 2 shared CPUs, so each preset is cut with `--max-steps` (the smoke
 * presets' own size otherwise), and, where decoding or evaluation dominate, by `--set` on the number of decoded words
 * and evaluated tokens, named in each test. Skipped where Dawn finds no adapter (no Vulkan driver, or Debian 12's
 * Mesa 22), saying Dawn's reason, as webgpu.test.ts is.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddonInfo } from './native/addon';
import { webGpuAdapter } from './webgpu';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'cli/bin.mjs');
const adapter = await webGpuAdapter();
const why = adapter.ok ? '' : ` (skipped: ${adapter.reason})`;
/** The reference backend: native-cpu, much faster than tfjs's JavaScript kernels on the LSTM and BERT runs. */
const REFERENCE = nativeAddonInfo().loaded ? 'native-cpu' : 'cpu';

/**
 * Relative tolerance of webgpu's losses and perplexities against the reference's after K training steps: the two sum
 * in different orders, and Adam's normalized update carries the float32 differences on. Measured (llvmpipe against
 * native-cpu, seed 0): mnist-cnn 4.7e-6 (val_loss after 20 steps), bert 1.6e-6 (the baseline's test loss),
 * transformer 3.4e-7, variational-lstm 1.2e-7, gpt 2.1e-8; every counted metric was equal. A wrong kernel is off by
 * O(1).
 */
const RTOL = 1e-4;
/** Counted metrics: at most this many predictions of the evaluated set may differ (a near-tie flipped by rounding). */
const COUNT_TOL = 3;
/** The smoke preset's SpamAssassin test split (hard-ham-1 + spam-1): 36 emails (an accuracy of 23/36 = 63.89 % seen). */
const TEST_EMAILS = 36;

let scratch = '';
beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-papers-'));
});
afterAll(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

/** Runs the CLI in `cwd` (no backend or tracking server from the environment; one cache for every run). */
function spawnLoom(cwd: string, args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], {
    cwd,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, LOOM_BACKEND: '', MLFLOW_TRACKING_URI: '', LOOM_CACHE_DIR: path.join(scratch, 'cache') },
  });
}

/** Runs the CLI in `cwd` and returns what it printed; a failure shows the exit code and the output's tail. */
function loom(cwd: string, args: string[]): string {
  const r = spawnLoom(cwd, args);
  const tail = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => !/^Warning:|^ +- |^\s*$/.test(l)); // Dawn's warnings about llvmpipe
  expect(r.status, `loom ${args.join(' ')} exited ${r.status}:\n${tail.slice(-30).join('\n')}`).toBe(0);
  return r.stdout;
}

/** `loom paper <name> --preset smoke --backend <backend> ...args --json`, in its own folder; the summary's metrics. */
function smoke(name: string, backend: string, args: string[]): { cwd: string; metrics: Record<string, number>; out: string; backend: string } {
  const cwd = path.join(scratch, `${name}-${backend}`);
  fs.mkdirSync(cwd, { recursive: true });
  const out = loom(cwd, ['paper', name, '--preset', 'smoke', '--backend', backend, ...args, '--json', 'summary.json']);
  const summary = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8')) as { metrics: Record<string, number>; backend: string };
  return { cwd, metrics: summary.metrics, out, backend: summary.backend };
}

/** A metric that counts predictions (a whole `_`/`/`-separated part names it, as formatMetric reads rates). */
const isCounted = (metric: string) => metric.split(/[_/]/).some((p) => ['accuracy', 'wer', 'per', 'precision', 'recall', 'f1'].includes(p));

/**
 * webgpu's metrics against cpu's: the same keys, every value finite; losses and perplexities within RTOL; a counted
 * metric within `countedTol(metric)`. Returns the largest relative difference of the continuous metrics.
 */
function agree(gpu: Record<string, number>, cpu: Record<string, number>, countedTol: (metric: string) => number): number {
  expect(Object.keys(gpu).sort()).toEqual(Object.keys(cpu).sort());
  let worst = 0;
  for (const [k, want] of Object.entries(cpu)) {
    const got = gpu[k]!;
    expect(Number.isFinite(got), `${k} = ${got} on webgpu`).toBe(true);
    if (isCounted(k)) {
      expect(got, k).toBeGreaterThanOrEqual(0);
      expect(Math.abs(got - want), `${k}: webgpu ${got}, cpu ${want}`).toBeLessThanOrEqual(countedTol(k) + 1e-12);
    } else {
      const rel = Math.abs(got - want) / Math.max(1, Math.abs(want));
      worst = Math.max(worst, rel);
      expect(rel, `${k}: webgpu ${got}, cpu ${want}`).toBeLessThanOrEqual(RTOL);
    }
  }
  return worst;
}

describe.skipIf(!adapter.ok)(`every paper's smoke preset on webgpu${why}`, () => {
  it("mnist-cnn: trains 20 steps, validates and tests on the preset's 200 + 1,000 images, as cpu does", { timeout: 900_000 }, () => {
    const args = ['--max-steps', '20'];
    const gpu = smoke('mnist-cnn', 'webgpu', args);
    const cpu = smoke('mnist-cnn', REFERENCE, args);
    expect(gpu.backend).toBe('webgpu');
    expect(gpu.out).toMatch(/backend webgpu/);
    agree(gpu.metrics, cpu.metrics, (k) => COUNT_TOL / (k.startsWith('test_') ? 1000 : 200));
    expect(gpu.metrics.test_accuracy, 'above chance (10 %) after 20 steps').toBeGreaterThan(0.2);
  });

  it('gpt: trains 5 steps and validates, then --predict samples the KV-cached continuation cpu samples from the same model', { timeout: 900_000 }, () => {
    const args = ['--max-steps', '5'];
    const gpu = smoke('gpt', 'webgpu', args);
    const cpu = smoke('gpt', REFERENCE, args);
    agree(gpu.metrics, cpu.metrics, () => 0);
    const predict = (backend: string) =>
      loom(gpu.cwd, [
        'paper',
        'gpt',
        '--preset',
        'smoke',
        '--predict',
        'Call me ',
        '--length',
        '30',
        '--top-k',
        '5',
        '--temperature',
        '0.8',
        '--backend',
        backend,
      ]);
    const text = predict('webgpu');
    expect(text).toMatch(/(^|\n)Call me [\s\S]{30}\n$/);
    expect(text).toBe(predict(REFERENCE));
    // --backend reaches the mode (it selected its backend from LOOM_BACKEND only, so --backend was ignored there).
    const bogus = spawnLoom(gpu.cwd, ['paper', 'gpt', '--predict', 'Call me ', '--backend', 'no-such-backend']);
    expect([bogus.status, bogus.stderr]).toEqual([2, expect.stringMatching(/unknown backend "no-such-backend"/)]);
  });

  it('transformer: trains 10 steps with the G2P validation callback, decodes 50 test words greedily and with beam 4, scores the checkpoint average, and --predict transcribes', {
    timeout: 900_000,
  }, () => {
    // The preset decodes 200 test words and 100 validation words; 50 and 20 here (decoding runs one small kernel per position).
    const args = ['--max-steps', '10', '--set', 'g2p.testWords=50', '--set', 'callbacks.0.words=20', '--set', 'trainer.checkpoint.everySteps=5'];
    const gpu = smoke('transformer', 'webgpu', args);
    const cpu = smoke('transformer', REFERENCE, args);
    for (const k of ['test_wer_greedy', 'test_per_greedy', 'test_wer_beam', 'test_per_beam', 'test_wer_greedy_avg', 'test_wer_beam_avg'])
      expect(gpu.metrics[k], k).toBeGreaterThanOrEqual(0);
    expect(gpu.metrics.test_avg_checkpoints).toBe(2);
    // WER counts the 50 test words (20 validation words); a word flipped by a near-tie moves PER by its share of the
    // phonemes (~1/50 of them, up to twice that for a long wrong output): COUNT_TOL words' worth, twice over.
    agree(gpu.metrics, cpu.metrics, (k) => (COUNT_TOL / (k.startsWith('val_') ? 20 : 50)) * (k.split('_').includes('per') ? 2 : 1));
    const predict = (backend: string) => loom(gpu.cwd, ['paper', 'transformer', '--preset', 'smoke', '--predict', 'hello', '--backend', backend]);
    const said = predict('webgpu'); // after 10 steps the model may end the word at once, which it says
    expect(said).toMatch(/^HELLO {2}(\(no phonemes|[A-Z]+)/m);
    expect(said).toBe(predict(REFERENCE));
    // A word it cannot spell is the user's error (exit 2), not the model's.
    const bad = spawnLoom(gpu.cwd, ['paper', 'transformer', '--preset', 'smoke', '--predict', 'h3llo']);
    expect([bad.status, bad.stderr]).toEqual([2, expect.stringMatching(/cannot spell "h3llo"/)]);
  });

  it('variational-lstm: the three variants train 5 steps and are scored, and MC dropout (2 samples) evaluates, as cpu does', { timeout: 900_000 }, () => {
    // The preset keeps 20,000 tokens of each split; 7,000 here (10 windows of 20 × 35 to validate and test on).
    const args = ['--max-steps', '5', '--set', 'data.source.maxTokens=7000'];
    const gpu = smoke('variational-lstm', 'webgpu', args);
    const cpu = smoke('variational-lstm', REFERENCE, args);
    for (const v of ['none', 'naive', 'variational', 'variational-mc']) expect(gpu.metrics[`${v}/test_perplexity`], v).toBeGreaterThan(1);
    agree(gpu.metrics, cpu.metrics, () => 0);
  });

  it('bert: pretrains, fine-tunes from the pretrained encoder and from scratch, and scores the baseline, 5 steps each, as cpu does', {
    timeout: 900_000,
  }, () => {
    const args = ['--max-steps', '5'];
    const gpu = smoke('bert', 'webgpu', args);
    const cpu = smoke('bert', REFERENCE, args);
    for (const v of ['finetune-pretrained', 'finetune-scratch', 'baseline-bow'])
      for (const k of ['accuracy', 'precision', 'recall', 'f1']) expect(gpu.metrics[`${v}/test_${k}`], `${v} ${k}`).toBeLessThanOrEqual(1);
    agree(gpu.metrics, cpu.metrics, (k) => (k.startsWith('pretrain/') ? RTOL : COUNT_TOL / TEST_EMAILS));
  });
});

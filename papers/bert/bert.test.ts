/**
 * The BERT smoke preset as a user runs it: a WordPiece vocabulary, masked-LM pretraining, fine-tuning with and
 * without the pretrained encoder, and the bag-of-words baseline, each a tracked run with test scores.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'cli/bin.mjs');

describe('bert smoke preset', () => {
  it('pretrains, fine-tunes from the pretrained encoder and from scratch, and scores the baseline', { timeout: 900_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bert-'));
    try {
      const out = execFileSync(process.execPath, [cli, 'paper', 'bert', '--preset', 'smoke', '--json', 'summary.json'], { cwd, encoding: 'utf8' });
      const { metrics } = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
      // Pretraining learns something: a uniform guess over the 600-piece vocabulary has a loss of ln 600 = 6.40.
      expect(metrics['pretrain/val_loss']).toBeLessThan(6.3);
      for (const v of ['finetune-pretrained', 'finetune-scratch', 'baseline-bow']) {
        for (const k of ['accuracy', 'precision', 'recall', 'f1']) expect(metrics[`${v}/test_${k}`], `${v} ${k}`).toBeGreaterThanOrEqual(0);
      }
      // The baseline separates ham from spam well above the majority class (spam-1 is ~2/3 of these groups).
      expect(metrics['baseline-bow/test_accuracy']).toBeGreaterThan(0.8);
      expect(out).toMatch(/SMALLER THAN BERT-base/);
      const exp = fs.readdirSync(path.join(cwd, 'mlruns')).find((d) => d !== '0')!;
      expect(fs.readdirSync(path.join(cwd, 'mlruns', exp)).filter((d) => d !== 'meta.yaml')).toHaveLength(4);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('few-shot curves: one pretrained encoder, sizes × seeds × 3 runs on shared subsets, a table and a plot; a rerun reuses all of it', {
    timeout: 900_000,
  }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bert-few-'));
    try {
      const run = () => {
        const out = execFileSync(process.execPath, [cli, 'paper', 'bert', '--preset', 'few-shot-smoke', '--json', 'summary.json'], { cwd, encoding: 'utf8' });
        return { out, metrics: JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8')).metrics as Record<string, number> };
      };
      const runsOf = () => {
        const exp = fs.readdirSync(path.join(cwd, 'mlruns')).find((d) => d !== '0')!;
        return fs.readdirSync(path.join(cwd, 'mlruns', exp)).filter((d) => d !== 'meta.yaml');
      };
      const first = run();
      // Pretraining once, then 2 sizes × 2 seeds × (pretrained, scratch, bag-of-words).
      expect(runsOf()).toHaveLength(1 + 2 * 2 * 3);
      for (const size of ['20', 'all'])
        for (const v of ['finetune-pretrained', 'finetune-scratch', 'baseline-bow'])
          for (const m of ['accuracy', 'f1']) {
            const mean = first.metrics[`few-shot/${size}/${v}/${m}_mean`]!;
            expect(mean, `${size} ${v} ${m}`).toBeGreaterThanOrEqual(0);
            expect(mean).toBeLessThanOrEqual(1);
            expect(first.metrics[`few-shot/${size}/${v}/${m}_std`]).toBeGreaterThanOrEqual(0);
          }
      expect(first.metrics['pretrain/val_loss']).toBeLessThan(Math.log(600));
      // The encoder is cached, and the pretraining's checkpoints beside it (an interrupted pretraining continues there).
      const cache = fs.readdirSync(path.join(cwd, 'cache/bert'));
      expect(cache.filter((f) => /^encoder-[0-9a-f]{16}\.(bin|json)$/.test(f))).toHaveLength(2);
      const ckpts = cache.find((f) => f.startsWith('pretrain-'))!;
      expect(fs.readdirSync(path.join(cwd, 'cache/bert', ckpts)).some((f) => f.startsWith('ckpt-'))).toBe(true);
      for (const ext of ['md', 'svg', 'json']) expect(fs.existsSync(path.join(cwd, 'results', `bert-few-shot-few-shot-smoke.${ext}`)), ext).toBe(true);
      expect(fs.readFileSync(path.join(cwd, 'results/bert-few-shot-few-shot-smoke.md'), 'utf8')).toMatch(/^\| 20 \| .*\n\| all \(\d+\) \| /m);
      const second = run();
      expect(runsOf(), 'a rerun trains nothing').toHaveLength(13);
      expect(second.metrics).toEqual(first.metrics);
      expect(second.out).toMatch(/pretrained encoder reused from cache/);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

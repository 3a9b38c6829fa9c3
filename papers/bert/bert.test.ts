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
});

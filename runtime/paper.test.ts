/**
 * The results table a paper run prints (formatComparison, formatMetric) and the sources its references cite:
 * rates in percent and nothing else, every row naming its metric, and every file a reference or a paper's README
 * points to present in the repository.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { papers } from '../papers';
import { parseExperimentConfig } from '../core';
import { cutShortNotes, formatComparison, formatMetric, type PaperResult } from './paper';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('results tables', () => {
  it('prints rates (accuracy, WER, PER) in percent and perplexity as a number', () => {
    // Before: "_per" matched inside "test_perplexity", so 3.9989 was printed as "399.89 %".
    expect(formatMetric(3.9989, 'test_perplexity')).toBe('4.00');
    expect(formatMetric(82.7, 'variational/test_perplexity')).toBe('82.7');
    expect(formatMetric(252, 'naive/test_perplexity')).toBe('252.0');
    expect(formatMetric(0.9839, 'test_accuracy')).toBe('98.39 %');
    expect(formatMetric(0.985, 'finetune-pretrained/test_accuracy')).toBe('98.50 %');
    expect(formatMetric(0.206, 'test_wer_beam')).toBe('20.60 %');
    expect(formatMetric(0.051, 'test_per_greedy')).toBe('5.10 %');
    expect(formatMetric(1.47, 'val_loss')).toBe('1.4700');
    expect(formatMetric(0.5, 'test_persistence')).toBe('0.5000');
  });

  it('names the metric of every row (the GPT table compared val_loss without saying so)', () => {
    const gpt = papers.gpt!;
    const result: PaperResult = {
      paper: 'gpt',
      preset: 'smoke',
      backend: 'cpu',
      seed: 0,
      metrics: { val_loss: 2.5 },
      wallTimeSec: 1,
      commit: 'abcdef0123456789',
      mlflow: { runId: 'r', experimentId: 'e', location: '/tmp/x' },
      scale: 'tiny',
      comparison: gpt.references.map((r) => ({ metric: r.metric, label: r.label, measured: 2.5, reference: r.value, source: r.source })),
    };
    const lines = formatComparison(result).split('\n');
    const head = lines.findIndex((l) => /^\s+metric\s+measured\s+reference\s+source/.test(l));
    expect(head).toBeGreaterThan(0);
    // The measured value once, on a row that says it is this run's; each reference row only its own value.
    expect(lines[head + 1]).toMatch(/^measured by this run \(seed 0\) +val_loss +2\.5000$/);
    const refs = lines.slice(head + 2, head + 2 + gpt.references.length);
    expect(refs).toHaveLength(2);
    for (const row of refs) {
      expect(row).toMatch(/ {2}val_loss {2,}1\.(47|88)00 {2,}nanoGPT README/);
      expect(row).not.toContain('2.5000');
    }
  });

  it('says when a run did not train its whole recipe: cut by --max-steps, or ended early', () => {
    const config = (over: Record<string, unknown>) =>
      parseExperimentConfig({
        experiment: 'x',
        data: { source: 'mnist' },
        model: { inputShape: [1], layers: ['flatten'] },
        loss: 'mse',
        optimizer: 'sgd',
        trainer: { epochs: 5, batchSize: 8, ...over },
      });
    expect(cutShortNotes(config({ maxSteps: 800 }), 1)).toEqual([
      'CUT SHORT: trainer.maxSteps = 800 (--max-steps) stopped training after 800 optimizer steps, in epoch 1 of 5: not the recipe above',
    ]);
    expect(cutShortNotes(config({ maxSteps: 10_000 }), 5)[0]).toMatch(/capped training at 10000 optimizer steps/);
    expect(cutShortNotes(config({}), 3)).toEqual(['training ended after 3 of 5 epochs (early stopping)']);
    expect(cutShortNotes(config({}), 5)).toEqual([]);
    // The weights tested: an earlier epoch's where early stopping restored one, said whether or not it stopped early.
    expect(cutShortNotes(config({}), 3, 1)).toEqual([
      'training ended after 3 of 5 epochs (early stopping)',
      "the model tested is epoch 1's, restored by early stopping",
    ]);
    expect(cutShortNotes(config({}), 5, 2)).toEqual(["the model tested is epoch 2's, restored by early stopping"]);
    expect(cutShortNotes(config({}), 5, 5)).toEqual([]);
  });
});

describe('paper references', () => {
  /** Repository paths a text cites: `dir/file.ext` tokens, in backticks, parentheses or plain text. */
  const cited = (text: string) => [...text.matchAll(/(?:\.\.\/)*[\w.-]+(?:\/[\w.-]+)+\.(?:md|ts|json|py|mjs|txt|cc|h)\b/g)].map((m) => m[0]);

  /** Whether `p`, relative to `from`, is a file inside the repository (a path may not climb out of it). */
  const inRepo = (from: string, p: string) => {
    const abs = path.resolve(from, p);
    return abs.startsWith(repo + path.sep) && fs.existsSync(abs);
  };

  it('cite only files that are in the repository (references and each paper README)', () => {
    // Before: the mnist-cnn references cited shared/ARCHITECTURE.md, which lies outside the repository.
    const missing: string[] = [];
    for (const paper of Object.values(papers)) {
      for (const r of paper.references) {
        for (const p of cited(`${r.label} ${r.source}`)) if (!inRepo(repo, p)) missing.push(`${paper.name} reference: ${p}`);
      }
      const dir = path.join(repo, 'papers', paper.name);
      const readme = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
      for (const p of cited(readme)) if (!inRepo(repo, p) && !inRepo(dir, p)) missing.push(`papers/${paper.name}/README.md: ${p}`);
    }
    expect(missing).toEqual([]);
  });
});

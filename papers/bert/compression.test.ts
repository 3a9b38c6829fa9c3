/**
 * `loom paper bert --preset smoke --compression prune` as a user runs it, in a scratch folder: the dense and the
 * pruned classifier are fine-tuned and scored, and the sparsity the table reports is the one in the saved weights:
 * loaded back, every encoder kernel (and nothing else) is masked with at least ⌊s·n⌋ zeros, and the sparse artifact
 * stores 8 bytes per kept weight of those (smaller than dense from 50 % on). Then `--prune-heads all` on the dense
 * classifier: with no head pruned it scores what the run scored.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../core';
import { testRegistry } from '../../test/harness';
import type { BertCompressionRun } from './compression';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'cli/bin.mjs');

/** A scratch working directory holding the smoke preset's vocabulary when this checkout has it (else the run trains it). */
function scratch(): string {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bert-compression-'));
  const vocab = path.join(repo, 'cache', 'bert', 'wordpiece-smoke-600.json');
  if (fs.existsSync(vocab)) {
    fs.mkdirSync(path.join(cwd, 'cache', 'bert'), { recursive: true });
    fs.copyFileSync(vocab, path.join(cwd, 'cache', 'bert', 'wordpiece-smoke-600.json'));
  }
  return cwd;
}

describe('bert --compression', () => {
  it('refuses an unknown value and an unknown --prune, naming the flag (exit 2, no stack trace)', () => {
    const cwd = scratch();
    try {
      for (const [args, flag] of [
        [['--compression', 'distill'], '--compression'],
        [['--compression', 'prune', '--prune', 'heads'], '--prune'],
        [['--compression', 'prune', '--sparsities', '50,100'], '--sparsities'],
      ] as const) {
        const r = spawnSync(process.execPath, [cli, 'paper', 'bert', '--preset', 'smoke', ...args], { cwd, encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr).toContain(flag);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('fine-tunes dense and pruned classifiers; the reported sparsity is that of the saved weights', { timeout: 900_000 }, async () => {
    const cwd = scratch();
    try {
      const args = ['paper', 'bert', '--preset', 'smoke', '--compression', 'prune', '--sparsities', '50,90', '--json', 'out.json'];
      const stdout = execFileSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', env: { ...process.env, LOOM_THREADS: '1' } });
      const out = JSON.parse(fs.readFileSync(path.join(cwd, 'out.json'), 'utf8'));
      const runs = out.runs as BertCompressionRun[];
      expect(Object.keys(out.summary.accuracy)).toEqual(['dense', 'pruned-50', 'pruned-90']);
      expect(stdout).toMatch(/^pruned-90\s+1\s+\d+\.\d\d %/m); // the table's row
      expect(out).toMatchObject({ preset: 'smoke', prune: 'encoder', seeds: [0], epochs: 2 });
      const registry = await testRegistry();
      for (const r of runs) {
        for (const v of [r.test_accuracy, r.test_f1, r.test_precision, r.test_recall]) expect(v >= 0 && v <= 1).toBe(true);
        expect(r.artifact).not.toBeNull();
        const model = loadModel(path.resolve(cwd, r.artifact!), registry);
        try {
          const masked = model.weights().filter((p) => p.mask);
          if (r.group === 'dense') {
            expect(masked).toEqual([]);
            expect(r.sparsity).toBeUndefined();
            continue;
          }
          const s = Number(r.group.slice('pruned-'.length)) / 100;
          // The smoke model's one encoder layer: q,k,v 32×96, W^O 32×32, feed-forward 32×128 and 128×32.
          expect(masked.map((p) => p.name)).toEqual([
            'bert/encoder_1/attention/qkv_kernel',
            'bert/encoder_1/attention/out_kernel',
            'bert/encoder_1/ff1/kernel',
            'bert/encoder_1/ff2/kernel',
          ]);
          let zeros = 0;
          let n = 0;
          for (const p of masked) {
            const v = p.variable.dataSync();
            const z = v.filter((x) => x === 0).length;
            expect(z).toBeGreaterThanOrEqual(Math.floor(s * v.length));
            expect(p.mask!.dataSync().filter((x) => x === 0).length).toBe(Math.floor(s * v.length));
            zeros += z;
            n += v.length;
          }
          expect(r.sparsity!.pruned).toBeCloseTo(zeros / n, 12);
          expect(r.sparsity!.pruned).toBeGreaterThanOrEqual(s - 1e-3);
          // Sparse storage: 8 bytes (index and value) per kept weight of the masked tensors instead of 4 per weight;
          // model.json differs by the masks' entries (under 2 kB).
          const kept = masked.reduce((a, p) => a + p.mask!.dataSync().filter((x) => x !== 0).length, 0);
          expect(Math.abs(r.bytes.sparse! - (r.bytes.dense - 4 * n + 8 * kept))).toBeLessThan(2000);
          if (s >= 0.75) expect(r.bytes.sparse!).toBeLessThan(r.bytes.dense);
        } finally {
          model.dispose();
        }
      }
      // Michel et al.'s head pruning on the fine-tuned dense classifier (the smoke model has 1 layer × 2 heads): no
      // head pruned scores what the run scored on the same test split; every row is a proper score.
      const dense = runs.find((r) => r.group === 'dense')!;
      execFileSync(process.execPath, [cli, 'paper', 'bert', '--prune-heads', 'all', '--saved-model', dense.artifact!, '--json', 'heads.json'], {
        cwd,
        encoding: 'utf8',
      });
      const heads = JSON.parse(fs.readFileSync(path.join(cwd, 'heads.json'), 'utf8')) as {
        heads: number;
        rows: { pruned: number; accuracy: number; f1: number }[];
      };
      expect(heads.heads).toBe(2);
      expect(heads.rows.map((r) => r.pruned)).toEqual([0, 1, 2]);
      expect(heads.rows[0]).toMatchObject({ accuracy: dense.test_accuracy, f1: dense.test_f1 });
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

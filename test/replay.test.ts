/**
 * A committed run record can be replayed: the same paper, preset and seed, stopped after N optimizer steps
 * (`--max-steps N`), logs the record's first losses bit for bit, on the record's SIMD level and thread count
 * (results are deterministic for a given instruction set and thread count, not across them: see
 * test/determinism.test.ts). The record here is papers/mnist-cnn/results/smoke-seed0.json, made with
 * LOOM_SIMD=avx2 so that any x86-64 machine with AVX2 can replay it.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { RunRecordFile } from '../cli/records';
import { readStore } from '../cli/records';
import { nativeAddonInfo } from '../plugins/backends/native-kernels';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const record = JSON.parse(fs.readFileSync(path.join(repo, 'papers/mnist-cnn/results/smoke-seed0.json'), 'utf8')) as RunRecordFile;
const info = nativeAddonInfo();
const avx2 = process.arch === 'x64' && /\bavx2\b/.test(fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '');
const why = !info.loaded ? `the native addon is absent (${info.reason})` : !avx2 ? 'the record was made with AVX2 kernels and this CPU has no AVX2' : '';
if (why) console.warn(`replay test skipped: ${why}`);

describe('replaying a run record', () => {
  it.skipIf(!!why)("the first 30 steps of mnist-cnn smoke seed 0 log the record's losses exactly", () => {
    expect(record.machine).toMatchObject({ simd: 'avx2', backend: 'native-cpu' });
    const steps = 30;
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-replay-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, LOOM_SIMD: record.machine.simd, LOOM_THREADS: record.machine.threads, MLFLOW_TRACKING_URI: '' };
      delete env.LOOM_GEMM;
      execFileSync(
        process.execPath,
        [path.join(repo, 'cli/bin.mjs'), 'paper', record.paper, '--preset', record.preset, '--seed', String(record.seed), '--max-steps', String(steps)],
        { cwd, env, encoding: 'utf8' },
      );
      const [run] = readStore(path.join(cwd, 'mlruns'));
      const replayed = run!.metrics.batch_loss!;
      const recorded = record.run.metrics.batch_loss!.filter(([s]) => s <= steps);
      expect(recorded.length).toBeGreaterThanOrEqual(3);
      expect(replayed).toEqual(recorded);
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});

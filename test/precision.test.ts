/**
 * `trainer.precision: 'bf16'` (core/config.ts; native/src/bf16.h): a run on native-cpu computes its matrix products
 * (dense layers, the convolution's im2col product, forward and backward) with bf16 operands and fp32 sums, keeping fp32
 * weights, gradients and Adam's state, on each bf16 path this CPU runs (portable everywhere; avx512_bf16 where the
 * CPU has it). On toy data (a small CNN on 8×8 images of three classes, 3 epochs of Adam):
 *   - each epoch's training loss is within 2 % (relative) of the fp32 run's, and the test accuracy within 0.1: bf16
 *     keeps 8 significant bits of each operand, a relative perturbation of at most 2^-8 per product (measured here,
 *     LOOM_SIMD unset: at most 0.15 % apart over the 3 epochs, on both paths);
 *   - the bf16 run is not the fp32 run (its losses differ: the rounding took effect);
 *   - the same seed twice gives bit-identical losses and the same test accuracy;
 *   - the run's tags record the precision and the kernel (`backend.precision`), and fp32 is back when the run ends;
 *   - on a backend that cannot (tfjs's cpu), bf16 is refused with a ConfigError naming trainer.precision, before a
 *     run is tracked (and by a Learner, which sets no precision); `loom train --precision` takes fp32 or bf16 and refuses anything else, naming the flag (exit 2).
 * Skips (with the reason printed) only when the addon did not build.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run as cli } from '../cli/loom';
import { ConfigError, TOKENS, type Backend, type PluginRegistry } from '../core';
import { nativeAddonInfo } from '../plugins/backends/native-kernels';
import { loadAddon } from '../plugins/backends/native/addon';
import { Learner, runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

const info = nativeAddonInfo();
if (!info.loaded) console.warn(`precision tests skipped: ${info.reason}`);

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-precision-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const quiet = () => undefined;
const config = (precision?: 'fp32' | 'bf16') =>
  toyConfig(path.join(dir, 'mlruns'), {
    seed: 3,
    data: { source: { type: 'toy-blobs', size: 96, imageSize: 8 } },
    model: {
      inputShape: [8, 8, 1],
      layers: [
        { type: 'conv2d', filters: 4, kernelSize: 3, activation: 'relu' },
        { type: 'flatten' },
        { type: 'dense', units: 16, activation: 'relu' },
        { type: 'dense', units: 3 },
      ],
    },
    optimizer: { type: 'adam', lr: 0.01 },
    trainer: { epochs: 3, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { enabled: false }, ...(precision ? { precision } : {}) },
  });

/** native-cpu whose bf16 is the given addon mode (2 portable, 3 avx512_bf16, 4 AMX, 5 emulated AMX), to train on each path. */
function nativeOnPath(mode: number): Backend {
  const native = registry.create('backend', 'native-cpu');
  const addon = loadAddon()!;
  return {
    spec: native.spec,
    priority: native.priority,
    available: (requested) => native.available(requested),
    activate: () => native.activate(),
    setPrecision: (p) => {
      addon.setPrecision(p === 'bf16' ? mode : 0);
      return { 'backend.precision': addon.info().precision! };
    },
  };
}

async function train(precision: 'fp32' | 'bf16' | undefined, mode?: number) {
  const override = mode === undefined ? undefined : (c: import('tsyringe').DependencyContainer) => c.register(TOKENS.Backend, { useValue: nativeOnPath(mode) });
  const r = await runExperiment({ registry, config: config(precision), backend: 'native-cpu', log: quiet, override, handleSignals: false });
  return { losses: r.history.map((e) => e.loss!), accuracy: r.test!.accuracy!, tags: r.tags };
}

describe.skipIf(!info.loaded)(`trainer.precision bf16 (best path here: ${info.bf16})`, () => {
  // 2 portable, 3 avx512_bf16 where the CPU has it, 4 AMX where it runs, 5 AMX's loop on emulated tiles (anywhere).
  const vdp = info.bf16 === 'avx512_bf16' || info.bf16 === 'amx';
  const modes = [2, ...(vdp ? [3] : []), ...(info.bf16 === 'amx' ? [4] : []), 5];
  const NAMES: Record<number, string> = { 2: 'bf16 (portable)', 3: 'bf16 (avx512_bf16)', 4: 'bf16 (amx)', 5: 'bf16 (amx, emulated)' };

  it('trains close to fp32 on each path, deterministically, and records the precision', async () => {
    const fp32 = await train(undefined);
    expect(fp32.tags['backend.precision']).toBe('fp32');
    for (const mode of modes) {
      const bf16 = await train('bf16', mode);
      const name = NAMES[mode]!;
      expect(bf16.tags['backend.precision']).toBe(name);
      expect(loadAddon()!.info().precision, 'fp32 again after the run').toBe('fp32');
      bf16.losses.forEach((l, e) =>
        expect(Math.abs(l - fp32.losses[e]!), `${name}, epoch ${e}: ${l} vs fp32 ${fp32.losses[e]}`).toBeLessThanOrEqual(0.02 * fp32.losses[e]!),
      );
      expect(Math.abs(bf16.accuracy - fp32.accuracy)).toBeLessThanOrEqual(0.1);
      expect(bf16.losses, `${name}: the rounding took effect`).not.toEqual(fp32.losses);
      const again = await train('bf16', mode);
      expect(again.losses, `${name}: same seed, same bits`).toEqual(bf16.losses);
      expect(again.accuracy).toBe(bf16.accuracy);
    }
    // The best path, as a plain run selects it.
    const best = await train('bf16');
    expect(best.tags['backend.precision']).toBe(`bf16 (${info.bf16})`);
  }, 120_000);

  it('is refused on a backend that computes in fp32 only, naming trainer.precision, before a run is tracked', async () => {
    const store = path.join(dir, 'refused');
    const cfg = { ...config('bf16'), trackers: [{ type: 'mlflow-file', root: store }] };
    const before = tf.memory().numTensors;
    const run = runExperiment({ registry, config: cfg, backend: 'cpu', log: quiet, handleSignals: false });
    await expect(run).rejects.toThrow(ConfigError);
    await expect(run).rejects.toThrow(/^trainer\.precision: bf16 needs a backend that computes matrix products in bf16 \(native-cpu\); backend "cpu"/);
    expect(tf.memory().numTensors, 'refused before the data and the model are built').toBe(before);
    expect(fs.existsSync(store), 'nothing tracked').toBe(false);
  });

  it('a Learner refuses bf16 (it sets no precision on the backend) instead of training in fp32 unnoticed', async () => {
    const learner = await Learner.create({
      registry,
      backend: 'native-cpu',
      model: config().model,
      loss: 'sparse-categorical-crossentropy',
      optimizer: 'adam',
    });
    const x = tf.zeros([4, 8, 8, 1]),
      y = tf.zeros([4], 'int32');
    await expect(learner.fit({ x, y }, { precision: 'bf16' })).rejects.toThrow(
      /^precision: bf16 is set for a run \(runExperiment, loom train, loom paper\); a Learner trains in fp32$/,
    );
    tf.dispose([x, y]);
    learner.dispose();
  });

  it('loom train --precision: bf16 on cpu and an unknown precision are refused with exit code 2, naming the field or flag', async () => {
    const file = path.join(dir, 'mlp.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        ...config(),
        model: { ...config().model, inputShape: [28, 28, 1] },
        data: { source: { type: 'mnist' } },
        trackers: [{ type: 'mlflow-file', root: path.join(dir, 'cli') }],
      }),
    );
    const call = async (...args: string[]) => {
      const err: string[] = [];
      const cache = process.env.LOOM_CACHE_DIR;
      process.env.LOOM_CACHE_DIR = path.join(dir, 'empty-cache'); // refused before MNIST is read: no download, no cache needed
      const code = await cli(['train', file, ...args], { out: () => undefined, err: (t) => err.push(t) }).finally(() => {
        if (cache === undefined) delete process.env.LOOM_CACHE_DIR;
        else process.env.LOOM_CACHE_DIR = cache;
      });
      return { code, err: err.join('\n') };
    };
    expect(await call('--precision', 'bf17')).toEqual({ code: 2, err: 'loom: --precision: must be fp32 or bf16, got "bf17"' });
    const refused = await call('--precision', 'bf16', '--backend', 'cpu', '--set', 'data.trainLimit=8', '--set', 'data.testLimit=8');
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/^loom: trainer\.precision: bf16 needs a backend that computes matrix products in bf16 \(native-cpu\); backend "cpu"/);
    expect(fs.existsSync(path.join(dir, 'cli')), 'nothing tracked').toBe(false);
  });
});

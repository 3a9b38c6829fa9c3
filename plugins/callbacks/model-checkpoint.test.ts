/** Model checkpoints: the best epoch's weights are the ones saved; per-epoch mode keeps the last `keep`. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadModel, Rng, Sequential, type Callback, type PluginRegistry, type TrainingState } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-ckpt-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Plays epochs whose weights are all set to the epoch number and whose val_loss follows `losses`. */
async function play(cb: Callback, losses: number[], isGlobalZero = true): Promise<Sequential> {
  const model = new Sequential({ inputShape: [2], layers: [{ type: 'dense', units: 1 }] }, registry);
  model.build(undefined, new Rng(0));
  const state = { model, epoch: 0, step: 0, epochs: losses.length, stepsPerEpoch: 1, stopTraining: false, isGlobalZero } as unknown as TrainingState;
  cb.onTrainBegin?.(state);
  for (const [e, l] of losses.entries()) {
    state.epoch = e;
    for (const p of model.parameters()) p.variable.assign(tf.fill(p.variable.shape, e + 1));
    await cb.onEpochEnd?.(state, { val_loss: l });
  }
  return model;
}

const firstWeight = (d: string) => {
  const m = loadModel(d, registry);
  const v = m.parameters()[0]!.variable.dataSync()[0]!;
  m.dispose();
  return v;
};

describe('model-checkpoint', () => {
  it('saveBestOnly keeps the weights of the best epoch', async () => {
    const model = await play(registry.create('callback', { type: 'model-checkpoint', dir, saveBestOnly: true }), [3, 1, 2, 1.5]);
    expect(firstWeight(path.join(dir, 'best'))).toBe(2); // epoch 2 (loss 1) was best
    model.dispose();
  });

  it('per-epoch mode keeps the last `keep` checkpoints', async () => {
    const model = await play(registry.create('callback', { type: 'model-checkpoint', dir, keep: 2 }), [3, 2, 1, 0]);
    expect(fs.readdirSync(dir).sort()).toEqual(['epoch-3', 'epoch-4']);
    expect(firstWeight(path.join(dir, 'epoch-4'))).toBe(4);
    model.dispose();
  });

  it('writes nothing on ranks other than 0 of a multi-process run', async () => {
    for (const saveBestOnly of [false, true])
      (await play(registry.create('callback', { type: 'model-checkpoint', dir, saveBestOnly }), [3, 2, 1], false)).dispose();
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

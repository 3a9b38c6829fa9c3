/** Early stopping and reduce-on-plateau on scripted metric sequences. */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Callback, PluginRegistry, TrainingState } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

function play(cb: Callback, values: number[], key = 'val_loss'): { stoppedAfter: number | null; lrs: number[]; state: TrainingState } {
  const state = { epoch: 0, step: 0, epochs: values.length, stepsPerEpoch: 1, stopTraining: false, optimizer: { learningRate: 1 } } as unknown as TrainingState;
  cb.onTrainBegin?.(state);
  const lrs: number[] = [];
  for (let e = 0; e < values.length; e++) {
    state.epoch = e;
    cb.onEpochEnd?.(state, { [key]: values[e]! });
    lrs.push(state.optimizer.learningRate);
    if (state.stopTraining) return { stoppedAfter: e, lrs, state };
  }
  return { stoppedAfter: null, lrs, state };
}

describe('early-stopping', () => {
  it('stops after `patience` epochs without improvement, and not before', () => {
    const cb = registry.create('callback', { type: 'early-stopping', patience: 2 });
    expect(play(cb, [5, 4, 4.5, 4.2, 4.1, 3]).stoppedAfter).toBe(4);
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 2 }), [5, 4, 3, 2, 1]).stoppedAfter).toBeNull();
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 0, mode: 'max', monitor: 'val_accuracy' }), [0.5, 0.6, 0.6], 'val_accuracy').stoppedAfter).toBe(2);
  });

  it('names the missing metric', () => {
    expect(() => play(registry.create('callback', { type: 'early-stopping', monitor: 'val_bleu' }), [1])).toThrow(/no epoch metric "val_bleu"; have val_loss/);
  });
});

describe('reduce-on-plateau', () => {
  it('multiplies the learning rate by factor after `patience` flat epochs, down to minLr', () => {
    const cb = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1, minLr: 0.2 });
    expect(play(cb, [3, 2, 2, 2, 2, 2, 2, 2]).lrs).toEqual([1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.2]);
  });
});

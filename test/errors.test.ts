/** Bad input gets a message that names the field or layer, the value, and what was expected. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DataError, parseExperimentConfig, Rng, Sequential, ShapeError, type PluginRegistry } from '../core';
import cmudict from '../plugins/data/cmudict';
import { testRegistry } from './harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('registry errors', () => {
  it('rejects an unknown plugin and lists the known ones', () => {
    expect(() => registry.create('optimizer', 'adamm')).toThrow(ConfigError);
    expect(() => registry.create('optimizer', 'adamm', 'optimizer')).toThrow(/unknown optimizer "adamm"; registered optimizers: .*adam/);
  });

  it('rejects a bad option type, naming the plugin, the field, the value and the expectation', () => {
    expect(() => registry.create('optimizer', { type: 'adam', lr: 'fast' }, 'optimizer')).toThrow(
      /optimizer: optimizer "adam" option "lr": .*expected number.*got "fast"/,
    );
  });

  it('rejects an option out of range', () => {
    expect(() => registry.create('optimizer', { type: 'adam', beta1: 1.5 })).toThrow(/option "beta1": .*got 1.5/);
    expect(() => registry.create('layer', { type: 'dense', units: 0 })).toThrow(/option "units": .*got 0/);
  });

  it('rejects a misspelt option instead of ignoring it', () => {
    expect(() => registry.create('layer', { type: 'dense', unit: 4 })).toThrow(/unit/);
  });

  it('names the path of a nested plugin', () => {
    expect(() => new Sequential({ inputShape: [4], layers: [{ type: 'dense', units: 2, activation: 'relux' }] }, registry)).toThrow(
      /model.layers\[0\].activation.type: unknown activation "relux"/,
    );
  });

  it('builds a plugin by its definition, typed, only when the spec names that plugin and it is the registered one', () => {
    const source = registry.build(cmudict, { type: 'cmudict', srcLen: 24, tgtLen: 24 }, 'data.source');
    expect(source.spec).toEqual(registry.normalize('dataset', { type: 'cmudict', srcLen: 24, tgtLen: 24 }));
    expect(source.encodeWord('cat').length).toBe(3);
    const mnist = { type: 'mnist' };
    expect(() => registry.build(cmudict, mnist, 'data.source')).toThrow(/data.source.type: expected dataset "cmudict", got "mnist"/);
    expect(() => registry.build({ ...cmudict }, 'cmudict')).toThrow(/registered with another definition/);
  });

  it('refuses to register the same name twice', () => {
    const dense = registry.get('layer', 'dense');
    expect(() => registry.register(dense)).toThrow(/already registered/);
  });
});

describe('config errors', () => {
  it('names the bad field of an experiment config', () => {
    expect(() =>
      parseExperimentConfig({
        experiment: 'x',
        data: { source: 'mnist' },
        model: { inputShape: [2], layers: ['flatten'] },
        loss: 'x',
        optimizer: 'adam',
        trainer: { epochs: 1, batchSize: -3 },
      }),
    ).toThrow(/trainer.batchSize/);
  });
});

describe('shape errors', () => {
  it('names the layer and both shapes when a layer does not fit its input', () => {
    const m = () => new Sequential({ inputShape: [28, 28], layers: [{ type: 'conv2d', filters: 2, kernelSize: 3 }] }, registry).build(undefined, new Rng(0));
    expect(m).toThrow(ShapeError);
    expect(m).toThrow(/layer "conv2d_1" \(conv2d\): expected input shape \[batch, height, width, channels\], got \[batch, 28, 28\]/);
  });

  it('names the model input and both shapes when a batch has the wrong shape', () => {
    const model = new Sequential({ inputShape: [4], layers: [{ type: 'dense', units: 2 }] }, registry);
    model.build(undefined, new Rng(0));
    const x = tf.zeros([3, 5]);
    expect(() => model.apply(x, { training: false, rng: new Rng(0) })).toThrow(/model input: expected input shape \[batch, 4\], got \[batch, 5\]/);
    x.dispose();
    model.dispose();
  });

  it('names the loss and both shapes when labels do not match predictions', () => {
    const loss = registry.create('loss', 'sparse-categorical-crossentropy');
    const [y, p] = [tf.zeros([3], 'int32'), tf.zeros([4, 10])];
    expect(() => loss.compute(y, p)).toThrow(/sparse-categorical-crossentropy.*\[4,10\].*got \[3\]/);
    tf.dispose([y, p]);
  });
});

describe('missing data', () => {
  it('says which MNIST folder is missing', () => {
    const src = registry.create('dataset', { type: 'mnist', dir: '/nonexistent/mnist' });
    expect(() => src.load('train')).toThrow(DataError);
    expect(() => src.load('train')).toThrow(/\/nonexistent\/mnist.*does not exist/);
  });

  it('lists the splits when asked for an unknown one', () => {
    expect(() => registry.create('dataset', 'mnist').load('validation')).toThrow(/unknown split "validation"; available: train, test/);
  });
});

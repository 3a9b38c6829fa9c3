/**
 * Conformance of the plugins that compute with tensors, generated from the registry as PyTorch's OpInfo tests are:
 * one test per plugin per property per CPU backend, named `conformance > <kind> > <plugin> > <property> > <backend>`,
 * so one failure hides nothing and `-t <plugin>` selects a plugin. A plugin is tested the moment it is registered,
 * on the `examples` its definition declares (layers must declare some).
 * Layers, activations, losses, regularizers: gradients against central finite differences, no tensor leak, config
 * round trip; layers also save and load to the same outputs. Optimizers: they minimise a quadratic, their state dict
 * round-trips and continues identically, they do not leak. Initializers: shape, finite values, determinism under a
 * seed. Augmentations: shape, dtype, determinism under a seed, no leak, non-images rejected. Metrics, schedules and
 * callbacks are in conformance-training.test.ts; trackers and data sets in conformance-io.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadModel, PLUGIN_KINDS, Rng, saveModel, Sequential, type PluginExample } from '../core';
import {
  checkLayerGradient,
  checkLayerNoLeak,
  checkOptimizerMinimises,
  checkOptimizerNoLeak,
  layerCase as kitLayerCase,
  optimizerOptions,
  optimizerProblem,
} from '../testing';
import { conformanceRegistry, eachPlugin, exampleTargets, expectNoLeak, expectSpecRoundTrip, gradCheck, onEachBackend, randomNormal } from './harness';

const { registry, backends } = await conformanceRegistry();
const seeds = fc.integer({ min: 0, max: 2 ** 30 });

/** The plugin's declared examples; a loss without any is tested with default options on [2, 5] (layers must declare some). */
const examplesOf = (kind: 'layer' | 'loss', name: string): PluginExample[] => registry.get(kind, name).examples ?? [{ inputShape: [2, 5], target: 'classes' }];
const describeExample = (ex: PluginExample) => `${JSON.stringify(ex.options ?? {})} on [${ex.inputShape}]`;

const layerCase = (name: string, ex: PluginExample, batch: number, rng: Rng) => kitLayerCase(registry, name, ex, batch, rng);

/**
 * Layers whose gradient cannot match finite differences, and why. Their test checks the reason still holds: no
 * trainable parameters, and the input gradient (the straight-through estimate) differs from finite differences only
 * because the output is piecewise constant in x.
 */
const INFERENCE_ONLY_LAYERS: Record<string, string> = {
  'quantized-dense': 'rounds its input to 8 bits: the output is piecewise constant in x (post-training quantization, inference only)',
  'quantized-conv2d': 'rounds its input to 8 bits: the output is piecewise constant in x (post-training quantization, inference only)',
};

/** The gradient of `fn` at normal random variables of `shape` matches finite differences, for `numRuns` seeds. */
function gradCheckOfOne(label: string, shape: number[], fn: (x: tf.Tensor) => tf.Tensor, numRuns: number): void {
  fc.assert(
    fc.property(seeds, (seed) => {
      const rng = new Rng(seed);
      const x = tf.variable(randomNormal(shape, rng));
      try {
        gradCheck(label, () => fn(x), [x], rng);
      } finally {
        x.dispose();
      }
    }),
    { numRuns },
  );
}

/** `fn` of a random tensor of `shape`, applied repeatedly, leaves no tensor behind but the one it returns (disposed). */
function expectNoLeakOfOne(shape: number[], fn: (x: tf.Tensor) => tf.Tensor): void {
  const x = randomNormal(shape, new Rng(1));
  expectNoLeak(() => fn(x).dispose());
  x.dispose();
}

describe('conformance', () => {
  eachPlugin(registry, 'layer', (name) => {
    it('declares examples', () => {
      expect(registry.get('layer', name).examples?.length, `layer ${name} declares examples`).toBeGreaterThan(0);
    });

    it('config round-trips', () => {
      for (const ex of examplesOf('layer', name)) expectSpecRoundTrip(registry, 'layer', name, ex.options ?? {});
    });

    if (INFERENCE_ONLY_LAYERS[name]) {
      onEachBackend(registry, backends, `is inference-only (${INFERENCE_ONLY_LAYERS[name]})`, () => {
        for (const ex of examplesOf('layer', name)) {
          const { layer, x } = layerCase(name, ex, 2, new Rng(3));
          try {
            expect(layer.parameters().filter((p) => p.trainable)).toEqual([]);
            // Piecewise constant: a nudge far below a quantization step (inputs ~N(0, 1), steps ≥ 1/255) changes nothing.
            const [a, b] = tf.tidy(() => [0, 1e-6].map((d) => Array.from(layer.apply(tf.add(x, d), { training: false, rng: new Rng(1) }).dataSync())));
            const moved = a!.filter((v, i) => v !== b![i]).length;
            expect(moved, `${describeExample(ex)}: outputs moved by a 1e-6 nudge`).toBeLessThan(a!.length / 2);
          } finally {
            x.dispose();
            layer.dispose();
          }
        }
      });
    } else {
      onEachBackend(registry, backends, 'gradient matches finite differences', () => {
        fc.assert(
          fc.property(seeds, fc.integer({ min: 1, max: 3 }), (seed, batch) => checkLayerGradient(registry, name, seed, batch)),
          { numRuns: 3 },
        );
      });
    }

    onEachBackend(registry, backends, 'leaks no tensor', () => checkLayerNoLeak(registry, name));

    onEachBackend(registry, backends, 'saves and loads to the same outputs', () => {
      for (const ex of examplesOf('layer', name)) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-conformance-'));
        const model = new Sequential({ inputShape: ex.inputShape!.slice(1), layers: [{ type: name, ...ex.options }] }, registry);
        model.build(undefined, new Rng(5));
        const { x } = layerCase(name, ex, 2, new Rng(6));
        try {
          saveModel(model, dir);
          const loaded = loadModel(dir, registry);
          const [a, b] = [model, loaded].map((m) =>
            tf.tidy(() =>
              m
                .apply(x, { training: false, rng: new Rng(7) })
                .dataSync()
                .slice(),
            ),
          );
          loaded.dispose();
          expect(Array.from(b!), `layer ${name} ${describeExample(ex)}`).toEqual(Array.from(a!));
        } finally {
          x.dispose();
          model.dispose();
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  });

  eachPlugin(registry, 'activation', (name) => {
    it('config round-trips', () => expectSpecRoundTrip(registry, 'activation', name, {}));

    const apply = (x: tf.Tensor) => registry.create('activation', name).apply(x);
    onEachBackend(registry, backends, 'gradient matches finite differences', () => gradCheckOfOne(`activation ${name}`, [3, 5], apply, 5));
    onEachBackend(registry, backends, 'leaks no tensor', () => expectNoLeakOfOne([3, 5], (x) => tf.tidy(() => apply(x).clone())));
  });

  eachPlugin(registry, 'loss', (name) => {
    /**
     * A loss with a `teacher` option (distillation) gets one: a dense model from 3 features to the prediction's
     * classes, saved in a temporary directory; its inputs are the batch's `x` ([...prediction's leading axes, 3]).
     */
    const needsTeacher = 'teacher' in ((registry.get('loss', name).schema as { shape?: object }).shape ?? {});
    const teacherDir = (ex: PluginExample): string => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-teacher-'));
      const teacher = new Sequential({ inputShape: [...ex.inputShape!.slice(1, -1), 3], layers: [{ type: 'dense', units: ex.inputShape!.at(-1)! }] }, registry);
      teacher.build(undefined, new Rng(5));
      saveModel(teacher, dir);
      teacher.dispose();
      return dir;
    };
    const withTeacher = <T>(ex: PluginExample, f: (options: PluginExample['options'], x: tf.Tensor | undefined) => T): T => {
      if (!needsTeacher) return f(ex.options, undefined);
      const dir = teacherDir(ex);
      const x = randomNormal([...ex.inputShape!.slice(0, -1), 3], new Rng(11));
      try {
        return f({ ...ex.options, teacher: dir }, x);
      } finally {
        x.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };
    /** Releases what a loss holds (a teacher). */
    const release = (loss: { dispose?(): void }) => loss.dispose?.();

    it('config round-trips', () => {
      for (const ex of examplesOf('loss', name)) withTeacher(ex, (options) => expectSpecRoundTrip(registry, 'loss', name, options ?? {}));
    });

    /** Targets for `ex`: integer classes over the last axis, or reals of the prediction's shape; and a prediction. */
    const lossCase = (ex: PluginExample, rng: Rng) => {
      const yTrue = exampleTargets(ex, ex.inputShape!, rng);
      return { yTrue, yPred: tf.variable(randomNormal(ex.inputShape!, rng, 2)) };
    };

    onEachBackend(registry, backends, 'gradient matches finite differences', () => {
      for (const ex of examplesOf('loss', name)) {
        withTeacher(ex, (options, x) => {
          const loss = registry.create('loss', { type: name, ...options });
          try {
            fc.assert(
              fc.property(seeds, (seed) => {
                const rng = new Rng(seed);
                const { yTrue, yPred } = lossCase(ex, rng);
                try {
                  gradCheck(`loss ${name} ${describeExample(ex)}`, () => loss.compute(yTrue, yPred, x), [yPred], rng);
                } finally {
                  tf.dispose([yTrue, yPred]);
                }
              }),
              { numRuns: 5 },
            );
          } finally {
            release(loss);
          }
        });
      }
    });

    onEachBackend(registry, backends, 'leaks no tensor', () => {
      for (const ex of examplesOf('loss', name)) {
        withTeacher(ex, (options, x) => {
          const loss = registry.create('loss', { type: name, ...options });
          const { yTrue, yPred } = lossCase(ex, new Rng(1));
          expectNoLeak(() => loss.compute(yTrue, yPred, x).dispose());
          tf.dispose([yTrue, yPred]);
          release(loss);
        });
      }
    });
  });

  eachPlugin(registry, 'optimizer', (name) => {
    const options = () => optimizerOptions(registry, name);
    const make = () => registry.create('optimizer', { type: name, ...options() });
    const problem = () => optimizerProblem(registry, name);

    it('config round-trips', () => expectSpecRoundTrip(registry, 'optimizer', name, options()));

    onEachBackend(registry, backends, 'minimises a quadratic', () => checkOptimizerMinimises(registry, name));

    onEachBackend(registry, backends, 'leaks no tensor', () => checkOptimizerNoLeak(registry, name));

    onEachBackend(registry, backends, 'state dict round-trips and continues identically', () => {
      const { param, opt, step, dispose } = problem();
      for (let i = 0; i < 5; i++) step();
      // A fresh optimizer loaded from the state (through JSON, as checkpoints store it) continues exactly like the original.
      const state = opt.getState();
      const twin = make();
      const twinParam = { ...param, variable: tf.variable(param.variable.clone()) };
      const json = JSON.stringify(state, (_k, v) => (v instanceof Float32Array ? Array.from(v) : v));
      twin.setState(
        JSON.parse(json, (k, v) => (k === 'values' ? Float32Array.from(v) : v)),
        [twinParam],
      );
      const g = randomNormal([4, 3], new Rng(4));
      opt.step([param], { w: g });
      twin.step([twinParam], { w: g });
      expect(Array.from(twinParam.variable.dataSync())).toEqual(Array.from(param.variable.dataSync()));
      expect(() => twin.setState({ ...state, slots: { nope: state.slots.w! } }, [twinParam])).toThrow(/nope/);
      tf.dispose([g, twinParam.variable]);
      twin.dispose();
      dispose();
    });
  });

  eachPlugin(registry, 'initializer', (name) => {
    it('config round-trips', () => expectSpecRoundTrip(registry, 'initializer', name, {}));

    // Orthogonal has no form for a vector and refuses one, as Keras does (its own test checks the error).
    const minRank = name === 'orthogonal' ? 2 : 1;
    onEachBackend(registry, backends, 'fills the shape with finite values, deterministically under a seed', () => {
      fc.assert(
        fc.property(seeds, fc.array(fc.integer({ min: 1, max: 6 }), { minLength: minRank, maxLength: 4 }), (seed, shape) => {
          const init = registry.create('initializer', name);
          const [a, b] = [init.init(shape, new Rng(seed)), init.init(shape, new Rng(seed))];
          try {
            expect(a.shape).toEqual(shape);
            const av = a.dataSync();
            expect(av.every(Number.isFinite)).toBe(true);
            expect(Array.from(b.dataSync())).toEqual(Array.from(av));
          } finally {
            tf.dispose([a, b]);
          }
        }),
        { numRuns: 10 },
      );
    });
  });

  eachPlugin(registry, 'regularizer', (name) => {
    it('config round-trips', () => expectSpecRoundTrip(registry, 'regularizer', name, {}));

    const penalty = (w: tf.Tensor) => registry.create('regularizer', name).penalty(w);
    onEachBackend(registry, backends, 'penalty gradient matches finite differences', () => gradCheckOfOne(`regularizer ${name}`, [4, 3], penalty, 3));
    onEachBackend(registry, backends, 'leaks no tensor', () => expectNoLeakOfOne([4, 3], penalty));
  });

  eachPlugin(registry, 'augmentation', (name) => {
    /** A batch of n NHWC images (size × size+1, 2 channels) of `dtype`, from `seed`. */
    const images = (seed: number, n: number, size: number, dtype: 'float32' | 'int32') =>
      tf.tidy(() => tf.cast(tf.mul(randomNormal([n, size, size + 1, 2], new Rng(seed)), dtype === 'int32' ? 50 : 1), dtype));

    const dtypes = fc.constantFrom<'float32' | 'int32'>('float32', 'int32');

    it('config round-trips', () => expectSpecRoundTrip(registry, 'augmentation', name, {}));

    onEachBackend(registry, backends, 'keeps shape and dtype, deterministically under a seed', () => {
      fc.assert(
        fc.property(seeds, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 2, max: 7 }), dtypes, (seed, n, size, dtype) => {
          const aug = registry.create('augmentation', name);
          const x = images(seed, n, size, dtype);
          const [y1, y2] = [aug.apply(x, new Rng(seed)), aug.apply(x, new Rng(seed))];
          expect([y1.shape, y1.dtype], name).toEqual([x.shape, x.dtype]);
          expect(Array.from(y1.dataSync()), `${name} is seeded`).toEqual(Array.from(y2.dataSync()));
          tf.dispose([x, y1, y2]);
        }),
        { numRuns: 10 },
      );
    });

    onEachBackend(registry, backends, 'leaks no tensor', () => {
      const aug = registry.create('augmentation', name);
      const x = images(1, 2, 5, 'float32');
      expectNoLeak(() => tf.dispose(aug.apply(x, new Rng(2))));
      x.dispose();
    });

    it('rejects inputs that are not NHWC images, naming the augmentation', () => {
      const x = tf.zeros([2, 3]);
      const named = new RegExp(`augmentation "${name}".*\\[batch, height, width, channels\\]`);
      expect(() => registry.create('augmentation', name).apply(x, new Rng(0))).toThrow(named);
      x.dispose();
    });
  });

  for (const kind of PLUGIN_KINDS) {
    eachPlugin(registry, kind, (name) => {
      it('has a description and a JSON options schema', () => {
        const p = registry.list(kind).find((q) => q.name === name)!;
        expect(p.description.length, `${kind} ${name}`).toBeGreaterThan(5);
        expect((p.options as { type?: string }).type, `${kind} ${name} options schema`).toBe('object');
      });
    });
  }
});

/**
 * `loom/testing`: the conformance properties loom's own plugins are checked with, for authors of plugin packages.
 * Each check throws an Error saying what failed (so any test runner works: vitest, node:test, jest); none needs
 * vitest. A plugin package's test is a few lines:
 *
 * ```ts
 * import { checkPlugin, testRegistry } from 'loom/testing';
 * import myPlugins from '../src';
 * it('conforms', async () => {
 *   const registry = await testRegistry(myPlugins);
 *   for (const p of myPlugins) await checkPlugin(registry, p.kind, p.name);
 * });
 * ```
 *
 * The properties: the spec round-trips through JSON; gradients match central finite differences (layers); no tensor
 * is left behind by repeated steps; an optimizer minimises a quadratic and its state round-trips; each on every CPU
 * backend available here (`native-cpu` where its addon built, and tfjs's `cpu`).
 */
import { isDeepStrictEqual } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import {
  buildModel,
  createRegistry,
  Rng,
  selectBackend,
  type JsonObject,
  type Layer,
  type Model,
  type ModelConfig,
  type PluginDefinition,
  type PluginExample,
  type PluginKind,
  type PluginRegistry,
} from '../core';
import { registerBuiltins } from '../plugins';

/** A conformance property that did not hold; the message names the plugin, the property and the values. */
export class ConformanceError extends Error {
  override name = 'ConformanceError';
}

function check(ok: boolean, message: () => string): void {
  if (!ok) throw new ConformanceError(message());
}

/**
 * A fresh registry with every built-in plugin and `extra` (a plugin package's definitions), after activating
 * `backend` (default: `LOOM_BACKEND`, else the best available one).
 */
export async function testRegistry(extra: readonly PluginDefinition[] = [], backend = process.env.LOOM_BACKEND): Promise<PluginRegistry> {
  const registry = registerBuiltins(createRegistry());
  for (const def of extra) registry.register(def);
  await selectBackend(registry, backend);
  return registry;
}

/** The CPU backends available here (native-cpu only when its addon built): properties run once per backend. */
export async function cpuBackends(): Promise<string[]> {
  const registry = registerBuiltins(createRegistry());
  const out: string[] = [];
  for (const name of ['native-cpu', 'cpu']) if ((await registry.create('backend', name).available()).ok) out.push(name);
  return out;
}

/** A float32 tensor of `shape` with standard normal values from `rng`, times `scale`. */
export function randomNormal(shape: number[], rng: Rng, scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return tf.tensor(v, shape);
}

/**
 * Targets for predictions of `shape` (batch first) as an example declares them: one integer class per row (over the
 * last axis) for `classes` (the default), or normal reals of the prediction's shape for `same`.
 */
export function exampleTargets(ex: PluginExample, shape: number[], rng: Rng): tf.Tensor {
  if (ex.target === 'same') return randomNormal(shape, rng);
  const rows = shape.slice(0, -1);
  return tf.tensor(
    Int32Array.from({ length: rows.reduce((a, b) => a * b, 1) }, () => rng.int(shape.at(-1)!)),
    rows,
    'int32',
  );
}

/** Rebuilding a plugin from its own spec gives the same spec, and the spec is plain JSON (survives stringify/parse). */
export function checkSpecRoundTrip(registry: PluginRegistry, kind: PluginKind, name: string, options: JsonObject): void {
  const a = registry.create(kind, { type: name, ...options });
  const json = JSON.parse(JSON.stringify(a.spec));
  check(isDeepStrictEqual(json, JSON.parse(JSON.stringify(json))) && isDeepStrictEqual(Object.keys(json), Object.keys(a.spec)), () => {
    return `${kind} ${name}: spec ${JSON.stringify(a.spec)} is not plain JSON`;
  });
  const b = registry.create(kind, a.spec);
  check(
    isDeepStrictEqual(JSON.parse(JSON.stringify(b.spec)), json),
    () => `${kind} ${name}: spec rebuilt from ${JSON.stringify(a.spec)} is ${JSON.stringify(b.spec)}`,
  );
  check(a.spec.type === name, () => `${kind} ${name}: spec type is ${a.spec.type}`);
}

/** Σ a_i b_i in float64 over the current values of two tensors of equal size. */
function dot64(a: tf.Tensor, b: Float32Array): number {
  const av = a.dataSync();
  let s = 0;
  for (let i = 0; i < av.length; i++) s += av[i]! * b[i]!;
  return s;
}

export interface GradCheckOptions {
  eps?: number;
  rtol?: number;
  directions?: number;
}

/**
 * Checks the gradient of `fn` with respect to `wrt` by directional derivatives: for random directions d (over all
 * variables at once) the central difference (f(θ+εd) − f(θ−εd)) / 2ε must match ⟨∇f(θ), d⟩, where
 * f = Σ fn()_i · r_i for a fixed random r, accumulated in float64 from the float32 outputs.
 *
 * tfjs has no float64 kernels, so the tolerance is derived for float32: the truncation error is O(ε²) and the
 * rounding error of each f is about u·S (u = 6e-8, S = Σ|fn()_i · r_i|), so the difference quotient carries
 * ~u·S/ε; we allow 20·u·S/ε + 1e-3 absolute plus `rtol` relative. When the one-sided differences
 * (f(θ+εd) − f(θ))/ε and (f(θ) − f(θ−εd))/ε disagree, ε is shrunk (a smooth but curved f then agrees); if they
 * still disagree the direction crosses a kink (ReLU at 0, a tie in max), says nothing about the gradient and is
 * redrawn, as gradcheckers do at non-differentiable points. A wrong gradient does not make the one-sided
 * differences disagree, so it is still caught.
 */
export function gradCheck(label: string, fn: () => tf.Tensor, wrt: tf.Variable[], rng: Rng, opts: GradCheckOptions = {}): void {
  const { eps = 1e-3, rtol = 1e-2, directions = 3 } = opts;
  // clone: fn may return one of its inputs unchanged (the identity), which must not be disposed here.
  const run = () => tf.tidy(() => fn().clone());
  const probe = run();
  const shape = probe.shape;
  probe.dispose();
  const r = randomNormal(shape, rng);
  const rv = r.dataSync() as Float32Array;
  const f = () => {
    const out = run();
    const v = dot64(out, rv);
    const av = out.dataSync();
    let absSum = 0;
    for (let i = 0; i < av.length; i++) absSum += Math.abs(av[i]! * rv[i]!);
    out.dispose();
    return { v, absSum };
  };
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(fn(), r)) as tf.Scalar, wrt);
  value.dispose();
  const originals = wrt.map((v) => tf.clone(v));
  try {
    const f0 = f();
    let checked = 0;
    for (let attempt = 0; checked < directions; attempt++) {
      if (attempt >= 10 * directions) throw new ConformanceError(`${label}: ${attempt} random directions all crossed a kink; cannot check the gradient here`);
      const d = wrt.map((v) => randomNormal(v.shape, rng));
      let analytic = 0;
      wrt.forEach((v, i) => (analytic += dot64(grads[v.name]!, d[i]!.dataSync() as Float32Array)));
      // Central differences at ε and ε/2, accepted when both scales see a smooth f: the one-sided differences agree
      // (no kink inside the step: a kink at distance δ makes one of them err by δ) and the two central differences
      // agree. The value used is Richardson's (4·c(ε/2) − c(ε))/3, whose truncation error is O(ε⁴). If a scale
      // fails, ε shrinks, down to ε/64 (a smooth but strongly curved f then passes: a small GPT's first LayerNorm sees
      // embeddings of scale 0.02, which a step of 1e-3 moves by 5 %); at a kink it keeps failing.
      const central = (e: number) => {
        // In tidy: assign takes the value's data but leaves the tensor live (one leaked per assign otherwise).
        const shift = (sign: number) => wrt.forEach((v, i) => tf.tidy(() => v.assign(tf.add(originals[i]!, tf.mul(d[i]!, sign * e)))));
        shift(1);
        const fPlus = f();
        shift(-1);
        const fMinus = f();
        wrt.forEach((v, i) => v.assign(originals[i]!));
        const noise = (20 * 6e-8 * Math.max(f0.absSum, fPlus.absSum, fMinus.absSum)) / e + 1e-3;
        const gap = Math.abs((fPlus.v - f0.v) / e - (f0.v - fMinus.v) / e);
        return { c: (fPlus.v - fMinus.v) / (2 * e), noise, gap };
      };
      let verdict: { numeric: number; tol: number } | null = null;
      for (const e of [eps, eps / 4, eps / 16, eps / 64]) {
        const [wide, narrow] = [central(e), central(e / 2)];
        const tol = Math.max(wide.noise, narrow.noise) + rtol * Math.max(Math.abs(narrow.c), Math.abs(analytic));
        if (wide.gap <= tol && narrow.gap <= tol && Math.abs(wide.c - narrow.c) <= tol) {
          verdict = { numeric: (4 * narrow.c - wide.c) / 3, tol };
          break;
        }
      }
      tf.dispose(d);
      if (!verdict) continue; // crossed a kink at every ε: redraw the direction
      const { numeric, tol } = verdict;
      checked++;
      check(Math.abs(numeric - analytic) <= tol, () => `${label}: directional derivative: numeric ${numeric} vs analytic ${analytic} (tolerance ${tol})`);
    }
  } finally {
    tf.dispose([r, ...originals]);
    tf.dispose(grads);
  }
}

/** Runs `step` once to warm up, then `n` times, and checks that the number of live tensors does not change. */
export function checkNoLeak(step: () => void, n = 3, label = 'step'): void {
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < n; i++) step();
  const after = tf.memory().numTensors;
  check(after === before, () => `${label}: live tensors after repeated steps: ${after}, expected ${before}`);
}

/** A layer built from `spec` for `shape` (batch dimension `null`), with weights drawn from `seed`. */
export function buildLayer<T extends Layer = Layer>(registry: PluginRegistry, spec: object, shape: (number | null)[], seed = 0): T {
  const layer = registry.create('layer', spec as never) as T;
  layer.build(shape, new Rng(seed));
  return layer;
}

/** A layer built for `ex` with batch `batch`, and an input for it: integer ids where it takes them, else normal. */
export function layerCase(
  registry: PluginRegistry,
  name: string,
  ex: PluginExample,
  batch: number,
  rng: Rng,
): { layer: Layer; x: tf.Variable; wrt: tf.Variable[] } {
  const shape = [batch, ...ex.inputShape!.slice(1)];
  const layer = registry.create('layer', { type: name, ...ex.options }) as Layer;
  layer.build([null, ...shape.slice(1)], rng);
  // Integer inputs (token ids) are data, not differentiated; real inputs are checked like weights.
  const ints = ex.inputInts;
  // In tidy: the variable shares its initial value's data, and that tensor is released.
  const x = tf.tidy(() =>
    ints
      ? tf.variable(
          tf.tensor(
            Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.int(ints)),
            shape,
            'int32',
          ),
          false,
        )
      : tf.variable(randomNormal(shape, rng)),
  );
  return { layer, x, wrt: [...(ints ? [] : [x]), ...layer.parameters().map((p) => p.variable)] };
}

/**
 * A model built for example `ex` of model plugin `name` (options merged with `overrides`), and an input of the
 * example's shape: integer ids below `inputInts` where it takes them, else normal.
 */
export function modelCase(registry: PluginRegistry, name: string, ex: PluginExample, rng: Rng, overrides: object = {}): { model: Model; x: tf.Tensor } {
  const model = buildModel({ type: name, ...ex.options, ...overrides } as ModelConfig, registry);
  model.build(model.inputShape, rng);
  const shape = ex.inputShape!;
  const n = shape.reduce((a, b) => a * b, 1);
  const ints = ex.inputInts;
  const x = ints
    ? tf.tensor(
        Int32Array.from({ length: n }, () => rng.int(ints)),
        shape,
        'int32',
      )
    : randomNormal(shape, rng);
  return { model, x };
}

const describeExample = (ex: PluginExample) => `${JSON.stringify(ex.options ?? {})} on [${ex.inputShape}]`;

/** The examples a layer declares (at least one, with an input shape: the properties are checked on them). */
function layerExamples(registry: PluginRegistry, name: string): PluginExample[] {
  const examples = registry.get('layer', name).examples ?? [];
  check(examples.length > 0 && examples.every((ex) => ex.inputShape), () => `layer ${name}: declares no examples with an inputShape`);
  return examples;
}

/** A layer's gradient (inputs and weights) matches finite differences on each example, at `seed` with `batch` rows. */
export function checkLayerGradient(registry: PluginRegistry, name: string, seed = 0, batch = 2): void {
  for (const ex of layerExamples(registry, name)) {
    const rng = new Rng(seed);
    const { layer, x, wrt } = layerCase(registry, name, ex, batch, rng);
    try {
      gradCheck(`layer ${name} ${describeExample(ex)}`, () => layer.apply(x, { training: true, rng: new Rng(seed) }), wrt, rng);
    } finally {
      x.dispose();
      layer.dispose();
    }
  }
}

/** A layer's forward and backward pass, repeated, leave no tensor behind; built, trained and disposed, it leaves none at all. */
export function checkLayerNoLeak(registry: PluginRegistry, name: string): void {
  for (const ex of layerExamples(registry, name)) {
    const start = tf.memory().numTensors;
    const { layer, x, wrt } = layerCase(registry, name, ex, 2, new Rng(1));
    try {
      checkNoLeak(
        () => {
          const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true, rng: new Rng(2) })) as tf.Scalar, wrt);
          tf.dispose([value, ...Object.values(grads)]);
        },
        3,
        `layer ${name} ${describeExample(ex)}`,
      );
    } finally {
      x.dispose();
      layer.dispose();
    }
    const left = tf.memory().numTensors - start;
    check(left === 0, () => `layer ${name} ${describeExample(ex)}: built, trained and disposed, it left ${left} live tensors`);
  }
}

/** An optimizer's example options (a learning rate suited to it), else lr 0.05. */
export function optimizerOptions(registry: PluginRegistry, name: string): JsonObject {
  return registry.get('optimizer', name).examples?.[0]?.options ?? { lr: 0.05 };
}

/** An optimizer, a parameter w ∈ R^{4×3} from 0 and one step on the quadratic Σ(w − c)² for a random c. */
export function optimizerProblem(registry: PluginRegistry, name: string) {
  const c = randomNormal([4, 3], new Rng(3));
  const param = { name: 'w', variable: tf.variable(tf.zeros([4, 3])), role: 'kernel' as const, trainable: true };
  const opt = registry.create('optimizer', { type: name, ...optimizerOptions(registry, name) });
  const loss = () => tf.sum(tf.square(tf.sub(param.variable, c))) as tf.Scalar;
  const step = () => {
    const { value, grads } = tf.variableGrads(loss, [param.variable]);
    opt.step([param], { w: grads[param.variable.name]! });
    tf.dispose([value, ...Object.values(grads)]);
  };
  const lossValue = () => tf.tidy(() => loss().dataSync()[0]!);
  const dispose = () => {
    tf.dispose([c, param.variable]);
    opt.dispose();
  };
  return { c, param, opt, step, lossValue, dispose };
}

/** 150 steps of an optimizer bring the quadratic below 5 % of where it started. */
export function checkOptimizerMinimises(registry: PluginRegistry, name: string): void {
  const { step, lossValue, dispose } = optimizerProblem(registry, name);
  try {
    const start = lossValue();
    for (let i = 0; i < 150; i++) step();
    const end = lossValue();
    check(end < start * 0.05, () => `optimizer ${name}: loss ${start} → ${end} after 150 steps, expected below 5 % of the start`);
  } finally {
    dispose();
  }
}

/** An optimizer's steps leave no tensor behind. */
export function checkOptimizerNoLeak(registry: PluginRegistry, name: string): void {
  const { step, dispose } = optimizerProblem(registry, name);
  try {
    checkNoLeak(step, 3, `optimizer ${name}`);
  } finally {
    dispose();
  }
}

/**
 * Every conformance property of one plugin of `kind` (layer and optimizer have properties beyond the spec round
 * trip), on each backend in `backends` (default: every CPU backend available here); the registry's backend is
 * left as the last one checked.
 */
export async function checkPlugin(registry: PluginRegistry, kind: PluginKind, name: string, backends?: string[]): Promise<void> {
  if (kind === 'layer') for (const ex of layerExamples(registry, name)) checkSpecRoundTrip(registry, kind, name, ex.options ?? {});
  else if (kind === 'optimizer') checkSpecRoundTrip(registry, kind, name, optimizerOptions(registry, name));
  else checkSpecRoundTrip(registry, kind, name, registry.get(kind, name).examples?.[0]?.options ?? {});
  for (const backend of backends ?? (await cpuBackends())) {
    await selectBackend(registry, backend);
    const on = (f: () => void) => {
      try {
        f();
      } catch (e) {
        if (e instanceof ConformanceError) e.message += ` (backend ${backend})`;
        throw e;
      }
    };
    if (kind === 'layer') {
      on(() => [0, 1, 2].forEach((seed) => checkLayerGradient(registry, name, seed, 1 + seed)));
      on(() => checkLayerNoLeak(registry, name));
    } else if (kind === 'optimizer') {
      on(() => checkOptimizerMinimises(registry, name));
      on(() => checkOptimizerNoLeak(registry, name));
    }
  }
}

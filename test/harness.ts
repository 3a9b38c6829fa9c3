/**
 * Test helpers shared by the conformance suite and plugin tests: a registry with the built-in plugins on the
 * framework's preferred backend, a gradient check against central finite differences, and a tensor-leak check.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { createRegistry, Rng, selectBackend, type JsonObject, type Layer, type PluginExample, type PluginKind, type PluginRegistry } from '../core';
import { registerBuiltins } from '../plugins';

/** A fresh registry with every built-in plugin, after activating `backend` (default: the best available one). */
export async function testRegistry(backend = process.env.LOOM_BACKEND): Promise<PluginRegistry> {
  const registry = registerBuiltins(createRegistry());
  await selectBackend(registry, backend);
  return registry;
}

/** The CPU backends available here (native-cpu only when its addon built): suites run once per backend. */
export async function cpuBackends(): Promise<string[]> {
  const registry = registerBuiltins(createRegistry());
  const out: string[] = [];
  for (const name of ['native-cpu', 'cpu']) if ((await registry.create('backend', name).available()).ok) out.push(name);
  return out;
}

/**
 * The registry the conformance suites generate their tests from (built-ins, on the preferred backend until a test
 * activates its own with {@link onEachBackend}) and the CPU backends available here.
 */
export async function conformanceRegistry(): Promise<{ registry: PluginRegistry; backends: string[] }> {
  return { registry: await testRegistry(), backends: await cpuBackends() };
}

/**
 * Declares the conformance tests of every registered plugin of `kind`, as PyTorch's OpInfo does: `properties(name)`
 * runs inside `describe(kind) > describe(name)` and declares one `it` per property, so the full name of a test is
 * `<kind> > <plugin> > <property>` (and `> <backend>` with {@link onEachBackend}) and `-t <plugin>` selects it.
 */
export function eachPlugin(registry: PluginRegistry, kind: PluginKind, properties: (name: string) => void): void {
  describe(kind, () => {
    for (const name of registry.names(kind)) describe(name, () => properties(name));
  });
}

/** One test of `property` per backend, each activating its backend first (named `<property> > <backend>`). */
export function onEachBackend(registry: PluginRegistry, backends: string[], property: string, check: (backend: string) => void | Promise<void>): void {
  describe(property, () => {
    for (const backend of backends) {
      it(backend, async () => {
        await selectBackend(registry, backend);
        await check(backend);
      });
    }
  });
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

/** Rebuilding a plugin from its own spec gives the same spec, and the spec is plain JSON. */
export function expectSpecRoundTrip(registry: PluginRegistry, kind: PluginKind, name: string, options: JsonObject): void {
  const a = registry.create(kind, { type: name, ...options });
  expect(JSON.parse(JSON.stringify(a.spec))).toEqual(a.spec);
  const b = registry.create(kind, a.spec);
  expect(b.spec).toEqual(a.spec);
  expect(a.spec.type).toBe(name);
}

export function randomNormal(shape: number[], rng: Rng, scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return tf.tensor(v, shape);
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
      if (attempt >= 10 * directions) throw new Error(`${label}: ${attempt} random directions all crossed a kink; cannot check the gradient here`);
      const d = wrt.map((v) => randomNormal(v.shape, rng));
      let analytic = 0;
      wrt.forEach((v, i) => (analytic += dot64(grads[v.name]!, d[i]!.dataSync() as Float32Array)));
      // Central differences at ε and ε/2, accepted when both scales see a smooth f: the one-sided differences agree
      // (no kink inside the step: a kink at distance δ makes one of them err by δ) and the two central differences
      // agree. The value used is Richardson's (4·c(ε/2) − c(ε))/3, whose truncation error is O(ε⁴). If a scale
      // fails, ε shrinks, down to ε/64 (a smooth but strongly curved f then passes: a small GPT's first LayerNorm sees
      // embeddings of scale 0.02, which a step of 1e-3 moves by 5 %); at a kink it keeps failing.
      const central = (e: number) => {
        const shift = (sign: number) => wrt.forEach((v, i) => v.assign(tf.tidy(() => tf.add(originals[i]!, tf.mul(d[i]!, sign * e)))));
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
      expect(Math.abs(numeric - analytic), `${label}: directional derivative: numeric ${numeric} vs analytic ${analytic}`).toBeLessThanOrEqual(tol);
    }
  } finally {
    tf.dispose([r, ...originals]);
    tf.dispose(grads);
  }
}

/** Runs `step` once to warm up, then `n` times, and expects the number of live tensors not to change. */
export function expectNoLeak(step: () => void, n = 3): void {
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < n; i++) step();
  expect(tf.memory().numTensors, 'live tensors after repeated steps').toBe(before);
}

/** A layer built from `spec` for `shape` (batch dimension `null`), with weights drawn from `seed`. */
export function buildLayer<T extends Layer = Layer>(registry: PluginRegistry, spec: object, shape: (number | null)[], seed = 0): T {
  const layer = registry.create('layer', spec as never) as T;
  layer.build(shape, new Rng(seed));
  return layer;
}

/**
 * Multi-head self-attention composed from plain tfjs ops, the reference for the fused kernel and core's
 * selfAttention: qkv [b, t, 3·d] with head h in columns h·dk.. of each block, keep [b, t] (1 = a real key),
 * scores of masked keys replaced by −1e9, context [b, t, d].
 */
export function referenceSelfAttention(qkv: tf.Tensor, heads: number, keep: tf.Tensor, causal: boolean): tf.Tensor {
  const [b, t, d3] = qkv.shape as [number, number, number];
  const d = d3 / 3,
    dk = d / heads;
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [b, t, 3, heads, dk]), [2, 0, 3, 1, 4]));
  let allowed = tf.reshape(keep, [b, 1, 1, t]);
  if (causal) allowed = tf.mul(allowed, tf.linalg.bandPart(tf.ones([t, t]), -1, 0));
  const scores = tf.add(tf.mul(tf.matMul(q!, k!, false, true), tf.mul(allowed, 1 / Math.sqrt(dk))), tf.mul(tf.sub(allowed, 1), 1e9));
  return tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v!), [0, 2, 1, 3]), [b, t, d]);
}

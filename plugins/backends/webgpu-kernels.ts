/**
 * loom's fused kernels (core/kernels.ts) in WGSL for tfjs's `webgpu` backend: the Adam step (of one tensor, and of
 * many in one dispatch: the optimizer's whole step), softmax and its gradient,
 * layer normalisation and its gradient, and multi-head self-attention and its gradient. Without them each of these
 * ops is composed from tfjs kernels, one GPU dispatch each; with them, one dispatch each (two for the gradients of
 * layer norm and attention). A toy Transformer classifier's training step took 371 dispatches composed and 99 with
 * these (counted by `plugins/backends/webgpu-kernels.test.ts`; CONTRIBUTING, "Native kernels and backends").
 *
 * tfjs-backend-webgpu 4.22 runs programs with one output (`runWebGPUProgram`: binding 0 is the output, the inputs
 * are read-only), and its own multi-output kernels run one program per output. LoomAdam has three outputs and
 * LoomAttention two, so `dispatch` (below) compiles a whole shader itself (any number of read-write outputs, then the
 * read-only inputs, then a uniform block) and hands it to the backend's `recordAndSubmit`, which binds `[output,
 * ...inputs, uniforms]` in that order: the extra outputs travel in its input list. Everything else (the shared command
 * encoder and compute pass, deferred submission, buffer ownership until submission, the pipeline cache, profiling)
 * is the backend's own. Every tensor is bound as a flat array (a 1-D view of the same data), so the uniforms
 * `recordAndSubmit` writes before the kernel's own (NaN, Infinity, each binding's shape and strides) are scalars in
 * a fixed order.
 *
 * On an NVIDIA H200 (benchmarks/results/gpu-2026-12-01.md) they paid: training steps took 1.2-3× less time than
 * the composed ops (MNIST CNN 28.5 against 49.7 ms, the G2P Transformer 151 against 460 ms). There the models with
 * padding-masked self-attention disagreed with the cpu backend: their masks were bool data relabeled float32 by
 * tfjs's Cast, read as subnormal bit patterns that the GPU flushed to zero (`dispatch` now converts such inputs).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../../core/kernels';

type Info = tf.TensorInfo;

/** The parts of tfjs-backend-webgpu's WebGPUBackend used here (4.22; pinned by the tests). */
interface WebGpuBackendInternals {
  device: {
    createShaderModule(d: { code: string; label?: string }): unknown;
    createComputePipeline(d: object): unknown;
    limits: { maxComputeWorkgroupsPerDimension: number; maxStorageBuffersPerShaderStage: number };
  };
  pipelineCache: Record<string, unknown>;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): Info;
  uploadToGPU(dataId: object): void;
  recordAndSubmit(program: object, output: Info, inputs: Info[], uniforms: { type: string; data: number[] }[]): void;
  disposeData(dataId: object): boolean;
  tensorMap: { get(dataId: object): { values: unknown; dtype: tf.DataType } };
}

/** A uniform of the kernel's own: a WGSL field name, its type, its value. */
type Uniform = [name: string, type: 'f32' | 'i32', value: number];

interface Dispatch {
  /** Names the pipeline (with `variant`): the shader text must depend on nothing else. */
  name: string;
  /** The WGSL body: functions and `_start`, reading `uniforms.<field>` and the bindings by name. */
  code: string;
  /** New outputs (shape; float32), or an existing tensor another dispatch of the same kernel began to write. */
  outputs: (number[] | Info)[];
  /** Names of the output bindings in the shader, in order. */
  outputNames: string[];
  inputs: Info[];
  inputNames: string[];
  uniforms: Uniform[];
  /** Workgroups to run; spread over x and y when more than a dimension allows (the shader's `groupIndex()`). */
  groups: number;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const flat = (t: Info): Info => ({ dataId: t.dataId, shape: [size(t.shape)], dtype: t.dtype });
const WG = 64;

/** WGSL shared by every kernel: the workgroup's index over a 2-D grid, and a workgroup-wide sum and max. */
const COMMON = `
var<workgroup> red: array<f32, ${WG}>;
fn groupIndex(wid: vec3<u32>, nwg: vec3<u32>) -> i32 { return i32(wid.y * nwg.x + wid.x); }
fn reduceSum(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn reduceMax(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
`;

const START = `@compute @workgroup_size(${WG})
fn _start(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>)`;

class LoomProgram {
  constructor(
    readonly label: string,
    readonly pipeline: unknown,
    readonly dispatch: [number, number, number],
  ) {}
}

/**
 * Runs one WGSL kernel with any number of outputs in one dispatch (see the file's comment) and returns the outputs.
 * New outputs are float32; inputs are uploaded to the GPU if their values are on the host.
 */
function dispatch(backend: WebGpuBackendInternals, d: Dispatch): Info[] {
  const outputs = d.outputs.map((o) => (Array.isArray(o) ? backend.makeTensorInfo(o, 'float32') : o));
  if (d.groups === 0 || outputs.some((o) => size(o.shape) === 0)) {
    for (const o of outputs) if (size(o.shape) === 0) backend.tensorMap.get(o.dataId).values = new Float32Array(0);
    return outputs;
  }
  // A float32 tensor may hold int32 or bool data: tfjs's Cast from bool or int32 to float32 relabels the tensor and
  // keeps its data (tfjs's own shaders read each input by its stored type). Read as f32, a stored 1 is the bit pattern
  // 1.4e-45, a subnormal, which llvmpipe keeps and NVIDIA's shaders flush to 0: an attention mask made by
  // cast(notEqual(ids, pad)) then masked every key on an H200 (benchmarks/results/gpu-2026-12-01.md). Such inputs
  // are converted to float32 first.
  const converted: Info[] = [];
  const inputs = d.inputs.map((t) => {
    const stored = backend.tensorMap.get(t.dataId).dtype;
    if (t.dtype !== 'float32' || stored === 'float32') return t;
    const f = toFloat32(backend, { ...t, dtype: stored });
    converted.push(f);
    return f;
  });
  d = { ...d, inputs };
  for (const t of [...outputs, ...d.inputs]) backend.uploadToGPU(t.dataId);
  const bindings = outputs.length + d.inputs.length;
  const key = `loom:${d.name}:${bindings}:${d.uniforms.map((u) => u[1]).join(',')}`;
  if (!(key in backend.pipelineCache)) {
    const fields = ['NAN: f32', 'INFINITY: f32'];
    for (let i = 0; i < bindings; i++) fields.push(`shape${i}: i32`, `strides${i}: i32`);
    for (const [name, type] of d.uniforms) fields.push(`${name}: ${type}`);
    const declarations = [
      `struct Uniforms { ${fields.join(', ')} };`,
      ...d.outputNames.map((n, i) => `@group(0) @binding(${i}) var<storage, read_write> ${n}: array<f32>;`),
      ...d.inputNames.map((n, i) => {
        const type = d.inputs[i]!.dtype === 'int32' || d.inputs[i]!.dtype === 'bool' ? 'i32' : 'f32';
        return `@group(0) @binding(${outputs.length + i}) var<storage, read> ${n}: array<${type}>;`;
      }),
      `@group(0) @binding(${bindings}) var<uniform> uniforms: Uniforms;`,
    ];
    const code = [...declarations, COMMON, d.code].join('\n');
    const module = backend.device.createShaderModule({ code, label: d.name });
    backend.pipelineCache[key] = backend.device.createComputePipeline({ compute: { module, entryPoint: '_start' }, layout: 'auto', label: d.name });
  }
  const maxX = backend.device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(d.groups, maxX);
  const program = new LoomProgram(d.name, backend.pipelineCache[key], [x, Math.ceil(d.groups / x), 1]);
  // recordAndSubmit binds [output, ...inputs]: outputs after the first go first among its "inputs".
  const [first, ...rest] = outputs.map(flat);
  const uniforms = d.uniforms.map(([, type, value]) => ({ type: type === 'f32' ? 'float32' : 'int32', data: [value] }));
  backend.recordAndSubmit(program, first!, [...rest, ...d.inputs.map(flat)], uniforms);
  for (const c of converted) backend.disposeData(c.dataId); // released once the commands that read it are submitted
  return outputs;
}

/** int32 or bool data (stored as i32) converted to a new float32 tensor of the same shape: y = f32(x). */
const TO_FLOAT32 = `${START} {
  let i = groupIndex(wid, nwg) * ${WG} + i32(lid);
  if (i >= uniforms.n) { return; }
  y[i] = f32(x[i]);
}`;

function toFloat32(backend: WebGpuBackendInternals, t: Info): Info {
  const n = size(t.shape);
  return dispatch(backend, {
    name: 'LoomToFloat32',
    code: TO_FLOAT32,
    outputs: [t.shape],
    outputNames: ['y'],
    inputs: [t],
    inputNames: ['x'],
    uniforms: [['n', 'i32', n]],
    groups: Math.ceil(n / WG),
  })[0]!;
}

/** The Adam step of one tensor, elementwise: m', v' and the parameter as Kingma & Ba's Algorithm 1 (core/kernels.ts). */
const ADAM = `${START} {
  let i = groupIndex(wid, nwg) * ${WG} + i32(lid);
  if (i >= uniforms.n) { return; }
  let g = grad[i];
  let m2 = uniforms.beta1 * m[i] + uniforms.oneMinusBeta1 * g;
  let v2 = uniforms.beta2 * v[i] + uniforms.oneMinusBeta2 * g * g;
  newM[i] = m2;
  newV[i] = v2;
  newParam[i] = param[i] - uniforms.lr * ((m2 / uniforms.c1) / (sqrt(v2 / uniforms.c2) + uniforms.epsilon));
}`;

/**
 * The Adam steps of `k` tensors in one dispatch: tensor j takes workgroups [end(j−1), end(j)) (its elements, 64 to a
 * workgroup); its parameter is multiplied by decay first (AdamW). WGSL cannot index bindings, so each tensor has its
 * own branch.
 */
function adamMultiCode(k: number): string {
  const branch = (j: number) => `
  if (w < uniforms.end${j}) {
    let i = (w - ${j === 0 ? '0' : `uniforms.end${j - 1}`}) * ${WG} + i32(lid);
    if (i < uniforms.n${j}) {
      let g = grad${j}[i];
      let m2 = uniforms.beta1_${j} * m${j}[i] + uniforms.oneMinusBeta1_${j} * g;
      let v2 = uniforms.beta2_${j} * v${j}[i] + uniforms.oneMinusBeta2_${j} * g * g;
      newM${j}[i] = m2;
      newV${j}[i] = v2;
      newParam${j}[i] = param${j}[i] * uniforms.decay${j} - uniforms.lr${j} * ((m2 / uniforms.c1_${j}) / (sqrt(v2 / uniforms.c2_${j}) + uniforms.epsilon${j}));
    }
    return;
  }`;
  return `${START} {
  let w = groupIndex(wid, nwg);${Array.from({ length: k }, (_, j) => branch(j)).join('')}
}`;
}

/** At most this many tensors in one LoomAdamMulti dispatch (besides the binding limit): the shader has a branch for each. */
const ADAM_MULTI_MAX = 32;

/** One row per workgroup: softmax over the last axis, max subtracted first. */
const SOFTMAX = `${START} {
  let row = groupIndex(wid, nwg);
  if (row >= uniforms.rows) { return; }
  let n = uniforms.cols;
  let base = row * n;
  var mx = -3.402823e38;
  for (var j = i32(lid); j < n; j = j + ${WG}) { mx = max(mx, logits[base + j]); }
  mx = reduceMax(lid, mx);
  var sum = 0.0;
  for (var j = i32(lid); j < n; j = j + ${WG}) { sum = sum + exp(logits[base + j] - mx); }
  let inv = 1.0 / reduceSum(lid, sum);
  for (var j = i32(lid); j < n; j = j + ${WG}) { y[base + j] = exp(logits[base + j] - mx) * inv; }
}`;

/** One row per workgroup: dx = y ⊙ (dy − Σ dy ⊙ y). */
const SOFTMAX_GRAD = `${START} {
  let row = groupIndex(wid, nwg);
  if (row >= uniforms.rows) { return; }
  let n = uniforms.cols;
  let base = row * n;
  var acc = 0.0;
  for (var j = i32(lid); j < n; j = j + ${WG}) { acc = acc + dy[base + j] * y[base + j]; }
  let dot = reduceSum(lid, acc);
  for (var j = i32(lid); j < n; j = j + ${WG}) { dx[base + j] = y[base + j] * (dy[base + j] - dot); }
}`;

/** Mean and 1/√(σ² + ε) of row \`base\` (two passes: the centred sum of squares). */
const MOMENTS = `
fn moments(lid: u32, base: i32, n: i32) -> vec2<f32> {
  var s = 0.0;
  for (var j = i32(lid); j < n; j = j + ${WG}) { s = s + x[base + j]; }
  let mu = reduceSum(lid, s) / f32(n);
  var q = 0.0;
  for (var j = i32(lid); j < n; j = j + ${WG}) { let c = x[base + j] - mu; q = q + c * c; }
  return vec2<f32>(mu, inverseSqrt(reduceSum(lid, q) / f32(n) + uniforms.epsilon));
}`;

/** One row per workgroup: γ ⊙ (x − μ)/√(σ² + ε) + β. */
const LAYER_NORM = `${MOMENTS}
${START} {
  let row = groupIndex(wid, nwg);
  if (row >= uniforms.rows) { return; }
  let n = uniforms.cols;
  let base = row * n;
  let mr = moments(lid, base, n);
  for (var j = i32(lid); j < n; j = j + ${WG}) { y[base + j] = (x[base + j] - mr.x) * mr.y * gamma[j] + beta[j]; }
}`;

/**
 * The layer norm's input gradient, one row per workgroup: with x̂ = (x − μ)·r and g = dy·γ,
 * dx = r · (g − mean(g) − x̂ · mean(g·x̂)); it also writes each row's (μ, r) for the second dispatch.
 */
const LAYER_NORM_GRAD_ROWS = `${MOMENTS}
${START} {
  let row = groupIndex(wid, nwg);
  if (row >= uniforms.rows) { return; }
  let n = uniforms.cols;
  let base = row * n;
  let mr = moments(lid, base, n);
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = i32(lid); j < n; j = j + ${WG}) {
    let g = dy[base + j] * gamma[j];
    sg = sg + g;
    sgx = sgx + g * (x[base + j] - mr.x) * mr.y;
  }
  let mg = reduceSum(lid, sg) / f32(n);
  let mgx = reduceSum(lid, sgx) / f32(n);
  for (var j = i32(lid); j < n; j = j + ${WG}) {
    let xhat = (x[base + j] - mr.x) * mr.y;
    dx[base + j] = mr.y * (dy[base + j] * gamma[j] - mg - xhat * mgx);
  }
  if (lid == 0u) { stats[2 * row] = mr.x; stats[2 * row + 1] = mr.y; }
}`;

/** dγ = Σ_rows dy·x̂ and dβ = Σ_rows dy, one column per invocation (consecutive invocations read consecutive columns). */
const LAYER_NORM_GRAD_COLUMNS = `${START} {
  let c = groupIndex(wid, nwg) * ${WG} + i32(lid);
  if (c >= uniforms.cols) { return; }
  var sg = 0.0;
  var sb = 0.0;
  for (var r = 0; r < uniforms.rows; r = r + 1) {
    let d = dy[r * uniforms.cols + c];
    sg = sg + d * (x[r * uniforms.cols + c] - stats[2 * r]) * stats[2 * r + 1];
    sb = sb + d;
  }
  dgamma[c] = sg;
  dbeta[c] = sb;
}`;

/** Where query i of batch b may attend to key j: not padding, and not ahead of i when causal. */
const ALLOWED = `
fn allowed(b: i32, i: i32, j: i32) -> bool {
  return (uniforms.causal == 0 || j <= i) && keep[b * uniforms.time + j] != 0.0;
}`;

/**
 * The opening of each attention shader: one (batch b, head h, query or key `row`) per workgroup, with the sizes
 * (t, heads, dk, d = heads·dk) and qkv's row length ld = 3·d.
 */
const attentionTask = (row: 'i' | 'j') => `${START} {
  let task = groupIndex(wid, nwg);
  let t = uniforms.time;
  let heads = uniforms.heads;
  let dk = uniforms.dk;
  if (task >= uniforms.batch * heads * t) { return; }
  let ${row} = task % t;
  let h = (task / t) % heads;
  let b = task / (t * heads);
  let d = heads * dk;
  let ld = 3 * d;`;

/**
 * One (batch, head, query) per workgroup: the scores q·kⱼ/√dk (−1e9 where masked), their softmax written to probs,
 * then the context Σⱼ pⱼ vⱼ. qkv rows are [q | k | v], head h in columns h·dk.. of each block.
 */
const ATTENTION = `${ALLOWED}
${attentionTask('i')}
  let q = (b * t + i) * ld + h * dk;
  let p = task * t;
  var mx = -3.402823e38;
  for (var j = i32(lid); j < t; j = j + ${WG}) {
    var s = -1e9;
    if (allowed(b, i, j)) {
      let k = (b * t + j) * ld + d + h * dk;
      var acc = 0.0;
      for (var c = 0; c < dk; c = c + 1) { acc = acc + qkv[q + c] * qkv[k + c]; }
      s = acc * uniforms.scale;
    }
    probs[p + j] = s;
    mx = max(mx, s);
  }
  mx = reduceMax(lid, mx);
  var sum = 0.0;
  for (var j = i32(lid); j < t; j = j + ${WG}) { let e = exp(probs[p + j] - mx); probs[p + j] = e; sum = sum + e; }
  let inv = 1.0 / reduceSum(lid, sum);
  for (var j = i32(lid); j < t; j = j + ${WG}) { probs[p + j] = probs[p + j] * inv; }
  storageBarrier();
  for (var c = i32(lid); c < dk; c = c + ${WG}) {
    var acc = 0.0;
    for (var j = 0; j < t; j = j + 1) { acc = acc + probs[p + j] * qkv[(b * t + j) * ld + 2 * d + h * dk + c]; }
    context[(b * t + i) * d + h * dk + c] = acc;
  }
}`;

/**
 * The attention gradient's first dispatch, one (batch, head, query i) per workgroup: dPᵢⱼ = dyᵢ·vⱼ,
 * dSᵢⱼ = Pᵢⱼ (dPᵢⱼ − Σⱼ' Pᵢⱼ' dPᵢⱼ') / √dk (0 where masked: the score there is a constant), kept in ds, and
 * dqᵢ = Σⱼ dSᵢⱼ kⱼ into dqkv's q block.
 */
const ATTENTION_GRAD_QUERIES = `${ALLOWED}
${attentionTask('i')}
  let o = (b * t + i) * d + h * dk;
  let p = task * t;
  var acc = 0.0;
  for (var j = i32(lid); j < t; j = j + ${WG}) {
    let v = (b * t + j) * ld + 2 * d + h * dk;
    var dp = 0.0;
    for (var c = 0; c < dk; c = c + 1) { dp = dp + dy[o + c] * qkv[v + c]; }
    ds[p + j] = dp;
    acc = acc + dp * probs[p + j];
  }
  let dot = reduceSum(lid, acc);
  for (var j = i32(lid); j < t; j = j + ${WG}) {
    var g = 0.0;
    if (allowed(b, i, j)) { g = probs[p + j] * (ds[p + j] - dot) * uniforms.scale; }
    ds[p + j] = g;
  }
  storageBarrier();
  for (var c = i32(lid); c < dk; c = c + ${WG}) {
    var dq = 0.0;
    for (var j = 0; j < t; j = j + 1) { dq = dq + ds[p + j] * qkv[(b * t + j) * ld + d + h * dk + c]; }
    dqkv[(b * t + i) * ld + h * dk + c] = dq;
  }
}`;

/** Its second dispatch, one (batch, head, key j) per workgroup: dkⱼ = Σᵢ dSᵢⱼ qᵢ and dvⱼ = Σᵢ Pᵢⱼ dyᵢ. */
const ATTENTION_GRAD_KEYS = `${attentionTask('j')}
  let bh = task / t;
  for (var c = i32(lid); c < dk; c = c + ${WG}) {
    var gk = 0.0;
    var gv = 0.0;
    for (var i = 0; i < t; i = i + 1) {
      let s = (bh * t + i) * t + j;
      gk = gk + ds[s] * qkv[(b * t + i) * ld + h * dk + c];
      gv = gv + probs[s] * dy[(b * t + i) * d + h * dk + c];
    }
    dqkv[(b * t + j) * ld + d + h * dk + c] = gk;
    dqkv[(b * t + j) * ld + 2 * d + h * dk + c] = gv;
  }
}`;

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };
const gpu = (args: KernelArgs) => args.backend as WebGpuBackendInternals;
const rowsOf = (shape: number[]) => ({ rows: size(shape.slice(0, -1)), cols: shape.at(-1) ?? 1 });

function expectFloat32(kernel: string, inputs: Record<string, Info | undefined>): void {
  for (const [name, t] of Object.entries(inputs))
    if (t?.dtype !== 'float32') throw new Error(`${kernel} on webgpu: input ${name} must be float32 (got ${t?.dtype})`);
}

/** The kernels, by name, as tfjs kernel functions. */
export const WEBGPU_KERNELS: Record<string, (args: KernelArgs) => Info | Info[]> = {
  [FUSED_KERNELS.adam]: (args) => {
    const { param, grad, m, v } = args.inputs as Record<string, Info>;
    expectFloat32(FUSED_KERNELS.adam, { param, grad, m, v });
    const n = size(param!.shape);
    for (const [name, t] of Object.entries({ grad, m, v }))
      if (size(t!.shape) !== n) throw new Error(`${FUSED_KERNELS.adam}: ${name} [${t!.shape}] does not match param [${param!.shape}]`);
    const a = args.attrs as Record<string, number>;
    return dispatch(gpu(args), {
      name: 'LoomAdam',
      code: ADAM,
      outputs: [param!.shape, param!.shape, param!.shape],
      outputNames: ['newParam', 'newM', 'newV'],
      inputs: [param!, grad!, m!, v!],
      inputNames: ['param', 'grad', 'm', 'v'],
      uniforms: [
        ['n', 'i32', n],
        ['lr', 'f32', a.lr!],
        ['beta1', 'f32', a.beta1!],
        ['beta2', 'f32', a.beta2!],
        ['oneMinusBeta1', 'f32', 1 - a.beta1!],
        ['oneMinusBeta2', 'f32', 1 - a.beta2!],
        ['epsilon', 'f32', a.epsilon!],
        ['c1', 'f32', a.c1!],
        ['c2', 'f32', a.c2!],
      ],
      groups: Math.ceil(n / WG),
    });
  },
  [FUSED_KERNELS.adamMulti]: (args) => {
    const backend = gpu(args);
    const a = args.attrs as unknown as Record<'lr' | 'beta1' | 'beta2' | 'epsilon' | 'c1' | 'c2' | 'decay', number[]>;
    const k = a.lr.length;
    const tensors = Array.from({ length: k }, (_, j) => {
      const [param, grad, m, v] = ['param', 'grad', 'm', 'v'].map((n) => (args.inputs as Record<string, Info>)[`${n}${j}`]);
      expectFloat32(FUSED_KERNELS.adamMulti, { [`param${j}`]: param, [`grad${j}`]: grad, [`m${j}`]: m, [`v${j}`]: v });
      const n = size(param!.shape);
      if (size(grad!.shape) !== n || size(m!.shape) !== n || size(v!.shape) !== n)
        throw new Error(`${FUSED_KERNELS.adamMulti}: grad${j}, m${j} and v${j} do not match param${j} [${param!.shape}]`);
      return { j, inputs: [param!, grad!, m!, v!], shape: param!.shape, n };
    });
    const out: Info[] = new Array(3 * k);
    // An empty tensor's outputs are empty: no work, and no dispatch (which would skip its neighbours' work too).
    for (const t of tensors.filter((t) => t.n === 0))
      for (let o = 0; o < 3; o++) out[3 * t.j + o] = backend.makeTensorInfo(t.shape, 'float32', new Float32Array(0));
    const work = tensors.filter((t) => t.n > 0);
    // Seven storage buffers a tensor (four inputs, three outputs).
    const per = Math.max(1, Math.min(ADAM_MULTI_MAX, Math.floor(backend.device.limits.maxStorageBuffersPerShaderStage / 7)));
    for (let s = 0; s < work.length; s += per) {
      const chunk = work.slice(s, s + per);
      let end = 0;
      const uniforms = chunk.flatMap(({ j, n }, c): Uniform[] => {
        end += Math.ceil(n / WG);
        return [
          [`n${c}`, 'i32', n],
          [`end${c}`, 'i32', end],
          [`lr${c}`, 'f32', a.lr[j]!],
          [`beta1_${c}`, 'f32', a.beta1[j]!],
          [`beta2_${c}`, 'f32', a.beta2[j]!],
          [`oneMinusBeta1_${c}`, 'f32', 1 - a.beta1[j]!],
          [`oneMinusBeta2_${c}`, 'f32', 1 - a.beta2[j]!],
          [`epsilon${c}`, 'f32', a.epsilon[j]!],
          [`c1_${c}`, 'f32', a.c1[j]!],
          [`c2_${c}`, 'f32', a.c2[j]!],
          [`decay${c}`, 'f32', a.decay[j]!],
        ];
      });
      const results = dispatch(backend, {
        name: `LoomAdamMulti${chunk.length}`,
        code: adamMultiCode(chunk.length),
        outputs: chunk.flatMap((t) => [t.shape, t.shape, t.shape]),
        outputNames: chunk.flatMap((_, c) => [`newParam${c}`, `newM${c}`, `newV${c}`]),
        inputs: chunk.flatMap((t) => t.inputs),
        inputNames: chunk.flatMap((_, c) => [`param${c}`, `grad${c}`, `m${c}`, `v${c}`]),
        uniforms,
        groups: end,
      });
      chunk.forEach((t, c) => {
        for (let o = 0; o < 3; o++) out[3 * t.j + o] = results[3 * c + o]!;
      });
    }
    return out;
  },
  [FUSED_KERNELS.softmax]: (args) => {
    const { logits } = args.inputs as { logits: Info };
    expectFloat32(FUSED_KERNELS.softmax, { logits });
    const { rows, cols } = rowsOf(logits.shape);
    const uniforms: Uniform[] = [
      ['rows', 'i32', rows],
      ['cols', 'i32', cols],
    ];
    return dispatch(gpu(args), {
      name: 'LoomSoftmax',
      code: SOFTMAX,
      outputs: [logits.shape],
      outputNames: ['y'],
      inputs: [logits],
      inputNames: ['logits'],
      uniforms,
      groups: rows,
    })[0]!;
  },
  [FUSED_KERNELS.softmaxGrad]: (args) => {
    const { dy, y } = args.inputs as { dy: Info; y: Info };
    expectFloat32(FUSED_KERNELS.softmaxGrad, { dy, y });
    const { rows, cols } = rowsOf(y.shape);
    const uniforms: Uniform[] = [
      ['rows', 'i32', rows],
      ['cols', 'i32', cols],
    ];
    return dispatch(gpu(args), {
      name: 'LoomSoftmaxGrad',
      code: SOFTMAX_GRAD,
      outputs: [y.shape],
      outputNames: ['dx'],
      inputs: [dy, y],
      inputNames: ['dy', 'y'],
      uniforms,
      groups: rows,
    })[0]!;
  },
  [FUSED_KERNELS.layerNorm]: (args) => {
    const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
    expectFloat32(FUSED_KERNELS.layerNorm, { x, gamma, beta });
    const { rows, cols } = rowsOf(x.shape);
    if (size(gamma.shape) !== cols || size(beta.shape) !== cols)
      throw new Error(`${FUSED_KERNELS.layerNorm}: gamma [${gamma.shape}] and beta [${beta.shape}] must have x's last axis (${cols})`);
    return dispatch(gpu(args), {
      name: 'LoomLayerNorm',
      code: LAYER_NORM,
      outputs: [x.shape],
      outputNames: ['y'],
      inputs: [x, gamma, beta],
      inputNames: ['x', 'gamma', 'beta'],
      uniforms: [
        ['rows', 'i32', rows],
        ['cols', 'i32', cols],
        ['epsilon', 'f32', (args.attrs as { epsilon: number }).epsilon],
      ],
      groups: rows,
    })[0]!;
  },
  [FUSED_KERNELS.layerNormGrad]: (args) => {
    const { dy, x, gamma } = args.inputs as { dy: Info; x: Info; gamma: Info };
    expectFloat32(FUSED_KERNELS.layerNormGrad, { dy, x, gamma });
    const { rows, cols } = rowsOf(x.shape);
    if (size(gamma.shape) !== cols || size(dy.shape) !== size(x.shape))
      throw new Error(`${FUSED_KERNELS.layerNormGrad}: dy [${dy.shape}], x [${x.shape}] and gamma [${gamma.shape}] do not fit`);
    const backend = gpu(args);
    const uniforms: Uniform[] = [
      ['rows', 'i32', rows],
      ['cols', 'i32', cols],
      ['epsilon', 'f32', (args.attrs as { epsilon: number }).epsilon],
    ];
    const [dx, stats] = dispatch(backend, {
      name: 'LoomLayerNormGradRows',
      code: LAYER_NORM_GRAD_ROWS,
      outputs: [x.shape, [rows, 2]],
      outputNames: ['dx', 'stats'],
      inputs: [dy, x, gamma],
      inputNames: ['dy', 'x', 'gamma'],
      uniforms,
      groups: rows,
    }) as [Info, Info];
    const [dgamma, dbeta] = dispatch(backend, {
      name: 'LoomLayerNormGradColumns',
      code: LAYER_NORM_GRAD_COLUMNS,
      outputs: [gamma.shape, gamma.shape],
      outputNames: ['dgamma', 'dbeta'],
      inputs: [dy, x, stats],
      inputNames: ['dy', 'x', 'stats'],
      uniforms,
      groups: Math.ceil(cols / WG),
    }) as [Info, Info];
    backend.disposeData(stats.dataId);
    return [dx, dgamma, dbeta];
  },
  [FUSED_KERNELS.attention]: (args) => {
    const { qkv, keep } = args.inputs as { qkv: Info; keep: Info };
    expectFloat32(FUSED_KERNELS.attention, { qkv, keep });
    const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
    const [batch, time, d3] = qkv.shape as [number, number, number];
    if (qkv.shape.length !== 3 || d3 % (3 * numHeads) !== 0 || size(keep.shape) !== batch * time)
      throw new Error(`${FUSED_KERNELS.attention}: qkv [${qkv.shape}] and keep [${keep.shape}] do not fit ${numHeads} heads`);
    const d = d3 / 3;
    return dispatch(gpu(args), {
      name: 'LoomAttention',
      code: ATTENTION,
      outputs: [
        [batch, time, d],
        [batch, numHeads, time, time],
      ],
      outputNames: ['context', 'probs'],
      inputs: [qkv, keep],
      inputNames: ['qkv', 'keep'],
      uniforms: attentionUniforms(batch, time, numHeads, d / numHeads, causal),
      groups: batch * numHeads * time,
    });
  },
  [FUSED_KERNELS.attentionGrad]: (args) => {
    const { dy, qkv, keep, probs } = args.inputs as { dy: Info; qkv: Info; keep: Info; probs: Info };
    expectFloat32(FUSED_KERNELS.attentionGrad, { dy, qkv, keep, probs });
    const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
    const [batch, time, d3] = qkv.shape as [number, number, number];
    if (size(dy.shape) * 3 !== size(qkv.shape) || size(probs.shape) !== batch * numHeads * time * time || size(keep.shape) !== batch * time)
      throw new Error(`${FUSED_KERNELS.attentionGrad}: dy [${dy.shape}], qkv [${qkv.shape}], keep [${keep.shape}] and probs [${probs.shape}] do not fit`);
    const backend = gpu(args);
    const uniforms = attentionUniforms(batch, time, numHeads, d3 / 3 / numHeads, causal);
    const groups = batch * numHeads * time;
    const [dqkv, ds] = dispatch(backend, {
      name: 'LoomAttentionGradQueries',
      code: ATTENTION_GRAD_QUERIES,
      outputs: [qkv.shape, probs.shape],
      outputNames: ['dqkv', 'ds'],
      inputs: [dy, qkv, keep, probs],
      inputNames: ['dy', 'qkv', 'keep', 'probs'],
      uniforms,
      groups,
    }) as [Info, Info];
    dispatch(backend, {
      name: 'LoomAttentionGradKeys',
      code: ATTENTION_GRAD_KEYS,
      outputs: [dqkv],
      outputNames: ['dqkv'],
      inputs: [dy, qkv, probs, ds],
      inputNames: ['dy', 'qkv', 'probs', 'ds'],
      uniforms,
      groups,
    });
    backend.disposeData(ds.dataId);
    return dqkv;
  },
};

function attentionUniforms(batch: number, time: number, heads: number, dk: number, causal: boolean): Uniform[] {
  return [
    ['batch', 'i32', batch],
    ['time', 'i32', time],
    ['heads', 'i32', heads],
    ['dk', 'i32', dk],
    ['causal', 'i32', causal ? 1 : 0],
    ['scale', 'f32', 1 / Math.sqrt(dk)],
  ];
}

/** Registers the WGSL kernels for tfjs's `webgpu` backend (once; the names already registered are left alone). */
export function registerWebGpuKernels(): void {
  for (const [kernelName, kernelFunc] of Object.entries(WEBGPU_KERNELS))
    if (!tf.getKernel(kernelName, 'webgpu')) tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as tf.KernelFunc });
}

/**
 * Chooses the tfjs backend for a run: the one the user asked for (flag or LOOM_BACKEND), else the available
 * registered backend with the highest priority (tfjs-node-gpu > webgpu on a hardware adapter > tfjs-node > native-cpu > cpu
 * by default).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import type { Backend, Model } from './interfaces';
import { installOpGradients } from './ops';
import type { PluginRegistry } from './registry';

export interface SelectedBackend {
  backend: Backend;
  /** Facts to record as run tags: `backend`, the tfjs backend name, kernels replaced, why others were skipped. */
  tags: Record<string, string>;
}

/**
 * Activates the requested or the best available backend, after installing the gradients of the kernels core/ops runs
 * (`installOpGradients`): this is the step that readies tfjs for loom, as importing loom changes no tfjs registry.
 */
export async function selectBackend(registry: PluginRegistry, requested?: string): Promise<SelectedBackend> {
  installOpGradients();
  if (requested) return activateBackend(registry.create('backend', requested, '--backend'), registry.names('backend'));

  const candidates = registry.names('backend').map((n) => registry.create('backend', n));
  candidates.sort((a, b) => b.priority - a.priority);
  const skipped: string[] = [];
  for (const backend of candidates) {
    const a = await backend.available();
    if (!a.ok) {
      skipped.push(`${backend.spec.type}: ${a.reason}`);
      continue;
    }
    const tags = await backend.activate();
    return { backend, tags: { backend: backend.spec.type, ...tags, 'tfjs.backend': tf.getBackend(), 'backend.skipped': skipped.join('; ') } };
  }
  throw new ConfigError('backend', `no registered backend is available (${skipped.join('; ')})`);
}

/**
 * Activates one given backend (a requested one, or one a run's override registered), after installing the ops'
 * gradients; a backend that is not available here is a ConfigError naming `--backend` and saying why.
 */
export async function activateBackend(backend: Backend, registered: string[] = []): Promise<SelectedBackend> {
  installOpGradients();
  const a = await backend.available(true);
  if (!a.ok) {
    const others = registered.length ? `. Registered backends: ${registered.join(', ')}` : '';
    throw new ConfigError('--backend', `backend "${backend.spec.type}" is not available here: ${a.reason}${others}`);
  }
  return { backend, tags: { backend: backend.spec.type, ...(await backend.activate()), 'tfjs.backend': tf.getBackend() } };
}

/**
 * The one line a run prints about its backend: the name, the SIMD level and threads when the backend reports them
 * (`backend.simd`, `backend.threads`), else its `backend.kernels` tag, and why faster backends were not used. The
 * list of replaced kernels (over a thousand characters for native-cpu) is added only when `verbose` (`--verbose`,
 * or LOOM_VERBOSE=1, which the CLI sets); it is always recorded in the run tag `backend.kernels`.
 */
export function describeBackend(tags: Record<string, string>, verbose = process.env.LOOM_VERBOSE === '1'): string {
  const kernels = tags['backend.kernels'] ?? tags['tfjs.backend'] ?? '';
  const facts = [tags['backend.simd'], tags['backend.threads'] && `${tags['backend.threads']} threads`].filter(Boolean).join(', ');
  const skipped = tags['backend.skipped'] ? `; not used: ${tags['backend.skipped']}` : '';
  const line = `loom: backend ${tags.backend} (${facts || kernels})${skipped}`;
  return verbose && facts && kernels ? `${line}\nloom: kernels: ${kernels}` : line;
}

/**
 * The mark a tfjs backend object carries when synchronous reads of its device data are unsupported or slow (webgpu in
 * Node): see {@link readToHost}. It is a property of the backend object, set by the plugin that constructs it, so
 * the fact lives and dies with that backend and loom keeps no list of backends beside tfjs's own registry.
 * `Symbol.for`: a bundle holding two copies of core still agrees on it.
 */
const ASYNC_READS = Symbol.for('loom.readsAsynchronously');

/**
 * Declares that the tfjs backend object `backend` reads asynchronously: the backend plugin that constructs it calls
 * this before registering it with tfjs (plugins/backends/webgpu.ts).
 */
export function markAsyncReads(backend: tf.KernelBackend): void {
  Object.defineProperty(backend, ASYNC_READS, { value: true });
}

/**
 * Whether `backend` (default: the active tfjs backend, none before one is set) reads asynchronously (webgpu): a
 * synchronous read there needs {@link readToHost} first.
 */
export function readsAsynchronously(backend: tf.KernelBackend | null = activeBackend()): boolean {
  return backend !== null && (backend as { [ASYNC_READS]?: boolean })[ASYNC_READS] === true;
}

const HOST_FLOATS = Symbol.for('loom.hostFloats');

/**
 * Declares where `backend` (a tfjs backend object) wants the arrays of new float32 tensors written on the host to
 * come from: a backend that recycles its output arrays (native-cpu's buffer pool) passes its allocator, so an array
 * filled in JavaScript and wrapped by `tf.tensor` (a dropout mask) goes back to it when the tensor is disposed,
 * instead of being a new allocation every step for the garbage collector. `null` removes it.
 */
export function setHostFloats(backend: tf.KernelBackend, allocate: ((n: number) => Float32Array) | null): void {
  Object.defineProperty(backend, HOST_FLOATS, { value: allocate ?? undefined, configurable: true });
}

/**
 * An array of `n` floats (contents arbitrary: write every element) for a float32 tensor of the active backend, from
 * its allocator where it declared one ({@link setHostFloats}), else a new one. Hand it to `tf.tensor` (which keeps
 * it as the tensor's values) and to nothing else.
 */
export function hostFloats(n: number, backend: tf.KernelBackend | null = activeBackend()): Float32Array {
  const allocate = backend ? (backend as { [HOST_FLOATS]?: (n: number) => Float32Array })[HOST_FLOATS] : undefined;
  return allocate ? allocate(n) : new Float32Array(n);
}

/** The active tfjs backend's object, or null when none is set or it is still initializing (never initializes one). */
function activeBackend(): tf.KernelBackend | null {
  const name = tf.engine().backendName;
  return name ? (tf.engine().registry[name] ?? null) : null;
}

/** The tensors `model`'s stateful layers carry between batches now (an LSTM's h and c), e.g. to fetch before `getState`. */
export function carriedStateTensors(model: Pick<Model, 'carriedTensors'>): tf.Tensor[] {
  return model.carriedTensors();
}

/** The pruning masks `model`'s weights carry ({@link Parameter.mask}): a saved or checkpointed model's masks. */
export function maskTensors(model: Pick<Model, 'weights'>): tf.Tensor[] {
  return model.weights().flatMap((p) => (p.mask ? [p.mask] : []));
}

/**
 * Before code that reads tensors synchronously (a checkpoint's weights and optimizer state and the model's carried
 * state, saveModel, readWeights): on a backend that reads asynchronously, awaits `data()` of `from` when it is a list
 * of tensors, or when it is a model, of every live tf.Variable (the model's weights and the optimizers' slots, which
 * a checkpoint saves), the model's pruning masks ({@link maskTensors}) and the state its stateful layers carry
 * ({@link carriedStateTensors}), so that their `dataSync()` is served from the copy the backend keeps on the host.
 * The caller names what it reads: nothing outside `from` (another model's masks, say) is fetched.
 * Elsewhere it does nothing: on the cpu backend `data()` would keep the native kernels' pool from reusing buffers.
 */
export async function readToHost(from: readonly tf.Tensor[] | Pick<Model, 'weights' | 'carriedTensors'>): Promise<void> {
  if (!readsAsynchronously()) return;
  const all = isTensorList(from) ? from : [...Object.values(tf.engine().registeredVariables), ...maskTensors(from), ...carriedStateTensors(from)];
  await Promise.all(all.filter((t) => !t.isDisposed).map((t) => t.data()));
}

function isTensorList(from: readonly tf.Tensor[] | object): from is readonly tf.Tensor[] {
  return Array.isArray(from);
}

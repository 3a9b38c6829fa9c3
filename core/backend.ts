/**
 * Chooses the tfjs backend for a run: the one the user asked for (flag or LOOM_BACKEND), else the available
 * registered backend with the highest priority (tfjs-node-gpu > webgpu on a hardware adapter > tfjs-node > native-cpu > cpu
 * by default).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import { liveMasks } from './masks';
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

/** tfjs backends whose synchronous reads of device data are unsupported or slow (webgpu in Node): see {@link readToHost}. */
const asyncReadBackends = new Set<string>();

/** Declares that tfjs backend `name` reads asynchronously (a backend plugin calls it when it registers the backend). */
export function markAsyncReads(name: string): void {
  asyncReadBackends.add(name);
}

/** Whether the active tfjs backend reads asynchronously (webgpu): a synchronous read there needs {@link readToHost} first. */
export function readsAsynchronously(): boolean {
  return asyncReadBackends.has(tf.getBackend());
}

/** The tensors `model`'s stateful layers carry between batches now (an LSTM's h and c), e.g. to fetch before `getState`. */
export function carriedStateTensors(model: Pick<Model, 'carriedTensors'>): tf.Tensor[] {
  return model.carriedTensors();
}

/**
 * Before code that reads tensors synchronously (a checkpoint's weights and optimizer state and the model's carried
 * state, saveModel): on a backend that reads asynchronously, awaits `data()` of `tensors`, or when given a model or
 * nothing, of every live tf.Variable (the weights and the optimizers' slots) and pruning mask, plus the state that
 * model's stateful layers carry (a checkpoint saves it), so that their `dataSync()` is served from the copy the
 * backend keeps on the host.
 * Elsewhere it does nothing: on the cpu backend `data()` would keep the native kernels' pool from reusing buffers.
 */
export async function readToHost(from?: readonly tf.Tensor[] | Pick<Model, 'carriedTensors'>): Promise<void> {
  if (!readsAsynchronously()) return;
  const all = Array.isArray(from)
    ? (from as readonly tf.Tensor[])
    : [...Object.values(tf.engine().registeredVariables), ...(from ? carriedStateTensors(from as Pick<Model, 'carriedTensors'>) : []), ...liveMasks];
  await Promise.all(all.filter((t) => !t.isDisposed).map((t) => t.data()));
}

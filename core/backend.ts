/**
 * Chooses the tfjs backend for a run: the one the user asked for (flag or LOOM_BACKEND), else the available
 * registered backend with the highest priority (tfjs-node-gpu > tfjs-node > native-cpu > cpu by default).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from './errors';
import type { Backend } from './interfaces';
import type { PluginRegistry } from './registry';

export interface SelectedBackend {
  backend: Backend;
  /** Facts to record as run tags: `backend`, the tfjs backend name, kernels replaced, why others were skipped. */
  tags: Record<string, string>;
}

export async function selectBackend(registry: PluginRegistry, requested?: string): Promise<SelectedBackend> {
  if (requested) {
    const backend = registry.create('backend', requested, '--backend');
    const a = await backend.available();
    if (!a.ok) {
      throw new ConfigError('--backend', `backend "${requested}" is not available here: ${a.reason}. Registered backends: ${registry.names('backend').join(', ')}`);
    }
    return { backend, tags: { backend: backend.spec.type, ...(await backend.activate()), 'tfjs.backend': tf.getBackend() } };
  }
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

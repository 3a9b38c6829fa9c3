/** Facts about where a run happens, recorded as tags so a reproduction says what it ran on. */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';

/** The commit of loom's own checkout (not of the directory a run happens to start in), `+dirty` when modified. */
export function gitCommit(cwd = path.dirname(fileURLToPath(import.meta.url))): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}

/**
 * The commit and GPU as they were when this process first asked: a long run (several variants) keeps reporting
 * the code it actually runs, even if the checkout moves on meanwhile.
 */
let processFacts: { commit: string; gpu: string | null } | undefined;

/** The first GPU's name from nvidia-smi, or null where there is none. */
function gpuModel(): string | null {
  try {
    return (
      execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 3000 })
        .toString()
        .split('\n')[0]!
        .trim() || null
    );
  } catch {
    return null;
  }
}

export function environmentTags(): Record<string, string> {
  const cpus = os.cpus();
  processFacts ??= { commit: gitCommit(), gpu: gpuModel() };
  return {
    'git.commit': processFacts.commit,
    ...(processFacts.gpu ? { 'gpu.model': processFacts.gpu } : {}),
    'node.version': process.version,
    'tfjs.version': tf.version_core,
    host: os.hostname(),
    platform: `${os.platform()}-${os.arch()}`,
    'cpu.model': cpus[0]?.model ?? 'unknown',
    'cpu.count': String(cpus.length),
  };
}

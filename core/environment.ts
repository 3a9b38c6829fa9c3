/** Facts about where a run happens, recorded as tags so a reproduction says what it ran on. */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fileURLToPath } from 'node:url';

/** The commit of loom's own checkout (not of the directory a run happens to start in), `+dirty` when modified. */
export function gitCommit(cwd = path.dirname(fileURLToPath(import.meta.url))): string {
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}

export function environmentTags(): Record<string, string> {
  const cpus = os.cpus();
  return {
    'git.commit': gitCommit(),
    'node.version': process.version,
    'tfjs.version': tf.version_core,
    host: os.hostname(),
    platform: `${os.platform()}-${os.arch()}`,
    'cpu.model': cpus[0]?.model ?? 'unknown',
    'cpu.count': String(cpus.length),
  };
}

import * as path from 'node:path';

/**
 * Where loom keeps files it derives and can rebuild, such as trained tokenizers: `./cache/<parts...>` under the
 * working directory, beside `./mlruns` and `./checkpoints` (or under `$LOOM_CACHE_DIR`). Never under the checkpoint
 * root: `--resume latest` scans that for run folders, and caches are not runs. Deleting the folder only costs the
 * time to rebuild what was in it.
 */
export function cachePath(...parts: string[]): string {
  return path.resolve(process.env.LOOM_CACHE_DIR || 'cache', ...parts);
}

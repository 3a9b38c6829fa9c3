/**
 * Where loom's own files are: the directory of loom's package.json, found by walking up from this module. The same
 * code runs from the sources (core/package-root.ts, through tsx) and from the build (dist/core/package-root.js, in
 * an installed package), one directory deeper, so paths to the native addons are taken from here, not counted in `../`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The absolute path of `parts` inside loom's package (its root when `parts` is empty). */
export function loomPath(...parts: string[]): string {
  if (root === undefined) {
    let dir = path.dirname(fileURLToPath(import.meta.url));
    while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    root = dir;
  }
  return path.join(root, ...parts);
}

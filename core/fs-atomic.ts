import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes a file so that readers see either the old or the new contents, never half of it:
 * write to a temporary file in the same directory, fsync it, rename over the target, fsync the directory.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  try {
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
  } catch {
    // Some file systems do not allow fsync on a directory; the rename is still atomic.
  }
}

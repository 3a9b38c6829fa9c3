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
  writeFileSynced(tmp, data);
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}

/** Writes a file and fsyncs it before returning. */
export function writeFileSynced(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Fsyncs a directory (so a rename in it is durable); some file systems refuse, and the rename is still atomic. */
export function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  } catch {
    // not supported here
  }
}

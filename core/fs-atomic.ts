import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileError } from './errors';

/**
 * Writes a file so that readers see either the old or the new contents, never half of it:
 * write to a temporary file in the same directory, fsync it, rename over the target, fsync the directory.
 * A failed write (a full disk) throws a {@link FileError} naming `file`, removes the temporary file and leaves the
 * old contents in place.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    writeSynced(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw writeError(file, e);
  }
  fsyncDir(dir);
}

/** Writes a file and fsyncs it before returning; a failure throws a {@link FileError} naming `file`. */
export function writeFileSynced(file: string, data: string | Uint8Array): void {
  try {
    writeSynced(file, data);
  } catch (e) {
    throw writeError(file, e);
  }
}

function writeSynced(file: string, data: string | Uint8Array): void {
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

/** SHA-256 of `data` in hex: the checksums that let checkpoints and saved models detect corruption. */
export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Plain words for the errors a write meets in practice; Node's own message for the rest. */
const CAUSES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is not a directory',
};

/** Why a file operation failed, in words, with the error code: "no space left on device (ENOSPC)". */
export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (code && CAUSES[code]) return `${CAUSES[code]} (${code})`;
  return e instanceof Error ? e.message : String(e);
}

/** Error codes that mean the storage failed (not the program): reported as a {@link FileError} by {@link asFileError}. */
const STORAGE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EIO', 'EROFS', 'EACCES', 'EPERM']);

/**
 * A storage failure thrown by node:fs anywhere in a run (a tracker's write on a full disk) as a {@link FileError}
 * naming the file and the cause in words; null for any other error.
 */
export function asFileError(e: unknown): FileError | null {
  if (e instanceof FileError) return e;
  const err = e as NodeJS.ErrnoException;
  if (!(e instanceof Error) || !err.code || !STORAGE.has(err.code)) return null;
  const file = err.path ?? 'a file';
  return new FileError(file, `cannot ${err.syscall ?? 'write'} ${file}: ${describeFsError(e)}`);
}

/** A {@link FileError} for a failed write of `file` (Node's messages for fd-based writes do not name the file). */
function writeError(file: string, e: unknown): FileError {
  return new FileError(file, `cannot write ${file}: ${describeFsError(e)}`);
}

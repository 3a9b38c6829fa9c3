/**
 * Error types with messages that name what was wrong and what was expected.
 * Every user-facing failure (bad config, shape mismatch, missing data, non-finite loss)
 * is one of these, so callers and the CLI can tell a user error from a bug.
 */
export class LoomError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A config field or CLI flag has a bad value. `path` names the field, e.g. `optimizer.lr`. */
export class ConfigError extends LoomError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(path ? `${path}: ${message}` : message);
  }
}

/** A tensor's shape does not fit a layer or a loss. The message names the layer and both shapes. */
export class ShapeError extends LoomError {
  constructor(
    readonly where: string,
    readonly expected: string,
    readonly actual: readonly (number | null)[],
  ) {
    super(`${where}: expected input shape ${expected}, got [${actual.map((d) => (d === null ? 'batch' : d)).join(', ')}]`);
  }
}

/** Data that a run needs is missing or malformed; the message says how to get it. */
export class DataError extends LoomError {}

/** The loss or a gradient became NaN or infinite. */
export class NonFiniteError extends LoomError {}

/**
 * A file loom reads or writes is unusable: unreadable, corrupt (truncated or altered since it was written) or not
 * writable (a full disk, a read-only file system). `file` names it; the message says what was wrong with it.
 */
export class FileError extends LoomError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A run stopped on SIGINT or SIGTERM after finishing its step and writing a checkpoint; the message says how to
 * resume. `exitCode` follows the shell's convention for a process ended by a signal: 128 + its number (130, 143).
 */
export class InterruptedError extends LoomError {
  constructor(
    readonly signal: 'SIGINT' | 'SIGTERM',
    message: string,
  ) {
    super(message);
  }

  get exitCode(): number {
    return this.signal === 'SIGINT' ? 130 : 143;
  }
}

// vitest's configuration for the arm64 kernel tests under qemu (native/arm64/test.mjs): the arm64 Node cannot start
// child processes of itself here (no binfmt_misc), so the tests run in worker threads of the one process, with a
// setup that does not chdir (workers cannot) and a results file of their own.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..'),
  test: {
    include: ['plugins/backends/native-kernels.test.ts'],
    setupFiles: ['native/arm64/setup.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 1_200_000,
    pool: 'threads',
    maxWorkers: 1,
    reporters: ['default'],
  },
});

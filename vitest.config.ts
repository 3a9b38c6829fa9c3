import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['core/**/*.test.ts', 'runtime/**/*.test.ts', 'plugins/**/*.test.ts', 'papers/**/*.test.ts', 'cli/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs kernels are CPU-bound and each worker loads its own backend: one worker per core.
    pool: 'forks',
    // The JSON report lets .ci/run print one "N passed, N failed" line that any CI can read.
    reporters: ['default', 'json'],
    outputFile: { json: 'node_modules/.cache/vitest-results.json' },
    maxWorkers: 2,
  },
});

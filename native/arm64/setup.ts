// test/setup.ts for the arm64 run (native/arm64/vitest.config.ts), less the chdir into a temporary directory that
// worker threads cannot do: the kernel tests write no files.
import 'reflect-metadata';
import '../../core';

// Loaded by vitest before every test file: decorators need reflect-metadata, and every test runs on the same
// backend that the framework selects (native CPU kernels when they built, else tfjs's cpu backend).
import 'reflect-metadata';
import '../core';

// Each test file runs in a fresh temporary working directory, so whatever a run writes relative to it
// (./checkpoints, ./mlruns by default) never lands in the repository.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
process.chdir(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-test-')));

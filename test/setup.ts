// Loaded by vitest before every test file: decorators need reflect-metadata, and every test runs on the same
// backend that the framework selects (native CPU kernels when they built, else tfjs's cpu backend).
import 'reflect-metadata';
import '../core';

/**
 * `loom`, the package's main entry point: the core API (interfaces, registry, models, trainer, data, ops,
 * serialization) and the runtime (runs, `runExperiment`, the programmatic API, plugin packages). The built-in
 * plugins are `loom/plugins` (`registerBuiltins`), the conformance kit for plugin authors is `loom/testing`.
 */
export * from './core';
export * from './runtime';

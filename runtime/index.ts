/**
 * loom's runtime: the application that assembles and runs experiments on top of the core API (core/index.ts): the
 * run container and `runExperiment`, papers and presets, trackers' selection, environment tags, the checks before a
 * run, checkpoint averaging and the cache folder. Plugins never import it; papers, the CLI and benchmarks do.
 */
export * from './run';
export * from './paper';
export * from './tracking';
export * from './environment';
export * from './preflight';
export * from './data-check';
export * from './averaging';
export * from './cache';
export * from './learner';
export * from './plugin-packages';
export * from './config-file';
export * from './reporting';

/** The public API of loom's core: interfaces, tokens, registry, model, trainer, data, tracking and runs. */
import 'reflect-metadata';
// tfjs-core's Node bundle ships no gradient functions; tfjs-layers' Node bundle registers all of them on the same
// tfjs-core instance (tfjs-core's own `dist/register_all_gradients` is ESM with directory imports Node cannot load).
import '@tensorflow/tfjs-layers';

export * from './interfaces';
export * from './errors';
export * from './random';
export * from './registry';
export * from './tokens';
export * from './layer';
export * from './model';
export * from './module';
export * from './serialization';
export * from './masks';
export * from './config';
export * from './data';
export * from './edit-distance';
export * from './trainer';
export * from './backend';
export * from './fs-atomic';
export * from './kernels';
export * from './quantization';
export * from './optimizer';
export * from './checkpoint';
export * from './ops';

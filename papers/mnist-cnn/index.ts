/**
 * The seed's §5.2 MNIST CNN: Conv2D(32, 3x3, relu) → MaxPool(2) → Flatten → Dense(64, relu) → Dense(10),
 * Adam (lr 1e-3, ε 1e-7), batch 32, 5 epochs, validation split 0.1, Keras defaults (Glorot-uniform kernels,
 * zero biases). See README.md for the reference numbers and deviations.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPresets } from '../../core';
import { experimentPaper } from '../../runtime';
import { compressionMode } from './compression';
import { quantizeMode } from './quantization';

const here = path.dirname(fileURLToPath(import.meta.url));
const presets = loadPresets(path.join(here, 'presets'));

export default experimentPaper({
  name: 'mnist-cnn',
  title: "The seed's MNIST CNN (§5.2)",
  presets,
  presetNotes: {
    smoke: '2,000 training images, 1 epoch, 1,000 test images: the CI check that it learns',
    full: "the seed's whole recipe: 54,000 training + 6,000 validation images, 5 epochs, 10,000 test images",
    student: 'a small student for distillation: 8 filters and 32 hidden units (43,706 parameters, against 347,146), trained alone on the full recipe',
    distill:
      'the student distilled from a trained teacher (Hinton et al. 2015, T 4, α 0.1) saved at cache/mnist-cnn/teacher (`--compression distill` trains and saves one)',
    'prune-90': 'the full recipe with gradual magnitude pruning of the kernels to 90 % (Zhu & Gupta 2017: steps 840-5,840, every 200)',
  },
  modes: [compressionMode(presets), quantizeMode()],
  references: [
    {
      metric: 'test_accuracy',
      label: 'test accuracy, PyTorch replica seed 1',
      value: 0.9839,
      source: 'PyTorch 1.13 replica with Keras defaults, run on this machine (papers/mnist-cnn/README.md, Reference)',
    },
    { metric: 'test_accuracy', label: 'test accuracy, PyTorch replica seed 2', value: 0.9856, source: 'same' },
    { metric: 'test_accuracy', label: 'test accuracy, PyTorch replica seed 3', value: 0.9847, source: 'same' },
  ],
  scale(config) {
    const n = config.data.trainLimit ?? 60000;
    const val = Math.floor(n * config.trainer.validationSplit);
    const whole = n === 60000 && config.trainer.epochs === 5 && !config.data.testLimit;
    return `${whole ? 'full recipe' : 'SMALLER THAN THE RECIPE'}: ${n - val} training + ${val} validation images of 60,000, ${config.trainer.epochs} epoch(s), ${config.data.testLimit ?? 10000} of 10,000 test images`;
  },
});

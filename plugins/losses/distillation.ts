import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, definePlugin, loadModel, LoomError, pluginSpecSchema, Rng, ShapeError, type Model } from '../../core';

/**
 * The soft term of knowledge distillation: T² · CE(softmax(t/T), softmax(s/T)), the cross-entropy from the teacher's
 * softened distribution to the student's, averaged over rows (Hinton, Vinyals & Dean 2015, §2). The T² keeps the soft
 * term's gradient, which scales as 1/T², comparable to the hard term's as T changes (§2, last paragraph). It differs
 * from the KL divergence only by the teacher's entropy, a constant for the student, so the gradients are the same.
 * `weight` (one 0/1 entry per row) restricts the mean to the rows of weight 1, as a sequence loss's `ignoreIndex`
 * leaves padded positions out (a batch with no such row gives 0).
 */
export function softDistillationLoss(teacherLogits: tf.Tensor, studentLogits: tf.Tensor, temperature: number, weight?: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const classes = studentLogits.shape.at(-1)!;
    const n = studentLogits.size / classes;
    const p = tf.softmax(tf.div(tf.reshape(teacherLogits, [n, classes]), temperature));
    const logq = tf.logSoftmax(tf.div(tf.reshape(studentLogits, [n, classes]), temperature));
    const perRow = tf.neg(tf.sum(tf.mul(p, logq), 1));
    const mean = weight ? tf.div(tf.sum(tf.mul(perRow, weight)), tf.maximum(tf.sum(weight), 1)) : tf.mean(perRow);
    return tf.mul(mean, temperature * temperature) as tf.Scalar;
  });
}

/**
 * Knowledge distillation (Hinton, Vinyals & Dean 2015, §2): L = α · hard(y, z_s) + (1 − α) · T² · CE(softmax(z_t/T),
 * softmax(z_s/T)), where z_s are the student's logits, z_t those of a trained teacher on the same batch and `hard`
 * is the usual loss on the labels (sparse cross-entropy by default). The teacher is a saved model (`teacher`: the
 * directory saveModel wrote, e.g. a finished run's `artifacts/model`), loaded once when the loss is built and run in
 * inference mode on every batch's inputs, which the trainer passes to the loss; its weights are released with the run.
 * Defaults T = 4, α = 0.1: Hinton et al. found T in 2.5-4 best for a small MNIST student (§3) and the best results
 * with "a considerably lower weight" on the hard term (§2). For sequence models, `ignoreIndex` leaves the rows whose
 * label equals it (padding) out of the soft term's mean, as the hard loss's own `ignoreIndex` does for its term.
 */
export default definePlugin({
  kind: 'loss',
  name: 'distillation',
  aliases: ['knowledge-distillation'],
  description: 'α·hard(y, z) + (1 − α)·T²·CE(softmax(z_teacher/T), softmax(z/T)) against a saved teacher (Hinton et al. 2015, §2)',
  schema: z.object({
    /** Directory of the teacher's saved model (model.json + weights.bin), relative to the working directory. */
    teacher: z.string().min(1),
    temperature: z.number().positive().default(4),
    alpha: z.number().min(0).max(1).default(0.1),
    /** The loss on the labels. */
    hard: pluginSpecSchema.default('sparse-categorical-crossentropy'),
    /** A label (padding) whose rows the soft term leaves out; give the hard loss the same `ignoreIndex`. */
    ignoreIndex: z.number().int().optional(),
  }),
  examples: [
    { inputShape: [4, 5], target: 'classes' },
    { options: { temperature: 2, alpha: 0.5 }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { alpha: 0.5, ignoreIndex: 0, hard: { type: 'sparse-categorical-crossentropy', ignoreIndex: 0 } }, inputShape: [2, 3, 4], target: 'classes' },
  ],
  properties: [
    'equals the hard loss at α = 1 and T²·CE to the softened teacher at α = 0 (float64 reference)',
    'ignoreIndex: the soft term is the mean over the other rows only',
    'its gradient in the student logits matches finite differences; the soft gradient tends to (z_s − z_t)/(N·K) for large T (Hinton eq. 3)',
    'the teacher sees the batch inputs in inference mode; a missing teacher directory or a teacher whose outputs do not fit is a ConfigError naming loss.teacher',
    'leaks no tensor across steps; dispose releases the teacher',
  ],
  create: ({ teacher, temperature, alpha, hard, ignoreIndex }, ctx) => {
    const field = `${ctx.path}.teacher`;
    const dir = path.resolve(teacher);
    if (!fs.existsSync(path.join(dir, 'model.json'))) {
      throw new ConfigError(field, `no saved teacher model at ${dir} (model.json missing): train the teacher first and name the directory saveModel wrote`);
    }
    let model: Model | null;
    try {
      model = loadModel(dir, ctx.registry);
    } catch (e) {
      throw new ConfigError(field, `cannot load the teacher from ${dir}: ${e instanceof LoomError ? e.message : String(e)}`);
    }
    const hardLoss = ctx.create('loss', hard, 'hard');
    const rng = new Rng(0); // inference mode draws nothing; the forward context needs a stream
    return {
      compute(yTrue: tf.Tensor, yPred: tf.Tensor, x?: tf.Tensor): tf.Scalar {
        if (!model) throw new Error('loss "distillation": used after dispose()');
        if (!x) throw new ConfigError(ctx.path, 'the distillation loss needs the batch inputs for its teacher; this caller (strategy) does not pass them');
        return tf.tidy(() => {
          const h = hardLoss.compute(yTrue, yPred, x);
          if (alpha === 1) return h;
          // Constants for the student: the teacher's variables are not among those the trainer differentiates.
          const t = model!.apply(x, { training: false, rng });
          if (t.shape.join() !== yPred.shape.join()) {
            throw new ConfigError(field, new ShapeError('the teacher', `outputs of the student's shape [${yPred.shape}]`, t.shape).message);
          }
          const weight = ignoreIndex === undefined ? undefined : tf.cast(tf.notEqual(tf.reshape(yTrue, [-1]), ignoreIndex), 'float32');
          return tf.add(tf.mul(h, alpha), tf.mul(softDistillationLoss(t, yPred, temperature, weight), 1 - alpha)) as tf.Scalar;
        });
      },
      checkTargets: hardLoss.checkTargets?.bind(hardLoss),
      dispose() {
        model?.dispose();
        model = null;
      },
    };
  },
});

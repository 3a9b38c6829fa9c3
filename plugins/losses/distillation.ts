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
 *
 * `cache: true` keeps the teacher's outputs for each example (keyed by the bytes of its input row) and runs the teacher
 * only on the rows of a batch it has not seen, so that from the second epoch on a distilled student trains at about
 * the cost of one trained alone (an implementation choice: Hinton et al. say nothing of it). Unseen rows are computed
 * in groups of rows whose zeros (padding) sit at the same places, so that a teacher that trims each batch to its
 * longest row (the G2P Transformer) computes every example at its own length: an example's cached outputs are then the
 * same bits whatever batch brought it, and a resumed run, whose cache starts empty, refills it with the same values.
 * They differ from the uncached teacher's, computed at each batch's longest length, by float32 rounding (~1e-6
 * relative). Worth it only when an example's input row is the same every epoch (with random augmentation every row is
 * new and the cache only costs memory). Inputs whose zeros are not padding (images) fall into groups of about one row,
 * so their first epoch runs the teacher nearly a row at a time. Only the positions up to an example's last label other than `ignoreIndex` are
 * kept (the loss leaves the others out); `cacheMB` bounds the memory, past which rows are computed and not kept.
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
    /** Keep the teacher's outputs per example (keyed by its input row) and run the teacher on unseen rows only. */
    cache: z.boolean().default(false),
    /** The most memory the cache may hold, in MiB; past it, rows are computed and not kept. */
    cacheMB: z.number().positive().default(2048),
  }),
  examples: [
    { inputShape: [4, 5], target: 'classes' },
    { options: { temperature: 2, alpha: 0.5 }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { alpha: 0.5, ignoreIndex: 0, hard: { type: 'sparse-categorical-crossentropy', ignoreIndex: 0 } }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { alpha: 0.5, cache: true }, inputShape: [4, 5], target: 'classes' },
  ],
  properties: [
    'equals the hard loss at α = 1 and T²·CE to the softened teacher at α = 0 (float64 reference)',
    'ignoreIndex: the soft term is the mean over the other rows only',
    'its gradient in the student logits matches finite differences; the soft gradient tends to (z_s − z_t)/(N·K) for large T (Hinton eq. 3)',
    'the teacher sees the batch inputs in inference mode; a missing teacher directory or a teacher whose outputs do not fit is a ConfigError naming loss.teacher',
    'leaks no tensor across steps; dispose releases the teacher',
    'cache: a dense teacher gives the uncached loss and gradient bit for bit over batches of seen and unseen rows, running on unseen rows only (on every row past cacheMB); a G2P Transformer teacher gives every word the same bits whatever batches brought it, and the uncached loss within rounding',
  ],
  create: ({ teacher, temperature, alpha, hard, ignoreIndex, cache, cacheMB }, ctx) => {
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
    const kept = cache ? new TeacherCache(cacheMB * 2 ** 20) : null;
    /** The teacher's outputs for the batch `x`, of the student's shape. */
    const teacherOutputs = (x: tf.Tensor, yTrue: tf.Tensor, yPred: tf.Tensor): tf.Tensor => {
      const check = (t: tf.Tensor, rows: number) => {
        const want = [rows, ...yPred.shape.slice(1)];
        if (t.shape.join() !== want.join()) {
          throw new ConfigError(field, new ShapeError('the teacher', `outputs of the student's shape [${want}]`, t.shape).message);
        }
      };
      const run = (input: tf.Tensor) => model!.apply(input, { training: false, rng });
      const ids = kept && readable(x);
      const labels = ids && readable(yTrue);
      if (!kept || !ids || !labels) {
        const t = run(x);
        check(t, x.shape[0]!);
        return t;
      }
      return kept.outputs(ids, x.shape[0]!, labels, yPred.shape, ignoreIndex, (missing) => {
        const t = run(tf.gather(x, missing));
        check(t, missing.length);
        return t;
      });
    };
    return {
      compute(yTrue: tf.Tensor, yPred: tf.Tensor, x?: tf.Tensor): tf.Scalar {
        if (!model) throw new Error('loss "distillation": used after dispose()');
        if (!x) throw new ConfigError(ctx.path, 'the distillation loss needs the batch inputs for its teacher; this caller (strategy) does not pass them');
        return tf.tidy(() => {
          const h = hardLoss.compute(yTrue, yPred, x);
          if (alpha === 1) return h;
          // Constants for the student: the teacher's variables are not among those the trainer differentiates.
          const t = teacherOutputs(x, yTrue, yPred);
          const weight = ignoreIndex === undefined ? undefined : tf.cast(tf.notEqual(tf.reshape(yTrue, [-1]), ignoreIndex), 'float32');
          return tf.add(tf.mul(h, alpha), tf.mul(softDistillationLoss(t, yPred, temperature, weight), 1 - alpha)) as tf.Scalar;
        });
      },
      checkTargets: hardLoss.checkTargets?.bind(hardLoss),
      dispose() {
        model?.dispose();
        model = null;
        kept?.clear();
      },
    };
  },
});

/** A tensor's values read synchronously, or null where the backend cannot (webgpu in Node): then nothing is cached. */
function readable(t: tf.Tensor): tf.TypedArray | null {
  try {
    return t.dataSync();
  } catch {
    return null;
  }
}

/**
 * The teacher's outputs per example: key = the bytes of the example's input row, value = its outputs (positions ×
 * classes) up to its last position whose label is not `ignoreIndex` (all positions without one).
 */
class TeacherCache {
  private readonly rows = new Map<string, Float32Array>();
  private bytes = 0;
  constructor(private readonly limit: number) {}

  /**
   * The outputs for a batch of `n` rows (input values `ids`, labels `labels`) of shape `shape`: kept rows from the
   * cache, the others from `compute(missing row indices)`, kept while the cache has room. Rows past an example's kept
   * length are 0.
   */
  outputs(
    ids: tf.TypedArray,
    n: number,
    labels: tf.TypedArray,
    shape: number[],
    ignoreIndex: number | undefined,
    compute: (missing: number[]) => tf.Tensor,
  ): tf.Tensor {
    const rowLen = ids.length / n;
    const per = shape.slice(1).reduce((a, b) => a * b, 1); // output values per example
    const classes = shape.at(-1)!;
    const positions = per / classes;
    const labelsPer = labels.length / n;
    const bytes = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
    const keys = Array.from({ length: n }, (_, r) =>
      Buffer.from(bytes.subarray(r * rowLen * ids.BYTES_PER_ELEMENT, (r + 1) * rowLen * ids.BYTES_PER_ELEMENT)).toString('latin1'),
    );
    const out = new Float32Array(n * per);
    const missing: number[] = [];
    keys.forEach((k, r) => {
      const v = this.rows.get(k);
      if (v) out.set(v, r * per);
      else missing.push(r);
    });
    // The missing rows in groups whose zeros (padding) sit at the same places: a teacher that trims padding computes
    // each group at its rows' own lengths, so a row's outputs depend on the row alone, whatever batch brought it.
    const groups = new Map<string, number[]>();
    for (const r of missing) {
      const zeros: number[] = [];
      for (let j = 0; j < rowLen; j++) if (ids[r * rowLen + j] === 0) zeros.push(j);
      const key = zeros.join();
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (const group of groups.values()) {
      const t = compute(group);
      const values = t.dataSync();
      t.dispose();
      group.forEach((r, i) => {
        // Positions kept: up to the last label that the loss uses (one label per position, else all).
        let used = positions;
        if (ignoreIndex !== undefined && labelsPer === positions) {
          used = 0;
          for (let j = positions - 1; j >= 0; j--)
            if (labels[r * labelsPer + j] !== ignoreIndex) {
              used = j + 1;
              break;
            }
        }
        const v = Float32Array.from(values.subarray(i * per, i * per + used * classes));
        out.set(v, r * per);
        const cost = v.byteLength + keys[r]!.length + 64;
        if (this.bytes + cost <= this.limit && !this.rows.has(keys[r]!)) {
          this.rows.set(keys[r]!, v);
          this.bytes += cost;
        }
      });
    }
    return tf.tensor(out, shape);
  }

  clear(): void {
    this.rows.clear();
    this.bytes = 0;
  }
}

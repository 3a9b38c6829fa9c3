/**
 * Shared machinery for the geometric augmentations: each draws per-example parameters from the run's Rng and
 * resamples the NHWC batch through `tf.image.transform`, which maps every output pixel (x, y) to the input point
 * (a0·x + a1·y + a2, b0·x + b1·y + b2) and fills points outside the image as `fillMode` says. Not a plugin itself.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ShapeError, type Rng } from '../../core';

/** An inverse affine map, output pixel -> input point: [a0, a1, a2, b0, b1, b2]. */
export type Affine = [number, number, number, number, number, number];

export const resampling = {
  interpolation: z.enum(['bilinear', 'nearest']).default('bilinear'),
  /**
   * Where a pixel comes from outside the input image: `constant` (the value `fill`), `reflect` (about the edge,
   * d c b a | a b c d | d c b a), `wrap` (a b c d | a b c d) or `nearest` (the edge pixel), as in
   * `tf.image.transform`. Keras's random layers default to `reflect`; loom keeps `constant` (0: MNIST's background).
   */
  fillMode: z.enum(['constant', 'reflect', 'wrap', 'nearest']).default('constant'),
  /** Value of pixels that come from outside the input image, with fillMode `constant`. */
  fill: z.number().default(0),
};

/** Applies one inverse affine map per example; keeps shape and dtype. */
export function resample(
  x: tf.Tensor,
  rng: Rng,
  who: string,
  draw: (rng: Rng, height: number, width: number) => Affine,
  opts: { interpolation: 'bilinear' | 'nearest'; fillMode: 'constant' | 'reflect' | 'wrap' | 'nearest'; fill: number },
): tf.Tensor {
  if (x.rank !== 4) throw new ShapeError(`augmentation "${who}"`, '[batch, height, width, channels] images', x.shape);
  const [n, h, w] = x.shape as [number, number, number, number];
  const rows = Array.from({ length: n }, () => [...draw(rng, h, w), 0, 0]);
  return tf.tidy(() => {
    // One image at a time: tfjs-backend-cpu 4.22's Transform kernel returns after the first image of a batch
    // (the rest stay at the fill value), which our tests caught.
    const images = tf.split(tf.cast(x, 'float32'), n, 0);
    const out = tf.concat(
      images.map((img, i) => tf.image.transform(img as tf.Tensor4D, tf.tensor2d([rows[i]!]), opts.interpolation, opts.fillMode, opts.fill)),
      0,
    );
    return x.dtype === 'float32' ? out : tf.cast(tf.round(out), x.dtype);
  });
}

/** Uniform in [lo, hi). */
export const uniform = (rng: Rng, lo: number, hi: number) => lo + (hi - lo) * rng.next();

/** The inverse of "scale by s about the centre, then rotate by θ, then shift by (dx, dy)" for a w × h image. */
export function inverseAffine(
  h: number,
  w: number,
  { angle = 0, scale = 1, dx = 0, dy = 0 }: { angle?: number; scale?: number; dx?: number; dy?: number },
): Affine {
  const [cx, cy] = [(w - 1) / 2, (h - 1) / 2];
  const [c, s] = [Math.cos(angle) / scale, Math.sin(angle) / scale];
  // input = R(−θ)/scale · (output − centre − shift) + centre
  const [ox, oy] = [cx + dx, cy + dy];
  return [c, s, cx - c * ox - s * oy, -s, c, cy + s * ox - c * oy];
}

/**
 * bf16 products with fp32 sums (native/src/bf16.h; Kalamkar et al. 2019), on every path this CPU runs: the portable
 * one (operands rounded, then the fp32 kernel) everywhere, the packed vdpbf16ps kernel where the CPU has
 * avx512_bf16, AMX's tdpbf16ps where the CPU has AMX, and AMX's loop on an emulation of its tiles everywhere.
 * Checked against float64 references:
 *   - the rounding, bit for bit, against a reference written from the definition (round to nearest, ties to even, of
 *     the value to 8 significant bits, in float64 arithmetic; NaN quieted, ±inf kept, denormals to signed zero as
 *     vcvtne2ps2bf16 does), on random bit patterns and on ties, NaNs, infinities, denormals and overflow;
 *   - each product against the float64 product of the bf16-rounded operands, within the error of any fp32 summation
 *     order of k terms: |C − C₆₄(ã, b̃)| ≤ γ_k·Σ_p |ã_ip||b̃_pj| + 2^-120, γ_k = k·u/(1 − k·u), u = 2^-24 (Higham,
 *     "Accuracy and Stability of Numerical Algorithms", eq. 4.4; the products of bf16 values are exact in fp32; the
 *     2^-120 absorbs vdpbf16ps's flush of denormal sums);
 *   - and against the float64 product of the fp32 operands within bf16's rounding of both inputs:
 *     |C − C₆₄(a, b)| ≤ ((1 + 2^-8)² − 1 + γ_k·(1 + 2^-8)²)·Σ_p |a_ip||b_pj| + 2^-120 (|x̃ − x| ≤ 2^-8·|x|);
 *     and a product of values with more than 8 significant bits is NOT within fp32's 1e-6 (the rounding happened);
 *   - a convolution (im2col product) against the float64 convolution of the rounded input and filter, same bound with
 *     k = kh·kw·c; attention's probabilities against softmax(scale·q̃k̃ᵀ) within the bound the scores' error carries
 *     through the fp32 softmax, and its context against the float64 product of its rounded probabilities with ṽ.
 *     Run with fp32 products instead, the convolution and attention checks fail (the rounding is what they see).
 * Skips (with the reason printed) only when the addon did not build.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAddon, nativeAddonInfo } from './addon';

const info = nativeAddonInfo();
if (!info.loaded) console.warn(`bf16 tests skipped: ${info.reason}`);

/** The bf16 bits of float32 bits `u`, from the definition (float64 arithmetic, not the bit trick the addon uses). */
function referenceBits(u: number): number {
  const exp = (u >>> 23) & 0xff,
    mant = u & 0x7fffff,
    sign = u >>> 31;
  if (exp === 255) return mant !== 0 ? ((u >>> 16) | 0x40) & 0xffff : u >>> 16; // NaN: quiet, sign and top payload kept
  if (exp === 0) return sign << 15; // ±0 and denormals: signed zero
  const ulp = 2 ** (exp - 127 - 7); // 8 significant bits at this binade
  const q = ((1 + mant / 2 ** 23) * 2 ** (exp - 127)) / ulp; // exact: at most 24 bits
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r += 1;
  const value = r * ulp;
  if (value >= 2 ** 128) return (sign << 15) | 0x7f80; // past the largest bf16: inf
  const bits = new Uint32Array(Float32Array.of(sign ? -value : value).buffer)[0]!;
  expect(bits & 0xffff).toBe(0); // the reference is a bf16 value
  return bits >>> 16;
}

/** The values `bits` stands for, as float32. */
const floats = (bits: number[]) => new Float32Array(Uint32Array.from(bits).buffer);

const SPECIAL = [
  0x00000000,
  0x80000000,
  0x7f800000,
  0xff800000, // ±0, ±inf
  0x7fc00000,
  0xffc00000,
  0x7f800001,
  0xff812345,
  0x7fbfffff, // NaNs: quiet, negative, signalling (payload kept)
  0x00000001,
  0x807fffff,
  0x00400000,
  0x00800000,
  0x80800000, // denormals, smallest normals
  0x3f808000,
  0x3f818000,
  0xbf808000,
  0xbf818000, // ties: to even below (LSB 0) and above (LSB 1)
  0x3f808001,
  0x3f807fff,
  0x7f7f8000,
  0x7f7f7fff,
  0x7f7fffff,
  0xff7fffff, // just past/below ties, overflow to inf
  0x3f800000,
  0x40490fdb,
  0x3eaaaaab, // 1, π, 1/3
];

describe.skipIf(!info.loaded)(`bf16 products (best path here: ${info.bf16})`, () => {
  const addon = loadAddon()!;
  afterEach(() => addon.setPrecision(0));
  // Round paths: 1 scalar, 2 vcvtne2ps2bf16 where the CPU has it. Product modes: 2 portable, 3 avx512_bf16 where the
  // CPU has it (every CPU with AMX has it too), 4 AMX where it runs, and 5, AMX's loop on an emulation of its tiles,
  // everywhere (the packing and the tiles' strides checked on machines without AMX).
  const vdp = info.bf16 === 'avx512_bf16' || info.bf16 === 'amx';
  const roundPaths = vdp ? [1, 2] : [1];
  const modes = [2, ...(vdp ? [3] : []), ...(info.bf16 === 'amx' ? [4] : []), 5];
  const NAMES: Record<number, string> = { 2: 'bf16 (portable)', 3: 'bf16 (avx512_bf16)', 4: 'bf16 (amx)', 5: 'bf16 (amx, emulated)' };
  const modeName = (m: number) => NAMES[m]!;

  it('rounds to nearest even as the definition says: ties, NaN, ±inf, denormals, overflow, random bit patterns', () => {
    const check = (bits: number[]) => {
      const x = floats(bits);
      for (const path of roundPaths) {
        const y = new Float32Array(x.length).fill(7);
        addon.bf16Round(x, y, x.length, path);
        const got = new Uint32Array(y.buffer);
        bits.forEach((u, i) => {
          const want = referenceBits(u) << 16;
          if (got[i] !== want >>> 0) expect.fail(`path ${path}: 0x${u.toString(16)} → 0x${got[i]!.toString(16)}, want 0x${(want >>> 0).toString(16)}`);
        });
      }
    };
    check(SPECIAL);
    // 37 values: the vector path's 32-wide body and its scalar tail both run.
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: 37, maxLength: 37 }), check), { numRuns: 300 });
  });

  /** Deterministic floats in (−2, 2) from a seed, some with more than 8 significant bits. */
  const data = (seed: number, n: number) => {
    let s = seed >>> 0 || 1;
    return Float32Array.from({ length: n }, () => {
      s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      return (s / 2 ** 32) * 4 - 2;
    });
  };
  const rounded = (x: Float32Array) => {
    const y = new Float32Array(x.length);
    addon.bf16Round(x, y, x.length, 1);
    return y;
  };

  it('each path: within fp32 summation error of the float64 product of the rounded operands, and within bf16 rounding of fp32', () => {
    const size = fc.oneof(fc.constantFrom(1, 2, 13, 14, 15, 31, 32, 33), fc.integer({ min: 1, max: 60 }));
    const depth = fc.oneof(fc.constantFrom(1, 2, 3, 255, 256, 257, 513), fc.integer({ min: 1, max: 90 }));
    const u = 2 ** -24,
      ub = 2 ** -8,
      tiny = 2 ** -120;
    fc.assert(
      fc.property(size, size, depth, fc.boolean(), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 2 ** 31 - 1 }), (m, n, k, ta, tb, withBias, seed) => {
        const a = data(seed, m * k),
          b = data(seed + 1, k * n),
          bias = withBias ? data(seed + 2, n) : null;
        const ar = rounded(a),
          br = rounded(b);
        const A = (x: Float32Array, i: number, p: number) => (ta ? x[p * m + i]! : x[i * k + p]!);
        const B = (x: Float32Array, p: number, j: number) => (tb ? x[j * k + p]! : x[p * n + j]!);
        const gamma = (k * u) / (1 - k * u);
        for (const mode of modes) {
          addon.setPrecision(mode);
          expect(addon.info().precision).toBe(modeName(mode));
          const c = new Float32Array(m * n).fill(Number.NaN);
          addon.batchMatMul(a, b, c, 1, m, n, k, ta, tb, 0, 0, bias, false);
          for (let i = 0; i < m; i++)
            for (let j = 0; j < n; j++) {
              let exact = 0,
                abs = 0,
                full = 0,
                fullAbs = 0;
              for (let p = 0; p < k; p++) {
                exact += A(ar, i, p) * B(br, p, j);
                abs += Math.abs(A(ar, i, p) * B(br, p, j));
                full += A(a, i, p) * B(b, p, j);
                fullAbs += Math.abs(A(a, i, p) * B(b, p, j));
              }
              const shift = bias ? bias[j]! : 0; // the bias is added in fp32 after the sum: one more rounding
              const got = c[i * n + j]! - shift;
              const roundBias = bias ? u * Math.abs(c[i * n + j]!) : 0;
              const within = gamma * abs + tiny + roundBias;
              if (!(Math.abs(got - exact) <= within)) expect.fail(`mode ${mode}, ${m}×${k}·${k}×${n} [${i},${j}]: ${got} vs ${exact} (bound ${within})`);
              const bound = ((1 + ub) ** 2 - 1 + gamma * (1 + ub) ** 2) * fullAbs + tiny + roundBias;
              if (!(Math.abs(got - full) <= bound)) expect.fail(`mode ${mode}: ${got} vs fp32 operands ${full} (bound ${bound})`);
            }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('rounds the operands: a product of 24-bit values differs from fp32 by more than fp32 error, and equals the rounded operands product', () => {
    const [m, n, k] = [20, 40, 64];
    const a = data(11, m * k),
      b = data(12, k * n);
    const fp32 = new Float32Array(m * n);
    addon.batchMatMul(a, b, fp32, 1, m, n, k, false, false, 0, 0, null, false);
    for (const mode of modes) {
      addon.setPrecision(mode);
      const c = new Float32Array(m * n),
        onRounded = new Float32Array(m * n);
      addon.batchMatMul(a, b, c, 1, m, n, k, false, false, 0, 0, null, false);
      addon.batchMatMul(rounded(a), rounded(b), onRounded, 1, m, n, k, false, false, 0, 0, null, false);
      expect(Array.from(c)).toEqual(Array.from(onRounded)); // rounding is idempotent: the same bits
      const largest = Math.max(...c.map((v, i) => Math.abs(v - fp32[i]!)));
      expect(largest).toBeGreaterThan(1e-3); // bf16's 2^-8 relative rounding of inputs of size ~1, summed over 64 terms
    }
  });

  it('large products (over the thread pool, several depth panels), with the bias column sums in fp32 of the unrounded operand', () => {
    const [m, n, k] = [150, 97, 700]; // ~10 M multiply-adds: shared out; 3 panels of 256; 97 = 3 strips of 32 + 1
    const a = data(5, m * k),
      b = data(6, k * n);
    const ar = rounded(a),
      br = rounded(b);
    const sums = new Float64Array(n);
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) sums[j]! += b[p * n + j]!;
    for (const mode of modes) {
      addon.setPrecision(mode);
      const c = new Float32Array(m * n),
        col = new Float32Array(n);
      addon.batchMatMul(a, b, c, 1, m, n, k, false, false, 0, 0, null, false, col);
      const gamma = (k * 2 ** -24) / (1 - k * 2 ** -24);
      for (let i = 0; i < m; i += 7)
        for (let j = 0; j < n; j++) {
          let exact = 0,
            abs = 0;
          for (let p = 0; p < k; p++) (exact += ar[i * k + p]! * br[p * n + j]!), (abs += Math.abs(ar[i * k + p]! * br[p * n + j]!));
          expect(Math.abs(c[i * n + j]! - exact)).toBeLessThanOrEqual(gamma * abs + 2 ** -120);
        }
      for (let j = 0; j < n; j++) expect(Math.abs(col[j]! - sums[j]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(sums[j]!)));
      // Same inputs, same bits.
      const again = new Float32Array(m * n);
      addon.batchMatMul(a, b, again, 1, m, n, k, false, false, 0, 0, null, false);
      expect(Array.from(again)).toEqual(Array.from(c));
    }
  });

  it('a convolution (im2col product) on each path: within fp32 summation error of the float64 convolution of the rounded operands', () => {
    const u = 2 ** -24;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 3, max: 9 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (n, size, c, kernel, co, seed) => {
          const [h, w, kh, kw] = [size, size + 1, Math.min(kernel, size), kernel];
          const [oh, ow] = [h - kh + 1, w - kw + 1]; // stride 1, no padding, no dilation
          const x = data(seed, n * h * w * c),
            f = data(seed + 1, kh * kw * c * co); // [kh, kw, c, co], tfjs's filter layout
          const xr = rounded(x),
            fr = rounded(f);
          const depth = kh * kw * c,
            gamma = (depth * u) / (1 - depth * u);
          for (const mode of modes) {
            addon.setPrecision(mode);
            const y = new Float32Array(n * oh * ow * co).fill(Number.NaN);
            addon.conv2d(x, f, y, null, false, n, h, w, c, kh, kw, co, oh, ow, 1, 1, 0, 0, 1, 1);
            for (let b = 0; b < n; b++)
              for (let i = 0; i < oh; i++)
                for (let j = 0; j < ow; j++)
                  for (let o = 0; o < co; o++) {
                    let exact = 0,
                      abs = 0;
                    for (let dy = 0; dy < kh; dy++)
                      for (let dx = 0; dx < kw; dx++)
                        for (let ci = 0; ci < c; ci++) {
                          const t = xr[((b * h + i + dy) * w + j + dx) * c + ci]! * fr[((dy * kw + dx) * c + ci) * co + o]!;
                          exact += t;
                          abs += Math.abs(t);
                        }
                    const got = y[((b * oh + i) * ow + j) * co + o]!;
                    if (!(Math.abs(got - exact) <= gamma * abs + 2 ** -120)) expect.fail(`mode ${mode}: y[${b},${i},${j},${o}] = ${got}, reference ${exact}`);
                  }
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it("a convolution's filter and bias gradients (relu-masked), plain and under 2×2 max pooling, on each path: dw from the rounded x and gradient, db from the fp32 gradient", () => {
    // Depths up to 32 take the direct kernels (a first layer), deeper ones im2col and the GEMM: the same contract.
    // dw[t, o] = Σ_p x̃[p, t]·d̃z[p, o] within γ_K·Σ|·| (K = the pixels), db[o] = Σ_p dz[p, o] within γ_K·Σ|dz|: the bias
    // gradient is not rounded (a plain sum, as the GEMM's column sums), and dw is (each check fails the other way:
    // rounding moves a term by up to 2^-9 of itself, far more than γ_K).
    const u = 2 ** -24;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 4, max: 9 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 20 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (n, size, c, kernel, co, pooled, seed) => {
          const [h, w, kh, kw] = [size, size + 1, Math.min(kernel, size), kernel];
          const [oh, ow] = [h - kh + 1, w - kw + 1];
          const shape = [n, h, w, c, kh, kw, co, oh, ow, 1, 1, 0, 0, 1, 1];
          const x = data(seed, n * h * w * c);
          const [poh, pow] = [Math.floor(oh / 2), Math.floor(ow / 2)];
          // The gradient reaching the convolution's output, dz, from a gradient dy at its output (pooled or not) and
          // a relu mask y (its output; 0 masks).
          const outSize = pooled ? n * poh * pow * co : n * oh * ow * co;
          const dy = data(seed + 2, outSize);
          const y = data(seed + 3, outSize);
          const at = Float32Array.from({ length: outSize }, (_, i) => (i * 7 + seed) % 4); // which tap of each 2×2 window
          const dz = new Float64Array(n * oh * ow * co);
          for (let i = 0; i < outSize; i++) {
            const d = y[i]! > 0 ? dy[i]! : 0;
            if (!pooled) dz[i] = d;
            else {
              const o = i % co,
                q = Math.floor(i / co),
                b = Math.floor(q / (poh * pow)),
                pr = Math.floor((q % (poh * pow)) / pow),
                pc = q % pow;
              const [di, dj] = [Math.floor(at[i]! / 2), at[i]! % 2];
              dz[((b * oh + pr * 2 + di) * ow + pc * 2 + dj) * co + o] = d;
            }
          }
          const xr = rounded(x),
            dzr = rounded(Float32Array.from(dz));
          const pixels = n * oh * ow,
            gamma = (pixels * u) / (1 - pixels * u);
          for (const mode of modes) {
            addon.setPrecision(mode);
            const dw = new Float32Array(kh * kw * c * co).fill(Number.NaN);
            const db = new Float32Array(co).fill(Number.NaN);
            if (pooled) addon.conv2dMaxPoolFilterGrad(x, dy, y, at, dw, db, true, ...shape, 2, 2);
            else addon.conv2dFilterBiasGrad(x, dy, y, dw, db, ...shape);
            for (let o = 0; o < co; o++) {
              let exact = 0,
                abs = 0;
              for (let p = 0; p < pixels; p++) (exact += dz[p * co + o]!), (abs += Math.abs(dz[p * co + o]!));
              if (!(Math.abs(db[o]! - exact) <= gamma * abs + 2 ** -120)) expect.fail(`${modeName(mode)}: db[${o}] = ${db[o]}, reference ${exact}`);
              for (let t = 0; t < kh * kw * c; t++) {
                const [di, dj, ci] = [Math.floor(t / (kw * c)), Math.floor(t / c) % kw, t % c];
                let e = 0,
                  a = 0;
                for (let b = 0; b < n; b++)
                  for (let i = 0; i < oh; i++)
                    for (let j = 0; j < ow; j++) {
                      const term = xr[((b * h + i + di) * w + j + dj) * c + ci]! * dzr[((b * oh + i) * ow + j) * co + o]!;
                      e += term;
                      a += Math.abs(term);
                    }
                const got = dw[t * co + o]!;
                if (!(Math.abs(got - e) <= gamma * a + 2 ** -120)) expect.fail(`${modeName(mode)}: dw[${t}, ${o}] = ${got}, reference ${e}`);
              }
            }
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('attention on each path: q·kᵀ and p·v with bf16 operands, within the bound carried through the fp32 softmax', () => {
    // Stage 1: the probabilities against softmax(scale·q̃k̃ᵀ) in float64. Each score is off by at most
    // δ = scale·γ_dk·Σ|q̃||k̃| (the product), so each probability by a factor within e^{±2δ}, plus the fp32 softmax's own
    // rounding (exp within 2 ulp, a sum of t terms, a division: (t + 8)·2^-24 relative).
    // Stage 2: the context against the float64 product of the kernel's own probabilities, rounded, with ṽ: γ_t·Σ|p̃||ṽ|.
    const u = 2 ** -24;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (batch, time, heads, dk, seed) => {
          const d = heads * dk;
          const qkv = data(seed, batch * time * 3 * d);
          const r = rounded(qkv);
          const scale = 1 / Math.sqrt(dk);
          for (const mode of modes) {
            addon.setPrecision(mode);
            const context = new Float32Array(batch * time * d).fill(Number.NaN),
              probs = new Float32Array(batch * heads * time * time).fill(Number.NaN);
            addon.attention(qkv, null, context, probs, batch, time, heads, dk, false);
            const pr = rounded(probs);
            for (let b = 0; b < batch; b++)
              for (let hd = 0; hd < heads; hd++)
                for (let i = 0; i < time; i++) {
                  const at = (t: number, part: number, e: number) => r[(b * time + t) * 3 * d + part * d + hd * dk + e]!;
                  const scores: number[] = [];
                  let delta = 0;
                  for (let j = 0; j < time; j++) {
                    let sc = 0,
                      abs = 0;
                    for (let e = 0; e < dk; e++) (sc += at(i, 0, e) * at(j, 1, e)), (abs += Math.abs(at(i, 0, e) * at(j, 1, e)));
                    scores.push(sc * scale);
                    delta = Math.max(delta, ((scale * dk * u) / (1 - dk * u)) * abs);
                  }
                  const top = Math.max(...scores);
                  const ex = scores.map((v) => Math.exp(v - top));
                  const total = ex.reduce((a, v) => a + v, 0);
                  const row = (b * heads + hd) * time * time + i * time;
                  for (let j = 0; j < time; j++) {
                    const want = ex[j]! / total,
                      got = probs[row + j]!;
                    const bound = want * (Math.exp(2 * delta) - 1 + (time + 8) * u) + 2 ** -120;
                    if (!(Math.abs(got - want) <= bound)) expect.fail(`mode ${mode}: p[${b},${hd},${i},${j}] = ${got}, reference ${want} (bound ${bound})`);
                  }
                  const gamma = (time * u) / (1 - time * u);
                  for (let e = 0; e < dk; e++) {
                    let exact = 0,
                      abs = 0;
                    for (let j = 0; j < time; j++) (exact += pr[row + j]! * at(j, 2, e)), (abs += Math.abs(pr[row + j]! * at(j, 2, e)));
                    const got = context[(b * time + i) * d + hd * dk + e]!;
                    if (!(Math.abs(got - exact) <= gamma * abs + 2 ** -120))
                      expect.fail(`mode ${mode}: context[${b},${i},${hd},${e}] = ${got}, reference ${exact}`);
                  }
                }
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('setPrecision(1) takes the best path here; 4 falls back to avx512_bf16 where AMX is absent, 3 to portable where avx512_bf16 is absent; 5 runs anywhere; 0 is fp32 again', () => {
    addon.setPrecision(1);
    expect(addon.info().precision).toBe(`bf16 (${info.bf16})`);
    // Under LOOM_BF16 the best path is the one asked for while modes 3 and 4 may still run: nothing to expect then.
    if (process.env.LOOM_BF16 === undefined) {
      addon.setPrecision(3);
      expect(addon.info().precision).toBe(vdp ? 'bf16 (avx512_bf16)' : 'bf16 (portable)');
      addon.setPrecision(4);
      expect(addon.info().precision).toBe(`bf16 (${info.bf16})`);
    }
    addon.setPrecision(5);
    expect(addon.info().precision).toBe('bf16 (amx, emulated)');
    addon.setPrecision(0);
    expect(addon.info().precision).toBe('fp32');
  });
});

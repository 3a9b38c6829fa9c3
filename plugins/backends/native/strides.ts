/**
 * Broadcasting and copying as strides: the [size, stride, stride] triples the addon's binary and copy functions
 * take, with size-1 dimensions dropped and contiguous neighbours merged, and a row visitor over them for kernels
 * written in JavaScript.
 */

/**
 * Broadcasting as strides: [size, strideA, strideB] per output dimension (stride 0 where an operand is broadcast),
 * with adjacent dimensions merged when both operands stay contiguous across them.
 */
export function broadcastDims(aShape: readonly number[], bShape: readonly number[], outShape: readonly number[]): number[][] {
  const r = outShape.length;
  const strides = (shape: readonly number[]) => {
    const s = new Array<number>(r).fill(0);
    let acc = 1;
    for (let d = r - 1; d >= 0; d--) {
      const dim = shape[d - (r - shape.length)] ?? 1;
      s[d] = dim === 1 ? 0 : acc;
      acc *= dim;
    }
    return s;
  };
  const sa = strides(aShape),
    sb = strides(bShape);
  const dims: number[][] = [];
  for (let d = 0; d < r; d++) {
    if (outShape[d] === 1) continue;
    const last = dims.at(-1);
    if (last && last[1] === sa[d]! * outShape[d]! && last[2] === sb[d]! * outShape[d]!) {
      last[0]! *= outShape[d]!;
      last[1] = sa[d]!;
      last[2] = sb[d]!;
    } else dims.push([outShape[d]!, sa[d]!, sb[d]!]);
  }
  return dims.length ? dims : [[1, 0, 0]];
}

/** Row-major strides of a shape. */
export const stridesOf = (shape: readonly number[]) => {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
};

/** [size, srcStride, dstStride] per dimension, dropping size-1 dimensions and merging contiguous neighbours. */
export function copyDims(shape: readonly number[], ss: readonly number[], ds: readonly number[]): Float64Array {
  const dims: number[][] = [];
  shape.forEach((n, d) => {
    if (n === 1) return;
    const last = dims.at(-1);
    if (last && last[1] === ss[d]! * n && last[2] === ds[d]! * n) {
      last[0]! *= n;
      last[1] = ss[d]!;
      last[2] = ds[d]!;
    } else dims.push([n, ss[d]!, ds[d]!]);
  });
  return Float64Array.from((dims.length ? dims : [[1, 1, 1]]).flat());
}

/**
 * Visits a broadcast binary op's output row by row: `row(i, oa, ob, n, sa, sb)` covers output elements i..i+n-1,
 * reading the operands from flat offsets oa and ob with strides sa and sb (broadcastDims' [size, strideA, strideB]
 * triples, walked with an odometer: no per-element index arithmetic).
 */
export function forEachRow(dims: number[][], row: (i: number, oa: number, ob: number, n: number, sa: number, sb: number) => void): void {
  const [n, sa, sb] = dims.at(-1)!;
  const outer = dims.slice(0, -1);
  const idx = new Array<number>(outer.length).fill(0);
  let oa = 0,
    ob = 0,
    i = 0;
  for (;;) {
    row(i, oa, ob, n!, sa!, sb!);
    i += n!;
    let d = outer.length - 1;
    for (; d >= 0; d--) {
      const [size, da, db] = outer[d]!;
      oa += da!;
      ob += db!;
      if (++idx[d]! < size!) break;
      oa -= da! * size!;
      ob -= db! * size!;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/**
 * The addon's strided copy in JavaScript, for arrays it does not take (int32, bool): dst[dstOffset + Σ iₖ·dsₖ] =
 * src[srcOffset + Σ iₖ·ssₖ] over copyDims' [size, srcStride, dstStride] triples.
 */
export function copyValues(src: ArrayLike<number>, srcOffset: number, dst: { [i: number]: number }, dstOffset: number, dims: Float64Array): void {
  const triples: number[][] = [];
  for (let i = 0; i < dims.length; i += 3) triples.push([dims[i]!, dims[i + 1]!, dims[i + 2]!]);
  forEachRow(triples, (_, o, d, n, ss, ds) => {
    for (let j = 0; j < n; j++) dst[dstOffset + d + j * ds] = src[srcOffset + o + j * ss]!;
  });
}

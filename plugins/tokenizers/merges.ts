/**
 * Learns byte-pair-encoding merges (Sennrich et al. 2016, Algorithm 1) from word frequencies: repeatedly merge the
 * most frequent adjacent pair of symbols. Pair counts are kept up to date incrementally (only the words containing
 * the merged pair are rewritten) and the best pair comes from a max-heap with lazy invalidation, so training on a
 * few hundred thousand distinct words takes seconds. Ties go to the smaller (left, right) symbol ids, which makes
 * training deterministic.
 */

/** A distinct word as a sequence of symbol ids, with how often it occurs. */
export interface WordCount {
  syms: number[];
  freq: number;
}

export interface MergeOptions {
  /** Stop when the best pair occurs fewer times than this. */
  minFrequency: number;
  /** The symbol id of the merged pair (new or existing); called once per merge, in order. */
  merge(left: number, right: number): number;
  /** Stop when this returns true (e.g. the vocabulary is full); checked before each merge. */
  done(): boolean;
}

const key = (a: number, b: number) => a * 0x100000 + b; // symbol ids < 2^20
const left = (k: number) => Math.floor(k / 0x100000);
const right = (k: number) => k % 0x100000;

/** Runs BPE on `words` (rewritten in place) and returns the merges [left, right, merged] in order. */
export function learnMerges(words: WordCount[], opts: MergeOptions): [number, number, number][] {
  const count = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const heap: [number, number][] = []; // [count, pair key]: max count first, then smallest key
  const above = (a: [number, number], b: [number, number]) => a[0] > b[0] || (a[0] === b[0] && a[1] < b[1]);
  const push = (e: [number, number]) => {
    heap.push(e);
    for (let i = heap.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!above(heap[i]!, heap[p]!)) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const pop = (): [number, number] | undefined => {
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const [l, r] = [2 * i + 1, 2 * i + 2];
        let m = i;
        if (l < heap.length && above(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && above(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  const addPairs = (w: number, sign: 1 | -1, changed: Map<number, number>) => {
    const { syms, freq } = words[w]!;
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = key(syms[i]!, syms[i + 1]!);
      count.set(k, (count.get(k) ?? 0) + sign * freq);
      changed.set(k, (changed.get(k) ?? 0) + sign * freq);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(w);
      }
    }
  };

  const initial = new Map<number, number>();
  words.forEach((_, w) => addPairs(w, 1, initial));
  for (const [k, c] of count) push([c, k]);

  const merges: [number, number, number][] = [];
  while (heap.length && !opts.done()) {
    const [c, k] = pop()!;
    const now = count.get(k) ?? 0;
    if (c !== now) {
      if (now > 0 && now < c) push([now, k]); // a stale, higher entry; an increase was pushed when it happened
      continue;
    }
    if (now < opts.minFrequency) break;
    const [a, b] = [left(k), right(k)];
    const m = opts.merge(a, b);
    merges.push([a, b, m]);
    const changed = new Map<number, number>();
    for (const w of where.get(k) ?? []) {
      const syms = words[w]!.syms;
      let hit = false;
      for (let i = 0; i + 1 < syms.length && !hit; i++) hit = syms[i] === a && syms[i + 1] === b;
      if (!hit) continue;
      addPairs(w, -1, changed);
      const out: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(m);
          i++;
        } else out.push(syms[i]!);
      }
      words[w]!.syms = out;
      addPairs(w, 1, changed);
    }
    where.delete(k);
    for (const [ck, delta] of changed) if (delta > 0) push([count.get(ck)!, ck]);
  }
  return merges;
}

/**
 * Levenshtein distance (insertions, deletions and substitutions, each costing 1) between two sequences: strings
 * (characters) or arrays (e.g. phonemes). Used to score G2P output (phoneme error rate) and for the CLI's
 * did-you-mean suggestions. Two rows of the dynamic-programming table: O(|a|·|b|) time, O(|b|) memory.
 */
export function editDistance<T>(a: ArrayLike<T>, b: ArrayLike<T>): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

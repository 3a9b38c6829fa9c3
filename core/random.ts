import seedrandom from 'seedrandom';

/** The serialisable state of an {@link Rng}, stored in checkpoints so a resumed run draws the same numbers. */
export type RngState = { seed: number; state: object };

/**
 * Seeded pseudo-random numbers for everything random in a run: initialisation, shuffling, dropout masks.
 * Backed by seedrandom's Alea generator (fast, with a saveable state). There is no global generator:
 * a run owns one root Rng and derives independent child streams from it with {@link Rng.fork}.
 */
export class Rng {
  private prng: seedrandom.PRNG & { state(): object };

  constructor(
    readonly seed: number,
    state?: object,
  ) {
    if (!Number.isInteger(seed)) throw new RangeError(`Rng: seed must be an integer, got ${seed}`);
    this.prng = seedrandom.alea(String(seed), { state: (state ?? true) as true }) as seedrandom.PRNG & { state(): object };
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.prng.double();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.prng.double() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** A 31-bit integer seed for a tfjs random op, so tfjs kernels draw deterministically too. */
  nextSeed(): number {
    return this.prng.int32() >>> 1;
  }

  /** An independent generator whose seed is drawn from this one (e.g. one stream for init, one for data order). */
  fork(): Rng {
    return new Rng(this.nextSeed());
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(a: T[] | Int32Array | Uint32Array): typeof a {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i]!;
      a[i] = a[j]!;
      a[j] = t;
    }
    return a;
  }

  getState(): RngState {
    return { seed: this.seed, state: this.prng.state() };
  }

  /** Continues from a saved state (in place, so every holder of this generator resumes with it). */
  setState(s: RngState): void {
    if (s.seed !== this.seed) throw new RangeError(`Rng: a state of the stream seeded ${s.seed} cannot resume the stream seeded ${this.seed}`);
    this.prng = seedrandom.alea(String(s.seed), { state: s.state as unknown as true }) as seedrandom.PRNG & { state(): object };
  }

  static fromState(s: RngState): Rng {
    return new Rng(s.seed, s.state);
  }
}

/** The reports' shared statistics and chart rendering. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { meanStd, vegaLiteSvg } from './reporting';

describe('reporting', () => {
  it('meanStd: the mean, and the sample standard deviation (n − 1), shift-invariant and scaling with |c|', () => {
    const finite = fc.double({ min: -1e3, max: 1e3, noNaN: true });
    fc.assert(
      fc.property(fc.array(finite, { minLength: 2, maxLength: 20 }), finite, (xs, c) => {
        const { mean, std } = meanStd(xs);
        const n = xs.length;
        // Against the definition, in two passes over float64 values.
        expect(mean).toBeCloseTo(xs.reduce((a, b) => a + b, 0) / n, 9);
        const ss = xs.reduce((a, b) => a + (b - mean) ** 2, 0);
        expect(std ** 2 * (n - 1)).toBeCloseTo(ss, 6);
        expect(meanStd(xs.map((x) => x + c)).std).toBeCloseTo(std, 6);
        expect(meanStd(xs.map((x) => x * c)).std).toBeCloseTo(Math.abs(c) * std, 3);
      }),
    );
    expect(meanStd([3])).toEqual({ mean: 3, std: 0 });
    expect(meanStd([1, 3])).toEqual({ mean: 2, std: Math.SQRT2 });
    expect(Number.isNaN(meanStd([]).mean)).toBe(true);
  });

  it('vegaLiteSvg renders a Vega-Lite spec headless to SVG with its marks', async () => {
    const svg = await vegaLiteSvg({
      data: {
        values: [
          { x: 1, y: 2 },
          { x: 2, y: 3 },
        ],
      },
      mark: 'point',
      encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' } },
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/class="mark-symbol/g)?.length).toBeGreaterThanOrEqual(1);
    expect(svg).toContain('role-mark');
  });
});

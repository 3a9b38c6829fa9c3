/**
 * What loom's written reports share (`loom report`, `npm run bench`, `npm run replica:gpt`, the BERT few-shot
 * curves): the mean and sample standard deviation over seeds, and a Vega-Lite chart rendered to SVG in Node.
 */
import type { TopLevelSpec } from 'vega-lite';

/** Mean and sample standard deviation (n − 1; 0 for one value; NaN mean for none). */
export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/**
 * A Vega-Lite spec compiled and rendered headless (no canvas) to an SVG string. Vega is imported here, when a chart
 * is drawn, not with the module: importing it took ~0.6 s of every `loom` command's start (runtime/ is loaded by
 * every run), for the few commands that draw.
 */
export async function vegaLiteSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  return new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' }).toSVG();
}

/** One point of a learning curve over labelled examples: a variant's score at one subset size, over seeds. */
export interface ExamplesPoint {
  variant: string;
  examples: number;
  metric: string;
  mean: number;
  std: number;
}

/**
 * Test scores against labelled examples (log scale), a line per variant with its ±1 s.d. band, a panel per metric:
 * the few-shot learning curves of the BERT paper's grid and of `loom report`.
 */
export function examplesCurvesSvg(title: string, points: readonly ExamplesPoint[]): Promise<string> {
  return vegaLiteSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    data: { values: points.map((p) => ({ ...p, lo: p.mean - p.std, hi: p.mean + p.std })) },
    facet: { column: { field: 'metric', type: 'nominal', title: null } },
    spec: {
      width: 320,
      height: 240,
      layer: [
        { mark: { type: 'errorband', opacity: 0.2 }, encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
        { mark: { type: 'line', point: true }, encoding: { y: { field: 'mean', type: 'quantitative', title: 'test score', scale: { zero: false } } } },
      ],
      encoding: {
        x: { field: 'examples', type: 'quantitative', title: 'labelled examples', scale: { type: 'log' } },
        color: { field: 'variant', type: 'nominal' },
      },
    },
  } as never);
}

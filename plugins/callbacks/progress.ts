import cliProgress from 'cli-progress';
import { z } from 'zod';
import { definePlugin, type Callback, type Logs, type TrainingState } from '../../core';

const fmt = (logs: Logs) =>
  Object.entries(logs)
    .filter(([k]) => k !== 'lr')
    .map(([k, v]) => `${k} ${v.toFixed(4)}`)
    .join(' · ');

/**
 * A progress bar per epoch with ETA and live loss on a terminal (cli-progress); plain lines when stdout is not a
 * TTY (CI, logs): one every `every` batches and one per epoch. In a multi-process run only rank 0 prints.
 */
export default definePlugin({
  kind: 'callback',
  name: 'progress',
  description: 'progress bar with ETA and live metrics on a TTY, plain lines otherwise',
  schema: z.object({ every: z.number().int().positive().default(200), tty: z.boolean().optional() }),
  create: ({ every, tty }): Omit<Callback, 'spec'> => {
    const interactive = tty ?? Boolean(process.stdout.isTTY);
    let bar: cliProgress.SingleBar | null = null;
    let epochStart = 0;
    let seen = 0;
    return {
      onEpochBegin(s: TrainingState) {
        if (s.isGlobalZero === false) return; // only rank 0 prints
        epochStart = Date.now();
        seen = 0;
        if (interactive) {
          bar = new cliProgress.SingleBar(
            { format: `epoch ${s.epoch + 1}/${s.epochs} [{bar}] {value}/{total} | ETA {eta_formatted} | {metrics}`, hideCursor: true, etaBuffer: 50 },
            cliProgress.Presets.shades_classic,
          );
          bar.start(s.stepsPerEpoch, 0, { metrics: '' });
        }
      },
      onBatchEnd(s: TrainingState, logs: Logs) {
        if (s.isGlobalZero === false) return; // only rank 0 prints
        seen++;
        if (bar) bar.update(seen, { metrics: fmt(logs) });
        else if (seen % every === 0) {
          const rate = (seen / (Date.now() - epochStart)) * 1000;
          const eta = (s.stepsPerEpoch - seen) / rate;
          console.log(`epoch ${s.epoch + 1}/${s.epochs} step ${seen}/${s.stepsPerEpoch} · ${fmt(logs)} · ${rate.toFixed(1)} steps/s · ETA ${eta.toFixed(0)} s`);
        }
      },
      onEpochEnd(s: TrainingState, logs: Logs) {
        if (s.isGlobalZero === false) return; // only rank 0 prints
        bar?.stop();
        bar = null;
        console.log(`epoch ${s.epoch + 1}/${s.epochs} done in ${((Date.now() - epochStart) / 1000).toFixed(1)} s · ${fmt(logs)}`);
      },
    };
  },
});

import { z } from 'zod';
import { definePlugin, type RunInfo, type Tracker } from '../../core';

/** Prints the run's start, its per-epoch metrics and its end to stdout: tracking without any store. */
export default definePlugin({
  kind: 'tracker',
  name: 'console',
  description: 'prints run start, epoch metrics and status to stdout',
  schema: z.object({}),
  create: (): Omit<Tracker, 'spec'> => ({
    async startRun({ experiment, runName }): Promise<RunInfo> {
      console.log(`[${experiment}] run ${runName} started`);
      return { runId: runName, experimentId: experiment, location: 'stdout' };
    },
    logParams: () => undefined,
    logMetrics(metrics, step) {
      if (!('epoch' in metrics)) return;
      const parts = Object.entries(metrics)
        .filter(([k]) => k !== 'epoch')
        .map(([k, v]) => `${k}=${v.toFixed(4)}`);
      console.log(`epoch ${step}: ${parts.join(' ')}`);
    },
    setTags: () => undefined,
    logArtifact: async () => undefined,
    flush: async () => undefined,
    async endRun(status, reason) {
      console.log(`run ended: ${status}${reason ? ` (${reason})` : ''}`);
    },
  }),
});

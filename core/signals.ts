/**
 * SIGINT (Ctrl-C) and SIGTERM while a run trains: the first one asks the run to stop after its current step, write
 * a checkpoint and end its tracked run as KILLED (`runExperiment`); a second one ends the process at once.
 */
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type StopSignal = (typeof SIGNALS)[number];

/** 128 + the signal's number: the exit status a shell reports for a process that a signal ended. */
export const signalExitCode = (s: StopSignal): number => (s === 'SIGINT' ? 130 : 143);

/**
 * Records the first SIGINT or SIGTERM in {@link signal}; the trainer polls it between steps. After that first
 * signal its listeners are removed, so a second signal takes its default action and ends the process at once,
 * even in the middle of a step (a checkpoint being written then is left complete or absent, never half: see
 * core/checkpoint.ts). Where other code also listens to that signal the default action no longer applies, so a
 * listener is kept that exits with 128 + the signal's number at the next turn of the event loop.
 */
export class SignalWatch {
  signal: StopSignal | null = null;
  private readonly onSignal = (s: NodeJS.Signals): void => this.first(s as StopSignal);
  private readonly exitNow = (s: NodeJS.Signals): never => process.exit(signalExitCode(s as StopSignal));

  constructor(private readonly notice: (line: string) => void) {
    for (const s of SIGNALS) process.on(s, this.onSignal);
  }

  private first(s: StopSignal): void {
    this.signal = s;
    for (const t of SIGNALS) process.off(t, this.onSignal);
    for (const t of SIGNALS) if (process.listenerCount(t) > 0) process.once(t, this.exitNow);
    this.notice(`loom: ${s} received: stopping after the current step to write a checkpoint (${s === 'SIGINT' ? 'Ctrl-C' : 'SIGTERM'} again quits at once)`);
  }

  /** Stops watching (the run ended): signals have their usual effect again. */
  dispose(): void {
    for (const t of SIGNALS) {
      process.off(t, this.onSignal);
      process.off(t, this.exitNow);
    }
  }
}

/**
 * Lets the event loop take in what happened meanwhile (a signal's listener runs then) before the caller continues.
 * Two hops: an immediate queued while the loop is polling runs in the same turn, before the signal's callback is
 * dispatched; one queued from an immediate runs after the next poll, which dispatches it.
 */
export const yieldToEventLoop = async (): Promise<void> => {
  for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
};

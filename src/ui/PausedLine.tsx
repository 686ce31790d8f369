// The status line of a paused training run (crosscoders, organisms): where it stopped, and Resume,
// Finish now (resume, then finish at once) and Cancel. Test ids are `${prefix}-paused`, `-resume`, `-cancel`.
export function PausedLine({ prefix, steps, total, finishTitle, resume, command }: { prefix: string; steps: number; total: number; finishTitle: string; resume(): Promise<void>; command(c: 'finish' | 'cancel'): void }) {
  return (
    <div className="status" data-testid={`${prefix}-paused`}>
      <span className="warn">
        Paused after {steps} of {total} steps.
      </span>
      <button type="button" className="primary" onClick={() => void resume()} data-testid={`${prefix}-resume`}>
        Resume
      </button>
      <button
        type="button"
        onClick={() => {
          void resume();
          command('finish');
        }}
        title={finishTitle}
      >
        Finish now
      </button>
      <button type="button" onClick={() => command('cancel')} data-testid={`${prefix}-cancel`}>
        Cancel
      </button>
    </div>
  );
}

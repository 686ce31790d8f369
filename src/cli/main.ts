// `npx neurodiff <command>`: the same analyses as the app, without a browser.
// Results go to stdout (a text summary, or one JSON object with --json: indented on a terminal); progress
// and messages go to stderr.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { commands } from './commands.ts';
import { UsageError } from './errors.ts';
import { nonFiniteSummary } from '../io/finite.ts';
import { jsonText } from './format.ts';
import { runNotes } from './models.ts';

function usage(): string {
  const lines = ['usage: neurodiff <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  lines.push('', 'Run `neurodiff <command> --help` for the options of one command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n${usage()}`);
  const config: ParseArgsConfig = {
    args: rest,
    allowPositionals: true,
    strict: true,
    options: { ...command.options, json: { type: 'boolean' }, 'allow-nonfinite': { type: 'boolean' }, 'memory-budget': { type: 'string' }, debug: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  };
  let parsed;
  try {
    parsed = parseArgs(config);
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nusage: neurodiff ${name} ${command.usage}`);
  }
  if (parsed.values.help) {
    process.stdout.write(`usage: neurodiff ${name} ${command.usage}\n${command.summary}\n`);
    return 0;
  }
  const result = await command.run(parsed.positionals, parsed.values as Record<string, unknown>);
  const { notes, lines } = runNoteFields();
  if (parsed.values.json || !command.format) process.stdout.write(jsonText(typeof result === 'object' && result !== null && !Array.isArray(result) ? { ...result, ...notes } : result));
  else process.stdout.write(lines.map((l) => `${l}\n`).join('') + command.format(result));
  return 0;
}

/** What every result carries (runNotes): the memory plan of a loaded pair, and the non-finite weights --allow-nonfinite let through. */
function runNoteFields(): { notes: Record<string, unknown>; lines: string[] } {
  const notes: Record<string, unknown> = {};
  const lines: string[] = [];
  const m = runNotes.memory;
  if (m) {
    notes.memory = { mode: m.mode, reason: m.reason, pair_bytes: m.pairBytes, model_bytes: m.modelBytes, budget_bytes: Number.isFinite(m.budgetBytes) ? m.budgetBytes : null };
    lines.push(`memory: ${m.reason}`);
  }
  const nonfinite = nonFiniteSummary(...runNotes.stores);
  if (nonfinite) {
    notes.nonfinite = nonfinite;
    lines.push(`warning: ${nonfinite}`);
  }
  return { notes, lines };
}

const debug = process.argv.includes('--debug');
main(process.argv.slice(2)).then(
  // On a pipe stdout is written asynchronously: exit only once the result has been flushed.
  (code) => process.stdout.write('', () => process.exit(code)),
  (e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    process.stderr.write(`neurodiff: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(err.stack + '\n');
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);

import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/**
 * Every command and subcommand of the built CLI answers `--help` with exit code 0, a usage
 * line, a description, and a description for each of its options and subcommands. The list
 * below is checked against what `--help` itself lists, so a command added without help text
 * (or without a row here) fails.
 */

const COMMANDS: readonly string[][] = [
  [],
  ['relay'],
  ['mine'],
  ['hash'],
  ['keys'],
  ['keys', 'generate'],
  ['keys', 'rotate'],
  ['keys', 'show'],
  ['keys', 'family-key'],
  ['tickets'],
  ['tickets', 'list'],
  ['tickets', 'redeem'],
  ['tickets', 'prune'],
  ['tickets', 'import'],
  ['tickets', 'export'],
  ['peers'],
  ['peers', 'status'],
  ['peers', 'settle'],
  ['terms'],
  ['demo'],
];

/** A description worth the name: a few words, not a placeholder. */
const MEANINGFUL = /[a-z].*\s\S+\s\S+/i;

interface Help {
  usage: string;
  description: string;
  /** Option and command sections: [flags or name, description]. */
  options: [string, string][];
  commands: [string, string][];
}

/**
 * Commander's layout: "Usage: …", a blank line, the description (possibly several
 * paragraphs), then sections ("Arguments:", "Options:", "Commands:") whose entries start at
 * two spaces, with the term and its description separated by two or more spaces; wrapped
 * description lines are indented further.
 */
function parseHelp(text: string): Help {
  const lines = text.split('\n');
  const usage = lines[0] ?? '';
  const description = lines
    .slice(2)
    .join('\n')
    .split(/\n(?=[A-Z][a-z]+:\n)/)[0]!
    .trim();
  const section = (name: string): [string, string][] => {
    const start = lines.indexOf(`${name}:`);
    if (start < 0) return [];
    const entries: [string, string][] = [];
    for (const line of lines.slice(start + 1)) {
      if (line.trim() === '') break;
      const entry = /^ {2}(\S.*?)(?: {2,}(\S.*))?$/.exec(line);
      if (entry) entries.push([entry[1]!, entry[2] ?? '']);
    }
    return entries;
  };
  return { usage, description, options: section('Options'), commands: section('Commands') };
}

async function help(path: readonly string[]): Promise<Help> {
  const result = await runCli([...path, '--help']);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return parseHelp(result.stdout);
}

const name = (path: readonly string[]) => ['powbridge', ...path].join(' ');

describe('powbridge --help', () => {
  it.each(COMMANDS.map((path) => [name(path), path] as const))(
    '%s --help: usage, description, every option and subcommand described',
    async (_label, path) => {
      const shown = await help(path);
      expect(shown.usage).toMatch(new RegExp(`^Usage: ${name(path)} \\[options\\]`));
      expect(shown.description).toMatch(MEANINGFUL);
      expect(shown.options.map(([flags]) => flags)).toContain('-h, --help');
      for (const [flags, text] of shown.options) {
        expect(text, `${name(path)} ${flags}`).toMatch(/\S/);
      }
      for (const [command, text] of shown.commands) {
        if (command.startsWith('help ')) continue;
        expect(text, `${name(path)} ${command}`).toMatch(MEANINGFUL);
      }
    },
  );

  it('covers every command the CLI lists, and lists every command covered', async () => {
    const found: string[] = [];
    const walk = async (path: string[]): Promise<void> => {
      found.push(name(path));
      for (const [command] of (await help(path)).commands) {
        const sub = command.split(' ')[0]!;
        if (sub !== 'help') await walk([...path, sub]);
      }
    };
    await walk([]);
    expect(found.sort()).toEqual(COMMANDS.map(name).sort());
  }, 120_000);

  it('--version prints the version', async () => {
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});

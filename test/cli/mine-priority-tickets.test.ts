import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/** `powbridge mine --priority-tickets <n>`: the tier asked for, refused outside 1..100. */

describe('powbridge mine --priority-tickets', () => {
  it.each(['0', '101', 'four'])('refuses %s, naming the option and the range', async (n) => {
    const result = await runCli([
      'mine',
      '--relay',
      'ws://127.0.0.1:1/v1/circuit',
      '--priority-tickets',
      n,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `powbridge mine: option '--priority-tickets <n>' argument '${n}' is invalid. expected an ` +
        'integer 1..100 (see powbridge mine --help)\n',
    );
  });
});

import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { headerVectors } from '../helpers/vectors.js';

describe('powbridge hash', () => {
  for (const v of headerVectors()) {
    it(`prints the PoW hash of ${v.chain} #${v.height}`, async () => {
      const result = await runCli(['hash', '--algorithm', v.algorithm, '--header', v.header]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`pow hash    ${v.powHash}`);
      if (v.algorithm === 'scrypt') expect(result.stdout).toContain(`block hash  ${v.hash}`);
      expect(result.stdout).toContain('meets target from nbits: yes');
    });
  }

  it('--json prints one parseable object', async () => {
    const v = headerVectors()[0];
    if (!v) throw new Error('no vectors');
    const result = await runCli(['hash', '-a', v.algorithm, '--header', v.header, '--json']);
    expect(JSON.parse(result.stdout)).toMatchObject({ powHash: v.powHash, meetsTarget: true });
  });

  const bad: [string, string[], RegExp][] = [
    ['too short', ['--algorithm', 'scrypt', '--header', '00ff'], /expected 80 bytes of hex, got 2/],
    ['too long', ['--algorithm', 'scrypt', '--header', '00'.repeat(81)], /got 81/],
    ['odd length', ['--algorithm', 'scrypt', '--header', '0'.repeat(159)], /even-length hex/],
    ['not hex', ['--algorithm', 'sha256d', '--header', 'zz'.repeat(80)], /even-length hex/],
    ['unknown algorithm', ['--algorithm', 'x11', '--header', '00'.repeat(80)], /Allowed choices/],
    ['missing algorithm', ['--header', '00'.repeat(80)], /--algorithm/],
  ];
  for (const [name, args, message] of bad) {
    it(`fails clearly on ${name}`, async () => {
      const result = await runCli(['hash', ...args]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe('');
    });
  }
});

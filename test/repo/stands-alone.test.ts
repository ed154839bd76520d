import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * A clone of this repository must run its tests alone: no tracked file may read or link the
 * design input that sits beside the checkout, or climb out of the checkout with a relative
 * path. `.ci/run` checks the first with git grep before anything else; this runs both checks
 * in `npm test` too. The needles are built from pieces so this file does not match itself.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const up = ['.', '.'].join('');
const SIBLING_FOLDER = `${up}/${'shared'}`;
const THREE_UP = [up, up, up].map((part) => `'${part}'`).join(', ');
/** Real headers of both algorithms: enough to test the block math on each. */
const MIN_HEADERS = 2;

function trackedFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' });
  return out.split('\0').filter((file) => file !== '');
}

/** Tracked files whose text contains `needle`; files deleted in the work tree are skipped. */
function filesContaining(files: readonly string[], needle: string): string[] {
  return files.filter((file) => {
    let text: string;
    try {
      text = readFileSync(join(root, file), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    return text.includes(needle);
  });
}

describe('the repository stands alone', () => {
  const files = trackedFiles();

  it('lists the tracked files (a git work tree)', () => {
    expect(files).toContain('package.json');
  });

  it('no tracked file references the folder beside the checkout', () => {
    // .ci/run names the pattern (escaped) to check for it; it is the one allowed mention.
    const offenders = filesContaining(files, SIBLING_FOLDER).filter((f) => f !== '.ci/run');
    expect(offenders, `these files reference ${SIBLING_FOLDER}`).toEqual([]);
  });

  it('no tracked file climbs three folders up', () => {
    expect(filesContaining(files, THREE_UP), `these files contain ${THREE_UP}`).toEqual([]);
  });

  it('the header vectors are in the repository and parse', () => {
    const file = join(root, 'test', 'vectors', 'headers.json');
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as {
      headers?: { algorithm?: unknown; header?: unknown }[];
    };
    const headers = parsed.headers ?? [];
    expect(headers.length).toBeGreaterThanOrEqual(MIN_HEADERS);
    for (const h of headers) expect(h.header).toMatch(/^[0-9a-f]{160}$/);
    expect(new Set(headers.map((h) => h.algorithm))).toEqual(new Set(['sha256d', 'scrypt']));
  });
});

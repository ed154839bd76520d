import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN } from '../helpers/cli.js';
import { waitFor } from '../helpers/litecoind.js';

/**
 * `powbridge demo` (what `npm start` runs) as a user runs it: the real CLI, real litecoind
 * nodes, told until the story is complete, then Ctrl-C. Whatever it started must be gone
 * afterwards: its child processes (the litecoind daemons) and its working directory.
 */

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const runs: Run[] = [];

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const child = spawn(process.execPath, [BIN, 'demo', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const run = { child, stdout: () => stdout, stderr: () => stderr, exited };
  runs.push(run);
  return run;
}

/** Pids whose parent is `pid`, from /proc (Linux). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

function commandName(pid: number): string {
  return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterEach(async () => {
  // A failed test must not leave a demo (or its daemons) running.
  for (const run of runs.splice(0)) {
    if (run.child.exitCode !== null || run.child.signalCode !== null) continue;
    const daemons = childrenOf(run.child.pid as number);
    run.child.kill('SIGINT');
    const stopped = await Promise.race([
      run.exited.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 20_000)),
    ]);
    if (!stopped) {
      run.child.kill('SIGKILL');
      for (const pid of daemons) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
  }
}, 30_000);

/** What the story must tell, in this order. */
const STORY: readonly RegExp[] = [
  /Nodes up: node A .* and node B/,
  /Main relay up at http:\/\/127\.0\.0\.1:\d+, mining solo/,
  /Backup relay up at http:\/\/127\.0\.0\.1:\d+/,
  /^dashboard: http:\/\/127\.0\.0\.1:\d+\/$/m,
  /main relay → miner: job /,
  /share accepted; the miner's credit is now/,
  /Ticket 1 issued/,
  /Priority granted by the main relay: class "paid"/,
  /Tunnel throughput: free stream [\d.]+ Mbit\/s, paid stream [\d.]+ Mbit\/s/,
  /Priority granted by the backup relay: class "paid"/,
  /Story complete/,
];

describe('powbridge demo', () => {
  it('tells the story; Ctrl-C stops every process it started and removes its directory', async () => {
    const run = start(['--duration', '85']);
    await waitFor(
      'the story to complete',
      () => /Story complete|The demo failed/.test(run.stdout()) || run.child.exitCode !== null,
      75_000,
    );
    const out = run.stdout();
    expect(out).not.toMatch(/The demo failed/);
    // It opens with what this is for, and that it runs without Tor (and how to try it with).
    const opening = out.split('\n').slice(0, 3).join('\n');
    expect(opening).toMatch(
      /^powbridge demo: proof-of-work as an anonymous micropayment for a Tor relay\./,
    );
    expect(opening).toMatch(/priority tickets in return, blind-signed, so the relay cannot link/);
    expect(opening).toMatch(/This demo runs without Tor: .*npm run test:tor/);
    let at = 0;
    for (const line of STORY) {
      const match = line.exec(out.slice(at));
      expect(match, `story line ${String(line)} (in order)`).not.toBeNull();
      at += (match?.index ?? 0) + (match?.[0].length ?? 0);
    }
    // Told as the relay submits it, so it may come before or after the first share's line.
    expect(out).toMatch(/node A accepted block [0-9a-f]{16}/);
    // The ticket bought bandwidth: the paid stream is clearly faster than the free one.
    const rates = /free stream ([\d.]+) Mbit\/s, paid stream ([\d.]+) Mbit\/s/.exec(out);
    const [free, paid] = [Number(rates?.[1]), Number(rates?.[2])];
    expect(free).toBeGreaterThan(0);
    expect(paid).toBeGreaterThan(free * 1.5);

    const dir = /Working directory: (\S+)/.exec(out)?.[1] ?? '';
    expect(dir).toMatch(/powbridge-demo-/);
    expect(existsSync(dir)).toBe(true);
    const started = childrenOf(run.child.pid as number);
    expect(started.map(commandName).sort()).toEqual(['litecoind', 'litecoind']);

    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toMatch(/Ctrl-C: stopping…/);
    expect(run.stdout()).toMatch(/Stopped\. Nothing the demo started is left\./);
    for (const pid of started) expect(alive(pid), `process ${pid}`).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(run.stderr()).toBe('');
  }, 90_000);

  // Stopped once its nodes are up (the earliest point where something could be left behind):
  // a terminal closing, and a reader that goes away (`npm start | head`, or `| tee log` ended
  // by Ctrl-C first). Ctrl-C itself is the test above.
  const stops: [string, (run: Run) => void, (run: Run) => void][] = [
    [
      'SIGHUP',
      (run) => run.child.kill('SIGHUP'),
      (run) => {
        expect(run.stdout()).toMatch(/SIGHUP: stopping…/);
        expect(run.stdout()).toMatch(/Stopped\. Nothing the demo started is left\./);
        expect(run.stderr()).toBe('');
      },
    ],
    [
      'its output closed (EPIPE)',
      (run) => run.child.stdout?.destroy(),
      // Nobody reads stdout any more: one line on stderr, and no stack.
      (run) =>
        expect(run.stderr()).toBe(
          'powbridge demo: output closed (EPIPE): stopping and cleaning up\n',
        ),
    ],
  ];
  it.each(stops)(
    '%s: every process it started is gone and its directory removed',
    async (_, stop, said) => {
      const run = start([]);
      await waitFor(
        'the nodes to start',
        () => /Nodes up/.test(run.stdout()) || run.child.exitCode !== null,
        60_000,
      );
      const dir = /Working directory: (\S+)/.exec(run.stdout())?.[1] ?? '';
      expect(dir).toMatch(/powbridge-demo-/);
      const started = childrenOf(run.child.pid as number);
      expect(started.map(commandName).sort()).toEqual(['litecoind', 'litecoind']);

      stop(run);
      expect(await run.exited).toBe(0);
      said(run);
      for (const pid of started) expect(alive(pid), `process ${pid}`).toBe(false);
      expect(existsSync(dir)).toBe(false);
    },
    90_000,
  );

  it('without litecoind on PATH it says how to install it and exits non-zero', async () => {
    const run = start([], { ...process.env, PATH: '/nonexistent' });
    const code = await run.exited;
    expect(code).not.toBe(0);
    expect(run.stderr()).toMatch(/litecoind .*not installed/);
    expect(run.stderr()).toMatch(/apt-get install litecoind/);
    expect(run.stderr()).toMatch(/\.\/scripts\/setup\.sh/);
    expect(run.stdout()).toBe('');
  });
});

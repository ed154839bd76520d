import { execFileSync } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * Where bench/family.ts's time goes: CPU time of other processes, read from Linux's /proc
 * (utime + stime of /proc/<pid>/stat, every thread of the process included; elsewhere the
 * figures are NaN), and how long the disk takes to fsync.
 *
 * Not a benchmark on its own (bench/run.ts skips <name>-<part>.ts helpers).
 */

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      ticksPerSecond = 100; // Linux's USER_HZ nearly everywhere
    }
  }
  return ticksPerSecond;
}

interface Stat {
  ppid: number;
  cpuSeconds: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone, or no /proc
  }
  // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  const ppid = Number(fields[1]);
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { ppid, cpuSeconds: ticks / clockTicks() };
}

function allPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds used so far by these processes together (NaN if one cannot be read). */
export function cpuSecondsOf(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += readStat(pid)?.cpuSeconds ?? Number.NaN;
  return total;
}

/**
 * The PostgreSQL server listening on `port` (test/helpers/postgres.ts starts it as
 * `postgres -D … -p <port>`) and, at each call, its children: the backends serving the
 * relays, the WAL writer, the checkpointer. Empty if not found.
 */
export function postgresProcesses(port: number): () => number[] {
  const postmaster = allPids().find((pid) => {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const p = args.indexOf('-p');
      return args[0]?.endsWith('postgres') === true && p !== -1 && args[p + 1] === String(port);
    } catch {
      return false;
    }
  });
  if (postmaster === undefined) return () => [];
  return () => [postmaster, ...allPids().filter((pid) => readStat(pid)?.ppid === postmaster)];
}

/** Milliseconds one small write + fsync takes in `dir` (median of `n`): the disk's floor. */
export function fsyncMs(dir: string, n = 50): number {
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const start = performance.now();
      writeSync(fd, Buffer.alloc(512, i));
      fsyncSync(fd);
      times.push(performance.now() - start);
    }
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1] ?? Number.NaN;
}

/**
 * CPU seconds a changing set of processes spends between `start` and `stop`: read every
 * `everyMs`, so a process that starts meanwhile counts from zero and one that exits (a
 * PostgreSQL backend whose pooled connection idled out) keeps what was last read of it.
 */
export class CpuMeter {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pids: () => readonly number[],
    private readonly everyMs = 250,
  ) {}

  start(): void {
    this.first.clear();
    this.last.clear();
    this.read(true);
    this.timer = setInterval(() => this.read(false), this.everyMs);
  }

  /** CPU seconds since start (NaN if no process could be read). */
  stop(): number {
    clearInterval(this.timer);
    this.read(false);
    if (this.last.size === 0) return Number.NaN;
    let total = 0;
    for (const [pid, seconds] of this.last) total += seconds - (this.first.get(pid) ?? 0);
    return total;
  }

  private read(initial: boolean): void {
    for (const pid of this.pids()) {
      const seconds = cpuSecondsOf([pid]);
      if (Number.isNaN(seconds)) continue;
      if (initial) this.first.set(pid, seconds);
      this.last.set(pid, seconds);
    }
  }
}

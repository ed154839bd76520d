import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Lower the scheduling priority of the calling thread alone (nice +`niceness`), so that work
 * a flood can ask for (ticket signature checks) yields the CPU to the event loop (jobs,
 * shares, /healthz) when both want it. Linux only: setpriority(2) on a thread id renices that
 * thread, and /proc/thread-self names it. Elsewhere, or if refused, nothing changes.
 */
export function lowerThreadPriority(niceness = 10): boolean {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, niceness);
    return true;
  } catch {
    return false;
  }
}

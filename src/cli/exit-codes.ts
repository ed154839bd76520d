/**
 * The exit codes of every `powbridge` command; docs/operating.md ("Exit codes") is the same
 * table for operators and scripts.
 */
export const EXIT = {
  /** Done; also `--help` and `--version`. */
  ok: 0,
  /** It ran but did not get what was asked: fewer tickets redeemed, a demo that failed. */
  failed: 1,
  /** Refused before doing anything: bad usage, a bad config, a file or key it cannot use. */
  refused: 2,
  /** A bug in powbridge (sysexits' EX_SOFTWARE): printed with its stack. */
  internal: 70,
} as const;

import { describe, expect, it } from 'vitest';
import {
  duration,
  formatSummary,
  type RunSummary,
  ShareTally,
} from '../../src/client/run-summary.js';
import type { ShareResult } from '../../src/client/miner-stats.js';
import type { UpstreamShare } from '../../src/sources/work-source.js';

/** The summary `powbridge mine` prints when stopped, as text (the CLI test runs the real one). */

const share: UpstreamShare = {
  jobId: 'j',
  extranonce2: '00',
  ntime: '00000000',
  nonce: '00000000',
  session: 1,
};
const result = (accepted: boolean, reason?: string, stale = false): ShareResult => ({
  share,
  accepted,
  stale,
  ...(reason === undefined ? {} : { reason }),
});

const base: RunSummary = {
  cause: 'Ctrl-C',
  seconds: 125.4,
  hashes: 1_234_567,
  shares: { accepted: 12, rejected: 0, stale: 0 },
  rejections: [],
  credit: { paid: 10, unspent: 2.5, lost: 0 },
  tickets: 5,
  wallet: {
    path: '/home/m/.powbridge/wallet.sqlite',
    counts: { unspent: 7, spent: 3, expired: 1 },
  },
};

describe('the run summary', () => {
  it('tells time, hashes and the average rate, shares, where the credit went, tickets and the wallet', () => {
    expect(formatSummary(base)).toBe(
      [
        'powbridge mine: stopped (Ctrl-C) after 2 min 5 s',
        '  hashes:  1,234,567 in all, 9.85 kH/s on average',
        '  shares:  12 accepted, 0 rejected',
        '  credit:  12.50 earned: 10.00 paid for 5 tickets, 2.50 unspent (gone with the circuit)',
        '  tickets: 5 earned, in /home/m/.powbridge/wallet.sqlite (7 unspent, 3 spent, 1 expired)',
        '',
      ].join('\n'),
    );
  });

  it('says why shares were rejected, most frequent first, in the gist of the relay’s words', () => {
    const tally = new ShareTally();
    for (const r of [
      result(true),
      result(false, 'low difficulty share'),
      result(false, 'stale share: job from an earlier relay session'),
      result(false, 'low difficulty share'),
      result(false, 'duplicate share'),
      result(false, undefined),
      result(false, 'ignored: stale', true),
    ]) {
      tally.add(r);
    }
    expect(tally.rejections()).toEqual([
      ['low difficulty share', 2],
      ['stale share', 1],
      ['duplicate share', 1],
      ['no reason given', 1],
    ]);
    const text = formatSummary({
      ...base,
      shares: { accepted: 1, rejected: 5, stale: 1 },
      rejections: tally.rejections(),
    });
    expect(text).toContain(
      '  shares:  1 accepted, 5 rejected (2 low difficulty share, 1 stale share, 1 duplicate share, …), ' +
        '1 not sent (their job was replaced first)\n',
    );
  });

  it('credit left on earlier circuits counts as earned, and is said', () => {
    const text = formatSummary({
      ...base,
      credit: { paid: 2, unspent: 0, lost: 0.75 },
      tickets: 1,
    });
    expect(text).toContain(
      '  credit:  2.75 earned: 2.00 paid for 1 ticket, 0.00 unspent (gone with the circuit), ' +
        '0.75 left on earlier circuits\n',
    );
  });

  it('donating: no credit, no tickets, no wallet; a Stratum front only: no hashes', () => {
    const text = formatSummary({
      ...base,
      cause: 'SIGTERM',
      seconds: 4.25,
      hashes: null,
      credit: null,
      tickets: 0,
      wallet: null,
    });
    expect(text.split('\n')).toEqual([
      'powbridge mine: stopped (SIGTERM) after 4.3 s',
      '  hashes:  none (no mining threads: the Stratum front only)',
      '  shares:  12 accepted, 0 rejected',
      '  credit:  none (donating: shares only)',
      '  tickets: none (donating)',
      '',
    ]);
  });

  it('durations read as a person would say them', () => {
    expect(duration(0)).toBe('0.0 s');
    expect(duration(59.94)).toBe('59.9 s');
    expect(duration(60)).toBe('1 min 0 s');
    expect(duration(3599.9)).toBe('59 min 59 s');
    expect(duration(7207)).toBe('2 h 0 min 7 s');
  });
});

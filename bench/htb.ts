import { Htb } from '../src/qos/htb.js';
import type { ClassInput } from '../src/qos/htb.js';
import { medianRate, benchOptions } from './lib/report.js';

/**
 * Decision cost of the hierarchical token bucket (docs/design.md §8): one dequeue (pick a leaf by
 * level, prio and DRR, charge the path) plus the enqueue that keeps the leaf saturated, on
 * a virtual clock advancing one packet time per decision, with 100 and 1,000 leaves in
 * groups of 10 under a 1 Gbit/s root (so most leaves borrow and every level is exercised).
 *
 *   npm run bench -- htb [--json] [--reps 5] [--slice 1]
 */

const { report, reps: REPS, sliceMs: SLICE_MS } = benchOptions('htb');
const PACKET = 1500;
const LINK = 125_000_000; // 1 Gbit/s in bytes/s

function tree(leaves: number): Htb<number> {
  const classes: ClassInput[] = [{ name: 'root', rate: LINK }];
  const groups = leaves / 10;
  for (let g = 0; g < groups; g++) {
    classes.push({ name: `g${g}`, parent: 'root', rate: LINK / groups / 2, ceil: LINK });
    for (let i = 0; i < 10; i++) {
      const rate = LINK / groups / 40;
      classes.push({ name: `l${g}.${i}`, parent: `g${g}`, rate, ceil: LINK, prio: i % 8 });
    }
  }
  return Htb.fromConfig<number>({ classes });
}

function decisions(leaves: number): number {
  const htb = tree(leaves);
  const names = htb.leafNames;
  // Four packets per leaf; a sent packet goes back to its leaf (ref = leaf index), so every
  // leaf stays backlogged.
  names.forEach((name, i) => {
    for (let k = 0; k < 4; k++) htb.enqueue(name, { bytes: PACKET, ref: i });
  });
  let t = 0;
  let idle = 0;
  const op = (): void => {
    const p = htb.dequeue(t);
    if (p === null) {
      t = htb.nextEventTime(t) ?? t;
      idle++;
      return;
    }
    htb.enqueue(names[p.ref] as string, p);
    t += PACKET / LINK;
  };
  const r = medianRate(op, SLICE_MS, REPS);
  if (idle > 0) report.say(`  (${idle} idle decisions with ${leaves} leaves)`);
  return r;
}

report.say(`htb: dequeue + enqueue per packet, saturated leaves, median of ${REPS}`);
const small = decisions(100);
report.figure('decisions/s, 100 leaves', small, 'packet/s');
report.figure('ns per decision, 100 leaves', 1e9 / small, 'ns');
const large = decisions(1000);
report.figure('decisions/s, 1000 leaves', large, 'packet/s', ['100 leaves', small]);
report.figure('ns per decision, 1000 leaves', 1e9 / large, 'ns', ['100 leaves', 1e9 / small]);

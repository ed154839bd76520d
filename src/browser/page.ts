import './zod-jitless.js';
import { RSA_SCHEME, type RegisterResult } from '../protocol/messages.js';
import type { SourceJob, UpstreamTerms } from '../sources/work-source.js';
import { PageMiner } from './page-miner.js';
import { PageRelay, RelayRefused } from './page-relay.js';
import { PageSession, type SessionLink } from './page-session.js';
import { PageStore } from './page-store.js';
import { PageTicketLoop } from './page-tickets.js';
import { PageWallet } from './page-wallet.js';
import { randomBytes } from './shims/node-random.js';
import { WorkerLanes } from './worker-lanes.js';

/**
 * The miner page (GET /mine, bundled as dist/browser/mine.js): the settings form, one circuit
 * to the relay that served the page, the miner, the figures it shows once a second, and the
 * tickets its credit buys (page-tickets.ts), kept in IndexedDB (page-wallet.ts) under the
 * relay's pinned descriptor (page-relay.ts). Settings are read from the form only: the page
 * never reads navigator.hardwareConcurrency or anything else a relay could use to tell
 * browsers apart, and it sends nothing but the circuit's messages and the descriptor fetch
 * to its own origin (issue 18; docs/design.md §9).
 */

/** The CLI's default drift of the hash rate (`powbridge mine --jitter 20`). */
const JITTER_PERCENT = 20;
const REFRESH_MS = 1_000;

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`miner page: #${id} missing`);
  return found;
}

const form = element('settings', HTMLFormElement);
const threadsInput = element('threads', HTMLInputElement);
const cpuInput = element('cpu', HTMLInputElement);
const donateInput = element('donate', HTMLInputElement);
const toggle = element('toggle', HTMLButtonElement);
const stateLine = element('state', HTMLElement);
const identityText = element('identity', HTMLElement);
const relayProblem = element('relay-problem', HTMLElement);
const exportButton = element('export', HTMLButtonElement);
const importButton = element('import', HTMLButtonElement);
const importFile = element('import-file', HTMLInputElement);
const figures = {
  hashrate: element('hashrate', HTMLElement),
  accepted: element('accepted', HTMLElement),
  rejected: element('rejected', HTMLElement),
  stale: element('stale', HTMLElement),
  credit: element('credit', HTMLElement),
  tickets: element('tickets', HTMLElement),
};

const now = (): number => Date.now() / 1000;
const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
const circuitUrl = `${scheme}://${location.host}/v1/circuit`;

/** The wallet and the pinned relay: both needed before a ticket is asked for. */
const storeReady = PageStore.open();
const relayReady: Promise<PageRelay | RelayRefused | Error> = storeReady
  .then((store) => PageRelay.load(store, now()))
  .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
let wallet: PageWallet | null = null;

function showRelayProblem(text: string): void {
  relayProblem.textContent = text;
  relayProblem.hidden = false;
}

function show(state: SessionLink | 'failed', text: string): void {
  stateLine.dataset['state'] = state;
  stateLine.textContent = text;
}

const LINK_WORDS: Readonly<Record<SessionLink, string>> = {
  connecting: 'Opening a circuit to the relay…',
  waiting: 'Registered; waiting for work from the relay.',
  live: 'Mining.',
  'no-upstream': 'Paused: the relay has no upstream work right now.',
  retrying: 'No circuit to the relay.',
  stopped: 'Stopped.',
};

function formatRate(hashesPerSecond: number): string {
  const units = ['H/s', 'kH/s', 'MH/s', 'GH/s'];
  let value = hashesPerSecond;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit > 0 ? 2 : 0)} ${units[unit] ?? ''}`;
}

/**
 * One run of the miner, from Start to Stop, with the settings the form had at Start. A change
 * while mining waits for the next Start: a new run is a new circuit, and the relay's credit
 * is per circuit.
 */
class Run {
  private readonly session: PageSession;
  private miner: PageMiner | null = null;
  /** What the relay sent before the workers were ready, replayed in order. */
  private backlog: ((miner: PageMiner) => void)[] = [];
  private stopped = false;
  private readonly refresh: ReturnType<typeof setInterval>;

  private tickets: PageTicketLoop | null = null;

  constructor(
    private readonly settings: { threads: number; cpuPercent: number; donate: boolean },
    /** The pinned relay in tickets mode; null when donating (no ticket is asked for). */
    private readonly relay: PageRelay | null,
  ) {
    this.session = new PageSession(
      { url: circuitUrl, mode: settings.donate ? 'donate' : 'tickets' },
      {
        terms: (terms: UpstreamTerms) => this.toMiner((m) => m.onTerms(terms)),
        job: (job: SourceJob) => this.toMiner((m) => m.onJob(job)),
        live: (live: boolean) => this.toMiner((m) => m.setLive(live)),
        registered: (result) => {
          void this.startTickets(result);
          void this.startMiner(result);
        },
        credit: () => {
          this.tickets?.poke();
          this.render();
        },
        link: (link, detail) =>
          show(link, detail ? `${LINK_WORDS[link]} ${detail}` : LINK_WORDS[link]),
      },
    );
    this.refresh = setInterval(() => this.render(), REFRESH_MS);
    this.session.start();
  }

  stop(): void {
    this.stopped = true;
    this.tickets?.close();
    clearInterval(this.refresh);
    this.miner?.stop();
    this.session.stop();
    this.render();
  }

  private toMiner(apply: (miner: PageMiner) => void): void {
    if (this.miner) apply(this.miner);
    else this.backlog.push(apply);
  }

  /**
   * Each register (a new circuit) brings the ticket terms: the offered key must be the one
   * the signed descriptor lists for the day, or the page stops mining, as the CLI does.
   */
  private async startTickets(result: RegisterResult): Promise<void> {
    this.tickets?.close();
    this.tickets = null;
    const terms = result.ticket;
    const relay = this.relay;
    if (!terms || !relay || this.stopped) return;
    if (terms.scheme !== RSA_SCHEME) {
      showRelayProblem(
        'This relay issues Abe–Okamoto tickets, which the page does not take: mining earns ' +
          'credit only. Use powbridge mine for tickets, or switch on donate.',
      );
      return;
    }
    try {
      await relay.admit(terms, now());
    } catch (err) {
      stopRun();
      show('failed', err instanceof Error ? err.message : String(err));
      return;
    }
    if (this.stopped) return;
    const store = await storeReady;
    this.tickets = new PageTicketLoop({
      session: this.session,
      relay,
      store,
      terms,
      random: randomBytes,
      now,
      onTicket: () => void wallet?.render(now()),
      // Beside the wallet, not on the mining state line: mining goes on while a request waits.
      onProblem: (message) => wallet?.say(message ?? '', message !== null),
    });
    this.tickets.poke();
  }

  /** The first register tells the algorithm: start the workers with its kernel. */
  private async startMiner(result: RegisterResult): Promise<void> {
    if (this.miner || this.stopped) return;
    try {
      const lanes = await WorkerLanes.start(this.settings.threads, result.algorithm, {
        worker: '/mine/mine-worker.js',
        kernel: `/mine/${result.algorithm}.wasm`,
      });
      if (this.stopped) {
        lanes.close();
        return;
      }
      const miner = new PageMiner({
        algorithm: result.algorithm,
        lanes,
        submit: (share) => this.session.submit(share),
        cpuPercent: this.settings.cpuPercent,
        jitterPercent: JITTER_PERCENT,
        random: Math.random,
        onShare: () => this.render(),
      });
      miner.start();
      this.miner = miner;
      for (const apply of this.backlog.splice(0)) apply(miner);
    } catch (err) {
      this.stop();
      show('failed', `Cannot start the miner: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  render(): void {
    const stats = this.miner?.stats();
    // A dash until the first one-second sample: "0 H/s" would read as a miner that does not work.
    const rate = this.stopped ? null : (this.miner?.measuredHashrate ?? null);
    figures.hashrate.textContent = rate === null ? '–' : formatRate(rate);
    if (stats) {
      // What the figure is made of, for bench/browser.ts (the page's own DOM; sent nowhere).
      figures.hashrate.dataset['hashes'] = String(stats.hashes);
      figures.hashrate.dataset['duty'] = String(stats.dutyPercent);
      figures.hashrate.dataset['at'] = String(performance.now());
    }
    figures.accepted.textContent = String(stats?.accepted ?? 0);
    figures.rejected.textContent = String(stats?.rejected ?? 0);
    figures.stale.textContent = String(stats?.stale ?? 0);
    // In donate mode the relay reports no credit: the 0 shown is the relay's word.
    figures.credit.textContent = String(Math.floor(this.session.currentCredit * 1000) / 1000);
    void wallet?.render(now());
    if (this.miner?.problem) show('failed', this.miner.problem);
  }
}

/** A whole number within the input's own bounds, or null. */
function readWhole(input: HTMLInputElement): number | null {
  const value = Number(input.value);
  return Number.isInteger(value) && value >= Number(input.min) && value <= Number(input.max)
    ? value
    : null;
}

let run: Run | null = null;

function stopRun(): void {
  run?.stop();
  run = null;
  toggle.textContent = 'Start mining';
  show('stopped', LINK_WORDS.stopped);
}

async function startRun(): Promise<void> {
  const threads = readWhole(threadsInput);
  const cpuPercent = readWhole(cpuInput);
  if (threads === null || cpuPercent === null) {
    show('failed', 'Threads and CPU share must be whole numbers within their bounds.');
    return;
  }
  const donate = donateInput.checked;
  let relay: PageRelay | null = null;
  if (!donate) {
    toggle.disabled = true;
    const loaded = await relayReady;
    toggle.disabled = false;
    if (!(loaded instanceof PageRelay)) {
      show('failed', `Not mining for tickets: ${loaded.message}`);
      return;
    }
    relay = loaded;
  }
  if (run) return;
  run = new Run({ threads, cpuPercent, donate }, relay);
  toggle.textContent = 'Stop mining';
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (run) stopRun();
  else void startRun();
});

async function relayOrNull(): Promise<PageRelay | null> {
  const loaded = await relayReady;
  return loaded instanceof PageRelay ? loaded : null;
}

exportButton.addEventListener('click', () => {
  void relayOrNull().then((relay) => wallet?.exportTickets(relay, now()));
});
importButton.addEventListener('click', () => {
  void relayOrNull().then((relay) => wallet?.importText(relay, now()));
});
importFile.addEventListener('change', () => {
  const file = importFile.files?.[0];
  if (!file) return;
  void file.text().then((text) => {
    element('ticket-text', HTMLTextAreaElement).value = text;
    return relayOrNull().then((relay) => wallet?.importText(relay, now()));
  });
});

void storeReady.then(
  async (store) => {
    wallet = new PageWallet(
      store,
      {
        count: figures.tickets,
        expiry: element('ticket-expiry', HTMLElement),
        text: element('ticket-text', HTMLTextAreaElement),
        download: element('download', HTMLAnchorElement),
        message: element('ticket-state', HTMLElement),
      },
      circuitUrl,
    );
    await wallet.render(now());
  },
  (err: unknown) =>
    showRelayProblem(`This browser keeps no tickets here (IndexedDB: ${String(err)}).`),
);
void relayReady.then((loaded) => {
  if (loaded instanceof PageRelay) {
    identityText.textContent = loaded.identity;
    identityText.dataset['pinned'] = 'true';
  } else {
    identityText.textContent = 'not verified';
    showRelayProblem(
      loaded instanceof RelayRefused
        ? `${loaded.message}. Mining for tickets is off; donating still works.`
        : `Cannot check the relay's signed keys (${loaded.message}); mining for tickets is off.`,
    );
  }
});

// Shared memory (the miner's control block) needs a cross-origin isolated page: the relay
// sends the COOP and COEP headers for it; without them the miner cannot run.
if (!globalThis.crossOriginIsolated) {
  toggle.disabled = true;
  show('failed', 'This browser does not give the page shared memory, which the miner needs.');
}

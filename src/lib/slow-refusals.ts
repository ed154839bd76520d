import type { Duplex } from 'node:stream';

/**
 * Refusals answered late: a socket refused for load (an HTTP 503 at a connection cap) gets its
 * answer after `delayMs`, paused meanwhile. A client that retries as soon as it is refused then
 * retries once per delay instead of as fast as the relay can refuse it (each refusal is an
 * accept, an HTTP parse and a write: more than a frame costs). At most `max` sockets wait;
 * beyond that the answer goes out at once, so a crowd of refused clients holds no more than
 * `max` file descriptors.
 */
export class SlowRefusals {
  private readonly waiting: { socket: Duplex; answer: string; at: number }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly now: () => number;

  constructor(private readonly options: { delayMs: number; max: number; now?: () => number }) {
    this.now = options.now ?? Date.now;
  }

  /** Sockets waiting for their answer now. */
  get size(): number {
    return this.waiting.length;
  }

  refuse(socket: Duplex, answer: string): void {
    socket.on('error', () => {}); // a peer resetting while refused is not our error
    if (this.waiting.length >= this.options.max || this.options.delayMs <= 0) {
      socket.end(answer);
      return;
    }
    socket.pause();
    this.waiting.push({ socket, answer, at: this.now() });
    if (this.timer === null) {
      // A quarter of the delay: answers go out between 1 and 1.25 delays late.
      this.timer = setInterval(() => this.answerDue(), Math.max(10, this.options.delayMs / 4));
      this.timer.unref();
    }
  }

  /** Drop every waiting socket now, unanswered (shutdown). */
  close(): void {
    for (const { socket } of this.waiting.splice(0)) socket.destroy();
    this.answerDue();
  }

  private answerDue(upTo = this.now() - this.options.delayMs): void {
    for (
      let first = this.waiting[0];
      first !== undefined && first.at <= upTo;
      first = this.waiting[0]
    ) {
      this.waiting.shift();
      if (first.socket.destroyed) continue;
      // Reading again (and discarding) lets the peer's end be seen, so the socket closes.
      first.socket.resume();
      first.socket.end(first.answer);
    }
    if (this.waiting.length === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

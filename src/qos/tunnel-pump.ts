import type { Duplex } from 'node:stream';

/**
 * One direction of a tunnel stream, with its backpressure: a chunk moves only when the shaper
 * lets it and the sink has room, and the source stays paused while it waits. Kept apart from
 * the tunnel so the flow rules can be read (and changed) without the WebSocket and TCP details.
 */

export interface PumpSource {
  pause(): void;
  resume(): void;
}

export interface PumpSink {
  write(chunk: Buffer): void;
  /** Null when the sink can take more now, else a promise that settles when it can. */
  settle(): Promise<void> | null;
  end(): void;
}

/**
 * One direction of a stream: chunks from a source, each let through by the shaper, into a
 * sink. Whenever a chunk has to wait (for the shaper or for the sink to drain) the source is
 * paused, and resumed once the queue is empty again; the queue therefore holds only what the
 * source had already read when it was paused.
 */
export class Pump {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private sink: PumpSink | null = null;
  private running = false;
  private paused = false;
  private ending = false;
  private stopped = false;

  constructor(
    private readonly source: PumpSource,
    private readonly shape: (bytes: number) => Promise<void> | void,
    private readonly onError: (err: unknown) => void,
  ) {}

  get buffered(): number {
    return this.queuedBytes;
  }

  get started(): boolean {
    return this.sink !== null;
  }

  start(sink: PumpSink): void {
    this.sink = sink;
    this.kick();
  }

  push(chunk: Buffer): void {
    if (this.stopped || this.ending) return;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.kick();
  }

  /** Write what is queued, then end the sink. */
  end(): void {
    this.ending = true;
    this.kick();
  }

  /** Drop what is queued and write nothing more. */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private kick(): void {
    if (this.stopped || this.running) return;
    if (this.sink === null) {
      if (this.queue.length > 0) this.hold();
      return;
    }
    void this.run(this.sink);
  }

  /** Pause the source until the queue has been written (also: until a sink exists). */
  hold(): void {
    if (this.paused) return;
    this.paused = true;
    this.source.pause();
  }

  /** Synchronous as long as nothing has to wait: the common case costs no promise turn. */
  private async run(sink: PumpSink): Promise<void> {
    this.running = true;
    try {
      for (let chunk = this.queue.shift(); chunk; chunk = this.queue.shift()) {
        const granted = this.shape(chunk.length);
        if (granted) {
          this.hold();
          await granted;
        }
        if (this.stopped) return;
        this.queuedBytes -= chunk.length;
        sink.write(chunk);
        const settled = sink.settle();
        if (settled) {
          this.hold();
          await settled;
          if (this.stopped) return;
        }
      }
      if (this.ending) {
        this.stopped = true;
        sink.end();
      } else if (this.paused) {
        this.paused = false;
        this.source.resume();
      }
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = false;
    }
  }
}

/** Settles when `stream` has flushed its buffer, or at once if it is not waiting to. */
export function drained(stream: Duplex): Promise<void> | null {
  // Below its high-water mark a stream emits no 'drain'; it then holds at most that much.
  if (!stream.writableNeedDrain) return null;
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

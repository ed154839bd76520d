/**
 * A leaf's FIFO with a byte limit. sch_htb hands packets to a child qdisc (pfifo by default)
 * that drops beyond its limit; the tunnel cannot drop stream bytes, so enqueue refuses
 * instead and the caller pauses its socket until the queue drains.
 */

export interface Packet<T> {
  /** Length charged to the buckets, in bytes (> 0). */
  bytes: number;
  /** Whatever the caller needs back on dequeue (a chunk, a stream id). */
  ref: T;
}

export class LeafQueue<T> {
  private items: (Packet<T> | undefined)[] = [];
  private head = 0;
  bytes = 0;

  constructor(readonly limit: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** False (and nothing queued) when the packet would take the queue past its limit. */
  push(packet: Packet<T>): boolean {
    if (this.bytes + packet.bytes > this.limit) return false;
    this.items.push(packet);
    this.bytes += packet.bytes;
    return true;
  }

  peek(): Packet<T> | undefined {
    return this.items[this.head];
  }

  shift(): Packet<T> | undefined {
    const packet = this.items[this.head];
    if (packet === undefined) return undefined;
    this.items[this.head++] = undefined;
    this.bytes -= packet.bytes;
    // Compact once the consumed prefix dominates, so memory follows the live queue.
    if (this.head >= 64 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return packet;
  }
}

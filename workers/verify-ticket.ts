// Worker-thread entry: checks one ticket's signature (v1 Abe–Okamoto or v2 RSA) under the
// key the main thread chose, for the relay's ticket-verifier pool (src/tickets/ticket-verifier.ts).
import { lowerThreadPriority } from '../src/lib/thread-priority.js';
import { SignatureChecker, type SignatureTask } from '../src/tickets/ticket-verifier.js';

// Anyone can send tickets to check: when the CPU is short, the event loop goes first.
lowerThreadPriority();
const checker = new SignatureChecker();

export default function verify(task: SignatureTask): boolean {
  return checker.checkTask(task);
}

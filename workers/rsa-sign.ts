// Worker-thread entry: signs and checks one batch of blinded messages under one (key, day),
// for the relay's blind-signer pool (src/tickets/blind-signer.ts).
import { BatchSigner, type SignResult, type SignTask } from '../src/tickets/blind-signer.js';

const signer = new BatchSigner();

export default function sign(task: SignTask): SignResult {
  return signer.sign(task);
}

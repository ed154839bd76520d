// Worker-thread entry: one mining task (a header's nonce range) with this thread's kernel.
import { mine } from '../src/client/miner-worker.js';

export default mine;

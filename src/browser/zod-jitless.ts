import { config } from 'zod';

// Imported first by the page: zod compiles object parsers with `new Function` when it may,
// deciding so as each schema is built. The page's policy forbids eval, and zod's probe for it
// would be reported as a violation on every load; jitless parsers never probe.
config({ jitless: true });

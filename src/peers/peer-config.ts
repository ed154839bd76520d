import { z } from 'zod';

/**
 * The relay config's `[[peers]]` and `[peering]` sections (config/relay.example.toml), here
 * so that src/peers owns its settings and never imports src/relay. The relay's config schema
 * (src/relay/config.ts) embeds these schemas; the types are inferred from them.
 */

const peerName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { error: 'expected a label: a-z, 0-9 and -, at most 32' });

/** A backup relay (Protocol 2, docs/design.md §7): both relays list each other. */
export const peerConfigSchema = z.strictObject({
  name: peerName,
  // The peer relay's HTTP base URL (its relay.listen, or its onion address through peering.proxy).
  url: z.url({ protocol: /^https?$/, error: 'expected the http:// base URL of the peer relay' }),
  // Its Ed25519 identity (`powbridge keys show` on the peer): every peer message is checked against it.
  identity: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex characters' }),
  // Accept this peer's tickets here (we are its backup).
  acceptTickets: z.boolean().default(true),
  // While the peer is unreachable, accept its tickets anyway and sync the serials later.
  acceptWhenOffline: z.boolean().default(true),
  // Send the peer a PAYMENT_REQUEST every this many of its tickets served here.
  paymentEvery: z.number().int().min(1).max(10_000).default(10),
  // Stop accepting its tickets (error 36) while this many billed tickets are unpaid.
  maxUnpaid: z.number().int().min(1).max(1_000_000).default(100),
});

/** `[[peers]]`: at most 32, each name and each identity listed once. */
export const peersConfigSchema = z
  .array(peerConfigSchema)
  .max(32)
  .default([])
  .superRefine((peers, ctx) => {
    const names = new Set<string>();
    const identities = new Set<string>();
    for (const [i, p] of peers.entries()) {
      if (names.has(p.name))
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'listed twice' });
      if (identities.has(p.identity)) {
        ctx.addIssue({ code: 'custom', path: [i, 'identity'], message: 'listed twice' });
      }
      names.add(p.name);
      identities.add(p.identity);
    }
  });

/** `[peering]`: how this relay talks to its peers. */
export const peeringConfigSchema = z.strictObject({
  // How far a peer's clock may be off, and so how long a signed peer request stays valid.
  clockSkewSeconds: z.number().int().min(5).max(600).default(60),
  // How often descriptors are refreshed, spent logs pulled and payment messages sent.
  syncIntervalSeconds: z.number().positive().max(3600).default(10),
  requestTimeoutSeconds: z.number().positive().max(60).default(3),
  // Reach peers through SOCKS5 (e.g. Tor's socks5h://127.0.0.1:9050 for onion peers).
  proxy: z
    .string()
    .regex(/^socks5h?:\/\/[^\s]+$/, { error: 'expected socks5h://host:port' })
    .optional(),
});

export type PeerConfig = z.output<typeof peerConfigSchema>;
export type PeeringConfig = z.output<typeof peeringConfigSchema>;

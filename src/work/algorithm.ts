/** Proof-of-work algorithms the bridge understands. */
export const ALGORITHMS = ['sha256d', 'scrypt'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export function isAlgorithm(value: unknown): value is Algorithm {
  return typeof value === 'string' && (ALGORITHMS as readonly string[]).includes(value);
}

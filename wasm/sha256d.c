/*
 * sha256d nonce scanner: SHA-256(SHA-256(header)) over a range of nonces, four nonces at a
 * time in the four 32-bit lanes of a SIMD128 vector.
 *
 * The 80-byte header is two SHA-256 blocks. Block 1 (bytes 0..63) never changes within a
 * job, so its compression (the midstate) is computed once per job. Block 2 holds the merkle
 * tail, ntime, nbits and the nonce (message words W0..W3) followed by padding (W4..W15 are
 * fixed: 0x80000000, ten zeros, the bit length 640). Only W3 changes per nonce, so:
 *   - rounds 0..2 of block 2 and most of round 3 are per-job constants (set_job);
 *   - the message schedule words that only depend on W0..W2 and the padding are per-job
 *     constants, and every zero padding word drops out of the sums at compile time.
 * The second SHA-256 hashes the 32-byte first hash: its initial state is the IV and W8..W15
 * are padding constants, which clang folds. Of its result we need only the last state word
 * H7: the proof-of-work hash is compared as a little-endian 256-bit integer, whose most
 * significant 32 bits are bytes 28..31 of the digest, i.e. bswap(H7). H7 = IV7 + the `e`
 * produced in round 60, so rounds 61..63 and the `a` half of rounds 58..60 are dead code
 * that the compiler removes (about 4 of 128 rounds).
 *
 * A nonce is a candidate when bswap(H7) <= target_word; the caller checks the full target
 * with a full hash. Candidates are written to a bounded buffer; the scan stops early when
 * fewer than four slots are left (so no candidate is ever dropped) and reports how many
 * nonces it covered.
 *
 * WebAssembly has no vector rotate: each rotation is two shifts and an xor. V8 maps
 * SIMD128 onto the 16 x64 XMM registers, so the rounds use rotating variable names (no
 * moves), and constants live in a per-job table in memory (see `job`) rather than in
 * registers or in the code.
 */
#include <stdint.h>

#include "sha256.h"
#include "sha256x4.h"

#define EXPORT(name) __attribute__((export_name(name)))

#define CANDIDATES_MAX 1024

static uint8_t io_header[80];
static uint8_t io_digest[32];
static uint32_t out_candidates[CANDIDATES_MAX];
static uint32_t out_scanned;

/*
 * Per-job constants, computed by set_job from header bytes 0..75, every one stored splatted
 * (the same word in four lanes). They are in memory on purpose: V8 cannot keep them in
 * registers next to the hash state anyway, and it materialises a v128.const with three
 * instructions (movq r64, imm64; movq; punpcklqdq) where a load from here is one. Clang
 * would fold compile-time constants (K, IV, padding) into v128.const, so those are here too.
 * Measured about 15% faster for the whole scan than constants in the code.
 */
static struct {
  v4u mid[8]; /* state after block 1 (header bytes 0..63): the midstate */
  /* First hash, block 2, after round 3 without its W3 term, in the variable order of round
   * 4 (see sha256d_h7): {a4, s0, s1, s2, e4, s4, s5, s6} with a = a4 + W3, e = e4 + W3;
   * s is the state after rounds 0..2, which only see W0..W2. */
  v4u r4[8];
  /* Schedule terms that do not depend on the nonce: W16, W17 whole; W18 = w18 +
   * ssig0(W3); W19 = w19 + W3; W31 = ssig1(W29) + W24 + w31; W32 = ssig1(W30) + W25 + w32. */
  v4u w16, w17, w18, w19, w31, w32;
  /* K[i] + W[i] of round i where W[i] is padding (one constant), else K[i]. */
  v4u kw1[64]; /* first hash, block 2: W4..W15 are padding */
  v4u kw2[64]; /* second hash: W8..W15 are padding */
  /* Second hash after round 0 without its W0 term, in the variable order of round 1:
   * {a1, IV0, IV1, IV2, e1, IV4, IV5, IV6} with a = a1 + W0 and e = e1 + W0. */
  v4u h2[8];
  v4u iv7;
} job;

/* One round; the caller rotates the variable names instead of moving eight registers. */
#define RND(a, b, c, d, e, f, g, h, i)                                     \
  do {                                                                     \
    v4u t1_ = (h) + BSIG1(e) + CH(e, f, g) + KW(i);                        \
    v4u t2_ = BSIG0(a) + MAJ(a, b, c);                                     \
    (d) += t1_;                                                            \
    (h) = t1_ + t2_;                                                       \
  } while (0)

/* Eight rounds; PREP(i) computes W[i] (or does nothing) just before round i, so each
 * schedule word is live only as long as the message window needs it. */
#define RND8(i, PREP)                                        \
  PREP((i) + 0); RND(a, b, c, d, e, f, g, h, (i) + 0);       \
  PREP((i) + 1); RND(h, a, b, c, d, e, f, g, (i) + 1);       \
  PREP((i) + 2); RND(g, h, a, b, c, d, e, f, (i) + 2);       \
  PREP((i) + 3); RND(f, g, h, a, b, c, d, e, (i) + 3);       \
  PREP((i) + 4); RND(e, f, g, h, a, b, c, d, (i) + 4);       \
  PREP((i) + 5); RND(d, e, f, g, h, a, b, c, (i) + 5);       \
  PREP((i) + 6); RND(c, d, e, f, g, h, a, b, (i) + 6);       \
  PREP((i) + 7); RND(b, c, d, e, f, g, h, a, (i) + 7)

#define NOSCHED(i) ((void)0)
#define SCHED(i) (w[i] = SSIG1(w[(i) - 2]) + w[(i) - 7] + SSIG0(w[(i) - 15]) + w[(i) - 16])
/* First hash, block 2: W16..W19 were set from per-job constants; W31 and W32 contain
 * sigma0 of the per-job W16 and W17, which set_job folded too. `i` is a constant. */
#define SCHED1(i)                                     \
  do {                                                \
    if ((i) == 31)                                    \
      w[31] = SSIG1(w[29]) + w[24] + job.w31;         \
    else if ((i) == 32)                               \
      w[32] = SSIG1(w[30]) + w[25] + job.w32;         \
    else if ((i) >= 20)                               \
      SCHED(i);                                       \
  } while (0)

/* K + W of round i; `pad_from` is the first padding word of the block (a constant). */
#define KW_OF(table, pad_from, i) ((i) >= (pad_from) && (i) < 16 ? job.table[i] : job.table[i] + w[i])

/*
 * H7 of sha256d for the four nonces whose big-endian message words are w3 (one per lane).
 * Returns the raw state word; the caller byte-swaps it.
 */
static inline v4u sha256d_h7(v4u w3) {
  v4u w[64];
  v4u a, b, c, d, e, f, g, h;

  /* --- first SHA-256, block 2: rounds 0..3 come from set_job --- */
  w[3] = w3;
  w[4] = SPLAT(0x80000000u);
  for (int i = 5; i < 15; i++) w[i] = SPLAT(0u);
  w[15] = SPLAT(640u);
  /* W0..W2 are only needed by rounds 0..2 and W16..W18, all folded into `job`. */

#define KW(i) KW_OF(kw1, 4, i)
  /* Variable names rotated by 4: round 4 expects its `a` in e, its `e` in a. */
  e = job.r4[0] + w3;
  f = job.r4[1];
  g = job.r4[2];
  h = job.r4[3];
  a = job.r4[4] + w3;
  b = job.r4[5];
  c = job.r4[6];
  d = job.r4[7];

  /* Schedule words with per-job parts; zero padding words are left out of the sums. */
  w[16] = job.w16;
  w[17] = job.w17;
  w[18] = job.w18 + SSIG0(w3);
  w[19] = job.w19 + w3;

  RND(e, f, g, h, a, b, c, d, 4);
  RND(d, e, f, g, h, a, b, c, 5);
  RND(c, d, e, f, g, h, a, b, 6);
  RND(b, c, d, e, f, g, h, a, 7);
  RND8(8, NOSCHED);
  RND8(16, SCHED1);
  RND8(24, SCHED1);
  RND8(32, SCHED1);
  RND8(40, SCHED1);
  RND8(48, SCHED1);
  RND8(56, SCHED1);

#undef KW
#define KW(i) KW_OF(kw2, 8, i)
  /* --- second SHA-256 of the 32-byte first hash --- */
  w[0] = a + job.mid[0];
  w[1] = b + job.mid[1];
  w[2] = c + job.mid[2];
  w[3] = d + job.mid[3];
  w[4] = e + job.mid[4];
  w[5] = f + job.mid[5];
  w[6] = g + job.mid[6];
  w[7] = h + job.mid[7];
  w[8] = SPLAT(0x80000000u);
  for (int i = 9; i < 15; i++) w[i] = SPLAT(0u);
  w[15] = SPLAT(256u);
  /* Round 0 is constant but for W0 (set_job); names rotated by 1 for round 1. */
  h = job.h2[0] + w[0];
  a = job.h2[1];
  b = job.h2[2];
  c = job.h2[3];
  d = job.h2[4] + w[0];
  e = job.h2[5];
  f = job.h2[6];
  g = job.h2[7];
  RND(h, a, b, c, d, e, f, g, 1);
  RND(g, h, a, b, c, d, e, f, 2);
  RND(f, g, h, a, b, c, d, e, 3);
  RND(e, f, g, h, a, b, c, d, 4);
  RND(d, e, f, g, h, a, b, c, 5);
  RND(c, d, e, f, g, h, a, b, 6);
  RND(b, c, d, e, f, g, h, a, 7);
  RND8(8, NOSCHED);
  RND8(16, SCHED);
  RND8(24, SCHED);
  RND8(32, SCHED);
  RND8(40, SCHED);
  RND8(48, SCHED);
  RND8(56, SCHED);
#undef KW
  return h + job.iv7;
}

/* Pointer to the 80-byte header buffer: set_job reads bytes 0..75, hash reads all 80. */
EXPORT("sha256d_header") uint8_t *sha256d_header(void) { return io_header; }
EXPORT("sha256d_digest") uint8_t *sha256d_digest(void) { return io_digest; }
EXPORT("sha256d_candidates") uint32_t *sha256d_candidates(void) { return out_candidates; }
EXPORT("sha256d_candidates_max") uint32_t sha256d_candidates_max(void) { return CANDIDATES_MAX; }
/* Nonces covered by the last scan (less than asked when the candidate buffer filled up). */
EXPORT("sha256d_scanned") uint32_t sha256d_scanned(void) { return out_scanned; }

/* Precompute everything that does not depend on the nonce from header bytes 0..75. */
EXPORT("sha256d_set_job") void sha256d_set_job(void) {
  uint32_t mid[8];
  sha256_init(mid);
  sha256_compress(mid, io_header);
  for (int i = 0; i < 8; i++) job.mid[i] = SPLAT(mid[i]);

  /* Block 2 words W0..W2: merkle root tail, ntime, nbits. */
  const uint32_t w[3] = {load_be32(io_header + 64), load_be32(io_header + 68),
                         load_be32(io_header + 72)};
  uint32_t s[8];
  for (int i = 0; i < 8; i++) s[i] = mid[i];
  for (int i = 0; i < 3; i++) {
    uint32_t t1 = s[7] + sha256_bsig1(s[4]) + ((s[4] & s[5]) ^ (~s[4] & s[6])) + SHA256_K[i] + w[i];
    uint32_t t2 = sha256_bsig0(s[0]) + ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
    for (int j = 7; j > 0; j--) s[j] = s[j - 1];
    s[4] += t1;
    s[0] = t1 + t2;
  }
  /* Round 3 without W3. */
  uint32_t t1 = s[7] + sha256_bsig1(s[4]) + ((s[4] & s[5]) ^ (~s[4] & s[6])) + SHA256_K[3];
  uint32_t t2 = sha256_bsig0(s[0]) + ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
  const uint32_t r4[8] = {t1 + t2, s[0], s[1], s[2], s[3] + t1, s[4], s[5], s[6]};
  for (int i = 0; i < 8; i++) job.r4[i] = SPLAT(r4[i]);

  /* Padding: W4 = 0x80000000, W5..W14 = 0, W15 = 640 (bits). */
  const uint32_t w16 = sha256_ssig0(w[1]) + w[0];
  const uint32_t w17 = sha256_ssig1(640) + sha256_ssig0(w[2]) + w[1];
  job.w16 = SPLAT(w16);
  job.w17 = SPLAT(w17);
  job.w18 = SPLAT(sha256_ssig1(w16) + w[2]);
  job.w19 = SPLAT(sha256_ssig1(w17) + sha256_ssig0(0x80000000u));
  job.w31 = SPLAT(sha256_ssig0(w16) + 640);
  job.w32 = SPLAT(sha256_ssig0(w17) + w16);

  for (int i = 0; i < 64; i++) {
    uint32_t pad1 = i == 4 ? 0x80000000u : i == 15 ? 640 : 0;
    uint32_t pad2 = i == 8 ? 0x80000000u : i == 15 ? 256 : 0;
    job.kw1[i] = SPLAT(SHA256_K[i] + pad1);
    job.kw2[i] = SPLAT(SHA256_K[i] + pad2);
  }

  /* Second hash, round 0 without W0 (its state is the IV). */
  const uint32_t *iv = SHA256_IV;
  t1 = iv[7] + sha256_bsig1(iv[4]) + ((iv[4] & iv[5]) ^ (~iv[4] & iv[6])) + SHA256_K[0];
  t2 = sha256_bsig0(iv[0]) + ((iv[0] & iv[1]) ^ (iv[0] & iv[2]) ^ (iv[1] & iv[2]));
  const uint32_t h2[8] = {t1 + t2, iv[0], iv[1], iv[2], iv[3] + t1, iv[4], iv[5], iv[6]};
  for (int i = 0; i < 8; i++) job.h2[i] = SPLAT(h2[i]);
  job.iv7 = SPLAT(iv[7]);
}

/*
 * Scan nonces start, start+1, ..., start+count-1 (the caller keeps start+count <= 2^32).
 * Writes candidate nonces (ascending) and returns how many; sha256d_scanned() tells how far
 * it got.
 */
EXPORT("sha256d_scan")
uint32_t sha256d_scan(uint32_t start, uint32_t count, uint32_t target_word) {
  const v4u target = SPLAT(target_word);
  v4u nonces = SPLAT(start) + (v4u){0, 1, 2, 3};
  uint32_t found = 0;
  uint32_t done = 0;
  while (done < count && found + 4 <= CANDIDATES_MAX) {
    v4u top = bswap32x4(sha256d_h7(bswap32x4(nonces)));
    v4i hit = top <= target;
    if (__builtin_wasm_any_true_v128((v16i8)hit)) { /* rare: a candidate in this vector */
      uint32_t left = count - done;
      for (uint32_t lane = 0; lane < 4 && lane < left; lane++) {
        if (hit[lane]) out_candidates[found++] = start + done + lane;
      }
    }
    nonces += SPLAT(4u);
    done = count - done < 4 ? count : done + 4;
  }
  out_scanned = done;
  return found;
}

/* Full sha256d of the 80-byte header buffer into the digest buffer (raw digest order). */
EXPORT("sha256d_hash") void sha256d_hash(void) {
  uint32_t state[8];
  uint8_t block[64] = {0};
  sha256_init(state);
  sha256_compress(state, io_header);
  for (int i = 0; i < 16; i++) block[i] = io_header[64 + i];
  block[16] = 0x80;
  store_be32(block + 60, 640);
  sha256_compress(state, block);

  uint32_t w[16] = {0};
  for (int i = 0; i < 8; i++) w[i] = state[i];
  w[8] = 0x80000000u;
  w[15] = 256;
  sha256_init(state);
  sha256_compress_words(state, w);
  for (int i = 0; i < 8; i++) store_be32(io_digest + 4 * i, state[i]);
}

/*
 * scrypt(N = 1024, r = 1, p = 1, dkLen = 32) of 80-byte block headers, password = salt =
 * header: the Litecoin proof-of-work.
 *
 *   B   = PBKDF2-HMAC-SHA256(header, header, 1 iteration, 128 bytes)
 *   B'  = ROMix(B): 1024 BlockMix steps writing the scratchpad V, then 1024 reading it at
 *         data-dependent indices; BlockMix with r = 1 is two Salsa20/8 cores
 *   out = PBKDF2-HMAC-SHA256(header, B', 1 iteration, 32 bytes)
 *
 * Almost all the time goes to the 4096 Salsa20/8 cores per hash. There are two ways to put
 * them in SIMD128 and this file has both:
 *
 * Lanes (the miner's scrypt_hash4 and scrypt_scan): four headers, one per 32-bit lane;
 *   vector i holds word i of the four hashes. A Salsa round is four independent
 *   quarter-rounds with no shuffles; PBKDF2 runs in the same lanes (sha256x4.h) and produces
 *   this layout directly. The cost: the 16-vector state fills V8's 16 XMM registers (some of it spills),
 *   and the second ROMix loop reads a different block per lane, a 4-way gather.
 *
 * Diagonal (the relay's scrypt_hash1, and scrypt_hash_interleaved for comparison): one hash
 *   in the four lanes, words in the order SSE2 implementations use (Bernstein; Percival's
 *   crypto_scrypt-sse):
 *
 *     A = (x0, x5, x10, x15)  B = (x4, x9, x14, x3)  C = (x8, x13, x2, x7)  D = (x12, x1, x6, x11)
 *
 *   so a column round is four vector steps (B ^= rotl(A + D, 7); C ^= rotl(B + A, 9); ...)
 *   and a row round is the same steps after rotating the lanes of B, C and D (pshufd). The
 *   ROMix runs in this order throughout (XOR and copy do not care, and Integerify's word,
 *   the first of the second half, stays in lane 0 of A). One hash is latency-bound (every
 *   step waits for the previous add, shift, or, xor), so K hashes can be interleaved.
 *
 * Measured per thread (2026-11-21, Node 20 / V8 11.3, ~3.5 GHz Xeon; BENCHMARKS.md): lanes
 * ~11 k hashes/s; diagonal interleaved x2 ~8.3 k, x3 ~9.6 k, x4 ~9.9 k; one diagonal hash
 * ~5.6 k.
 */
#include <stdint.h>

#include "sha256.h"
#include "sha256x4.h"

#define EXPORT(name) __attribute__((export_name(name)))

#define N 1024
#define LANES 4
#define CANDIDATES_MAX 64

/* I/O buffers (the TypeScript wrapper reads and writes them through the exported pointers). */
static uint8_t io_headers[LANES * 80];
static uint8_t io_hashes[LANES * 32];
static uint32_t out_nonces[CANDIDATES_MAX];
static uint8_t out_hashes[CANDIDATES_MAX * 32];
static uint32_t out_scanned;
/* Scratchpads: 128 KiB per hash (1024 blocks of 128 bytes) for four hashes. The diagonal
 * code gives hash k the region scratch[k]; the lane code uses all 512 KiB as one
 * lane-interleaved array. */
static v4u scratch[LANES][N * 8];

/* ---------------------------------------------------------------------------------------
 * PBKDF2-HMAC-SHA256 with one iteration, password = header (80 bytes), one hash (scalar:
 * about 17 compressions per hash, a few percent of a diagonal hash).
 * ------------------------------------------------------------------------------------- */

static inline uint32_t bswap32(uint32_t x) { return __builtin_bswap32(x); }

typedef struct {
  uint32_t inner[8]; /* SHA-256 state after the key ^ ipad block */
  uint32_t outer[8]; /* SHA-256 state after the key ^ opad block */
} hmac_state;

static void hmac_init(hmac_state *h, const uint8_t header[80]) {
  /* The 80-byte password is longer than SHA-256's block: HMAC uses SHA-256(password). */
  uint32_t key[8];
  uint32_t w[16];
  sha256_init(key);
  sha256_compress(key, header);
  for (int i = 0; i < 4; i++) w[i] = load_be32(header + 64 + 4 * i);
  w[4] = 0x80000000u;
  for (int i = 5; i < 15; i++) w[i] = 0;
  w[15] = 80 * 8;
  sha256_compress_words(key, w);

  for (int i = 0; i < 16; i++) w[i] = (i < 8 ? key[i] : 0) ^ 0x36363636u;
  sha256_init(h->inner);
  sha256_compress_words(h->inner, w);
  for (int i = 0; i < 16; i++) w[i] = (i < 8 ? key[i] : 0) ^ 0x5c5c5c5cu;
  sha256_init(h->outer);
  sha256_compress_words(h->outer, w);
}

/* Outer hash of HMAC over the 32-byte inner digest: one padded block. */
static void hmac_finish(const hmac_state *h, const uint32_t inner_digest[8], uint32_t out[8]) {
  uint32_t w[16];
  for (int i = 0; i < 8; i++) w[i] = inner_digest[i];
  w[8] = 0x80000000u;
  for (int i = 9; i < 15; i++) w[i] = 0;
  w[15] = (64 + 32) * 8;
  for (int i = 0; i < 8; i++) out[i] = h->outer[i];
  sha256_compress_words(out, w);
}

/* B = PBKDF2(header, salt = header, 128 bytes) as 32 little-endian scrypt words. */
static void pbkdf2_expand(const hmac_state *h, const uint8_t header[80], uint32_t b[32]) {
  /* Every output block hashes header[0..63] first: compress it once. */
  uint32_t salted[8];
  for (int i = 0; i < 8; i++) salted[i] = h->inner[i];
  sha256_compress(salted, header);
  for (uint32_t block = 1; block <= 4; block++) {
    uint32_t w[16], u[8], t[8];
    for (int i = 0; i < 4; i++) w[i] = load_be32(header + 64 + 4 * i);
    w[4] = block; /* INT(i), big-endian */
    w[5] = 0x80000000u;
    for (int i = 6; i < 15; i++) w[i] = 0;
    w[15] = (64 + 80 + 4) * 8;
    for (int i = 0; i < 8; i++) u[i] = salted[i];
    sha256_compress_words(u, w);
    hmac_finish(h, u, t);
    /* Digest bytes are big-endian words; scrypt reads them as little-endian words. */
    for (int i = 0; i < 8; i++) b[8 * (block - 1) + i] = bswap32(t[i]);
  }
}

/* out = PBKDF2(header, salt = B', 32 bytes), as the 32 digest bytes. */
static void pbkdf2_final(const hmac_state *h, const uint32_t b[32], uint8_t out[32]) {
  uint32_t w[16], u[8], t[8];
  for (int i = 0; i < 8; i++) u[i] = h->inner[i];
  for (int i = 0; i < 16; i++) w[i] = bswap32(b[i]);
  sha256_compress_words(u, w);
  for (int i = 0; i < 16; i++) w[i] = bswap32(b[16 + i]);
  sha256_compress_words(u, w);
  w[0] = 1; /* INT(1) */
  w[1] = 0x80000000u;
  for (int i = 2; i < 15; i++) w[i] = 0;
  w[15] = (64 + 128 + 4) * 8;
  sha256_compress_words(u, w);
  hmac_finish(h, u, t);
  for (int i = 0; i < 8; i++) store_be32(out + 4 * i, t[i]);
}

/* ---------------------------------------------------------------------------------------
 * Diagonal layout: Salsa20/8 and ROMix of K hashes, interleaved.
 * ------------------------------------------------------------------------------------- */

/* Position of word i of a 16-word Salsa block in the diagonal order (see the top). */
static const uint8_t DIAGONAL[16] = {0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11};

static void to_diagonal(const uint32_t b[32], v4u x[8]) {
  uint32_t *xs = (uint32_t *)x;
  for (int half = 0; half < 2; half++)
    for (int j = 0; j < 16; j++) xs[16 * half + j] = b[16 * half + DIAGONAL[j]];
}

static void from_diagonal(const v4u x[8], uint32_t b[32]) {
  const uint32_t *xs = (const uint32_t *)x;
  for (int half = 0; half < 2; half++)
    for (int j = 0; j < 16; j++) b[16 * half + DIAGONAL[j]] = xs[16 * half + j];
}

/*
 * y ^= rotl(s, n), written as two separate xors of the shifted halves (they share no bits):
 * the same operation count as shl, shr, or, xor, but V8 schedules it better (measured 2%).
 */
#define XOR_ROTL(y, s, n)   \
  do {                      \
    v4u s_ = (s);           \
    (y) ^= s_ << (n);       \
    (y) ^= s_ >> (32 - (n)); \
  } while (0)
/* Rotate lanes left by n: lane i takes lane (i + n) % 4. */
#define LANEROT(v, n) \
  __builtin_shufflevector((v), (v), (n) % 4, ((n) + 1) % 4, ((n) + 2) % 4, ((n) + 3) % 4)

/* Quarter-round steps of one Salsa round on diagonal rows a, b, c, d of K hashes. */
#define SALSA_STEPS(K, a, b, c, d)                               \
  do {                                                           \
    for (int k = 0; k < (K); k++) XOR_ROTL(b[k], a[k] + d[k], 7);  \
    for (int k = 0; k < (K); k++) XOR_ROTL(c[k], b[k] + a[k], 9);  \
    for (int k = 0; k < (K); k++) XOR_ROTL(d[k], c[k] + b[k], 13); \
    for (int k = 0; k < (K); k++) XOR_ROTL(a[k], d[k] + c[k], 18); \
  } while (0)

/* Between a column and a row round (and back, the same permutation): b <- d rotated by one
 * lane, c rotated by two, d <- b rotated by three. */
#define SALSA_TURN(K, b, c, d)          \
  do {                                  \
    for (int k = 0; k < (K); k++) {     \
      v4u t_ = b[k];                    \
      b[k] = LANEROT(d[k], 1);          \
      c[k] = LANEROT(c[k], 2);          \
      d[k] = LANEROT(t_, 3);            \
    }                                   \
  } while (0)

/*
 * x[k] = Salsa20/8(x[k] ^ y[k]) for K hashes, each a 64-byte block as 4 diagonal rows.
 * Written as a macro body over arrays with constant K so clang unrolls the k loops and keeps
 * everything in locals.
 */
#define DEFINE_SALSA_XOR(K)                                                            \
  static inline __attribute__((always_inline)) void salsa_xor_##K(v4u x[K][4],          \
                                                                   const v4u y[K][4]) { \
    v4u a[K], b[K], c[K], d[K];                                                        \
    for (int k = 0; k < K; k++) {                                                      \
      x[k][0] ^= y[k][0];                                                              \
      x[k][1] ^= y[k][1];                                                              \
      x[k][2] ^= y[k][2];                                                              \
      x[k][3] ^= y[k][3];                                                              \
      a[k] = x[k][0];                                                                  \
      b[k] = x[k][1];                                                                  \
      c[k] = x[k][2];                                                                  \
      d[k] = x[k][3];                                                                  \
    }                                                                                  \
    /* Kept rolled: unrolled, V8 allocates registers worse (measured 25% slower). */    \
    _Pragma("clang loop unroll(disable)")                                              \
    for (int round = 0; round < 8; round += 2) {                                       \
      SALSA_STEPS(K, a, b, c, d);                                                      \
      SALSA_TURN(K, b, c, d);                                                          \
      SALSA_STEPS(K, a, b, c, d);                                                      \
      SALSA_TURN(K, b, c, d);                                                          \
    }                                                                                  \
    for (int k = 0; k < K; k++) {                                                      \
      x[k][0] += a[k];                                                                 \
      x[k][1] += b[k];                                                                 \
      x[k][2] += c[k];                                                                 \
      x[k][3] += d[k];                                                                 \
    }                                                                                  \
  }

/*
 * ROMix for K hashes at once. x[k] is the 128-byte block of hash k (8 diagonal rows: the
 * first Salsa block then the second); BlockMix with r = 1 is
 *   X0 = Salsa(X0 ^ X1); X1 = Salsa(X1 ^ X0).
 */
#define DEFINE_ROMIX(K)                                                                 \
  DEFINE_SALSA_XOR(K)                                                                   \
  static void romix_##K(v4u x[K][8], v4u *const v[K]) {                                 \
    v4u lo[K][4], hi[K][4];                                                             \
    for (int k = 0; k < K; k++)                                                         \
      for (int m = 0; m < 4; m++) {                                                     \
        lo[k][m] = x[k][m];                                                             \
        hi[k][m] = x[k][4 + m];                                                         \
      }                                                                                 \
    for (uint32_t i = 0; i < N; i++) {                                                  \
      for (int k = 0; k < K; k++)                                                       \
        for (int m = 0; m < 4; m++) {                                                   \
          v[k][8 * i + m] = lo[k][m];                                                   \
          v[k][8 * i + 4 + m] = hi[k][m];                                               \
        }                                                                               \
      salsa_xor_##K(lo, hi);                                                            \
      salsa_xor_##K(hi, lo);                                                            \
    }                                                                                   \
    for (uint32_t i = 0; i < N; i++) {                                                  \
      for (int k = 0; k < K; k++) {                                                     \
        /* Integerify: first word of the second Salsa block, lane 0 of its row A. */    \
        const v4u *vj = v[k] + 8 * (hi[k][0][0] & (N - 1));                             \
        for (int m = 0; m < 4; m++) {                                                   \
          lo[k][m] ^= vj[m];                                                            \
          hi[k][m] ^= vj[4 + m];                                                        \
        }                                                                               \
      }                                                                                 \
      salsa_xor_##K(lo, hi);                                                            \
      salsa_xor_##K(hi, lo);                                                            \
    }                                                                                   \
    for (int k = 0; k < K; k++)                                                         \
      for (int m = 0; m < 4; m++) {                                                     \
        x[k][m] = lo[k][m];                                                             \
        x[k][4 + m] = hi[k][m];                                                         \
      }                                                                                 \
  }

DEFINE_ROMIX(1)
DEFINE_ROMIX(2)
DEFINE_ROMIX(3)
DEFINE_ROMIX(4)

/* Hash K headers (io_headers[first..first+K-1]) into io_hashes, interleaved. */
#define DEFINE_HASH(K)                                                         \
  static void hash_##K(int first) {                                            \
    hmac_state h[K];                                                           \
    v4u x[K][8];                                                               \
    v4u *v[K];                                                                 \
    uint32_t b[32];                                                            \
    for (int k = 0; k < K; k++) {                                              \
      const uint8_t *header = io_headers + 80 * (first + k);                   \
      hmac_init(&h[k], header);                                                \
      pbkdf2_expand(&h[k], header, b);                                         \
      to_diagonal(b, x[k]);                                                    \
      v[k] = scratch[k];                                                       \
    }                                                                          \
    romix_##K(x, v);                                                           \
    for (int k = 0; k < K; k++) {                                              \
      from_diagonal(x[k], b);                                                  \
      pbkdf2_final(&h[k], b, io_hashes + 32 * (first + k));                    \
    }                                                                          \
  }

DEFINE_HASH(1)
DEFINE_HASH(2)
DEFINE_HASH(3)
DEFINE_HASH(4)

/* ---------------------------------------------------------------------------------------
 * Four hashes, one per 32-bit lane: vector i holds word i of all four hashes.
 * ------------------------------------------------------------------------------------- */

/* PBKDF2 of the four lane headers with 4-lane SHA-256: the lane layout is scrypt's word
 * order already, so PBKDF2's output feeds ROMix with no transposition. */
typedef struct {
  v4u inner[8];
  v4u outer[8];
} hmac_x4;

/* Message words of the four headers: hw[i] holds big-endian word i of each header. */
static void load_headers_x4(v4u hw[20]) {
  for (int k = 0; k < LANES; k++)
    for (int i = 0; i < 20; i++) hw[i][k] = load_be32(io_headers + 80 * k + 4 * i);
}

static void hmac_init_x4(hmac_x4 *h, const v4u hw[20]) {
  v4u key[8], w[16];
  for (int i = 0; i < 8; i++) key[i] = SPLAT(SHA256_IV[i]);
  sha256x4_compress(key, hw);
  for (int i = 0; i < 4; i++) w[i] = hw[16 + i];
  w[4] = SPLAT(0x80000000u);
  for (int i = 5; i < 15; i++) w[i] = SPLAT(0u);
  w[15] = SPLAT(80u * 8);
  sha256x4_compress(key, w);

  for (int i = 0; i < 16; i++) w[i] = (i < 8 ? key[i] : SPLAT(0u)) ^ SPLAT(0x36363636u);
  for (int i = 0; i < 8; i++) h->inner[i] = SPLAT(SHA256_IV[i]);
  sha256x4_compress(h->inner, w);
  for (int i = 0; i < 16; i++) w[i] = (i < 8 ? key[i] : SPLAT(0u)) ^ SPLAT(0x5c5c5c5cu);
  for (int i = 0; i < 8; i++) h->outer[i] = SPLAT(SHA256_IV[i]);
  sha256x4_compress(h->outer, w);
}

static void hmac_finish_x4(const hmac_x4 *h, const v4u inner_digest[8], v4u out[8]) {
  v4u w[16];
  for (int i = 0; i < 8; i++) w[i] = inner_digest[i];
  w[8] = SPLAT(0x80000000u);
  for (int i = 9; i < 15; i++) w[i] = SPLAT(0u);
  w[15] = SPLAT((64u + 32) * 8);
  for (int i = 0; i < 8; i++) out[i] = h->outer[i];
  sha256x4_compress(out, w);
}

static void pbkdf2_expand_x4(const hmac_x4 *h, const v4u hw[20], v4u x[32]) {
  v4u salted[8];
  for (int i = 0; i < 8; i++) salted[i] = h->inner[i];
  sha256x4_compress(salted, hw);
  for (uint32_t block = 1; block <= 4; block++) {
    v4u w[16], u[8], t[8];
    for (int i = 0; i < 4; i++) w[i] = hw[16 + i];
    w[4] = SPLAT(block);
    w[5] = SPLAT(0x80000000u);
    for (int i = 6; i < 15; i++) w[i] = SPLAT(0u);
    w[15] = SPLAT((64u + 80 + 4) * 8);
    for (int i = 0; i < 8; i++) u[i] = salted[i];
    sha256x4_compress(u, w);
    hmac_finish_x4(h, u, t);
    for (int i = 0; i < 8; i++) x[8 * (block - 1) + i] = bswap32x4(t[i]);
  }
}

static void pbkdf2_final_x4(const hmac_x4 *h, const v4u x[32], uint8_t *out) {
  v4u w[16], u[8], t[8];
  for (int i = 0; i < 8; i++) u[i] = h->inner[i];
  for (int i = 0; i < 16; i++) w[i] = bswap32x4(x[i]);
  sha256x4_compress(u, w);
  for (int i = 0; i < 16; i++) w[i] = bswap32x4(x[16 + i]);
  sha256x4_compress(u, w);
  w[0] = SPLAT(1u);
  w[1] = SPLAT(0x80000000u);
  for (int i = 2; i < 15; i++) w[i] = SPLAT(0u);
  w[15] = SPLAT((64u + 128 + 4) * 8);
  sha256x4_compress(u, w);
  hmac_finish_x4(h, u, t);
  for (int k = 0; k < LANES; k++)
    for (int i = 0; i < 8; i++) store_be32(out + 32 * k + 4 * i, t[i][k]);
}

#define QR(y, a, b, c, d)                 \
  do {                                    \
    XOR_ROTL(y[b], y[a] + y[d], 7);       \
    XOR_ROTL(y[c], y[b] + y[a], 9);       \
    XOR_ROTL(y[d], y[c] + y[b], 13);      \
    XOR_ROTL(y[a], y[d] + y[c], 18);      \
  } while (0)

/*
 * x = Salsa20/8(x ^ y) on 16 word vectors. No shuffles, and the four quarter-rounds of a
 * round are independent, but the 16-vector state fills V8's 16 XMM registers, so some of
 * it lives in stack slots. Fully unrolled: V8 otherwise shuffles registers at every
 * back edge (measured about 4% slower rolled).
 */
static inline __attribute__((always_inline)) void salsa_xor_lanes(v4u x[16], const v4u y[16]) {
  v4u t[16];
  for (int i = 0; i < 16; i++) t[i] = x[i] ^= y[i];
#pragma clang loop unroll(full)
  for (int round = 0; round < 8; round += 2) {
    QR(t, 0, 4, 8, 12); /* columns */
    QR(t, 5, 9, 13, 1);
    QR(t, 10, 14, 2, 6);
    QR(t, 15, 3, 7, 11);
    QR(t, 0, 1, 2, 3); /* rows */
    QR(t, 5, 6, 7, 4);
    QR(t, 10, 11, 8, 9);
    QR(t, 15, 12, 13, 14);
  }
  for (int i = 0; i < 16; i++) x[i] += t[i];
}

static void romix_lanes(v4u x[32]) {
  /* V is lane-interleaved: block i is 32 vectors, word w of hash k in lane k of vector
   * 32 i + w, so the first loop stores whole vectors. */
  v4u *v = &scratch[0][0];
  for (uint32_t i = 0; i < N; i++) {
    for (int w = 0; w < 32; w++) v[32 * i + w] = x[w];
    salsa_xor_lanes(x, x + 16);
    salsa_xor_lanes(x + 16, x);
  }
  for (uint32_t i = 0; i < N; i++) {
    /* Each lane reads its own block: one 32-bit word per lane (load32_splat, then three
     * load32_lane). Blending whole vectors instead costs as many shuffle-port operations,
     * and clang turns the blends into byte shuffles V8 does not recognise. */
    const uint32_t *v0 = (const uint32_t *)(v + 32 * (x[16][0] & (N - 1)));
    const uint32_t *v1 = (const uint32_t *)(v + 32 * (x[16][1] & (N - 1))) + 1;
    const uint32_t *v2 = (const uint32_t *)(v + 32 * (x[16][2] & (N - 1))) + 2;
    const uint32_t *v3 = (const uint32_t *)(v + 32 * (x[16][3] & (N - 1))) + 3;
    for (int w = 0; w < 32; w++) x[w] ^= (v4u){v0[4 * w], v1[4 * w], v2[4 * w], v3[4 * w]};
    salsa_xor_lanes(x, x + 16);
    salsa_xor_lanes(x + 16, x);
  }
}

/* Hash the four headers in io_headers into io_hashes. */
static void hash_lanes(void) {
  v4u hw[20], x[32];
  hmac_x4 h;
  load_headers_x4(hw);
  hmac_init_x4(&h, hw);
  pbkdf2_expand_x4(&h, hw, x);
  romix_lanes(x);
  pbkdf2_final_x4(&h, x, io_hashes);
}

/* ---------------------------------------------------------------------------------------
 * Exports.
 * ------------------------------------------------------------------------------------- */

EXPORT("scrypt_headers") uint8_t *scrypt_headers(void) { return io_headers; }
EXPORT("scrypt_hashes") uint8_t *scrypt_hashes(void) { return io_hashes; }
EXPORT("scrypt_candidate_nonces") uint32_t *scrypt_candidate_nonces(void) { return out_nonces; }
EXPORT("scrypt_candidate_hashes") uint8_t *scrypt_candidate_hashes(void) { return out_hashes; }
EXPORT("scrypt_candidates_max") uint32_t scrypt_candidates_max(void) { return CANDIDATES_MAX; }

/* Header 0 -> hash 0: the relay's single share check. */
EXPORT("scrypt_hash1") void scrypt_hash1(void) { hash_1(0); }

/* Headers 0..3 -> hashes 0..3: the miner's entry. */
EXPORT("scrypt_hash4") void scrypt_hash4(void) { hash_lanes(); }

/*
 * Headers 0..count-1 -> hashes, `count` (1..4) diagonal hashes interleaved. Not used by the
 * wrappers; kept so the benchmark can compare the two layouts on any machine.
 */
EXPORT("scrypt_hash_interleaved") void scrypt_hash_interleaved(uint32_t count) {
  switch (count) {
    case 1: hash_1(0); break;
    case 2: hash_2(0); break;
    case 3: hash_3(0); break;
    case 4: hash_4(0); break;
    default: break;
  }
}

/* Nonces covered by the last scan (less than asked when the candidate buffer filled up). */
EXPORT("scrypt_scanned") uint32_t scrypt_scanned(void) { return out_scanned; }

/*
 * Hash nonces start .. start+count-1 of the header whose bytes 0..75 are in header slot 0
 * (the caller keeps start+count <= 2^32), four at a time in the lanes. A nonce is a
 * candidate when the most significant 32 bits of its hash as a little-endian 256-bit
 * integer (digest bytes 28..31) are <= target_word; its nonce and hash are recorded, and
 * the caller compares the full target. A final group shorter than four hashes the unused
 * lanes too and ignores them.
 */
EXPORT("scrypt_scan") uint32_t scrypt_scan(uint32_t start, uint32_t count, uint32_t target_word) {
  uint32_t found = 0;
  uint32_t done = 0;
  for (int k = 1; k < LANES; k++)
    for (int i = 0; i < 76; i++) io_headers[80 * k + i] = io_headers[i];
  while (done < count && found + LANES <= CANDIDATES_MAX) {
    for (int k = 0; k < LANES; k++) store_le32(io_headers + 80 * k + 76, start + done + k);
    hash_lanes();
    for (uint32_t k = 0; k < LANES && k < count - done; k++) {
      const uint8_t *hash = io_hashes + 32 * k;
      if (load_le32(hash + 28) <= target_word) {
        out_nonces[found] = start + done + k;
        for (int i = 0; i < 32; i++) out_hashes[32 * found + i] = hash[i];
        found++;
      }
    }
    done = count - done < LANES ? count : done + LANES;
  }
  out_scanned = done;
  return found;
}

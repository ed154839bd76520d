/*
 * SHA-256 on four independent messages at once, one per 32-bit lane of a SIMD128 vector.
 * sha256d.c builds its specialised nonce loop from these macros; scrypt.c runs the
 * PBKDF2-HMAC-SHA256 of its four lane hashes through sha256x4_compress.
 *
 * WebAssembly SIMD has no rotate: a rotation is two shifts and an xor (the two shifted
 * halves have no bits in common, so xor and or agree; xor lets clang reassociate the three
 * rotations of a sigma as one chain of xors).
 */
#ifndef POWBRIDGE_SHA256X4_H
#define POWBRIDGE_SHA256X4_H

#include <stdint.h>

#include "sha256.h"

typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint8_t v16u8 __attribute__((vector_size(16)));
typedef int8_t v16i8 __attribute__((vector_size(16)));

#define SPLAT(x) ((v4u){(x), (x), (x), (x)})

#define VROTR(x, n) (((x) >> (n)) ^ ((x) << (32 - (n))))
#define BSIG0(x) (VROTR(x, 2) ^ VROTR(x, 13) ^ VROTR(x, 22))
#define BSIG1(x) (VROTR(x, 6) ^ VROTR(x, 11) ^ VROTR(x, 25))
#define SSIG0(x) (VROTR(x, 7) ^ VROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (VROTR(x, 17) ^ VROTR(x, 19) ^ ((x) >> 10))
#define CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
/* b ^ c of this round is a ^ b of the previous one; clang's CSE shares it. */
#define MAJ(a, b, c) ((b) ^ (((a) ^ (b)) & ((b) ^ (c))))

/* Byte-swap every 32-bit lane (big-endian message words <-> little-endian bytes). */
static inline v4u bswap32x4(v4u x) {
  return (v4u)__builtin_shufflevector((v16u8)x, (v16u8)x, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8,
                                      15, 14, 13, 12);
}

/* One SHA-256 block per lane; block[i] holds message word i of each lane's message. */
static inline void sha256x4_compress(v4u state[8], const v4u block[16]) {
  v4u w[16];
  for (int i = 0; i < 16; i++) w[i] = block[i];
  v4u a = state[0], b = state[1], c = state[2], d = state[3];
  v4u e = state[4], f = state[5], g = state[6], h = state[7];
  for (int i = 0; i < 64; i++) {
    if (i >= 16) {
      w[i & 15] += SSIG1(w[(i - 2) & 15]) + w[(i - 7) & 15] + SSIG0(w[(i - 15) & 15]);
    }
    v4u t1 = h + BSIG1(e) + CH(e, f, g) + SPLAT(SHA256_K[i]) + w[i & 15];
    v4u t2 = BSIG0(a) + MAJ(a, b, c);
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
  state[5] += f;
  state[6] += g;
  state[7] += h;
}

#endif

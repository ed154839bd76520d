/*
 * Scalar SHA-256 compression (FIPS 180-4), shared by both kernels.
 *
 * Used where a handful of compressions per job or per hash is all that runs: the sha256d
 * midstate and full verification hash, and scrypt's PBKDF2-HMAC-SHA256 wrapper (about 17
 * compressions against 4096 Salsa20/8 cores). The hot sha256d loop has its own 4-lane SIMD
 * version in sha256d.c. wasm32 has a native i32.rotr, so the scalar form needs no tricks.
 */
#ifndef POWBRIDGE_SHA256_H
#define POWBRIDGE_SHA256_H

#include <stdint.h>

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static const uint32_t SHA256_IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t sha256_rotr(uint32_t x, unsigned n) {
  return (x >> n) | (x << (32 - n));
}
static inline uint32_t sha256_bsig0(uint32_t x) {
  return sha256_rotr(x, 2) ^ sha256_rotr(x, 13) ^ sha256_rotr(x, 22);
}
static inline uint32_t sha256_bsig1(uint32_t x) {
  return sha256_rotr(x, 6) ^ sha256_rotr(x, 11) ^ sha256_rotr(x, 25);
}
static inline uint32_t sha256_ssig0(uint32_t x) {
  return sha256_rotr(x, 7) ^ sha256_rotr(x, 18) ^ (x >> 3);
}
static inline uint32_t sha256_ssig1(uint32_t x) {
  return sha256_rotr(x, 17) ^ sha256_rotr(x, 19) ^ (x >> 10);
}

static inline uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void store_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static inline uint32_t load_le32(const uint8_t *p) {
  return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}
static inline void store_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* One SHA-256 block on message words w[0..15] (already big-endian-decoded). */
static void sha256_compress_words(uint32_t state[8], const uint32_t block[16]) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = block[i];
  for (int i = 16; i < 64; i++) {
    w[i] = sha256_ssig1(w[i - 2]) + w[i - 7] + sha256_ssig0(w[i - 15]) + w[i - 16];
  }
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + sha256_bsig1(e) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i];
    uint32_t t2 = sha256_bsig0(a) + ((a & b) ^ (a & c) ^ (b & c));
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

/* One SHA-256 block of 64 message bytes. */
static void sha256_compress(uint32_t state[8], const uint8_t block[64]) {
  uint32_t w[16];
  for (int i = 0; i < 16; i++) w[i] = load_be32(block + 4 * i);
  sha256_compress_words(state, w);
}

static inline void sha256_init(uint32_t state[8]) {
  for (int i = 0; i < 8; i++) state[i] = SHA256_IV[i];
}

#endif

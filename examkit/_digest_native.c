/* examkit._digest_native: the MD5, SHA-1 and SHA-256 of a stream in one pass.
 *
 * Triple() is fed a stream's bytes (update) and gives its three digests (hexdigests), the
 * digests three hashlib objects fed the same bytes would give. Each 64-byte block goes
 * through the three algorithms at once, their rounds interleaved ("stitched"): MD5 is one
 * chain of dependent scalar operations, SHA-1 and SHA-256 run on the processor's SHA
 * extensions, and the processor executes the three chains side by side. On the project's
 * test machine (AMD EPYC, Zen 3) the three together cost what OpenSSL's MD5 alone costs
 * (docs/benchmarks.md).
 *
 * supported() says whether this processor has the instructions (SHA, SSSE3, SSE4.1; x86-64
 * only). examkit.hashing uses Triple only then, and only after checking its digests
 * against hashlib's on a set of messages in the same process; otherwise it uses hashlib.
 *
 * The algorithms are those of RFC 1321 (MD5) and FIPS 180-4 (SHA-1, SHA-256). The SHA
 * rounds use the instructions as Intel's "SHA Extensions" paper (2013) describes them;
 * the state of SHA-256 is kept as the instructions want it (A B E F and C D G H), that of
 * SHA-1 with A in the top lane.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHA_NI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HAVE_SHA_NI 0
#endif

/* Updates at least this long are hashed with the GIL released. */
#define GIL_MIN (16 * 1024)

typedef struct {
    uint32_t md5[4];
    uint32_t sha1_abcd[4], sha1_e[4]; /* register images: lane 3 holds A (E) */
    uint32_t abef[4], cdgh[4];        /* SHA-256: lanes 3..0 = A B E F and C D G H */
} State;

/* Asked once, when the module loads: CPUID leaves a virtual machine to its hypervisor
 * (three of them took 5.7 microseconds, a new Triple each stream). */
static int cpu_ok = 0;

static int cpu_supported(void) {
#if HAVE_SHA_NI
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) return 0; /* SSSE3, SSE4.1 */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0; /* SHA */
#else
    return 0;
#endif
}

#if HAVE_SHA_NI

static const uint32_t MD5_T[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
    0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
    0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
    0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
    0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
    0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
    0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
    0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};
static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
    0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
    0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))

/* MD5: a step of round function f; x holds the block's 16 little-endian words. */
#define MF(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define MG(b, c, d) (((b) & (d)) + ((c) & ~(d)))
#define MH(b, c, d) ((b) ^ (c) ^ (d))
#define MI(b, c, d) ((c) ^ ((b) | ~(d)))
#define MSTEP(f, a, b, c, d, k, i, s) \
    a += f(b, c, d) + x[k] + MD5_T[i];  \
    a = ROTL(a, s) + b;

/* SHA-256: four rounds of message group g (w), two per instruction. */
#define S256_ROUNDS(g, w)                                                                 \
    do {                                                                                  \
        __m128i k_ = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)&SHA256_K[4 * (g)])); \
        s1 = _mm_sha256rnds2_epu32(s1, s0, k_);                                           \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(k_, 0x0E));                  \
    } while (0)
/* The next four schedule words into w0, from w0..w3 holding the previous sixteen. */
#define S256_NEXT(w0, w1, w2, w3) \
    w0 = _mm_sha256msg2_epu32(    \
        _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

/* SHA-1: four rounds of function f (0..3) with message group v; prev is the state before
 * the last four rounds, from which the instruction derives E. */
#define S1_FIRST(v)  \
    prev = abcd;     \
    abcd = _mm_sha1rnds4_epu32(abcd, _mm_add_epi32(e, v), 0);
#define S1_ROUNDS(f, v)                                 \
    do {                                                \
        __m128i e_ = _mm_sha1nexte_epu32(prev, v);      \
        prev = abcd;                                    \
        abcd = _mm_sha1rnds4_epu32(abcd, e_, f);        \
    } while (0)
#define S1_NEXT(v0, v1, v2, v3) \
    v0 = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(v0, v1), v2), v3)

#define SHA_TARGET __attribute__((target("sha,ssse3,sse4.1")))
#define LOADU(p) _mm_loadu_si128((const __m128i *)(p))
#define STOREU(p, v) _mm_storeu_si128((__m128i *)(p), v)
/* byte orders the SHA instructions want: words big-endian (SHA-256), and also the word
 * order reversed (SHA-1) */
#define SWAP256 _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)
#define SWAP1 _mm_set_epi64x(0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL)

static void md5_block(uint32_t st[4], const uint8_t *p) {
    uint32_t x[16];
    memcpy(x, p, 64); /* x86-64 is little-endian */
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    MSTEP(MF, a, b, c, d, 0, 0, 7) MSTEP(MF, d, a, b, c, 1, 1, 12) MSTEP(MF, c, d, a, b, 2, 2, 17) MSTEP(MF, b, c, d, a, 3, 3, 22)
    MSTEP(MF, a, b, c, d, 4, 4, 7) MSTEP(MF, d, a, b, c, 5, 5, 12) MSTEP(MF, c, d, a, b, 6, 6, 17) MSTEP(MF, b, c, d, a, 7, 7, 22)
    MSTEP(MF, a, b, c, d, 8, 8, 7) MSTEP(MF, d, a, b, c, 9, 9, 12) MSTEP(MF, c, d, a, b, 10, 10, 17) MSTEP(MF, b, c, d, a, 11, 11, 22)
    MSTEP(MF, a, b, c, d, 12, 12, 7) MSTEP(MF, d, a, b, c, 13, 13, 12) MSTEP(MF, c, d, a, b, 14, 14, 17) MSTEP(MF, b, c, d, a, 15, 15, 22)
    MSTEP(MG, a, b, c, d, 1, 16, 5) MSTEP(MG, d, a, b, c, 6, 17, 9) MSTEP(MG, c, d, a, b, 11, 18, 14) MSTEP(MG, b, c, d, a, 0, 19, 20)
    MSTEP(MG, a, b, c, d, 5, 20, 5) MSTEP(MG, d, a, b, c, 10, 21, 9) MSTEP(MG, c, d, a, b, 15, 22, 14) MSTEP(MG, b, c, d, a, 4, 23, 20)
    MSTEP(MG, a, b, c, d, 9, 24, 5) MSTEP(MG, d, a, b, c, 14, 25, 9) MSTEP(MG, c, d, a, b, 3, 26, 14) MSTEP(MG, b, c, d, a, 8, 27, 20)
    MSTEP(MG, a, b, c, d, 13, 28, 5) MSTEP(MG, d, a, b, c, 2, 29, 9) MSTEP(MG, c, d, a, b, 7, 30, 14) MSTEP(MG, b, c, d, a, 12, 31, 20)
    MSTEP(MH, a, b, c, d, 5, 32, 4) MSTEP(MH, d, a, b, c, 8, 33, 11) MSTEP(MH, c, d, a, b, 11, 34, 16) MSTEP(MH, b, c, d, a, 14, 35, 23)
    MSTEP(MH, a, b, c, d, 1, 36, 4) MSTEP(MH, d, a, b, c, 4, 37, 11) MSTEP(MH, c, d, a, b, 7, 38, 16) MSTEP(MH, b, c, d, a, 10, 39, 23)
    MSTEP(MH, a, b, c, d, 13, 40, 4) MSTEP(MH, d, a, b, c, 0, 41, 11) MSTEP(MH, c, d, a, b, 3, 42, 16) MSTEP(MH, b, c, d, a, 6, 43, 23)
    MSTEP(MH, a, b, c, d, 9, 44, 4) MSTEP(MH, d, a, b, c, 12, 45, 11) MSTEP(MH, c, d, a, b, 15, 46, 16) MSTEP(MH, b, c, d, a, 2, 47, 23)
    MSTEP(MI, a, b, c, d, 0, 48, 6) MSTEP(MI, d, a, b, c, 7, 49, 10) MSTEP(MI, c, d, a, b, 14, 50, 15) MSTEP(MI, b, c, d, a, 5, 51, 21)
    MSTEP(MI, a, b, c, d, 12, 52, 6) MSTEP(MI, d, a, b, c, 3, 53, 10) MSTEP(MI, c, d, a, b, 10, 54, 15) MSTEP(MI, b, c, d, a, 1, 55, 21)
    MSTEP(MI, a, b, c, d, 8, 56, 6) MSTEP(MI, d, a, b, c, 15, 57, 10) MSTEP(MI, c, d, a, b, 6, 58, 15) MSTEP(MI, b, c, d, a, 13, 59, 21)
    MSTEP(MI, a, b, c, d, 4, 60, 6) MSTEP(MI, d, a, b, c, 11, 61, 10) MSTEP(MI, c, d, a, b, 2, 62, 15) MSTEP(MI, b, c, d, a, 9, 63, 21)
    st[0] += a, st[1] += b, st[2] += c, st[3] += d;
}

SHA_TARGET static void sha256_block(State *st, const uint8_t *p) {
    __m128i s0 = LOADU(st->abef), s1 = LOADU(st->cdgh);
    __m128i w0 = _mm_shuffle_epi8(LOADU(p), SWAP256), w1 = _mm_shuffle_epi8(LOADU(p + 16), SWAP256);
    __m128i w2 = _mm_shuffle_epi8(LOADU(p + 32), SWAP256), w3 = _mm_shuffle_epi8(LOADU(p + 48), SWAP256);
    S256_ROUNDS(0, w0);
    S256_ROUNDS(1, w1);
    S256_ROUNDS(2, w2);
    S256_ROUNDS(3, w3);
    S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(4, w0);
    S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(5, w1);
    S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(6, w2);
    S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(7, w3);
    S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(8, w0);
    S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(9, w1);
    S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(10, w2);
    S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(11, w3);
    S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(12, w0);
    S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(13, w1);
    S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(14, w2);
    S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(15, w3);
    STOREU(st->abef, _mm_add_epi32(s0, LOADU(st->abef)));
    STOREU(st->cdgh, _mm_add_epi32(s1, LOADU(st->cdgh)));
}

SHA_TARGET static void sha1_block(State *st, const uint8_t *p) {
    __m128i abcd = LOADU(st->sha1_abcd), e = LOADU(st->sha1_e), prev;
    __m128i v0 = _mm_shuffle_epi8(LOADU(p), SWAP1), v1 = _mm_shuffle_epi8(LOADU(p + 16), SWAP1);
    __m128i v2 = _mm_shuffle_epi8(LOADU(p + 32), SWAP1), v3 = _mm_shuffle_epi8(LOADU(p + 48), SWAP1);
    S1_FIRST(v0);
    S1_ROUNDS(0, v1);
    S1_ROUNDS(0, v2);
    S1_ROUNDS(0, v3);
    S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(0, v0);
    S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(1, v1);
    S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(1, v2);
    S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(1, v3);
    S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(1, v0);
    S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(1, v1);
    S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(2, v2);
    S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(2, v3);
    S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(2, v0);
    S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(2, v1);
    S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(2, v2);
    S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(3, v3);
    S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(3, v0);
    S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(3, v1);
    S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(3, v2);
    S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(3, v3);
    STOREU(st->sha1_e, _mm_sha1nexte_epu32(prev, e));
    STOREU(st->sha1_abcd, _mm_add_epi32(abcd, LOADU(st->sha1_abcd)));
}

/* n blocks through the three algorithms, stitched: each group of rounds is MD5's four
 * steps, SHA-256's four rounds and SHA-1's four (eight in every fourth group). */
SHA_TARGET static void triple_blocks(State *st, const uint8_t *p, size_t n) {
    const __m128i swap1 = SWAP1, swap256 = SWAP256;
    uint32_t A = st->md5[0], B = st->md5[1], C = st->md5[2], D = st->md5[3];
    __m128i abcd = LOADU(st->sha1_abcd), e = LOADU(st->sha1_e);
    __m128i s0 = LOADU(st->abef), s1 = LOADU(st->cdgh);
    for (; n; n--, p += 64) {
        uint32_t x[16];
        memcpy(x, p, 64);
        uint32_t a = A, b = B, c = C, d = D;
        __m128i abcd0 = abcd, s00 = s0, s10 = s1, prev;
        __m128i r0 = LOADU(p), r1 = LOADU(p + 16), r2 = LOADU(p + 32), r3 = LOADU(p + 48);
        __m128i w0 = _mm_shuffle_epi8(r0, swap256), w1 = _mm_shuffle_epi8(r1, swap256);
        __m128i w2 = _mm_shuffle_epi8(r2, swap256), w3 = _mm_shuffle_epi8(r3, swap256);
        __m128i v0 = _mm_shuffle_epi8(r0, swap1), v1 = _mm_shuffle_epi8(r1, swap1);
        __m128i v2 = _mm_shuffle_epi8(r2, swap1), v3 = _mm_shuffle_epi8(r3, swap1);
        MSTEP(MF, a, b, c, d, 0, 0, 7) MSTEP(MF, d, a, b, c, 1, 1, 12) MSTEP(MF, c, d, a, b, 2, 2, 17) MSTEP(MF, b, c, d, a, 3, 3, 22)
        S256_ROUNDS(0, w0);
        S1_FIRST(v0);
        MSTEP(MF, a, b, c, d, 4, 4, 7) MSTEP(MF, d, a, b, c, 5, 5, 12) MSTEP(MF, c, d, a, b, 6, 6, 17) MSTEP(MF, b, c, d, a, 7, 7, 22)
        S256_ROUNDS(1, w1);
        S1_ROUNDS(0, v1);
        MSTEP(MF, a, b, c, d, 8, 8, 7) MSTEP(MF, d, a, b, c, 9, 9, 12) MSTEP(MF, c, d, a, b, 10, 10, 17) MSTEP(MF, b, c, d, a, 11, 11, 22)
        S256_ROUNDS(2, w2);
        S1_ROUNDS(0, v2);
        MSTEP(MF, a, b, c, d, 12, 12, 7) MSTEP(MF, d, a, b, c, 13, 13, 12) MSTEP(MF, c, d, a, b, 14, 14, 17) MSTEP(MF, b, c, d, a, 15, 15, 22)
        S256_ROUNDS(3, w3);
        S1_ROUNDS(0, v3);
        S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(0, v0);
        MSTEP(MG, a, b, c, d, 1, 16, 5) MSTEP(MG, d, a, b, c, 6, 17, 9) MSTEP(MG, c, d, a, b, 11, 18, 14) MSTEP(MG, b, c, d, a, 0, 19, 20)
        S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(4, w0);
        S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(1, v1);
        MSTEP(MG, a, b, c, d, 5, 20, 5) MSTEP(MG, d, a, b, c, 10, 21, 9) MSTEP(MG, c, d, a, b, 15, 22, 14) MSTEP(MG, b, c, d, a, 4, 23, 20)
        S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(5, w1);
        S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(1, v2);
        MSTEP(MG, a, b, c, d, 9, 24, 5) MSTEP(MG, d, a, b, c, 14, 25, 9) MSTEP(MG, c, d, a, b, 3, 26, 14) MSTEP(MG, b, c, d, a, 8, 27, 20)
        S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(6, w2);
        S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(1, v3);
        MSTEP(MG, a, b, c, d, 13, 28, 5) MSTEP(MG, d, a, b, c, 2, 29, 9) MSTEP(MG, c, d, a, b, 7, 30, 14) MSTEP(MG, b, c, d, a, 12, 31, 20)
        S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(7, w3);
        S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(1, v0);
        S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(1, v1);
        MSTEP(MH, a, b, c, d, 5, 32, 4) MSTEP(MH, d, a, b, c, 8, 33, 11) MSTEP(MH, c, d, a, b, 11, 34, 16) MSTEP(MH, b, c, d, a, 14, 35, 23)
        S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(8, w0);
        S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(2, v2);
        MSTEP(MH, a, b, c, d, 1, 36, 4) MSTEP(MH, d, a, b, c, 4, 37, 11) MSTEP(MH, c, d, a, b, 7, 38, 16) MSTEP(MH, b, c, d, a, 10, 39, 23)
        S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(9, w1);
        S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(2, v3);
        MSTEP(MH, a, b, c, d, 13, 40, 4) MSTEP(MH, d, a, b, c, 0, 41, 11) MSTEP(MH, c, d, a, b, 3, 42, 16) MSTEP(MH, b, c, d, a, 6, 43, 23)
        S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(10, w2);
        S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(2, v0);
        MSTEP(MH, a, b, c, d, 9, 44, 4) MSTEP(MH, d, a, b, c, 12, 45, 11) MSTEP(MH, c, d, a, b, 15, 46, 16) MSTEP(MH, b, c, d, a, 2, 47, 23)
        S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(11, w3);
        S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(2, v1);
        S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(2, v2);
        MSTEP(MI, a, b, c, d, 0, 48, 6) MSTEP(MI, d, a, b, c, 7, 49, 10) MSTEP(MI, c, d, a, b, 14, 50, 15) MSTEP(MI, b, c, d, a, 5, 51, 21)
        S256_NEXT(w0, w1, w2, w3); S256_ROUNDS(12, w0);
        S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(3, v3);
        MSTEP(MI, a, b, c, d, 12, 52, 6) MSTEP(MI, d, a, b, c, 3, 53, 10) MSTEP(MI, c, d, a, b, 10, 54, 15) MSTEP(MI, b, c, d, a, 1, 55, 21)
        S256_NEXT(w1, w2, w3, w0); S256_ROUNDS(13, w1);
        S1_NEXT(v0, v1, v2, v3); S1_ROUNDS(3, v0);
        MSTEP(MI, a, b, c, d, 8, 56, 6) MSTEP(MI, d, a, b, c, 15, 57, 10) MSTEP(MI, c, d, a, b, 6, 58, 15) MSTEP(MI, b, c, d, a, 13, 59, 21)
        S256_NEXT(w2, w3, w0, w1); S256_ROUNDS(14, w2);
        S1_NEXT(v1, v2, v3, v0); S1_ROUNDS(3, v1);
        MSTEP(MI, a, b, c, d, 4, 60, 6) MSTEP(MI, d, a, b, c, 11, 61, 10) MSTEP(MI, c, d, a, b, 2, 62, 15) MSTEP(MI, b, c, d, a, 9, 63, 21)
        S256_NEXT(w3, w0, w1, w2); S256_ROUNDS(15, w3);
        S1_NEXT(v2, v3, v0, v1); S1_ROUNDS(3, v2);
        S1_NEXT(v3, v0, v1, v2); S1_ROUNDS(3, v3);
        A += a, B += b, C += c, D += d;
        e = _mm_sha1nexte_epu32(prev, e);
        abcd = _mm_add_epi32(abcd, abcd0);
        s0 = _mm_add_epi32(s0, s00);
        s1 = _mm_add_epi32(s1, s10);
    }
    st->md5[0] = A, st->md5[1] = B, st->md5[2] = C, st->md5[3] = D;
    STOREU(st->sha1_abcd, abcd);
    STOREU(st->sha1_e, e);
    STOREU(st->abef, s0);
    STOREU(st->cdgh, s1);
}

#endif /* HAVE_SHA_NI */

typedef struct {
    PyObject_HEAD
    State st;
    uint8_t buf[64]; /* the last, incomplete block */
    Py_ssize_t buflen;
    uint64_t total; /* bytes fed */
    int busy;       /* an update is running with the GIL released */
    int ready;      /* __init__ has set the state */
} Triple;

static void feed(Triple *t, const uint8_t *p, Py_ssize_t n) {
#if HAVE_SHA_NI
    t->total += (uint64_t)n;
    if (t->buflen) {
        Py_ssize_t take = 64 - t->buflen < n ? 64 - t->buflen : n;
        memcpy(t->buf + t->buflen, p, (size_t)take);
        t->buflen += take, p += take, n -= take;
        if (t->buflen < 64) return;
        triple_blocks(&t->st, t->buf, 1);
        t->buflen = 0;
    }
    if (n >= 64) {
        triple_blocks(&t->st, p, (size_t)(n / 64));
        p += n & ~(Py_ssize_t)63, n &= 63;
    }
    memcpy(t->buf, p, (size_t)n);
    t->buflen = n;
#else
    (void)t, (void)p, (void)n;
#endif
}

#if HAVE_SHA_NI
static PyObject *hex(const uint8_t *b, int n) {
    static const char digits[] = "0123456789abcdef";
    char out[64];
    for (int i = 0; i < n; i++) out[2 * i] = digits[b[i] >> 4], out[2 * i + 1] = digits[b[i] & 15];
    return PyUnicode_FromStringAndSize(out, 2 * n);
}

static void put_be(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }
#endif

static int usable(Triple *self) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Triple was not initialised");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Triple is being updated by another thread");
        return 0;
    }
    return 1;
}

static PyObject *Triple_hexdigests(Triple *self, PyObject *Py_UNUSED(ignored)) {
    if (!usable(self)) return NULL;
#if HAVE_SHA_NI
    State s = self->st; /* the object stays usable: more bytes may follow */
    uint8_t blk[128] = {0}, md5[16], sha1[20], sha256[32];
    Py_ssize_t n = self->buflen, len = n < 56 ? 64 : 128;
    uint64_t bits = self->total * 8;
    memcpy(blk, self->buf, (size_t)n);
    blk[n] = 0x80;
    for (int i = 0; i < 8; i++) blk[len - 8 + i] = (uint8_t)(bits >> (8 * i)); /* MD5: LE */
    for (Py_ssize_t off = 0; off < len; off += 64) md5_block(s.md5, blk + off);
    for (int i = 0; i < 8; i++) blk[len - 1 - i] = (uint8_t)(bits >> (8 * i)); /* SHA: BE */
    for (Py_ssize_t off = 0; off < len; off += 64) sha1_block(&s, blk + off), sha256_block(&s, blk + off);
    memcpy(md5, s.md5, 16);
    for (int i = 0; i < 4; i++) put_be(sha1 + 4 * i, s.sha1_abcd[3 - i]);
    put_be(sha1 + 16, s.sha1_e[3]);
    const uint32_t h[8] = {s.abef[3], s.abef[2], s.cdgh[3], s.cdgh[2],
                           s.abef[1], s.abef[0], s.cdgh[1], s.cdgh[0]};
    for (int i = 0; i < 8; i++) put_be(sha256 + 4 * i, h[i]);
    PyObject *a = hex(md5, 16), *b = hex(sha1, 20), *c = hex(sha256, 32);
    if (!a || !b || !c) {
        Py_XDECREF(a), Py_XDECREF(b), Py_XDECREF(c);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(3, a, b, c);
    Py_DECREF(a), Py_DECREF(b), Py_DECREF(c);
    return out;
#else
    PyErr_SetString(PyExc_RuntimeError, "not built for this processor");
    return NULL;
#endif
}

static PyObject *Triple_update(Triple *self, PyObject *arg) {
    Py_buffer view;
    if (!usable(self)) return NULL;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    self->busy = 1;
    if (view.len >= GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        feed(self, view.buf, view.len);
        Py_END_ALLOW_THREADS
    } else {
        feed(self, view.buf, view.len);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static int Triple_init(Triple *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Triple", kwlist)) return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Triple is being updated by another thread");
        return -1;
    }
    if (!cpu_ok) {
        PyErr_SetString(PyExc_RuntimeError, "this processor lacks the SHA extensions");
        return -1;
    }
    static const State start = {
        {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476},
        {0x10325476, 0x98badcfe, 0xefcdab89, 0x67452301},
        {0, 0, 0, 0xc3d2e1f0},
        {0x9b05688c, 0x510e527f, 0xbb67ae85, 0x6a09e667},
        {0x5be0cd19, 0x1f83d9ab, 0xa54ff53a, 0x3c6ef372},
    };
    self->st = start;
    self->buflen = 0, self->total = 0, self->busy = 0, self->ready = 1;
    return 0;
}

static PyMethodDef Triple_methods[] = {
    {"update", (PyCFunction)Triple_update, METH_O, "Feed bytes (any buffer)."},
    {"hexdigests", (PyCFunction)Triple_hexdigests, METH_NOARGS,
     "(md5, sha1, sha256) of the bytes fed so far, in lower-case hex."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TripleType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "examkit._digest_native.Triple",
    .tp_basicsize = sizeof(Triple),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MD5, SHA-1 and SHA-256 of one stream, in one pass.",
    .tp_methods = Triple_methods,
    .tp_init = (initproc)Triple_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *supported(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    return PyBool_FromLong(cpu_ok);
}

static PyMethodDef module_methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this processor can run Triple."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "examkit._digest_native",
    "MD5, SHA-1 and SHA-256 of a stream in one pass (SHA extensions).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__digest_native(void) {
    cpu_ok = cpu_supported();
    if (PyType_Ready(&TripleType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&TripleType);
    if (PyModule_AddObject(m, "Triple", (PyObject *)&TripleType) < 0) {
        Py_DECREF(&TripleType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

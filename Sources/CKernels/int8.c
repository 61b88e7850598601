// int8 products: per-channel symmetric int8 weights (quantised at load), per-row dynamic int8
// activations, int32 accumulation, one dequantisation per output. Every variant computes the
// same exact integer sums, so they agree bit for bit (the tests hold them to it).
#include "robustd_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/// One value quantised: round to nearest even (the default rounding mode), clamp to ±127.
static inline int8_t rk_q1(float x, float inv) {
    float v = nearbyintf(x * inv);
    return (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
}

void rk_quantize_rows(int8_t *q, float *scales, const float *x, long rows, long K, long Kp) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * K;
        int8_t *qr = q + r * Kp;
        float mx = 0;
        for (long k = 0; k < K; k++) { float a = fabsf(xr[k]); mx = a > mx ? a : mx; }
        float s = mx / 127.0f, inv = mx > 0 ? 127.0f / mx : 0;
        scales[r] = s;
        for (long k = 0; k < K; k++) qr[k] = rk_q1(xr[k], inv);
        for (long k = K; k < Kp; k++) qr[k] = 0;
    }
}

int rk_qweight_init(rk_qweight *qw, const float *w, long O, long K) {
    memset(qw, 0, sizeof *qw);
    long Kp = (K + 3) / 4 * 4, panels = (O + 15) / 16;
    qw->O = O; qw->K = K; qw->Kp = Kp; qw->panels = panels;
    qw->data = aligned_alloc(64, (size_t)(panels * Kp * 16 + 64) / 64 * 64);
    qw->scales = calloc((size_t)panels * 16, sizeof(float));
    qw->colsums = calloc((size_t)panels * 16, sizeof(int32_t));
    if (!qw->data || !qw->scales || !qw->colsums) { rk_qweight_free(qw); return -1; }
    memset(qw->data, 0, (size_t)(panels * Kp * 16));
    // Each output row quantised as an input row is (the active variant's quantise: the same
    // bytes as the scalar form, without its per-element libm call), then scattered into panels.
    int8_t *row = malloc((size_t)Kp);
    if (!row) { rk_qweight_free(qw); return -1; }
    const rk_qtable *t = rk_qactive();
    for (long o = 0; o < O; o++) {
        t->quantize(row, &qw->scales[o], w + o * K, 1, K, Kp);
        long p = o / 16, j = o % 16;
        int32_t sum = 0;
        for (long k = 0; k < K; k++) {
            qw->data[((p * (Kp / 4) + k / 4) * 16 + j) * 4 + k % 4] = row[k];
            sum += row[k];
        }
        qw->colsums[o] = sum;
    }
    free(row);
    return 0;
}

void rk_qweight_free(rk_qweight *qw) {
    free(qw->data); free(qw->scales); free(qw->colsums);
    qw->data = NULL; qw->scales = NULL; qw->colsums = NULL;
}

// Writes columns o..o+width of a row from its 16 int32 sums.
static inline void rk_dequant16(float *y, const int32_t *acc, float xs, const rk_qweight *w, const float *bias,
                                long o, long width) {
    for (long j = 0; j < width; j++) y[j] = (float)acc[j] * xs * w->scales[o + j] + (bias ? bias[o + j] : 0);
}

static void rk_qgemm_baseline(float *y, const int8_t *qx, const float *xs, const rk_qweight *w, const float *bias,
                              long M, long o_lo, long o_hi) {
    long Kp = w->Kp, G = Kp / 4, O = w->O;
    for (long o = o_lo; o < o_hi; o += 16) {
        long width = o_hi - o < 16 ? o_hi - o : 16;
        const int8_t *panel = w->data + (o / 16) * G * 64;
        for (long m = 0; m < M; m++) {
            const int8_t *x = qx + m * Kp;
            int32_t acc[16] = {0};
            for (long g = 0; g < G; g++)
                for (long j = 0; j < 16; j++)
                    for (long t = 0; t < 4; t++) acc[j] += (int32_t)x[4 * g + t] * panel[(g * 16 + j) * 4 + t];
            rk_dequant16(y + m * O + o, acc, xs[m], w, bias, o, width);
        }
    }
}

const rk_qtable rk_qtable_baseline = { .name = "baseline", .qgemm = rk_qgemm_baseline, .quantize = rk_quantize_rows };

#if defined(__x86_64__)

// MARK: the 256-bit kernels: 4 rows × 16 columns (two ymm of int32 sums per row)
//
// AVX2: |x| · (w · sign(x)) with vpmaddubsw (exact: |x|, |w| ≤ 127, so a pair ≤ 32,258), then
// vpmaddwd by 1. AVX-VNNI: vpdpbusd on x + 128 as unsigned bytes, then − 128 · Σ w per column.
// The two differ only in the step and that correction; one body serves both.

#define RK_Q_MR 4

#define RK_Q_YMM_KERNEL(NAME, TARGET, SETUP, STEP, UNSIGNED)                                                       \
    __attribute__((target(TARGET))) static void NAME(float *y, const int8_t *qx, const float *xs,                  \
                                                     const rk_qweight *w, const float *bias, long M, long o_lo,     \
                                                     long o_hi) {                                                   \
        long Kp = w->Kp, G = Kp / 4, O = w->O;                                                                      \
        SETUP;                                                                                                      \
        for (long o = o_lo; o < o_hi; o += 16) {                                                                    \
            long width = o_hi - o < 16 ? o_hi - o : 16;                                                             \
            const int8_t *panel = w->data + (o / 16) * G * 64;                                                      \
            for (long m = 0; m < M; m += RK_Q_MR) {                                                                 \
                long rows = M - m < RK_Q_MR ? M - m : RK_Q_MR;                                                      \
                __m256i acc[RK_Q_MR][2];                                                                            \
                const int8_t *xr[RK_Q_MR];                                                                          \
                for (int r = 0; r < RK_Q_MR; r++) {                                                                 \
                    acc[r][0] = acc[r][1] = _mm256_setzero_si256();                                                 \
                    xr[r] = qx + (m + (r < rows ? r : 0)) * Kp;                                                     \
                }                                                                                                   \
                for (long g = 0; g < G; g++) {                                                                      \
                    __m256i w0 = _mm256_load_si256((const __m256i *)(panel + g * 64));                              \
                    __m256i w1 = _mm256_load_si256((const __m256i *)(panel + g * 64 + 32));                         \
                    for (int r = 0; r < RK_Q_MR; r++) {                                                             \
                        int32_t x4;                                                                                 \
                        memcpy(&x4, xr[r] + 4 * g, 4);                                                              \
                        __m256i xb = _mm256_set1_epi32(x4);                                                         \
                        STEP(acc[r][0], acc[r][1], xb, w0, w1);                                                     \
                    }                                                                                               \
                }                                                                                                   \
                for (int r = 0; r < rows; r++) {                                                                    \
                    int32_t a[16];                                                                                  \
                    _mm256_storeu_si256((__m256i *)a, acc[r][0]);                                                   \
                    _mm256_storeu_si256((__m256i *)(a + 8), acc[r][1]);                                             \
                    if (UNSIGNED)                                                                                   \
                        for (long j = 0; j < 16; j++) a[j] -= 128 * w->colsums[o + j];                              \
                    rk_dequant16(y + (m + r) * O + o, a, xs[m + r], w, bias, o, width);                             \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
    }

#define RK_Q_AVX2_STEP(a0, a1, xb, w0, w1)                                                \
    do {                                                                                  \
        __m256i ax = _mm256_abs_epi8(xb);                                                 \
        __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb));                  \
        __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb));                  \
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, ones));                           \
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, ones));                           \
    } while (0)

#define RK_Q_VNNI_STEP(a0, a1, xb, w0, w1)                                                \
    do {                                                                                  \
        __m256i ub = _mm256_xor_si256(xb, flip);                                          \
        a0 = _mm256_dpbusd_avx_epi32(a0, ub, w0);                                         \
        a1 = _mm256_dpbusd_avx_epi32(a1, ub, w1);                                         \
    } while (0)

RK_Q_YMM_KERNEL(rk_qgemm_avx2, "avx2,fma", const __m256i ones = _mm256_set1_epi16(1), RK_Q_AVX2_STEP, 0)
RK_Q_YMM_KERNEL(rk_qgemm_avxvnni, "avx2,fma,avxvnni", const __m256i flip = _mm256_set1_epi8((char)0x80), RK_Q_VNNI_STEP, 1)

// MARK: quantisation, 8 lanes
//
// The scalar form's operations lane by lane: max |x| (exact in any order), the same scale
// and x · (127 / max) products, rounding to nearest even (cvtps2dq under the default MXCSR
// mode, as nearbyintf under the default rounding mode), clamping to ±127, then packing. The
// libm nearbyintf call per element of the scalar form cost 4.5 ns (about 1 ms of a single
// query's 3.8 ms; measured on the Zen 3).

__attribute__((target("avx2,fma")))
static void rk_quantize_rows_avx2(int8_t *q, float *scales, const float *x, long rows, long K, long Kp) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * K;
        int8_t *qr = q + r * Kp;
        __m256 m8 = _mm256_setzero_ps();
        long k = 0;
        for (; k + 8 <= K; k += 8) m8 = _mm256_max_ps(m8, _mm256_and_ps(_mm256_loadu_ps(xr + k), absmask));
        float lanes[8], mx = 0;
        _mm256_storeu_ps(lanes, m8);
        for (int j = 0; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
        for (; k < K; k++) { float a = fabsf(xr[k]); mx = a > mx ? a : mx; }
        float inv = mx > 0 ? 127.0f / mx : 0;
        scales[r] = mx / 127.0f;
        const __m256 vinv = _mm256_set1_ps(inv);
#define RK_Q8(off) _mm256_max_epi32(lo, _mm256_min_epi32(hi, _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + k + (off)), vinv))))
        for (k = 0; k + 32 <= K; k += 32) {
            __m256i ab = _mm256_packs_epi32(RK_Q8(0), RK_Q8(8)), cd = _mm256_packs_epi32(RK_Q8(16), RK_Q8(24));
            _mm256_storeu_si256((__m256i *)(qr + k), _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order));
        }
#undef RK_Q8
        for (; k < K; k++) qr[k] = rk_q1(xr[k], inv);
        for (k = K; k < Kp; k++) qr[k] = 0;
    }
}

const rk_qtable rk_qtable_avx2 = { .name = "avx2", .qgemm = rk_qgemm_avx2, .quantize = rk_quantize_rows_avx2 };
const rk_qtable rk_qtable_avxvnni = { .name = "avxvnni", .qgemm = rk_qgemm_avxvnni, .quantize = rk_quantize_rows_avx2 };

// 6 rows × 4 panels (64 columns) of zmm accumulators: 24 of the 32 registers.
#define RK_V_MR 6
#define RK_V_NP 4

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
static inline void rk_vnni_block(float *y, const int8_t *qx, const float *xs, const rk_qweight *w, const float *bias,
                                 long m, long rows, long o, long np) {
    long Kp = w->Kp, G = Kp / 4, O = w->O;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i acc[RK_V_MR][RK_V_NP];
    const int8_t *xr[RK_V_MR];
    for (int r = 0; r < RK_V_MR; r++) {
        for (int p = 0; p < RK_V_NP; p++) acc[r][p] = _mm512_setzero_si512();
        xr[r] = qx + (m + (r < rows ? r : 0)) * Kp;
    }
    const int8_t *panel = w->data + (o / 16) * G * 64;
    for (long g = 0; g < G; g++) {
        __m512i wv[RK_V_NP];
        for (int p = 0; p < RK_V_NP; p++)
            wv[p] = p < np ? _mm512_load_si512((const void *)(panel + (p * G + g) * 64)) : _mm512_setzero_si512();
        for (int r = 0; r < RK_V_MR; r++) {
            int32_t x4;
            memcpy(&x4, xr[r] + 4 * g, 4);
            __m512i xb = _mm512_xor_si512(_mm512_set1_epi32(x4), flip);
            for (int p = 0; p < RK_V_NP; p++) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], xb, wv[p]);
        }
    }
    for (int p = 0; p < np; p++) {
        long oc = o + 16 * p;
        long width = O - oc < 16 ? O - oc : 16;
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(w->colsums + oc)), 7);
        __m512 ws = _mm512_loadu_ps(w->scales + oc);
        __m512 b = _mm512_setzero_ps();
        __mmask16 mask = (__mmask16)(width >= 16 ? 0xffff : (1u << width) - 1);
        if (bias) b = _mm512_maskz_loadu_ps(mask, bias + oc);
        for (int r = 0; r < rows; r++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][p], corr));
            v = _mm512_fmadd_ps(v, _mm512_mul_ps(ws, _mm512_set1_ps(xs[m + r])), b);
            _mm512_mask_storeu_ps(y + (m + r) * O + oc, mask, v);
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))
static void rk_qgemm_avx512vnni(float *y, const int8_t *qx, const float *xs, const rk_qweight *w, const float *bias,
                                long M, long o_lo, long o_hi) {
    for (long o = o_lo; o < o_hi; o += 16 * RK_V_NP) {
        long np = (o_hi - o + 15) / 16;
        if (np > RK_V_NP) np = RK_V_NP;
        for (long m = 0; m < M; m += RK_V_MR) {
            long rows = M - m < RK_V_MR ? M - m : RK_V_MR;
            rk_vnni_block(y, qx, xs, w, bias, m, rows, o, np);
        }
    }
}

const rk_qtable rk_qtable_avx512vnni = { .name = "avx512vnni", .qgemm = rk_qgemm_avx512vnni, .quantize = rk_quantize_rows_avx2 };

#endif

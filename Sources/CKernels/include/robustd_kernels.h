#ifndef ROBUSTD_KERNELS_H
#define ROBUSTD_KERNELS_H
// robustd's hand-written CPU kernels, compiled in several variants (one per instruction set)
// and chosen at run time from what the CPU reports (CPUID + XGETBV), never from the build
// machine. docs/performance.md, "Kernels and CPU dispatch", says what each variant is for.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CPU features the dispatcher looks at (bits of rk_cpu_features()).
enum {
    RK_CPU_AVX2 = 1 << 0,        // AVX2 and FMA, with the OS saving ymm state
    RK_CPU_AVX512 = 1 << 1,      // AVX-512 F, BW, DQ, VL, with the OS saving zmm state
    RK_CPU_AVX512VNNI = 1 << 2,  // AVX-512 VNNI (vpdpbusd on zmm)
    RK_CPU_AVXVNNI = 1 << 3,     // AVX-VNNI (vpdpbusd on ymm, VEX encoded)
};

/// fp32 kernel variants, from the portable baseline up.
typedef enum {
    RK_BASELINE = 0,  // x86-64 baseline (SSE2) or the build target elsewhere: no FMA
    RK_AVX2 = 1,      // AVX2 + FMA, 8 lanes
    RK_AVX512 = 2,    // AVX-512, 16 lanes
    RK_VARIANT_COUNT = 3
} rk_variant;

/// int8 product variants.
typedef enum {
    RK_Q_BASELINE = 0,    // scalar int32 accumulation
    RK_Q_AVX2 = 1,        // vpmaddubsw + vpmaddwd (the sign trick keeps it exact)
    RK_Q_AVXVNNI = 2,     // vpdpbusd on ymm
    RK_Q_AVX512VNNI = 3,  // vpdpbusd on zmm
    RK_Q_VARIANT_COUNT = 4
} rk_qvariant;

typedef struct {
    const char *name;
    /// y[M, O] (columns o_lo..<o_hi) = x[M, I] · W + bias, W packed in panels of 16 columns
    /// ([panels][I][16], zero past O); o_lo a multiple of 16.
    void (*small_gemm)(float *y, const float *x, const float *w, const float *bias,
                       long M, long I, long O, long o_lo, long o_hi);
    /// out[i] = gelu(in[i]) (erf form), in place allowed.
    void (*gelu)(float *out, const float *in, long n);
    /// Rows of y = layerNorm(x) · w + b; mean and rstd (per row) may be NULL. In place allowed.
    void (*layer_norm)(float *y, const float *x, const float *w, const float *b, long rows, long H, float eps,
                       float *mean, float *rstd);
    /// Rows of t = x + t; x = layerNorm(t) · w + b.
    void (*residual_layer_norm)(float *x, float *t, const float *w, const float *b, long rows, long H, float eps);
    /// One row: y = softmax(x) (in place allowed).
    void (*softmax)(float *y, const float *x, long C);
    /// Self-attention of one packed sequence (rows offset..<offset+T of qkv [N, 3H], each q|k|v),
    /// heads h_lo..<h_hi, into out [N, H]. T ≤ 64, H / heads ≤ 128. probs: NULL, or room for
    /// the probabilities [h_hi - h_lo][T][T] (kept for the backward pass).
    void (*attend)(float *out, const float *qkv, long offset, long T, long H, long heads, long h_lo, long h_hi,
                   float *probs);
} rk_table;

/// The CPU's features (RK_CPU_* bits), detected once.
int rk_cpu_features(void);
/// The best fp32 variant this CPU runs.
rk_variant rk_best_variant(void);
/// The table of a variant, or NULL when this CPU cannot run it.
const rk_table *rk_table_for(rk_variant v);
/// The table in use (the best variant unless rk_use chose another).
const rk_table *rk_active(void);
/// Uses variant v from now on; returns 0, or -1 (and changes nothing) when the CPU lacks it.
int rk_use(rk_variant v);

// MARK: int8

/// Per-row dynamic quantisation: q[r][k] = round(x[r][k] / s_r), s_r = max|x[r]| / 127 (a row
/// of zeros: s_r = 0, q = 0). q is [rows, Kp], Kp = K rounded up to 4, zero padded. The scalar
/// form; every int8 table's `quantize` gives the same bytes and scales for finite inputs.
void rk_quantize_rows(int8_t *q, float *scales, const float *x, long rows, long K, long Kp);

/// Weights quantised per output channel and packed for the int8 products.
typedef struct {
    long O, K, Kp;        // outputs, inputs, inputs rounded up to 4
    long panels;          // ceil(O / 16)
    int8_t *data;         // [panels][Kp/4][16][4]
    float *scales;        // [panels * 16] per output column (0 past O)
    int32_t *colsums;     // [panels * 16] Σ_k q[o][k]
} rk_qweight;

/// Quantises w [O, K] (row-major, PyTorch's layout) per output row; returns 0 or -1 (no memory).
int rk_qweight_init(rk_qweight *qw, const float *w, long O, long K);
void rk_qweight_free(rk_qweight *qw);

typedef struct {
    const char *name;
    /// y[M, O] (columns o_lo..<o_hi, o_lo a multiple of 16) = dequant(qx · qwᵀ) + bias.
    void (*qgemm)(float *y, const int8_t *qx, const float *xscales, const rk_qweight *w, const float *bias,
                  long M, long o_lo, long o_hi);
    /// rk_quantize_rows in this variant's instructions (the same results).
    void (*quantize)(int8_t *q, float *scales, const float *x, long rows, long K, long Kp);
} rk_qtable;

rk_qvariant rk_best_qvariant(void);
const rk_qtable *rk_qtable_for(rk_qvariant v);
const rk_qtable *rk_qactive(void);
int rk_quse(rk_qvariant v);

// MARK: the helper pool

typedef void (*rk_pool_task)(void *ctx, long k);
/// Runs fn(ctx, k) once for each k in 0..<parts, on the calling thread and the pool's helper
/// threads (one fewer than the online cores, started on first use): each part goes to whoever
/// claims it first, so the caller runs the parts no helper has started. Returns 0 when all are
/// done. Returns -1 without running anything when the pool is busy with
/// another caller's job or has too few helpers: the caller then runs the parts another way.
int rk_pool_run(long parts, rk_pool_task fn, void *ctx);
/// The pool's helper threads (starting them).
int rk_pool_helpers(void);

/// A hint to start loading the cache line at p; never a fault.
static inline void rk_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#ifdef __cplusplus
}
#endif
#endif

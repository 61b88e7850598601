// The fp32 kernels in each variant: fp32_body.inc compiled three times with different target
// features (clang's `#pragma clang attribute`), so one binary carries all three and
// rk_active() picks the one the CPU runs (cpu.c).
#include "robustd_kernels.h"

// The helpers pass 16-lane vectors by value; they are always inlined into their variant's
// kernels, so the calling convention the warning is about never applies.
#pragma clang diagnostic ignored "-Wpsabi"
#define RK_INLINE static inline __attribute__((always_inline))

#define RK(name) name##_baseline
#define RK_MR 4
#define RK_TABLE rk_table_baseline
#define RK_NAME "baseline"
#include "fp32_body.inc"
#undef RK
#undef RK_MR
#undef RK_TABLE
#undef RK_NAME

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define RK(name) name##_avx2
#define RK_MR 6
#define RK_TABLE rk_table_avx2
#define RK_NAME "avx2"
#include "fp32_body.inc"
#undef RK
#undef RK_MR
#undef RK_TABLE
#undef RK_NAME
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#define RK(name) name##_avx512
#define RK_MR 12
#define RK_TABLE rk_table_avx512
#define RK_NAME "avx512"
#include "fp32_body.inc"
#undef RK
#undef RK_MR
#undef RK_TABLE
#undef RK_NAME
#pragma clang attribute pop
#endif

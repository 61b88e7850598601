// CPU feature detection and the choice of kernel variant (robustd_kernels.h).
#include "robustd_kernels.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long rk_xgetbv(unsigned index) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(index));
    return ((unsigned long long)edx << 32) | eax;
}

static int rk_detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = rk_xgetbv(0);
    int ymm = (xcr0 & 0x6) == 0x6;            // SSE and AVX state
    int zmm = ymm && (xcr0 & 0xe0) == 0xe0;   // opmask, ZMM_Hi256, Hi16_ZMM
    if (!ymm) return 0;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71 = 0, c71 = 0, d71 = 0;
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a7, b7, c7, d7);
        __cpuid_count(7, 1, a71, b71, c71, d71);
    }
    int features = 0;
    int avx2 = (b7 >> 5) & 1;
    if (avx2 && fma) features |= RK_CPU_AVX2;
    int f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    if ((features & RK_CPU_AVX2) && zmm && f && dq && bw && vl) features |= RK_CPU_AVX512;
    if ((features & RK_CPU_AVX512) && ((c7 >> 11) & 1)) features |= RK_CPU_AVX512VNNI;
    if ((features & RK_CPU_AVX2) && ((a71 >> 4) & 1)) features |= RK_CPU_AVXVNNI;
    return features;
}
#else
static int rk_detect(void) { return 0; }
#endif

static atomic_int rk_features = -1;

int rk_cpu_features(void) {
    int f = atomic_load_explicit(&rk_features, memory_order_relaxed);
    if (f < 0) {
        f = rk_detect();
        atomic_store_explicit(&rk_features, f, memory_order_relaxed);
    }
    return f;
}

// The variants' tables, defined in fp32.c and int8.c.
extern const rk_table rk_table_baseline, rk_table_avx2, rk_table_avx512;
extern const rk_qtable rk_qtable_baseline, rk_qtable_avx2, rk_qtable_avxvnni, rk_qtable_avx512vnni;

static int rk_supported(rk_variant v) {
    int f = rk_cpu_features();
    switch (v) {
    case RK_BASELINE: return 1;
    case RK_AVX2: return (f & RK_CPU_AVX2) != 0;
    case RK_AVX512: return (f & RK_CPU_AVX512) != 0;
    default: return 0;
    }
}

static int rk_qsupported(rk_qvariant v) {
    int f = rk_cpu_features();
    switch (v) {
    case RK_Q_BASELINE: return 1;
    case RK_Q_AVX2: return (f & RK_CPU_AVX2) != 0;
    case RK_Q_AVXVNNI: return (f & RK_CPU_AVXVNNI) != 0;
    case RK_Q_AVX512VNNI: return (f & RK_CPU_AVX512VNNI) != 0;
    default: return 0;
    }
}

rk_variant rk_best_variant(void) {
    if (rk_supported(RK_AVX512)) return RK_AVX512;
    if (rk_supported(RK_AVX2)) return RK_AVX2;
    return RK_BASELINE;
}

rk_qvariant rk_best_qvariant(void) {
    if (rk_qsupported(RK_Q_AVX512VNNI)) return RK_Q_AVX512VNNI;
    if (rk_qsupported(RK_Q_AVXVNNI)) return RK_Q_AVXVNNI;
    if (rk_qsupported(RK_Q_AVX2)) return RK_Q_AVX2;
    return RK_Q_BASELINE;
}

const rk_table *rk_table_for(rk_variant v) {
    if (!rk_supported(v)) return NULL;
    switch (v) {
    case RK_BASELINE: return &rk_table_baseline;
#if defined(__x86_64__)
    case RK_AVX2: return &rk_table_avx2;
    case RK_AVX512: return &rk_table_avx512;
#endif
    default: return NULL;
    }
}

const rk_qtable *rk_qtable_for(rk_qvariant v) {
    if (!rk_qsupported(v)) return NULL;
    switch (v) {
    case RK_Q_BASELINE: return &rk_qtable_baseline;
#if defined(__x86_64__)
    case RK_Q_AVX2: return &rk_qtable_avx2;
    case RK_Q_AVXVNNI: return &rk_qtable_avxvnni;
    case RK_Q_AVX512VNNI: return &rk_qtable_avx512vnni;
#endif
    default: return NULL;
    }
}

static _Atomic(const rk_table *) rk_current = NULL;
static _Atomic(const rk_qtable *) rk_qcurrent = NULL;

const rk_table *rk_active(void) {
    const rk_table *t = atomic_load_explicit(&rk_current, memory_order_acquire);
    if (!t) {
        t = rk_table_for(rk_best_variant());
        atomic_store_explicit(&rk_current, t, memory_order_release);
    }
    return t;
}

int rk_use(rk_variant v) {
    const rk_table *t = rk_table_for(v);
    if (!t) return -1;
    atomic_store_explicit(&rk_current, t, memory_order_release);
    return 0;
}

const rk_qtable *rk_qactive(void) {
    const rk_qtable *t = atomic_load_explicit(&rk_qcurrent, memory_order_acquire);
    if (!t) {
        t = rk_qtable_for(rk_best_qvariant());
        atomic_store_explicit(&rk_qcurrent, t, memory_order_release);
    }
    return t;
}

int rk_quse(rk_qvariant v) {
    const rk_qtable *t = rk_qtable_for(v);
    if (!t) return -1;
    atomic_store_explicit(&rk_qcurrent, t, memory_order_release);
    return 0;
}

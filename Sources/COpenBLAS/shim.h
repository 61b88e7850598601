#ifndef ROBUSTD_COPENBLAS_SHIM_H
#define ROBUSTD_COPENBLAS_SHIM_H
#include <cblas.h>

/// Asks the CPU to start loading the cache line at p (for reading); a hint, never a fault.
static inline void robustd_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
#endif

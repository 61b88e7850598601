#ifndef ROBUSTD_COPENBLAS_SHIM_H
#define ROBUSTD_COPENBLAS_SHIM_H
#include <cblas.h>
#endif

// A pool of helper threads for splitting one product (or attention, or a row-wise kernel)
// across cores with a hand-off of well under a microsecond: helpers spin on the job word for a
// while after each job, then sleep on a condition variable. libdispatch's
// concurrentPerform, used before, woke a worker per call: with 24 products per single query
// the hand-offs cost more than the second core saved (measured: int8 single query p50 3.27 ms
// on one thread, 4.03 ms on two; docs/performance.md).
#include "robustd_kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define RK_POOL_MAX 63
// How long a helper spins after a job before it sleeps: long enough to span the gaps between
// the products of one pass, short enough that an idle daemon does not burn a core.
#define RK_POOL_SPIN_NS 300000L

// The job word: the job's generation in the high 32 bits, the next unclaimed part in the low
// 32. Parts are claimed by compare-and-swap on the whole word, by the helpers and by the caller
// alike, so a caller never waits for a helper that has not started (a sleeping helper on a busy
// host can take milliseconds to wake: the caller then runs every part itself, as libdispatch
// does), and a helper that wakes late finds its generation gone and claims nothing.
static struct {
    _Atomic(unsigned long long) word;
    atomic_long done;
    atomic_int sleepers;
    atomic_flag busy;
    rk_pool_task fn;
    void *ctx;
    long parts;
    int helpers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pool = { .busy = ATOMIC_FLAG_INIT, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static inline void rk_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static long rk_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline unsigned long long rk_gen(unsigned long long w) { return w >> 32; }

/// Claims and runs parts of generation `gen` until none is left.
static void rk_pool_work(unsigned long long gen) {
    for (;;) {
        unsigned long long w = atomic_load_explicit(&pool.word, memory_order_acquire);
        if (rk_gen(w) != gen) return;
        long next = (long)(w & 0xffffffffu);
        if (next >= pool.parts) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.word, &w, w + 1, memory_order_acq_rel, memory_order_acquire)) continue;
        // The claim succeeded in this generation: fn, ctx and parts are this job's until its
        // caller sees every part done.
        pool.fn(pool.ctx, next);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}

static void *rk_pool_helper(void *arg) {
    (void)arg;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g;
        long spun = 0, start = 0;
        while ((g = rk_gen(atomic_load_explicit(&pool.word, memory_order_acquire))) == seen) {
            rk_relax();
            if ((++spun & 255) != 0) continue;
            long t = rk_now_ns();
            if (start == 0) { start = t; continue; }
            if (t - start < RK_POOL_SPIN_NS) continue;
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleepers, 1);
            while (rk_gen(atomic_load(&pool.word)) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mu);
            start = 0;
        }
        seen = g;
        rk_pool_work(g);
    }
    return NULL;
}

static void rk_pool_start(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN) - 1;
    // ROBUSTD_THREAD_POOL=0: no helpers, every split goes through libdispatch (for A/B runs).
    const char *env = getenv("ROBUSTD_THREAD_POOL");
    if (env && env[0] == '0' && env[1] == 0) n = 0;
    if (n > RK_POOL_MAX) n = RK_POOL_MAX;
    int started = 0;
    for (long k = 1; k <= n; k++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, rk_pool_helper, NULL) == 0) started++;
        pthread_attr_destroy(&a);
        if (started < k) break;
    }
    pool.helpers = started;
}

int rk_pool_helpers(void) {
    pthread_once(&pool_once, rk_pool_start);
    return pool.helpers;
}

int rk_pool_run(long parts, rk_pool_task fn, void *ctx) {
    if (parts <= 1) { fn(ctx, 0); return 0; }
    pthread_once(&pool_once, rk_pool_start);
    if (pool.helpers == 0 || parts > 0x7fffffffL) return -1;
    // One job at a time: a caller that finds the pool busy runs its job some other way.
    if (atomic_flag_test_and_set_explicit(&pool.busy, memory_order_acquire)) return -1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.parts = parts;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    unsigned long long gen = rk_gen(atomic_load_explicit(&pool.word, memory_order_relaxed)) + 1;
    atomic_store(&pool.word, gen << 32);  // published: parts from 0 up are claimable
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    rk_pool_work(gen);
    // Only parts a helper claimed (and so is running) are waited for.
    long spun = 0;
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < parts) {
        rk_relax();
        if ((++spun & 4095) == 0) sched_yield();
    }
    atomic_flag_clear_explicit(&pool.busy, memory_order_release);
    return 0;
}

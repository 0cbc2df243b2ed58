// Fork-join with a small pool of spinning threads (ForkJoin.h).
//
// A decoder step's products take ~20–60 µs each; handing half of one to a GCD worker costs about
// that much (the worker sleeps between products), so the split gained ~10% where a thread that
// spins for the next job gains ~2× (measured, 2 cores). Here pool threads spin for SPIN_NS after
// each job (yielding now and then), then sleep on a condition variable. Linux tends to wake a
// thread on its waker's CPU; a pool thread that finds itself on the caller's CPU moves away (in
// the bench it otherwise stayed there for whole runs, and the two threads only took turns).
//
// A job is published as one 64-bit ticket: generation (32 bits) | helpers (8) | parts (12) |
// next unclaimed part (12). Whoever takes part (the caller, pool threads 0 … helpers − 1) claims
// parts by compare-and-swap on the ticket, so a claim can only succeed for the job it was read
// from, and reads the job's body and context only after a successful claim (they are written
// before the ticket that publishes them). The caller returns once `finished` reaches the count of
// parts; it never waits for a pool thread that has not claimed anything.

#if defined(__linux__)
#define _GNU_SOURCE  // sched_getcpu, CPU_SET, sched_setaffinity
#endif

#include "ForkJoin.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

enum { MAX_HELPERS = 15, MAX_PARTS = 4095 };

/// How long a pool thread spins for the next job before it sleeps (ns).
static const int64_t SPIN_NS = 200000;

static atomic_uint_fast64_t ticket;
static atomic_int finished;
/// 1 while a caller owns the pool (one job at a time).
static atomic_int busy;
/// Pool threads waiting on `wake`.
static atomic_int sleeping;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
/// Pool threads started so far (under `lock`).
static int started;

/// The CPU the caller of the current job ran on when it published it (−1: unknown).
static atomic_int caller_cpu = -1;

/// The current job's work (see above for when they may be read).
static void (*job_body)(void *, int);
static void *job_context;

static inline uint32_t generation_of(uint64_t t) { return (uint32_t)(t >> 32); }
static inline int helpers_of(uint64_t t) { return (int)((t >> 24) & 0xff); }
static inline int parts_of(uint64_t t) { return (int)((t >> 12) & 0xfff); }
static inline int next_of(uint64_t t) { return (int)(t & 0xfff); }

static inline void spin_pause(void) {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/// Which of its job's threads runs the calling part (ck_fork_join_worker).
static _Thread_local int current_worker;

/// Claims and runs parts of the job of generation `generation` until none is left, as the job's
/// thread `worker` (the caller 0, pool thread i as i + 1).
static void run_parts(uint32_t generation, int worker) {
  const int outer = current_worker;
  current_worker = worker;
  uint64_t t = atomic_load(&ticket);
  while (generation_of(t) == generation && next_of(t) < parts_of(t)) {
    if (!atomic_compare_exchange_weak(&ticket, &t, t + 1)) continue;  // t reloaded
    job_body(job_context, next_of(t));
    atomic_fetch_add(&finished, 1);
    t = atomic_load(&ticket);
  }
  current_worker = outer;
}

int ck_fork_join_worker(void) { return current_worker; }

/// If this pool thread shares the caller's CPU (the scheduler tends to wake a thread on the CPU of
/// the thread that woke it), moves it to another one of `allowed`: two threads on one core would
/// only take turns. The affinity is set back to `allowed` at once; the thread stays where it went.
static void leave_caller_cpu(const void *allowed) {
#if defined(__linux__)
  const cpu_set_t *mask = allowed;
  int cpu = sched_getcpu(), caller = atomic_load(&caller_cpu);
  if (cpu < 0 || cpu != caller || !CPU_ISSET(cpu, mask) || CPU_COUNT(mask) < 2) return;
  cpu_set_t others = *mask;
  CPU_CLR(cpu, &others);
  if (sched_setaffinity(0, sizeof others, &others) == 0) sched_setaffinity(0, sizeof *mask, mask);
#else
  (void)allowed;
#endif
}

static void *pool_thread(void *argument) {
  const int index = (int)(intptr_t)argument;
#if defined(__linux__)
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
#else
  const int allowed = 0;
#endif
  uint32_t seen = generation_of(atomic_load(&ticket));
  for (;;) {
    // the next job: spin for a while, then sleep
    uint64_t t = atomic_load(&ticket);
    int64_t deadline = now_ns() + SPIN_NS;
    for (int spins = 1; generation_of(t) == seen; spins++) {
      spin_pause();
      if (spins % 256 == 0) {
        sched_yield();  // now and then, let another runnable thread have this core
        if (now_ns() > deadline) {
          pthread_mutex_lock(&lock);
          atomic_fetch_add(&sleeping, 1);
          while (generation_of(atomic_load(&ticket)) == seen) pthread_cond_wait(&wake, &lock);
          atomic_fetch_sub(&sleeping, 1);
          pthread_mutex_unlock(&lock);
        }
      }
      t = atomic_load(&ticket);
    }
    seen = generation_of(t);
    if (index < helpers_of(t)) {
      leave_caller_cpu(&allowed);
      run_parts(seen, index + 1);
    }
  }
  return NULL;
}

/// Starts pool threads until there are `count` (false if one could not be started).
static int ensure_started(int count) {
  pthread_mutex_lock(&lock);
  while (started < count) {
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int failed = pthread_create(&thread, &attributes, pool_thread, (void *)(intptr_t)started);
    pthread_attr_destroy(&attributes);
    if (failed) break;
    started++;
  }
  int ok = started >= count;
  pthread_mutex_unlock(&lock);
  return ok;
}

void ck_fork_join(int threads, int parts, void (*body)(void *context, int part), void *context) {
  int helpers = threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS;
  int expected = 0;
  if (helpers < 1 || parts < 2 || parts > MAX_PARTS || !ensure_started(helpers) ||
      !atomic_compare_exchange_strong(&busy, &expected, 1)) {
    const int outer = current_worker;
    current_worker = 0;  // every part on the caller alone
    for (int part = 0; part < parts; part++) body(context, part);
    current_worker = outer;
    return;
  }
  // Publish: the work first, then the ticket (sequentially consistent, like the pool threads'
  // `sleeping` count: a thread about to sleep either sees this ticket or is woken below).
  job_body = body;
  job_context = context;
#if defined(__linux__)
  atomic_store(&caller_cpu, sched_getcpu());
#endif
  atomic_store(&finished, 0);
  uint32_t generation = generation_of(atomic_load(&ticket)) + 1;
  atomic_store(&ticket, (uint64_t)generation << 32 | (uint64_t)helpers << 24 | (uint64_t)parts << 12);
  if (atomic_load(&sleeping) > 0) {
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
  }
  run_parts(generation, 0);
  // Parts claimed by pool threads are running: wait for them.
  for (int spins = 1; atomic_load(&finished) < parts; spins++) {
    spin_pause();
    if (spins % 4096 == 0) sched_yield();
  }
  atomic_store(&busy, 0);
}

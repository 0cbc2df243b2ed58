// Fork-join for work items of tens of µs (a decoder step's products), where waking a sleeping
// thread (GCD, a condition variable) costs about as much as the work.
#ifndef CK_FORK_JOIN_H
#define CK_FORK_JOIN_H

/// Runs body(context, part) once for each part in 0 … parts − 1 and returns when all have run.
/// The caller and up to `threads` − 1 pool threads claim parts one at a time, so a pool thread that
/// has not started yet never delays the caller (it takes the parts itself). Pool threads spin for
/// a short while after a job (so that the next one, µs later, starts at once), then sleep.
/// One job at a time: a call made while another is running runs all its parts itself.
void ck_fork_join(int threads, int parts, void (*body)(void *context, int part), void *context);

/// Inside a part of ck_fork_join: which of the job's threads runs it, 0 … threads − 1 (the caller
/// 0; every part of a job that runs on the caller alone 0), so that parts claimed one at a time can
/// use per-thread scratch. Parts that run at the same time always see different numbers.
int ck_fork_join_worker(void);

#endif

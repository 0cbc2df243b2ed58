// The FP32 peak of the instruction set in use, measured rather than taken from a data sheet: two
// vCPUs may share one core's FMA pipes, so cores × width × clock can overstate it.
#ifndef CK_PEAK_FLOPS_H
#define CK_PEAK_FLOPS_H

/// Floating-point operations one iteration of ck_peak_flops_run does at the current ck_isa()
/// (a fused multiply-add counts two).
int ck_peak_flops_per_iteration(void);

/// Runs `iterations` iterations of independent multiply-adds at the current ck_isa() and returns
/// their sum (so that the work cannot be optimised away).
float ck_peak_flops_run(long iterations);

#endif

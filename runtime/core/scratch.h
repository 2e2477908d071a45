/* scratch.h: per-thread work buffers that grow on demand and are kept for the next call.
 * A fresh multi-megabyte malloc is a fresh mmap, whose page faults cost more than the im2col
 * that fills it (perf, LeNet-5's convolutions), so the hot paths keep theirs. Each user has its
 * own slot, so two of them may hold their buffers at once; a buffer stays valid until the
 * same thread asks for the same slot again. A thread's buffers are freed when it exits. */
#ifndef PR_SCRATCH_H
#define PR_SCRATCH_H

#include <stddef.h>

typedef enum {
    PR_SCRATCH_CONV,   /* ops/conv.c: columns and GEMM output of one slice, direct kernels */
    PR_SCRATCH_PLAN,   /* sparse/exec.c: a sparse plan's convolution slice */
    PR_SCRATCH_SLOTS
} pr_scratch_slot;

/* At least n floats of this thread's buffer `slot`, or NULL with an error naming `who`. */
float *pr_scratch(pr_scratch_slot slot, size_t n, const char *who);
/* Frees the buffer if it grew beyond max_bytes (one huge input should not pin its memory). */
void pr_scratch_trim(pr_scratch_slot slot, size_t max_bytes);

#endif

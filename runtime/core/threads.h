/* threads.h: the runtime's one thread-count knob.
 * `--threads N`, PRUNERT_THREADS and prunert_set_threads() all end here: it sets OpenBLAS's
 * pool and the count the runtime's own parallel kernels read, so both agree (a kernel must not
 * call BLAS from inside its own parallel region; see DESIGN.md, Threads). */
#ifndef PR_THREADS_H
#define PR_THREADS_H

/* Threads the runtime's kernels may use (>= 1). Until pr_set_threads is called it is
 * PRUNERT_THREADS from the environment when that is a positive integer, else the number of
 * online CPUs. */
int pr_threads(void);
/* Sets both counts; n <= 0 restores the default above. Values above 1024 are capped. */
void pr_set_threads(int n);

#endif

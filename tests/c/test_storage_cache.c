/* test_storage_cache.c: large buffers are reused after release, and reuse never leaks old
 * contents into zeros() or changes a tensor's size; the per-thread scratch buffers are kept,
 * kept apart per slot, trimmed, and freed with their thread (LSan in .ci/sanitize). */
#include "check.h"
#include "scratch.h"
#include "tensor.h"

#include <pthread.h>

static void reuse_gives_zeros_and_same_buffer(void)
{
    int64_t shape[1] = {1 << 18}; /* 1 MiB of float32: cached */
    pr_tensor *a = pr_tensor_full(PR_FLOAT32, 1, shape, 7.0);
    CHECK(a != NULL);
    void *p = pr_tensor_data(a);
    pr_tensor_release(a);
    pr_tensor *b = pr_tensor_zeros(PR_FLOAT32, 1, shape);
    CHECK(b != NULL);
    CHECK_MSG(pr_tensor_data(b) == p, "a released 1 MiB buffer is handed to the next 1 MiB tensor");
    const float *d = pr_tensor_f32(b);
    int nonzero = 0;
    for (int64_t i = 0; i < shape[0]; i++)
        nonzero += d[i] != 0.0f;
    CHECK_MSG(nonzero == 0, "%d stale values in a reused zeros() buffer", nonzero);
    pr_tensor_release(b);
}

static void *scratch_worker(void *arg)
{
    float **got = arg;
    got[0] = pr_scratch(PR_SCRATCH_CONV, 1 << 20, "test");
    got[1] = pr_scratch(PR_SCRATCH_PLAN, 1 << 20, "test");
    return NULL; /* the thread's buffers are freed as it exits */
}

static void scratch_per_thread_and_slot(void)
{
    float *a = pr_scratch(PR_SCRATCH_CONV, 1000, "test");
    CHECK(a != NULL);
    a[999] = 1.0f;
    CHECK(pr_scratch(PR_SCRATCH_CONV, 500, "test") == a);         /* smaller: the same buffer */
    float *b = pr_scratch(PR_SCRATCH_PLAN, 1000, "test");
    CHECK(b != NULL && b != a);                                     /* another slot: its own */
    float *c = pr_scratch(PR_SCRATCH_CONV, 1 << 20, "test");        /* larger: grows */
    CHECK(c != NULL);
    if (c)
        c[(1 << 20) - 1] = 2.0f;
    pr_scratch_trim(PR_SCRATCH_CONV, 1 << 24);                      /* within the limit: kept */
    CHECK(pr_scratch(PR_SCRATCH_CONV, 10, "test") == c);
    pr_scratch_trim(PR_SCRATCH_CONV, 1024);                         /* beyond it: freed */
    float *got[2] = { NULL, NULL };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, scratch_worker, got) == 0 && pthread_join(t, NULL) == 0);
    CHECK(got[0] != NULL && got[1] != NULL && got[0] != got[1] && got[0] != b);
}

static void sizes_far_apart_do_not_share(void)
{
    int64_t big[1] = {1 << 20}, small[1] = {1 << 17};
    pr_tensor *a = pr_tensor_empty(PR_FLOAT32, 1, big);
    void *p = pr_tensor_data(a);
    pr_tensor_release(a);
    pr_tensor *b = pr_tensor_empty(PR_FLOAT32, 1, small); /* 8x smaller: not worth 4 MiB */
    CHECK(pr_tensor_data(b) != p);
    CHECK(b->storage->nbytes == (size_t)small[0] * 4);
    pr_tensor_release(b);
    pr_storage_cache_clear();
    pr_tensor *c = pr_tensor_empty(PR_FLOAT32, 1, big);
    CHECK(c != NULL && c->storage->capacity >= c->storage->nbytes);
    pr_tensor_release(c);
    pr_storage_cache_clear();
}

int main(void)
{
    RUN(reuse_gives_zeros_and_same_buffer);
    RUN(scratch_per_thread_and_slot);
    RUN(sizes_far_apart_do_not_share);
    return CHECK_DONE();
}

/* test_storage_cache.c: large buffers are reused after release, and reuse never leaks old
 * contents into zeros() or changes a tensor's size. */
#include "check.h"
#include "tensor.h"

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
    RUN(sizes_far_apart_do_not_share);
    return CHECK_DONE();
}

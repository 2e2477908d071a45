/* kernels/activation.c: the ReLU fused after a layer's own pass (Linear's GEMM, a sparse plan's
 * kernel), for inference: in place, in parallel, x < 0 ? 0 : x as pr_relu (NaN passes). */
#include "../kernels.h"

static void relu_range(void *ctx, int64_t i0, int64_t i1)
{
    float *y = ctx;
    for (int64_t i = i0; i < i1; i++)
        y[i] = y[i] < 0.0f ? 0.0f : y[i];
}

void pr_relu_inplace(float *y, int64_t n)
{
    pr_parallel_for(n, 1, relu_range, y);
}

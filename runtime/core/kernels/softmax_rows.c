/* kernels/softmax_rows.c: numerically stable softmax / log-softmax along one axis of a raw
 * float array viewed as [outer, dim, inner] (see kernels.h). */
#include "kernels.h"

#include <math.h>

void pr_softmax_forward(const float *x, float *y, int64_t outer, int64_t dim, int64_t inner, int logmode)
{
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *xs = x + o * dim * inner + i;
            float *ys = y + o * dim * inner + i;
            float m = -INFINITY;
            for (int64_t k = 0; k < dim; k++)
                if (xs[k * inner] > m)
                    m = xs[k * inner];
            /* exp of (x - max) never overflows; the sum is kept in double for long rows. */
            double sum = 0.0;
            for (int64_t k = 0; k < dim; k++)
                sum += exp((double)xs[k * inner] - m);
            if (logmode) {
                float lse = (float)(m + log(sum));
                for (int64_t k = 0; k < dim; k++)
                    ys[k * inner] = xs[k * inner] - lse;
            } else {
                double inv = 1.0 / sum;
                for (int64_t k = 0; k < dim; k++)
                    ys[k * inner] = (float)(exp((double)xs[k * inner] - m) * inv);
            }
        }
    }
}

void pr_softmax_backward(const float *gy, float *dx, const float *y, int64_t outer, int64_t dim,
                         int64_t inner, int logmode)
{
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            int64_t base = o * dim * inner + i;
            double dot = 0.0;
            if (logmode) {
                /* d/dx of x - logsumexp(x): g - softmax * sum(g) */
                for (int64_t k = 0; k < dim; k++)
                    dot += gy[base + k * inner];
                for (int64_t k = 0; k < dim; k++)
                    dx[base + k * inner] = (float)(gy[base + k * inner] - expf(y[base + k * inner]) * dot);
            } else {
                /* Jacobian diag(y) - y y^T applied to g */
                for (int64_t k = 0; k < dim; k++)
                    dot += (double)gy[base + k * inner] * y[base + k * inner];
                for (int64_t k = 0; k < dim; k++)
                    dx[base + k * inner] = (float)(y[base + k * inner] * (gy[base + k * inner] - dot));
            }
        }
    }
}

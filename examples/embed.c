/* embed.c: a host program that uses prunert through include/prunert.h only.
 * It lends Lua a float buffer without copying, runs Lua code that computes y = x x^T + 1,
 * reads y back and checks it against the same sum done here in C. Exit status 1 on any
 * mismatch or error, so ctest (example.embed) can run it.
 * Build outside the tree with: cc embed.c $(pkg-config --cflags --libs prunert) */
#include <math.h>
#include <stdio.h>

#include "prunert.h"

#define ROWS 3
#define COLS 4

static int check_y(const float *x, const float *y, const char *what)
{
    int bad = 0;
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < ROWS; j++) {
            double want = 1.0;
            for (int k = 0; k < COLS; k++)
                want += (double)x[i * COLS + k] * x[j * COLS + k];
            double got = y[i * ROWS + j];
            if (fabs(got - want) > 1e-4 * (1.0 + fabs(want))) {
                fprintf(stderr, "embed: %s: y[%d][%d] = %g, expected %g\n", what, i, j, got, want);
                bad = 1;
            }
        }
    return bad;
}

int main(void)
{
    prunert_state *S = prunert_open();
    if (!S) {
        fprintf(stderr, "embed: %s\n", prunert_error(NULL));
        return 1;
    }

    /* The host's buffer: lent to Lua (PRUNERT_BORROW), so it must outlive the state. */
    float x[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++)
        x[i] = (float)(i % 5) - 1.5f;
    const int64_t shape[2] = { ROWS, COLS };
    if (prunert_set_tensor(S, "x", x, 2, shape, PRUNERT_BORROW) != PRUNERT_OK)
        goto fail;

    const char *code = "y = x:matmul(x:t()) + 1";
    float y[ROWS * ROWS];
    int64_t yshape[PRUNERT_MAX_DIMS];
    int yndim = 0;
    if (prunert_run_string(S, code) != PRUNERT_OK)
        goto fail;
    int64_t n = prunert_get_tensor(S, "y", y, ROWS * ROWS, yshape, &yndim);
    if (n < 0)
        goto fail;
    if (n != ROWS * ROWS || yndim != 2 || yshape[0] != ROWS || yshape[1] != ROWS) {
        fprintf(stderr, "embed: y has %lld elements and %d dims, expected [%d,%d]\n",
                (long long)n, yndim, ROWS, ROWS);
        prunert_close(S);
        return 1;
    }
    int bad = check_y(x, y, "first run");

    /* Borrowed means shared: a change made by the host is what Lua computes with next. */
    x[0] = 10.0f;
    if (prunert_run_string(S, code) != PRUNERT_OK ||
        prunert_get_tensor(S, "y", y, ROWS * ROWS, NULL, NULL) < 0)
        goto fail;
    bad |= check_y(x, y, "after the host changed x");

    printf("embed: y = x x^T + 1 =\n");
    for (int i = 0; i < ROWS; i++)
        printf("  %8.3f %8.3f %8.3f\n", y[i * ROWS], y[i * ROWS + 1], y[i * ROWS + 2]);
    printf("embed: %s\n", bad ? "MISMATCH" : "ok (matches the C computation)");
    prunert_close(S);
    return bad;

fail:
    fprintf(stderr, "embed: %s\n", prunert_error(S));
    prunert_close(S);
    return 1;
}

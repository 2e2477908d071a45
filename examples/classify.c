/* classify.c: a C host that runs a saved prunert model with no Lua at all.
 *
 *   example_classify MODEL IMAGES [LABELS] [N]
 *
 * Loads MODEL (written by pr.save: pruned, compacted or sparse-planned alike), reads N images
 * (all by default) from an IDX file of 8-bit images such as Fashion-MNIST's
 * t10k-images-idx3-ubyte.gz (raw or gzip-compressed), scales them to [0,1] as prunert.data
 * does, runs them through the model in batches of 500 and prints each image's predicted
 * class (1-based, as prunert's labels), one per line. With LABELS (an IDX label file) it also
 * prints the accuracy on stderr. Exit status 1 on any error, with prunert's message.
 * Build outside the tree with: cc classify.c $(pkg-config --cflags --libs prunert) -lz */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "prunert.h"

#define BATCH 500

/* Reads an IDX file of unsigned bytes (magic 0x0000080N): its dims and up to `limit` items. */
static unsigned char *read_idx_u8(const char *path, int64_t limit, int *ndim, int64_t *dims)
{
    gzFile f = gzopen(path, "rb"); /* reads plain files too */
    unsigned char head[4], d[4];
    unsigned char *data = NULL;
    if (!f || gzread(f, head, 4) != 4 || head[0] || head[1] || head[2] != 0x08 || head[3] < 1 ||
        head[3] > 4) {
        fprintf(stderr, "classify: %s: not an IDX file of unsigned bytes\n", path);
        goto done;
    }
    *ndim = head[3];
    int64_t per = 1;
    for (int i = 0; i < *ndim; i++) {
        if (gzread(f, d, 4) != 4) {
            fprintf(stderr, "classify: %s: truncated header\n", path);
            goto done;
        }
        dims[i] = (int64_t)d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3];
        if (i > 0)
            per *= dims[i];
    }
    if (limit > 0 && limit < dims[0])
        dims[0] = limit;
    size_t n = (size_t)(dims[0] * per);
    if (!(data = malloc(n ? n : 1)) || gzread(f, data, (unsigned)n) != (int)n) {
        fprintf(stderr, "classify: %s: cannot read %zu bytes of data\n", path, n);
        free(data);
        data = NULL;
    }
done:
    if (f)
        gzclose(f);
    return data;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL IMAGES [LABELS] [N]\n", argv[0]);
        return 2;
    }
    const char *labels_path = argc > 3 && strcmp(argv[3], "-") != 0 ? argv[3] : NULL;
    int64_t limit = argc > 4 ? atoll(argv[4]) : 0;

    prunert_model *m = prunert_model_load(argv[1]);
    if (!m) {
        fprintf(stderr, "classify: %s\n", prunert_error(NULL));
        return 1;
    }
    int ndim = 0, lndim = 0;
    int64_t dims[4], ldims[4];
    unsigned char *img = read_idx_u8(argv[2], limit, &ndim, dims);
    unsigned char *lab = labels_path ? read_idx_u8(labels_path, limit, &lndim, ldims) : NULL;
    if (!img || ndim != 3 || (labels_path && (!lab || lndim != 1 || ldims[0] != dims[0]))) {
        if (img && (ndim != 3 || (lab && (lndim != 1 || ldims[0] != dims[0]))))
            fprintf(stderr, "classify: expected N x H x W images and N labels\n");
        prunert_model_free(m);
        free(img);
        free(lab);
        return 1;
    }
    int64_t n = dims[0], hw = dims[1] * dims[2], correct = 0;
    float *x = malloc(sizeof *x * (size_t)(BATCH * hw)), *y = NULL;
    size_t ycap = 0;
    int rc = x ? 0 : 1;
    for (int64_t b0 = 0; b0 < n && rc == 0; b0 += BATCH) {
        int64_t bn = n - b0 < BATCH ? n - b0 : BATCH;
        for (int64_t i = 0; i < bn * hw; i++)
            x[i] = img[b0 * hw + i] / 255.0f;
        int64_t shape[4] = { bn, 1, dims[1], dims[2] }, oshape[PRUNERT_MAX_DIMS];
        int ond = 0;
        /* ask for the output's size first, then run into a buffer that fits */
        int64_t need = prunert_model_forward(m, x, 4, shape, NULL, 0, oshape, &ond);
        if (need >= 0 && (size_t)need > ycap) {
            free(y);
            ycap = (size_t)need;
            if (!(y = malloc(sizeof *y * ycap)))
                need = -1;
        }
        if (need < 0 || ond != 2 || prunert_model_forward(m, x, 4, shape, y, ycap, NULL, NULL) < 0) {
            fprintf(stderr, "classify: %s\n", ond != 2 && need >= 0 ? "the model's output is not "
                    "[N, classes]" : prunert_model_error(m));
            rc = 1;
            break;
        }
        for (int64_t i = 0; i < bn; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < oshape[1]; k++)
                if (y[i * oshape[1] + k] > y[i * oshape[1] + best])
                    best = k;
            printf("%lld\n", (long long)best + 1);
            if (lab && lab[b0 + i] == best)
                correct++;
        }
    }
    if (rc == 0 && lab)
        fprintf(stderr, "classify: %lld of %lld correct (%.2f%%)\n", (long long)correct,
                (long long)n, n ? 100.0 * (double)correct / (double)n : 0.0);
    free(x);
    free(y);
    free(img);
    free(lab);
    prunert_model_free(m);
    return rc;
}

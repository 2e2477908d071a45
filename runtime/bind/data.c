/* data.c (binding): the few C helpers the data pipeline needs: a seeded permutation, a batch
 * gather that copies rows by index in one pass, image bytes to scaled floats, and isatty for the
 * progress bar. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bind.h"
#include "rng.h"

/* core.randperm(n) -> int64 tensor holding a permutation of 1..n (Fisher-Yates on the runtime's
 * own generator, so pr.seed makes it reproducible everywhere). */
static int data_randperm(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "size must not be negative");
    int64_t shape[1] = {n};
    pr_tensor *t = pr_lua_check_result(L, pr_tensor_empty(PR_INT64, 1, shape));
    int64_t *d = pr_tensor_i64(t);
    for (int64_t i = 0; i < n; i++)
        d[i] = i + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = pr_rng_below(i + 1), tmp = d[i];
        d[i] = d[j];
        d[j] = tmp;
    }
    pr_lua_push_tensor(L, t);
    return 1;
}

/* core.gather_rows(src, perm, start, count) -> rows perm[start..start+count-1] (1-based) of src
 * along dim 1, contiguous. One memcpy per row: the only copy a shuffled batch needs. */
static int data_gather_rows(lua_State *L)
{
    pr_tensor *src = pr_lua_check_tensor(L, 1);
    pr_tensor *perm = pr_lua_check_tensor(L, 2);
    lua_Integer start = luaL_checkinteger(L, 3), count = luaL_checkinteger(L, 4);
    luaL_argcheck(L, perm->dtype == PR_INT64 && perm->ndim == 1, 2, "expected a 1-D int64 tensor");
    luaL_argcheck(L, src->ndim >= 1, 1, "expected at least one dimension");
    luaL_argcheck(L, start >= 1 && count >= 0 && start - 1 + count <= perm->shape[0], 3,
                  "range outside the permutation");
    pr_tensor *sc = pr_lua_check_result(L, pr_tensor_contiguous(src));
    pr_tensor *pc = pr_tensor_contiguous(perm);
    int64_t shape[PR_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = count;
    pr_tensor *out = pc ? pr_tensor_empty(src->dtype, src->ndim, shape) : NULL;
    if (!out) {
        pr_tensor_release(sc);
        pr_tensor_release(pc);
        return luaL_error(L, "%s", pr_last_error());
    }
    size_t row = pr_dtype_size(src->dtype);
    for (int d = 1; d < src->ndim; d++)
        row *= (size_t)src->shape[d];
    const char *s = pr_tensor_data(sc);
    char *o = pr_tensor_data(out);
    const int64_t *p = pr_tensor_i64(pc) + (start - 1);
    for (int64_t i = 0; i < count; i++) {
        int64_t r = p[i] - 1;
        if (r < 0 || r >= src->shape[0]) {
            pr_tensor_release(sc);
            pr_tensor_release(pc);
            pr_tensor_release(out);
            return luaL_error(L, "gather_rows: index %lld out of range for %lld rows",
                              (long long)r + 1, (long long)src->shape[0]);
        }
        memcpy(o + (size_t)i * row, s + (size_t)r * row, row);
    }
    pr_tensor_release(sc);
    pr_tensor_release(pc);
    pr_lua_push_tensor(L, out);
    return 1;
}

/* core.bytes_to_float(u8 tensor, scale) -> float32 tensor of the same shape, each byte * scale. */
static int data_bytes_to_float(lua_State *L)
{
    pr_tensor *src = pr_lua_check_tensor(L, 1);
    double scale = luaL_optnumber(L, 2, 1.0 / 255.0);
    luaL_argcheck(L, src->dtype == PR_UINT8, 1, "expected a uint8 tensor");
    pr_tensor *sc = pr_lua_check_result(L, pr_tensor_contiguous(src));
    pr_tensor *out = pr_tensor_empty(PR_FLOAT32, src->ndim, src->shape);
    if (!out) {
        pr_tensor_release(sc);
        return luaL_error(L, "%s", pr_last_error());
    }
    const uint8_t *s = pr_tensor_u8(sc);
    float *o = pr_tensor_f32(out);
    float table[256];
    for (int i = 0; i < 256; i++)
        table[i] = (float)(i * scale);
    for (int64_t i = 0, n = pr_tensor_numel(sc); i < n; i++)
        o[i] = table[s[i]];
    pr_tensor_release(sc);
    pr_lua_push_tensor(L, out);
    return 1;
}

/* core.labels_from_bytes(u8 tensor, base) -> int64 tensor, each label + base (1 for Lua). */
static int data_labels_from_bytes(lua_State *L)
{
    pr_tensor *src = pr_lua_check_tensor(L, 1);
    lua_Integer base = luaL_optinteger(L, 2, 1);
    pr_tensor *sc = pr_lua_check_result(L, pr_tensor_contiguous(src));
    pr_tensor *out = pr_tensor_empty(PR_INT64, src->ndim, src->shape);
    if (!out) {
        pr_tensor_release(sc);
        return luaL_error(L, "%s", pr_last_error());
    }
    int64_t *o = pr_tensor_i64(out);
    for (int64_t i = 0, n = pr_tensor_numel(sc); i < n; i++)
        o[i] = (int64_t)pr_tensor_get_flat(sc, i) + base;
    pr_tensor_release(sc);
    pr_lua_push_tensor(L, out);
    return 1;
}

/* core.count_correct(logits [N,C], labels [N] int64 1-based) -> how many argmax == label.
 * Accuracy is computed every batch; doing it here avoids three temporary tensors per step. */
static int data_count_correct(lua_State *L)
{
    pr_tensor *x = pr_lua_check_tensor(L, 1);
    pr_tensor *y = pr_lua_check_tensor(L, 2);
    luaL_argcheck(L, x->dtype == PR_FLOAT32 && x->ndim == 2, 1, "expected float32 logits [N,C]");
    luaL_argcheck(L, y->dtype == PR_INT64 && y->ndim == 1 && y->shape[0] == x->shape[0], 2,
                  "expected int64 labels [N] matching the logits");
    pr_tensor *xc = pr_lua_check_result(L, pr_tensor_contiguous(x));
    int64_t n = x->shape[0], c = x->shape[1], correct = 0;
    const float *p = pr_tensor_f32(xc);
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < c; j++)
            if (p[i * c + j] > p[i * c + best])
                best = j;
        correct += (best + 1 == (int64_t)pr_tensor_get_flat(y, i));
    }
    pr_tensor_release(xc);
    lua_pushinteger(L, correct);
    return 1;
}

/* core.clock() -> monotonic wall seconds (os.clock is CPU time, wrong with threads). */
static int data_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

static int data_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
    return 1;
}

void pr_open_data(lua_State *L, int lib)
{
    static const luaL_Reg funcs[] = {
        {"randperm", data_randperm}, {"gather_rows", data_gather_rows},
        {"bytes_to_float", data_bytes_to_float}, {"labels_from_bytes", data_labels_from_bytes},
        {"isatty", data_isatty}, {"count_correct", data_count_correct},
        {"clock", data_clock}, {NULL, NULL}};
    lua_pushvalue(L, lib);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

/* test_capi.c: the embedding API (include/prunert.h): its error paths first (bad scripts,
 * missing globals, small buffers, bad arguments, using a state after an error), then the
 * borrow/copy contract and the Lua stack staying balanced. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <lua.h>

#include "prunert.h"

#include "check.h"

static prunert_state *S;

static int contains(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

static void test_open(void)
{
    CHECK(S != NULL);
    CHECK(strcmp(prunert_error(S), "") == 0);
    CHECK(strcmp(prunert_error(NULL), "") == 0);
    CHECK(prunert_lua(S) != NULL);
    CHECK(*prunert_lua_dir() != '\0');
    CHECK(prunert_run_string(S, "assert(package.loaded.prunert ~= nil)") == PRUNERT_OK);
}

static void test_bad_script(void)
{
    CHECK(prunert_run_string(S, "x = = 1") == PRUNERT_ERUN);
    CHECK_MSG(contains(prunert_error(S), "unexpected symbol"), "%s", prunert_error(S));

    CHECK(prunert_run_string(S, "local t = nil\nerror('boom ' .. 42)") == PRUNERT_ERUN);
    CHECK_MSG(contains(prunert_error(S), ":2: boom 42"), "%s", prunert_error(S));
    CHECK_MSG(contains(prunert_error(S), "stack traceback"), "%s", prunert_error(S));

    CHECK(prunert_run_string(S, "error({})") == PRUNERT_ERUN);
    CHECK_MSG(contains(prunert_error(S), "error object is a table value"), "%s", prunert_error(S));

    CHECK(prunert_run_string(S, NULL) == PRUNERT_EINVAL);
    CHECK(prunert_run_file(S, NULL) == PRUNERT_EINVAL);
    CHECK(prunert_run_file(S, "/nonexistent/dir/script.lua") == PRUNERT_ENOTFOUND);
    CHECK_MSG(contains(prunert_error(S), "/nonexistent/dir/script.lua"), "%s", prunert_error(S));
}

static void test_run_file(void)
{
    char path[] = "/tmp/prunert_test_capi_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "w");
    fputs("file_value = 7\nlocal x = nil\nlocal y = x.field\n", f);
    fclose(f);
    CHECK(prunert_run_file(S, path) == PRUNERT_ERUN);
    /* file:line and the cause, so a host can show its user where the script went wrong */
    char where[64];
    snprintf(where, sizeof where, "%s:3:", strrchr(path, '/') + 1);
    CHECK_MSG(contains(prunert_error(S), where), "%s", prunert_error(S));
    CHECK_MSG(contains(prunert_error(S), "attempt to index"), "%s", prunert_error(S));
    /* what ran before the error stays done */
    CHECK(prunert_run_string(S, "assert(file_value == 7)") == PRUNERT_OK);
    unlink(path);
}

static void test_run_after_error(void)
{
    CHECK(prunert_run_string(S, "error('first')") == PRUNERT_ERUN);
    CHECK(prunert_run_string(S, "after = 41 + 1") == PRUNERT_OK);
    CHECK(strcmp(prunert_error(S), "") == 0);
    CHECK(prunert_run_string(S, "assert(after == 42)") == PRUNERT_OK);
    /* tensors still work after a failure inside a tensor call */
    CHECK(prunert_run_string(S, "local pr = require 'prunert'; local a = pr.zeros(2, 3); "
                                "bad = a:matmul(a)") == PRUNERT_ERUN);
    CHECK(prunert_run_string(S, "local pr = require 'prunert'; good = pr.zeros(2, 3) + 2")
          == PRUNERT_OK);
    float out[6];
    CHECK(prunert_get_tensor(S, "good", out, 6, NULL, NULL) == 6);
    CHECK_NEAR(out[5], 2.0, 0);
}

static void test_missing_global(void)
{
    float out[4];
    CHECK(prunert_get_tensor(S, "no_such_global", out, 4, NULL, NULL) == PRUNERT_ENOTFOUND);
    CHECK_MSG(contains(prunert_error(S), "no_such_global"), "%s", prunert_error(S));
    CHECK(prunert_run_string(S, "not_a_tensor = {1, 2, 3}") == PRUNERT_OK);
    CHECK(prunert_get_tensor(S, "not_a_tensor", out, 4, NULL, NULL) == PRUNERT_ETYPE);
    CHECK_MSG(contains(prunert_error(S), "not a tensor"), "%s", prunert_error(S));
    CHECK(prunert_get_tensor(S, NULL, out, 4, NULL, NULL) == PRUNERT_EINVAL);
}

static void test_capacity(void)
{
    float data[6] = { 1, 2, 3, 4, 5, 6 };
    const int64_t shape[2] = { 2, 3 };
    CHECK(prunert_set_tensor(S, "m", data, 2, shape, PRUNERT_COPY) == PRUNERT_OK);

    float out[6] = { 0 };
    int64_t shp[PRUNERT_MAX_DIMS] = { 0 };
    int nd = -1;
    CHECK(prunert_get_tensor(S, "m", out, 5, shp, &nd) == PRUNERT_ERANGE);
    CHECK_MSG(contains(prunert_error(S), "6 elements"), "%s", prunert_error(S));
    CHECK(out[0] == 0.0f); /* nothing written on failure */
    CHECK(nd == 2 && shp[0] == 2 && shp[1] == 3); /* but the shape is reported */

    CHECK(prunert_get_tensor(S, "m", NULL, 0, NULL, NULL) == 6); /* size query */
    CHECK(prunert_get_tensor(S, "m", out, 6, shp, &nd) == 6);
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(out[i], data[i], 0);

    /* a transposed view comes back in row-major order of the view */
    CHECK(prunert_run_string(S, "mt = m:t()") == PRUNERT_OK);
    CHECK(prunert_get_tensor(S, "mt", out, 6, shp, &nd) == 6);
    CHECK(nd == 2 && shp[0] == 3 && shp[1] == 2);
    CHECK_NEAR(out[1], 4.0, 0);
    CHECK_NEAR(out[2], 2.0, 0);

    /* other element types come back as floats */
    CHECK(prunert_run_string(S, "mi = (m * 2):long()") == PRUNERT_OK);
    CHECK(prunert_get_tensor(S, "mi", out, 6, shp, &nd) == 6);
    CHECK(nd == 2 && shp[0] == 2 && shp[1] == 3);
    CHECK_NEAR(out[5], 12.0, 0);
}

static void test_bad_set(void)
{
    float data[4] = { 0 };
    int64_t shape[PRUNERT_MAX_DIMS + 1] = { 2, 2, 1, 1, 1, 1, 1, 1, 1 };
    CHECK(prunert_set_tensor(S, "b", data, PRUNERT_MAX_DIMS + 1, shape, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK(prunert_set_tensor(S, "b", data, -1, shape, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK(prunert_set_tensor(S, "b", NULL, 2, shape, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK(prunert_set_tensor(S, "b", data, 2, NULL, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK(prunert_set_tensor(S, NULL, data, 2, shape, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK(prunert_set_tensor(S, "b", data, 2, shape, 7) == PRUNERT_EINVAL);
    int64_t neg[2] = { 2, -2 };
    CHECK(prunert_set_tensor(S, "b", data, 2, neg, PRUNERT_COPY) == PRUNERT_EINVAL);
    CHECK_MSG(contains(prunert_error(S), "dim 2"), "%s", prunert_error(S));
    int64_t huge[2] = { INT64_MAX / 2, 4 };
    CHECK(prunert_set_tensor(S, "b", data, 2, huge, PRUNERT_BORROW) == PRUNERT_EINVAL);
    /* none of these created the global */
    CHECK(prunert_get_tensor(S, "b", NULL, 0, NULL, NULL) == PRUNERT_ENOTFOUND);
    /* empty tensors and scalars are fine, and need no data */
    int64_t empty[2] = { 0, 3 };
    CHECK(prunert_set_tensor(S, "e", NULL, 2, empty, PRUNERT_COPY) == PRUNERT_OK);
    CHECK(prunert_get_tensor(S, "e", NULL, 0, NULL, NULL) == 0);
    float one = 3.5f, back = 0;
    CHECK(prunert_set_tensor(S, "s", &one, 0, NULL, PRUNERT_COPY) == PRUNERT_OK);
    int nd = -1;
    CHECK(prunert_get_tensor(S, "s", &back, 1, NULL, &nd) == 1);
    CHECK(nd == 0 && back == 3.5f);
}

static void test_borrow_and_copy(void)
{
    float host[4] = { 1, 2, 3, 4 };
    const int64_t shape[1] = { 4 };
    float out[1];
    CHECK(prunert_set_tensor(S, "lent", host, 1, shape, PRUNERT_BORROW) == PRUNERT_OK);
    CHECK(prunert_set_tensor(S, "copied", host, 1, shape, PRUNERT_COPY) == PRUNERT_OK);
    host[3] = 40; /* seen through the borrowed tensor only */
    CHECK(prunert_run_string(S, "sl = lent:sum(); sc = copied:sum()") == PRUNERT_OK);
    CHECK(prunert_get_tensor(S, "sl", out, 1, NULL, NULL) == 1);
    CHECK_NEAR(out[0], 46.0, 1e-5);
    CHECK(prunert_get_tensor(S, "sc", out, 1, NULL, NULL) == 1);
    CHECK_NEAR(out[0], 10.0, 1e-5);
    /* Lua's in-place writes land in the host's memory */
    CHECK(prunert_run_string(S, "lent:mul_(2)") == PRUNERT_OK);
    CHECK_NEAR(host[0], 2.0, 0);
    CHECK_NEAR(host[3], 80.0, 0);
    /* the state may free the borrowed tensor's header; the buffer must stay ours */
    CHECK(prunert_run_string(S, "lent = nil; collectgarbage()") == PRUNERT_OK);
    CHECK_NEAR(host[1], 4.0, 0);
}

static void test_stack_balanced(void)
{
    lua_State *L = prunert_lua(S);
    int top = lua_gettop(L);
    float v[2] = { 1, 2 };
    const int64_t shape[1] = { 2 };
    prunert_set_tensor(S, "v", v, 1, shape, PRUNERT_COPY);
    prunert_get_tensor(S, "v", v, 2, NULL, NULL);
    prunert_get_tensor(S, "missing", v, 2, NULL, NULL);
    prunert_run_string(S, "error('x')");
    prunert_run_string(S, "return 1, 2, 3");
    prunert_run_file(S, "/nonexistent.lua");
    CHECK(lua_gettop(L) == top);
}

static void test_threads(void)
{
    /* one knob: the runtime's count and OpenBLAS's pool move together */
    prunert_set_threads(1);
    CHECK(prunert_threads() == 1);
    CHECK(openblas_get_num_threads() == 1);
    prunert_set_threads(2);
    CHECK(prunert_threads() == 2);
    CHECK(openblas_get_num_threads() == 2);
    CHECK(prunert_run_string(S, "assert(require('prunert').threads() == 2)") == PRUNERT_OK);
    prunert_set_threads(0);
    CHECK(prunert_threads() >= 1);
}

static void test_two_states(void)
{
    prunert_state *T = prunert_open();
    CHECK(T != NULL);
    if (!T)
        return;
    CHECK(prunert_run_string(T, "only_in_t = 1") == PRUNERT_OK);
    CHECK(prunert_run_string(S, "assert(only_in_t == nil)") == PRUNERT_OK);
    prunert_close(T);
    prunert_close(NULL);
}

/* A model saved from Lua (pruned, one layer on a sparse plan, with metadata), loaded and run
 * from C without Lua: the same outputs as the Lua model, its metadata, and its errors. */
static void test_model(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/prunert_capi_%d.prunert", (int)getpid());
    char lua[2048];
    snprintf(lua, sizeof lua,
             "local pr = require 'prunert'\n"
             "pr.seed(7)\n"
             "local m = pr.nn.Sequential(pr.nn.Conv2d(1, 4, 3), pr.nn.ReLU(), pr.nn.MaxPool2d(2),\n"
             "    pr.nn.Flatten(), pr.nn.Linear(4 * 3 * 3, 6), pr.nn.ReLU(), pr.nn.Linear(6, 3))\n"
             "pr.prune.apply(m, {criterion = 'l1', amount = 0.5, scope = 'global'})\n"
             "m:eval()\n"
             "m:children()[5]:set_exec('csr')\n"
             "model_in = pr.randn(5, 1, 8, 8)\n"
             "model_out = pr.no_grad(function() return m(model_in) end)\n"
             "assert(pr.save(m, '%s', {note = 'from test_capi', epochs = 3}))\n", path);
    CHECK_MSG(prunert_run_string(S, lua) == PRUNERT_OK, "%s", prunert_error(S));
    float in[5 * 64], want[15], got[15];
    int64_t shape[PRUNERT_MAX_DIMS];
    int nd = 0;
    CHECK(prunert_get_tensor(S, "model_in", in, 5 * 64, shape, &nd) == 5 * 64 && nd == 4);
    CHECK(prunert_get_tensor(S, "model_out", want, 15, NULL, NULL) == 15);

    prunert_model *m = prunert_model_load(path);
    CHECK_MSG(m != NULL, "%s", prunert_error(NULL));
    if (m) {
        int64_t oshape[PRUNERT_MAX_DIMS] = {0};
        int ond = 0;
        CHECK(prunert_model_forward(m, in, 4, shape, NULL, 0, oshape, &ond) == 15);
        CHECK(ond == 2 && oshape[0] == 5 && oshape[1] == 3);
        CHECK(prunert_model_forward(m, in, 4, shape, got, 15, NULL, NULL) == 15);
        double err = 0.0;
        for (int i = 0; i < 15; i++)
            err = fabs(got[i] - want[i]) > err ? fabs(got[i] - want[i]) : err;
        CHECK_MSG(err <= 1e-6, "C forward differs from Lua's by %g", err);
        CHECK(strcmp(prunert_model_error(m), "") == 0);
        CHECK_MSG(contains(prunert_model_meta(m), "\"note\":\"from test_capi\"") &&
                  contains(prunert_model_meta(m), "\"epochs\":3"), "%s", prunert_model_meta(m));
        /* too small a buffer: ERANGE, the shape filled all the same */
        oshape[0] = 0;
        CHECK(prunert_model_forward(m, in, 4, shape, got, 14, oshape, NULL) == PRUNERT_ERANGE);
        CHECK(oshape[0] == 5 && contains(prunert_model_error(m), "buffer room for 14"));
        /* an input the model does not take names the layer and the shapes */
        int64_t bad[4] = { 5, 2, 8, 8 };
        CHECK(prunert_model_forward(m, in, 4, bad, got, 15, NULL, NULL) == PRUNERT_EINVAL);
        CHECK_MSG(contains(prunert_model_error(m), "Conv2d") &&
                  contains(prunert_model_error(m), "[5,2,8,8]"), "%s", prunert_model_error(m));
        CHECK(prunert_model_forward(m, NULL, 4, shape, got, 15, NULL, NULL) == PRUNERT_EINVAL);
        CHECK(prunert_model_forward(m, in, 0, shape, got, 15, NULL, NULL) == PRUNERT_EINVAL);
        /* and it still works after errors */
        CHECK(prunert_model_forward(m, in, 4, shape, got, 15, NULL, NULL) == 15 && got[0] == want[0]);
        prunert_model_free(m);
    }
    prunert_model_free(NULL);

    /* a missing file, a cut one, a file that is not a model */
    CHECK(prunert_model_load("/nonexistent/x.prunert") == NULL);
    CHECK_MSG(contains(prunert_error(NULL), "/nonexistent/x.prunert"), "%s", prunert_error(NULL));
    FILE *f = fopen(path, "rb");
    char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 100 && n < sizeof buf);
    f = fopen(path, "wb");
    if (f) {
        fwrite(buf, 1, n - 40, f);
        fclose(f);
    }
    CHECK(prunert_model_load(path) == NULL);
    CHECK_MSG(contains(prunert_error(NULL), path), "%s", prunert_error(NULL));
    snprintf(lua, sizeof lua,
             "local pr = require 'prunert'\n"
             "assert(pr.core.io.write_model_file('%s', {format = 'other'}, {}))\n", path);
    if (prunert_run_string(S, lua) == PRUNERT_OK) {
        CHECK(prunert_model_load(path) == NULL);
        CHECK_MSG(contains(prunert_error(NULL), "not a prunert model"), "%s", prunert_error(NULL));
    } else {
        CHECK_MSG(0, "%s", prunert_error(S));
    }
    remove(path);
}

int main(void)
{
    S = prunert_open();
    if (!S) {
        fprintf(stderr, "prunert_open failed: %s\n", prunert_error(NULL));
        return 1;
    }
    RUN(test_open);
    RUN(test_bad_script);
    RUN(test_run_file);
    RUN(test_run_after_error);
    RUN(test_missing_global);
    RUN(test_capacity);
    RUN(test_bad_set);
    RUN(test_borrow_and_copy);
    RUN(test_stack_balanced);
    RUN(test_threads);
    RUN(test_two_states);
    RUN(test_model);
    prunert_close(S);
    return CHECK_DONE();
}

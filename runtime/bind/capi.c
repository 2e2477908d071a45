/* capi.c: the embedding API of include/prunert.h: states, running Lua, tensors in and out,
 * and finding the Lua library directory for both embedding hosts and the prunert program. */
#define _GNU_SOURCE /* dladdr */
#include "prunert.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "bind.h"
#include "threads.h"

#ifndef PRUNERT_VERSION
#define PRUNERT_VERSION "unknown"
#endif

int luaopen_prunert_core(lua_State *L); /* runtime/bind/init.c */

struct prunert_state {
    lua_State *L;  /* owned */
    char *err;     /* owned; NULL means "" */
};

static _Thread_local char open_error[1024];

/* ---- messages ---- */

static void clear_error(prunert_state *S)
{
    free(S->err);
    S->err = NULL;
}

static int set_error(prunert_state *S, int code, const char *fmt, ...) PR_PRINTF(3, 4);
static int set_error(prunert_state *S, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(S->err);
    S->err = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (S->err) {
        va_start(ap, fmt);
        vsnprintf(S->err, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* lua.c's message handler: adds a traceback to string errors and uses __tostring for others. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int prunert_pcall(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    return status;
}

/* Moves the error value on top of the stack into S->err and pops it. */
static int take_lua_error(prunert_state *S, int code)
{
    const char *msg = lua_tostring(S->L, -1);
    set_error(S, code, "%s", msg ? msg : "(error object is not a string)");
    lua_pop(S->L, 1);
    return code;
}

/* ---- the Lua library directory ---- */

static char lua_dir[PATH_MAX];
static pthread_once_t lua_dir_once = PTHREAD_ONCE_INIT;

static int has_library(const char *dir)
{
    char path[3 * PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/prunert/init.lua", dir);
    return n > 0 && (size_t)n < sizeof path && access(path, R_OK) == 0;
}

/* Tries <prefix>/<install lua dir>; on success stores its real path in lua_dir. */
static int try_prefix(const char *prefix)
{
    char cand[3 * PATH_MAX];
    const char *rel = PRUNERT_INSTALL_LUA_REL;
    int n = rel[0] == '/' ? snprintf(cand, sizeof cand, "%s", rel)
                          : snprintf(cand, sizeof cand, "%s/%s", prefix, rel);
    if (n < 0 || (size_t)n >= sizeof cand || !has_library(cand) || !realpath(cand, lua_dir)) {
        lua_dir[0] = '\0';
        return 0;
    }
    return 1;
}

/* Tries <directory of file>/<up> as the prefix (file: a program or library). */
static int try_installed(const char *file, const char *up)
{
    char real[PATH_MAX], prefix[PATH_MAX + 16];
    if (!file || !*file || !realpath(file, real))
        return 0;
    char *slash = strrchr(real, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    snprintf(prefix, sizeof prefix, "%s/%s", real, up);
    return try_prefix(prefix);
}

static void find_lua_dir(void)
{
    /* Installed layouts first, so an installed program never picks up a stale source tree:
     * the running program (prunert in <prefix>/bin), then the shared library holding this code
     * (<prefix>/lib or a multiarch <prefix>/lib/<triplet>), then the configured prefix. The
     * build tree's sources last. */
    if (try_installed("/proc/self/exe", ".."))
        return;
    Dl_info info;
    if (dladdr((void *)prunert_openlibs, &info) && info.dli_fname &&
        (try_installed(info.dli_fname, "..") || try_installed(info.dli_fname, "../..")))
        return;
#ifdef PRUNERT_INSTALL_PREFIX
    /* a host linked with libprunert.a: the prefix configured at build time */
    if (try_prefix(PRUNERT_INSTALL_PREFIX))
        return;
#endif
    if (has_library(PRUNERT_SOURCE_LUA_DIR))
        snprintf(lua_dir, sizeof lua_dir, "%s", PRUNERT_SOURCE_LUA_DIR);
}

const char *prunert_lua_dir(void)
{
    pthread_once(&lua_dir_once, find_lua_dir);
    return lua_dir;
}

int prunert_openlibs(lua_State *L)
{
    lua_getglobal(L, "package");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return PRUNERT_EINVAL;
    }
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_prunert_core);
    lua_setfield(L, -2, "prunert.core");
    lua_pop(L, 1);
    const char *dir = prunert_lua_dir();
    if (*dir) {
        lua_getfield(L, -1, "path");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir,
                        lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
        lua_setfield(L, -3, "path");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return *dir ? PRUNERT_OK : PRUNERT_ENOTFOUND;
}

const char *prunert_version(void) { return PRUNERT_VERSION; }

/* ---- states ---- */

static int open_protected(lua_State *L)
{
    luaL_openlibs(L);
    /* When no directory was found, LUA_PATH or Lua's default path may still have the library;
     * if not, require's message below lists every place it looked. */
    prunert_openlibs(L);
    /* Loaded eagerly so a broken installation fails here, not in the host's first run. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "prunert");
    lua_call(L, 1, 0);
    return 0;
}

prunert_state *prunert_open(void)
{
    open_error[0] = '\0';
    prunert_state *S = calloc(1, sizeof *S);
    if (!S || !(S->L = luaL_newstate())) {
        free(S);
        snprintf(open_error, sizeof open_error, "prunert_open: out of memory");
        return NULL;
    }
    const char *env = getenv("PRUNERT_THREADS");
    if (env && *env)
        pr_set_threads(0); /* 0 = the default, which reads PRUNERT_THREADS */
    lua_pushcfunction(S->L, open_protected);
    if (prunert_pcall(S->L, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(S->L, -1);
        snprintf(open_error, sizeof open_error, "prunert_open: %s", msg ? msg : "unknown error");
        prunert_close(S);
        return NULL;
    }
    return S;
}

void prunert_close(prunert_state *S)
{
    if (!S)
        return;
    if (S->L)
        lua_close(S->L);
    free(S->err);
    free(S);
}

const char *prunert_error(const prunert_state *S)
{
    if (!S)
        return open_error;
    return S->err ? S->err : "";
}

lua_State *prunert_lua(prunert_state *S) { return S->L; }

/* ---- running code ---- */

int prunert_run_file(prunert_state *S, const char *path)
{
    clear_error(S);
    if (!path)
        return set_error(S, PRUNERT_EINVAL, "prunert_run_file: path is NULL");
    int status = luaL_loadfile(S->L, path);
    if (status == LUA_ERRFILE)
        return take_lua_error(S, PRUNERT_ENOTFOUND);
    if (status != LUA_OK)
        return take_lua_error(S, status == LUA_ERRMEM ? PRUNERT_ENOMEM : PRUNERT_ERUN);
    if (prunert_pcall(S->L, 0, 0) != LUA_OK)
        return take_lua_error(S, PRUNERT_ERUN);
    return PRUNERT_OK;
}

int prunert_run_string(prunert_state *S, const char *code)
{
    clear_error(S);
    if (!code)
        return set_error(S, PRUNERT_EINVAL, "prunert_run_string: code is NULL");
    int status = luaL_loadstring(S->L, code);
    if (status != LUA_OK)
        return take_lua_error(S, status == LUA_ERRMEM ? PRUNERT_ENOMEM : PRUNERT_ERUN);
    if (prunert_pcall(S->L, 0, 0) != LUA_OK)
        return take_lua_error(S, PRUNERT_ERUN);
    return PRUNERT_OK;
}

/* ---- tensors ---- */

struct set_args {
    const char *name;
    pr_tensor *t;  /* owned until handed to the binding */
};

static int set_protected(lua_State *L)
{
    struct set_args *a = lua_touserdata(L, 1);
    /* From here the binding owns the reference (bind.h); clearing it first means a memory error
     * inside can at worst leak one header, never free it twice. */
    pr_tensor *t = a->t;
    a->t = NULL;
    pr_lua_push_tensor(L, t);
    lua_setglobal(L, a->name);
    return 0;
}

/* The element count of a host array of `ndim` dims `shape` into *numel: -1, or the index of
 * the first dim that is negative or makes the float array larger than int64 can count. */
static int host_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    *numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && *numel > INT64_MAX / (int64_t)sizeof(float) / shape[i]))
            return i;
        *numel *= shape[i];
    }
    return -1;
}

int prunert_set_tensor(prunert_state *S, const char *name, float *data, int ndim,
                       const int64_t *shape, int mode)
{
    clear_error(S);
    if (!name)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor: name is NULL");
    if (ndim < 0 || ndim > PRUNERT_MAX_DIMS || ndim > PR_MAX_DIMS)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor(%s): ndim %d is not in 0..%d",
                         name, ndim, PRUNERT_MAX_DIMS);
    if (ndim > 0 && !shape)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor(%s): shape is NULL", name);
    if (mode != PRUNERT_BORROW && mode != PRUNERT_COPY)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor(%s): mode %d is neither "
                         "PRUNERT_BORROW nor PRUNERT_COPY", name, mode);
    int64_t numel;
    int bad = host_numel(ndim, shape, &numel);
    if (bad >= 0)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor(%s): bad size %lld in dim %d",
                         name, (long long)shape[bad], bad + 1);
    if (numel > 0 && !data)
        return set_error(S, PRUNERT_EINVAL, "prunert_set_tensor(%s): data is NULL", name);

    pr_tensor *t;
    if (mode == PRUNERT_BORROW) {
        /* No release callback: the host owns the buffer (see prunert.h). */
        t = pr_tensor_from_buffer(PR_FLOAT32, ndim, shape, data, NULL, NULL);
    } else {
        t = pr_tensor_empty(PR_FLOAT32, ndim, shape);
        if (t && numel > 0)
            memcpy(pr_tensor_f32(t), data, (size_t)numel * sizeof(float));
    }
    if (!t)
        return set_error(S, PRUNERT_ENOMEM, "prunert_set_tensor(%s): %s", name, pr_last_error());

    struct set_args a = { name, t };
    lua_pushcfunction(S->L, set_protected);
    lua_pushlightuserdata(S->L, &a);
    if (prunert_pcall(S->L, 1, 0) != LUA_OK) {
        pr_tensor_release(a.t); /* NULL once the binding took it */
        return take_lua_error(S, PRUNERT_ENOMEM);
    }
    return PRUNERT_OK;
}

struct get_args {
    const char *name;
    pr_tensor *t;  /* new reference, or NULL */
    int found;
};

static int get_protected(lua_State *L)
{
    struct get_args *a = lua_touserdata(L, 1);
    lua_getglobal(L, a->name);
    a->found = !lua_isnil(L, -1);
    pr_tensor *t = pr_lua_test_tensor(L, -1);
    if (t) {
        pr_tensor_retain(t);
        a->t = t;
    }
    return 0;
}

int64_t prunert_get_tensor(prunert_state *S, const char *name, float *out, size_t capacity,
                           int64_t *shape_out, int *ndim_out)
{
    clear_error(S);
    if (!name)
        return set_error(S, PRUNERT_EINVAL, "prunert_get_tensor: name is NULL");
    struct get_args a = { name, NULL, 0 };
    lua_pushcfunction(S->L, get_protected);
    lua_pushlightuserdata(S->L, &a);
    if (prunert_pcall(S->L, 1, 0) != LUA_OK) {
        pr_tensor_release(a.t);
        return take_lua_error(S, PRUNERT_ERUN);
    }
    if (!a.found)
        return set_error(S, PRUNERT_ENOTFOUND, "prunert_get_tensor: no global '%s'", name);
    if (!a.t)
        return set_error(S, PRUNERT_ETYPE, "prunert_get_tensor: global '%s' is not a tensor", name);

    pr_tensor *t = a.t;
    if (ndim_out)
        *ndim_out = t->ndim;
    if (shape_out)
        for (int i = 0; i < t->ndim; i++)
            shape_out[i] = t->shape[i];
    int64_t numel = pr_tensor_numel(t);
    if (!out) {
        pr_tensor_release(t);
        return numel;
    }
    if ((uint64_t)numel > (uint64_t)capacity) {
        pr_tensor_release(t);
        return set_error(S, PRUNERT_ERANGE, "prunert_get_tensor: '%s' has %lld elements, the "
                         "buffer room for %zu", name, (long long)numel, capacity);
    }
    /* One conversion when needed, then one contiguous copy; both are no-ops for the usual
     * contiguous float32 result. */
    pr_tensor *f = t->dtype == PR_FLOAT32 ? (pr_tensor_retain(t), t) : pr_tensor_to(t, PR_FLOAT32);
    pr_tensor_release(t);
    pr_tensor *c = f ? pr_tensor_contiguous(f) : NULL;
    pr_tensor_release(f);
    if (!c)
        return set_error(S, PRUNERT_ENOMEM, "prunert_get_tensor(%s): %s", name, pr_last_error());
    if (numel > 0)
        memcpy(out, pr_tensor_f32(c), (size_t)numel * sizeof(float));
    pr_tensor_release(c);
    return numel;
}

/* ---- threads ---- */

void prunert_set_threads(int n) { pr_set_threads(n); }

int prunert_threads(void) { return pr_threads(); }

/* ---- the same knob from Lua: pr.threads(), pr.set_threads(n) ---- */

static int threads_get(lua_State *L)
{
    lua_pushinteger(L, pr_threads());
    return 1;
}

static int threads_set(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 1024, 1, "expected 0 (the default) to 1024 threads");
    pr_set_threads((int)n);
    lua_pushinteger(L, pr_threads());
    return 1;
}

void pr_open_threads(lua_State *L, int lib)
{
    lib = lua_absindex(L, lib);
    lua_pushcfunction(L, threads_get);
    lua_setfield(L, lib, "threads");
    lua_pushcfunction(L, threads_set);
    lua_setfield(L, lib, "set_threads");
}

/* ---- models (no Lua) ---- */

#include "autograd.h"
#include "io/io.h"
#include "module.h"

struct prunert_model {
    pr_module *m;  /* owned reference */
    char *meta;    /* owned JSON text */
    char err[1024];
};

prunert_model *prunert_model_load(const char *path)
{
    open_error[0] = '\0';
    const char *env = getenv("PRUNERT_THREADS");
    if (env && *env)
        pr_set_threads(0); /* 0 = the default, which reads PRUNERT_THREADS */
    prunert_model *pm = calloc(1, sizeof *pm);
    pr_json *manifest = NULL;
    if (!pm) {
        snprintf(open_error, sizeof open_error, "prunert_model_load: out of memory");
        return NULL;
    }
    if (!(pm->m = pr_model_load(path, &manifest))) {
        snprintf(open_error, sizeof open_error, "prunert_model_load: %s", pr_last_error());
        free(pm);
        return NULL;
    }
    const pr_json *meta = pr_json_object_get(manifest, "meta");
    pm->meta = meta && meta->type == PR_JSON_OBJECT ? pr_json_encode(meta, 0, NULL) : NULL;
    if (!pm->meta && (pm->meta = malloc(3)))
        memcpy(pm->meta, "{}", 3);
    pr_json_free(manifest);
    if (!pm->meta) {
        snprintf(open_error, sizeof open_error, "prunert_model_load: out of memory");
        prunert_model_free(pm);
        return NULL;
    }
    return pm;
}

static int64_t model_fail(prunert_model *pm, int64_t code, const char *fmt, ...) PR_PRINTF(3, 4);
static int64_t model_fail(prunert_model *pm, int64_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pm->err, sizeof pm->err, fmt, ap);
    va_end(ap);
    return code;
}

int64_t prunert_model_forward(prunert_model *pm, const float *in, int ndim, const int64_t *shape,
                              float *out, size_t capacity, int64_t *shape_out, int *ndim_out)
{
    if (!pm)
        return PRUNERT_EINVAL;
    pm->err[0] = '\0';
    if (ndim < 1 || ndim > PRUNERT_MAX_DIMS || ndim > PR_MAX_DIMS || !shape)
        return model_fail(pm, PRUNERT_EINVAL, "prunert_model_forward: ndim %d is not in 1..%d, "
                          "or shape is NULL", ndim, PRUNERT_MAX_DIMS);
    int64_t numel;
    int bad = host_numel(ndim, shape, &numel);
    if (bad >= 0)
        return model_fail(pm, PRUNERT_EINVAL, "prunert_model_forward: bad size %lld in dim %d",
                          (long long)shape[bad], bad + 1);
    if (numel > 0 && !in)
        return model_fail(pm, PRUNERT_EINVAL, "prunert_model_forward: input is NULL");
    /* The host's buffer, borrowed (no release callback) and only read by the forward. */
    pr_tensor *x = pr_tensor_from_buffer(PR_FLOAT32, ndim, shape, (void *)in, NULL, NULL);
    if (!x)
        return model_fail(pm, PRUNERT_ENOMEM, "prunert_model_forward: %s", pr_last_error());
    int prev = pr_set_grad_enabled(0);
    pr_tensor *y = pr_module_forward(pm->m, x);
    pr_set_grad_enabled(prev);
    pr_tensor_release(x);
    if (!y)
        return model_fail(pm, PRUNERT_EINVAL, "prunert_model_forward: %s", pr_last_error());
    if (ndim_out)
        *ndim_out = y->ndim;
    if (shape_out)
        for (int i = 0; i < y->ndim; i++)
            shape_out[i] = y->shape[i];
    int64_t n = pr_tensor_numel(y);
    if (out && (uint64_t)n > (uint64_t)capacity) {
        pr_tensor_release(y);
        return model_fail(pm, PRUNERT_ERANGE, "prunert_model_forward: the output has %lld "
                          "elements, the buffer room for %zu", (long long)n, capacity);
    }
    if (!out) { /* the host asked for the size */
        pr_tensor_release(y);
        return n;
    }
    pr_tensor *c = pr_tensor_contiguous(y);
    pr_tensor_release(y);
    if (!c)
        return model_fail(pm, PRUNERT_ENOMEM, "prunert_model_forward: %s", pr_last_error());
    if (n > 0)
        memcpy(out, pr_tensor_f32(c), (size_t)n * sizeof(float));
    pr_tensor_release(c);
    return n;
}

const char *prunert_model_error(const prunert_model *pm) { return pm ? pm->err : "no model"; }

const char *prunert_model_meta(const prunert_model *pm) { return pm && pm->meta ? pm->meta : "{}"; }

void prunert_model_free(prunert_model *pm)
{
    if (!pm)
        return;
    pr_module_release(pm->m);
    free(pm->meta);
    free(pm);
}

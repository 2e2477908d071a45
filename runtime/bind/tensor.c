/* tensor.c (bind): the Tensor userdata and the tensor half of the Lua API.
 *
 * A Lua tensor is a box holding one pr_tensor reference (liolib's LStream idea): __gc and
 * __close release it and leave NULL behind, so closing twice is harmless and a closed tensor
 * is a clean error. Lua dims and indices are 1-based (negative counts from the end); every
 * conversion to the core's 0-based ones happens here. Temporaries made from Lua numbers and
 * tables are boxed on the Lua stack at once so that any later error frees them through the
 * collector instead of leaking (a Lua error longjmps past C frees). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "rng.h"

static const char *const dtype_names[] = {"float32", "int64", "uint8", NULL};
/* Accepted spellings; index mod 3 is the pr_dtype. */
static const char *const dtype_options[] = {"float32", "int64", "uint8", "float", "long", "byte", NULL};

/* ------------------------------------------------------------------------------------------
 * Boxes, collector pacing, errors
 * ------------------------------------------------------------------------------------------ */

static void push_tensor_metatable(lua_State *L);

/* Lua only sees the 8-byte box, so without help a loop making big tensors would let C memory
 * grow far beyond what the collector thinks it manages. We report what the core allocated as
 * collector debt, in batches so small tensors do not pay for a GC call each. Thread-local
 * rather than per state: it is only a pacing hint. */
static _Thread_local size_t gc_debt;
#define GC_BATCH (256u * 1024u)
/* Generational mode (lua.c's and prunert's default) frees a dead object that has survived one
 * minor collection only in a major one, which Lua starts when its own heap has doubled: a heap
 * of a few hundred KB of boxes can then hold hundreds of MB of dead tensors (training LeNet-5
 * grew by one input batch, 0.8 MB, per step). So a full collection also runs once tensors
 * worth GC_MAJOR_MIN (32 MB), or 64 times the Lua heap, whichever is more, were made since the last
 * one: its cost, proportional to the heap, stays a small fraction of making the tensors. */
static _Thread_local size_t gc_since_major;
#define GC_MAJOR_MIN ((size_t)32 << 20)

static void gc_account(lua_State *L, const pr_tensor *t)
{
    size_t bytes = sizeof *t;
    /* A storage with one reference was just made for this tensor; a shared one is a view
     * whose bytes were already counted. */
    if (t->storage && t->storage->refcount == 1)
        bytes += t->storage->nbytes;
    gc_debt += bytes;
    if (gc_debt >= GC_BATCH) {
        size_t kb = gc_debt / 1024;
        gc_since_major += gc_debt;
        gc_debt = 0;
        /* LUA_GCSTEP would run the collector even after collectgarbage("stop"): respect it */
        if (lua_gc(L, LUA_GCISRUNNING) != 1)
            return;
        size_t heap = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024u;
        size_t major = heap * 64 > GC_MAJOR_MIN ? heap * 64 : GC_MAJOR_MIN;
        if (gc_since_major >= major) {
            gc_since_major = 0;
            lua_gc(L, LUA_GCCOLLECT);
        } else {
            lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
        }
    }
}

/* Pushes an empty box (NULL inside) with the Tensor metatable: results go into boxes made
 * before the core call, so a failing push can never strand a core reference. */
static pr_tensor **new_box(lua_State *L)
{
    pr_tensor **b = (pr_tensor **)lua_newuserdatauv(L, sizeof *b, 0);
    *b = NULL;
    push_tensor_metatable(L);
    lua_setmetatable(L, -2);
    return b;
}

void pr_lua_push_tensor(lua_State *L, pr_tensor *t)
{
    if (!t)
        luaL_error(L, "prunert: internal error: pushing a NULL tensor");
    pr_tensor **b = new_box(L);
    *b = t;
    gc_account(L, t);
}

pr_tensor *pr_lua_test_tensor(lua_State *L, int idx)
{
    pr_tensor **b = (pr_tensor **)luaL_testudata(L, idx, PR_TENSOR_MT);
    if (!b)
        return NULL;
    if (!*b)
        luaL_argerror(L, idx, "attempt to use a closed tensor");
    return *b;
}

pr_tensor *pr_lua_check_tensor(lua_State *L, int idx)
{
    pr_tensor **b = (pr_tensor **)luaL_checkudata(L, idx, PR_TENSOR_MT);
    if (!*b)
        luaL_argerror(L, idx, "attempt to use a closed tensor");
    return *b;
}

static int core_error(lua_State *L)
{
    const char *m = pr_last_error();
    return luaL_error(L, "%s", (m && *m) ? m : "prunert: the core failed without a message");
}

pr_tensor *pr_lua_check_result(lua_State *L, pr_tensor *p)
{
    if (!p)
        core_error(L);
    return p;
}

int pr_lua_check_status(lua_State *L, int rc)
{
    if (rc < 0)
        core_error(L);
    return rc;
}

/* Pushes a core result (new reference) or raises its message. */
static int push_result(lua_State *L, pr_tensor *p)
{
    pr_lua_push_tensor(L, pr_lua_check_result(L, p));
    return 1;
}

/* Converts Lua dim d (1-based, negative from the end) for t, naming argument `arg` on error. */
static int convert_dim(lua_State *L, int arg, lua_Integer d, const pr_tensor *t, int allow_extra)
{
    int n = t->ndim + (allow_extra ? 1 : 0);
    if (d >= 1 && d <= n)
        return (int)d - 1;
    if (d <= -1 && d >= -n)
        return (int)(n + d);
    if (n == 0)
        return luaL_argerror(L, arg, lua_pushfstring(L, "dim %I out of range for a 0-d tensor", d));
    return luaL_argerror(L, arg, lua_pushfstring(L, "dim %I out of range for a %d-d tensor "
                         "(expected 1..%d or -%d..-1)", d, t->ndim, n, n));
}

int pr_lua_check_dim(lua_State *L, int arg, const pr_tensor *t, int allow_extra)
{
    return convert_dim(L, arg, luaL_checkinteger(L, arg), t, allow_extra);
}

static int opt_dim(lua_State *L, int arg, const pr_tensor *t, int def)
{
    return lua_isnoneornil(L, arg) ? def : pr_lua_check_dim(L, arg, t, 0);
}

static pr_dtype opt_dtype(lua_State *L, int arg, pr_dtype def)
{
    if (lua_isnoneornil(L, arg))
        return def;
    return (pr_dtype)(luaL_checkoption(L, arg, NULL, dtype_options) % 3);
}

static char *shape_str(const pr_tensor *t, char *buf, size_t n)
{
    return pr_shape_str(buf, n, t->ndim, t->shape);
}

/* ------------------------------------------------------------------------------------------
 * Element access without going through doubles (int64 must survive beyond 2^53)
 * ------------------------------------------------------------------------------------------ */

static char *elem_ptr(const pr_tensor *t, const int64_t *idx)
{
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++)
        off += idx[d] * t->stride[d];
    return (char *)pr_tensor_data(t) + off * (int64_t)pr_dtype_size(t->dtype);
}

/* Advances a row-major multi-index; returns 0 after the last element. */
static int next_index(const pr_tensor *t, int64_t *idx)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (++idx[d] < t->shape[d])
            return 1;
        idx[d] = 0;
    }
    return 0;
}

static double read_elem(const pr_tensor *t, const char *p)
{
    switch (t->dtype) {
    case PR_FLOAT32: return *(const float *)p;
    case PR_INT64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p;
    }
}

static void push_elem(lua_State *L, const pr_tensor *t, const char *p)
{
    switch (t->dtype) {
    case PR_FLOAT32: lua_pushnumber(L, *(const float *)p); break;
    case PR_INT64: lua_pushinteger(L, *(const int64_t *)p); break;
    default: lua_pushinteger(L, *(const uint8_t *)p); break;
    }
}

/* Checks that the value at idx fits dtype; returns a message (static) or NULL. */
static const char *value_fits(lua_State *L, int idx, pr_dtype dt)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        return "expected a number";
    if (dt == PR_FLOAT32)
        return NULL;
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint)
        return dt == PR_INT64 ? "value is not an integer (int64 tensor)" : "value is not an integer (uint8 tensor)";
    if (dt == PR_UINT8 && (v < 0 || v > 255))
        return "value out of range 0..255 (uint8 tensor)";
    return NULL;
}

/* Writes the (already checked) value at idx into p. */
static void write_elem(lua_State *L, int idx, pr_dtype dt, char *p)
{
    switch (dt) {
    case PR_FLOAT32: *(float *)p = (float)lua_tonumber(L, idx); break;
    case PR_INT64: *(int64_t *)p = (int64_t)lua_tointeger(L, idx); break;
    default: *(uint8_t *)p = (uint8_t)lua_tointeger(L, idx); break;
    }
}

/* Adds delta to every element: index results cross between 0-based C and 1-based Lua. */
static void shift_elems(pr_tensor *t, int64_t delta)
{
    if (pr_tensor_numel(t) == 0)
        return;
    int64_t idx[PR_MAX_DIMS] = {0};
    do {
        char *p = elem_ptr(t, idx);
        if (t->dtype == PR_INT64)
            *(int64_t *)p += delta;
        else if (t->dtype == PR_FLOAT32)
            *(float *)p += (float)delta;
        else
            *(uint8_t *)p = (uint8_t)(*(uint8_t *)p + delta);
    } while (next_index(t, idx));
}

/* ------------------------------------------------------------------------------------------
 * Nested Lua tables -> tensors
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    int ndim;
    int64_t shape[PR_MAX_DIMS];
    int64_t path[PR_MAX_DIMS]; /* 1-based position being checked, for messages */
    pr_dtype dt;
} nest_info;

static const char *path_str(lua_State *L, const nest_info *ni, int depth)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int d = 0; d < depth; d++) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "[%lld]", (long long)ni->path[d]);
        luaL_addstring(&b, tmp);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* Validates the table on top of the stack at nesting depth `d`; raises on any problem.
 * Nothing is allocated yet, so raising leaks nothing. */
static void nest_check(lua_State *L, int arg, nest_info *ni, int d)
{
    int64_t n = (int64_t)lua_rawlen(L, -1);
    if (n != ni->shape[d]) {
        const char *where = path_str(L, ni, d);
        luaL_argerror(L, arg, lua_pushfstring(L, "ragged nested table: sequence at %s has length %I, "
                      "expected %I", *where ? where : "top", (lua_Integer)n, (lua_Integer)ni->shape[d]));
    }
    luaL_checkstack(L, 4, "nested table too deep");
    for (int64_t i = 1; i <= n; i++) {
        ni->path[d] = i;
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (d + 1 < ni->ndim) {
            if (!lua_istable(L, -1)) {
                const char *where = path_str(L, ni, d + 1);
                luaL_argerror(L, arg, lua_pushfstring(L, "expected a table at %s, got %s",
                              where, luaL_typename(L, -2)));
            }
            nest_check(L, arg, ni, d + 1);
        } else {
            const char *bad = value_fits(L, -1, ni->dt);
            if (bad) {
                const char *where = path_str(L, ni, d + 1);
                luaL_argerror(L, arg, lua_pushfstring(L, "%s at %s, got %s", bad, where,
                              lua_type(L, -2) == LUA_TNUMBER ? lua_tostring(L, -2) : luaL_typename(L, -2)));
            }
        }
        lua_pop(L, 1);
    }
}

/* Fills a fresh contiguous tensor from the (checked) table on top; cannot raise. */
static void nest_fill(lua_State *L, const nest_info *ni, int d, char **p, size_t esz)
{
    int64_t n = ni->shape[d];
    for (int64_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (d + 1 < ni->ndim) {
            nest_fill(L, ni, d + 1, p, esz);
        } else {
            write_elem(L, -1, ni->dt, *p);
            *p += esz;
        }
        lua_pop(L, 1);
    }
}

/* A new tensor from the nested table at `arg`. */
static pr_tensor *from_table(lua_State *L, int arg, pr_dtype dt)
{
    nest_info ni;
    memset(&ni, 0, sizeof ni);
    ni.dt = dt;
    arg = lua_absindex(L, arg);
    /* The shape follows the first elements down; nest_check then holds every part to it. */
    lua_pushvalue(L, arg);
    while (lua_istable(L, -1)) {
        if (ni.ndim == PR_MAX_DIMS)
            luaL_argerror(L, arg, lua_pushfstring(L, "nested table has more than %d levels", PR_MAX_DIMS));
        int64_t n = (int64_t)lua_rawlen(L, -1);
        ni.shape[ni.ndim++] = n;
        if (n == 0)
            break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, arg);
    nest_check(L, arg, &ni, 0);
    pr_tensor *t = pr_tensor_empty(dt, ni.ndim, ni.shape);
    if (!t) {
        lua_pop(L, 1);
        core_error(L);
    }
    char *p = pr_tensor_numel(t) ? (char *)pr_tensor_data(t) : NULL;
    if (p)
        nest_fill(L, &ni, 0, &p, pr_dtype_size(dt));
    lua_pop(L, 1);
    return t;
}

pr_tensor *pr_lua_to_tensor(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        return pr_lua_check_result(L, pr_tensor_scalar(lua_tonumber(L, idx)));
    case LUA_TTABLE:
        return from_table(L, idx, PR_FLOAT32);
    case LUA_TUSERDATA: {
        pr_tensor *t = pr_lua_test_tensor(L, idx);
        if (t) {
            pr_tensor_retain(t);
            return t;
        }
    } /* fallthrough */
    default:
        luaL_typeerror(L, idx, "tensor, number or table");
        return NULL;
    }
}

/* The tensor an argument stands for; a number or table is converted and the argument slot is
 * replaced by the new boxed tensor, which owns it (so raising later leaks nothing). */
static pr_tensor *arg_tensor(lua_State *L, int idx)
{
    luaL_checkany(L, idx);
    pr_tensor *t = pr_lua_test_tensor(L, idx);
    if (t)
        return t;
    t = pr_lua_to_tensor(L, idx);
    pr_lua_push_tensor(L, t);
    lua_replace(L, idx);
    return t;
}

/* ------------------------------------------------------------------------------------------
 * Shapes given as a table or as integer varargs
 * ------------------------------------------------------------------------------------------ */

static int64_t shape_entry(lua_State *L, int arg, int vidx, int pos, int allow_neg1)
{
    int isint;
    lua_Integer v = lua_tointegerx(L, vidx, &isint);
    if (!isint)
        luaL_argerror(L, arg, lua_pushfstring(L, "size at position %d is not an integer", pos));
    if (v < 0 && !(allow_neg1 && v == -1))
        luaL_argerror(L, arg, lua_pushfstring(L, "size %I at position %d is negative", v, pos));
    return (int64_t)v;
}

/* Reads a shape at `arg` (a table, or integers from arg on). Sets *next to the argument that
 * follows it. Returns ndim. */
static int check_shape(lua_State *L, int arg, int64_t *shape, int *next, int allow_neg1)
{
    int nd = 0;
    if (lua_istable(L, arg)) {
        lua_Unsigned n = lua_rawlen(L, arg);
        if (n > PR_MAX_DIMS)
            luaL_argerror(L, arg, lua_pushfstring(L, "shape has %d dims, at most %d are supported",
                          (int)n, PR_MAX_DIMS));
        for (int i = 1; i <= (int)n; i++) {
            lua_rawgeti(L, arg, i);
            shape[nd++] = shape_entry(L, arg, -1, i, allow_neg1);
            lua_pop(L, 1);
        }
        *next = arg + 1;
    } else {
        int a = arg;
        while (lua_type(L, a) == LUA_TNUMBER) {
            if (nd == PR_MAX_DIMS)
                luaL_argerror(L, a, lua_pushfstring(L, "shape has more than %d dims", PR_MAX_DIMS));
            shape[nd] = shape_entry(L, a, a, nd + 1, allow_neg1);
            nd++;
            a++;
        }
        *next = a;
    }
    /* Guard the element count against int64 overflow before the core multiplies. */
    int64_t prod = 1;
    for (int d = 0; d < nd; d++) {
        if (shape[d] > 0 && prod > INT64_MAX / shape[d])
            luaL_argerror(L, arg, "shape has too many elements");
        if (shape[d] > 0)
            prod *= shape[d];
    }
    return nd;
}

/* Resolves one -1 in a target shape for t (reshape/view) or raises naming both shapes. */
static void resolve_shape(lua_State *L, int arg, const pr_tensor *t, int nd, int64_t *shape)
{
    int hole = -1;
    int64_t known = 1;
    char a[128], b[128];
    for (int d = 0; d < nd; d++) {
        if (shape[d] == -1) {
            if (hole >= 0)
                luaL_argerror(L, arg, "only one size may be -1");
            hole = d;
        } else {
            known *= shape[d];
        }
    }
    int64_t numel = pr_tensor_numel(t);
    if (hole >= 0) {
        if (known != 0 && numel % known == 0)
            shape[hole] = numel / known;
        else
            goto bad;
    } else if (known != numel) {
        goto bad;
    }
    return;
bad:
    pr_shape_str(b, sizeof b, nd, shape);
    luaL_argerror(L, arg, lua_pushfstring(L, "shape %s is invalid for a tensor of shape %s (%I elements)",
                  b, shape_str(t, a, sizeof a), (lua_Integer)numel));
}

static int needs_grad(const pr_tensor *t) { return t->requires_grad && pr_grad_enabled(); }

/* ------------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------------ */

static int tensor_new(lua_State *L)
{
    pr_dtype dt = opt_dtype(L, 2, PR_FLOAT32);
    switch (lua_type(L, 1)) {
    case LUA_TTABLE:
        return push_result(L, from_table(L, 1, dt));
    case LUA_TNUMBER: {
        const char *bad = value_fits(L, 1, dt);
        if (bad)
            luaL_argerror(L, 1, bad);
        return push_result(L, pr_tensor_full(dt, 0, NULL, lua_tonumber(L, 1)));
    }
    default: {
        pr_tensor *t = pr_lua_test_tensor(L, 1);
        if (!t)
            return luaL_typeerror(L, 1, "table, number or tensor");
        return push_result(L, lua_isnoneornil(L, 2) ? pr_tensor_clone(t) : pr_tensor_to(t, dt));
    }
    }
}

enum { FILL_ZEROS, FILL_ONES, FILL_EMPTY, FILL_RAND, FILL_RANDN };

static int make_filled(lua_State *L, int kind)
{
    int64_t shape[PR_MAX_DIMS];
    int next;
    int nd = check_shape(L, 1, shape, &next, 0);
    if (kind == FILL_RAND || kind == FILL_RANDN) {
        if (!lua_isnone(L, next))
            luaL_argerror(L, next, "unexpected argument (random tensors are float32)");
        return push_result(L, kind == FILL_RAND ? pr_tensor_rand(nd, shape) : pr_tensor_randn(nd, shape));
    }
    pr_dtype dt = opt_dtype(L, next, PR_FLOAT32);
    switch (kind) {
    case FILL_ZEROS: return push_result(L, pr_tensor_zeros(dt, nd, shape));
    case FILL_ONES: return push_result(L, pr_tensor_full(dt, nd, shape, 1.0));
    default: return push_result(L, pr_tensor_empty(dt, nd, shape));
    }
}

static int tensor_zeros(lua_State *L) { return make_filled(L, FILL_ZEROS); }
static int tensor_ones(lua_State *L) { return make_filled(L, FILL_ONES); }
static int tensor_empty(lua_State *L) { return make_filled(L, FILL_EMPTY); }
static int tensor_rand(lua_State *L) { return make_filled(L, FILL_RAND); }
static int tensor_randn(lua_State *L) { return make_filled(L, FILL_RANDN); }

static int tensor_full(lua_State *L)
{
    int64_t shape[PR_MAX_DIMS];
    int next;
    luaL_checktype(L, 1, LUA_TTABLE);
    int nd = check_shape(L, 1, shape, &next, 0);
    luaL_checknumber(L, 2);
    pr_dtype dt = opt_dtype(L, 3, PR_FLOAT32);
    const char *bad = value_fits(L, 2, dt);
    if (bad)
        luaL_argerror(L, 2, bad);
    return push_result(L, pr_tensor_full(dt, nd, shape, lua_tonumber(L, 2)));
}

/* randint(low, high, shape) or randint(high, shape): int64 draws from [low, high) (low = 0 by
 * default), PyTorch's bounds, so class labels 1..C are randint(1, C + 1, {n}). */
static int tensor_randint(lua_State *L)
{
    lua_Integer lo = 0, hi;
    int sarg;
    if (lua_istable(L, 2)) {
        hi = luaL_checkinteger(L, 1);
        sarg = 2;
    } else {
        lo = luaL_checkinteger(L, 1);
        hi = luaL_checkinteger(L, 2);
        luaL_checktype(L, 3, LUA_TTABLE);
        sarg = 3;
    }
    if (hi <= lo)
        return luaL_error(L, "randint: empty interval [%I, %I)", lo, hi);
    int64_t shape[PR_MAX_DIMS];
    int next;
    int nd = check_shape(L, sarg, shape, &next, 0);
    return push_result(L, pr_tensor_randint((int64_t)lo, (int64_t)hi, nd, shape));
}

static int tensor_seed(lua_State *L)
{
    pr_rng_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

static int tensor_arange(lua_State *L)
{
    double start = 0, stop, step = 1;
    int darg;
    if (lua_isnoneornil(L, 2) || lua_type(L, 2) == LUA_TSTRING) {
        stop = luaL_checknumber(L, 1);
        darg = 2;
    } else {
        start = luaL_checknumber(L, 1);
        stop = luaL_checknumber(L, 2);
        step = luaL_optnumber(L, 3, 1.0);
        darg = 4;
    }
    if (step == 0 || isnan(step))
        luaL_argerror(L, 3, "step must be nonzero");
    if (!isfinite(start) || !isfinite(stop) || !isfinite(step))
        return luaL_error(L, "arange: bounds and step must be finite");
    if ((stop - start) / step > 1e12)
        return luaL_error(L, "arange: too many elements");
    return push_result(L, pr_tensor_arange(start, stop, step, opt_dtype(L, darg, PR_FLOAT32)));
}

static int tensor_linspace(lua_State *L)
{
    double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3);
    luaL_argcheck(L, n >= 0, 3, "number of points must be >= 0");
    return push_result(L, pr_tensor_linspace(a, b, (int64_t)n));
}

static int tensor_eye(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = luaL_optinteger(L, 2, n);
    luaL_argcheck(L, n >= 0, 1, "size must be >= 0");
    luaL_argcheck(L, m >= 0, 2, "size must be >= 0");
    return push_result(L, pr_tensor_eye((int64_t)n, (int64_t)m));
}

static int tensor_is_tensor(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, PR_TENSOR_MT) != NULL);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Facts and dtypes
 * ------------------------------------------------------------------------------------------ */

static int tensor_shape(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int tensor_size(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2))
        return tensor_shape(L);
    lua_pushinteger(L, t->shape[pr_lua_check_dim(L, 2, t, 0)]);
    return 1;
}

static int tensor_stride(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_pushinteger(L, t->stride[pr_lua_check_dim(L, 2, t, 0)]);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->stride[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int tensor_dim(lua_State *L)
{
    lua_pushinteger(L, pr_lua_check_tensor(L, 1)->ndim);
    return 1;
}

static int tensor_numel(lua_State *L)
{
    lua_pushinteger(L, pr_tensor_numel(pr_lua_check_tensor(L, 1)));
    return 1;
}

static int tensor_len(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (t->ndim == 0)
        return luaL_error(L, "length of a 0-d tensor is undefined");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

static int tensor_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, pr_tensor_is_contiguous(pr_lua_check_tensor(L, 1)));
    return 1;
}

static int tensor_dtype(lua_State *L)
{
    lua_pushstring(L, dtype_names[pr_lua_check_tensor(L, 1)->dtype]);
    return 1;
}

static int convert_to(lua_State *L, pr_dtype dt)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (t->dtype == dt) {
        lua_pushvalue(L, 1);
        return 1;
    }
    return push_result(L, pr_tensor_to(t, dt));
}

static int tensor_float(lua_State *L) { return convert_to(L, PR_FLOAT32); }
static int tensor_long(lua_State *L) { return convert_to(L, PR_INT64); }
static int tensor_byte(lua_State *L) { return convert_to(L, PR_UINT8); }

static int tensor_to(lua_State *L)
{
    pr_lua_check_tensor(L, 1);
    return convert_to(L, (pr_dtype)(luaL_checkoption(L, 2, NULL, dtype_options) % 3));
}

/* ------------------------------------------------------------------------------------------
 * Views and shape changes. When autograd must see the result we go through ops.h (recorded);
 * otherwise through tensor.h (always views).
 * ------------------------------------------------------------------------------------------ */

static int tensor_reshape(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t shape[PR_MAX_DIMS];
    int next;
    int nd = check_shape(L, 2, shape, &next, 1);
    resolve_shape(L, 2, t, nd, shape);
    return push_result(L, pr_reshape(t, nd, shape));
}

static int tensor_view(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t shape[PR_MAX_DIMS];
    int next;
    int nd = check_shape(L, 2, shape, &next, 1);
    resolve_shape(L, 2, t, nd, shape);
    pr_tensor *v = pr_lua_check_result(L, pr_tensor_view(t, nd, shape));
    if (needs_grad(t)) {
        /* the layout allows a view, so the recorded reshape is a view too */
        pr_tensor_release(v);
        v = pr_reshape(t, nd, shape);
    }
    return push_result(L, v);
}

static int tensor_transpose(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d0 = pr_lua_check_dim(L, 2, t, 0), d1 = pr_lua_check_dim(L, 3, t, 0);
    return push_result(L, pr_transpose(t, d0, d1));
}

static int tensor_t(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (t->ndim > 2)
        return luaL_error(L, "t: expects a tensor with at most 2 dims, got a %d-d tensor "
                          "(use transpose)", t->ndim);
    if (t->ndim < 2) {
        lua_pushvalue(L, 1);
        return 1;
    }
    return push_result(L, pr_transpose(t, 0, 1));
}

static int tensor_permute(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int dims[PR_MAX_DIMS], seen[PR_MAX_DIMS] = {0};
    int n = 0;
    if (lua_istable(L, 2)) {
        int len = (int)luaL_len(L, 2);
        if (len != t->ndim)
            luaL_argerror(L, 2, lua_pushfstring(L, "expected %d dims for a %d-d tensor, got %d",
                          t->ndim, t->ndim, len));
        for (int i = 1; i <= len; i++) {
            lua_rawgeti(L, 2, i);
            int isint;
            lua_Integer d = lua_tointegerx(L, -1, &isint);
            if (!isint)
                luaL_argerror(L, 2, lua_pushfstring(L, "dim at position %d is not an integer", i));
            lua_pop(L, 1);
            dims[n++] = convert_dim(L, 2, d, t, 0);
        }
    } else {
        int top = lua_gettop(L);
        if (top - 1 != t->ndim)
            return luaL_error(L, "permute: expected %d dims for a %d-d tensor, got %d",
                              t->ndim, t->ndim, top - 1);
        for (int a = 2; a <= top; a++)
            dims[n++] = pr_lua_check_dim(L, a, t, 0);
    }
    for (int i = 0; i < n; i++) {
        if (seen[dims[i]]++)
            return luaL_error(L, "permute: dim %d repeated; dims must be a permutation of 1..%d",
                              dims[i] + 1, t->ndim);
    }
    return push_result(L, pr_permute(t, dims));
}

static int tensor_narrow(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = pr_lua_check_dim(L, 2, t, 0);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    int64_t size = t->shape[d];
    if (start < 1 || len < 0 || start - 1 > size - len)
        return luaL_error(L, "narrow: start %I and length %I out of range for dim %d of size %I",
                          start, len, d + 1, (lua_Integer)size);
    return push_result(L, pr_narrow(t, d, (int64_t)start - 1, (int64_t)len));
}

/* Converts a 1-based (negative from the end) index for a dim of `size`, or raises. */
static int64_t check_index(lua_State *L, int arg, lua_Integer i, int d, int64_t size)
{
    lua_Integer j = i < 0 ? i + size + 1 : i;
    if (j < 1 || j > size)
        luaL_argerror(L, arg, lua_pushfstring(L, "index %I out of range for dim %d of size %I",
                      i, d + 1, (lua_Integer)size));
    return (int64_t)j - 1;
}

static int tensor_select(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = pr_lua_check_dim(L, 2, t, 0);
    int64_t i = check_index(L, 3, luaL_checkinteger(L, 3), d, t->shape[d]);
    if (!needs_grad(t))
        return push_result(L, pr_tensor_select(t, d, i));
    pr_tensor *n = pr_lua_check_result(L, pr_narrow(t, d, i, 1));
    pr_lua_push_tensor(L, n);
    int64_t shape[PR_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < t->ndim; k++)
        if (k != d)
            shape[nd++] = t->shape[k];
    return push_result(L, pr_reshape(n, nd, shape));
}

static int tensor_squeeze(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = opt_dim(L, 2, t, -1);
    if (!needs_grad(t))
        return push_result(L, pr_tensor_squeeze(t, d));
    int64_t shape[PR_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < t->ndim; k++)
        if (t->shape[k] != 1 || (d >= 0 && k != d))
            shape[nd++] = t->shape[k];
    return push_result(L, pr_reshape(t, nd, shape));
}

static int tensor_unsqueeze(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = pr_lua_check_dim(L, 2, t, 1);
    if (t->ndim == PR_MAX_DIMS)
        return luaL_error(L, "unsqueeze: tensor already has %d dims", PR_MAX_DIMS);
    if (!needs_grad(t))
        return push_result(L, pr_tensor_unsqueeze(t, d));
    int64_t shape[PR_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k <= t->ndim; k++) {
        if (k == d)
            shape[nd++] = 1;
        if (k < t->ndim)
            shape[nd++] = t->shape[k];
    }
    return push_result(L, pr_reshape(t, nd, shape));
}

static int tensor_expand(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t shape[PR_MAX_DIMS];
    int next;
    int nd = check_shape(L, 2, shape, &next, 1);
    if (nd < t->ndim)
        return luaL_error(L, "expand: target has %d dims, fewer than the tensor's %d", nd, t->ndim);
    for (int k = 0; k < nd; k++)
        if (shape[k] == -1) {
            int j = k - (nd - t->ndim);
            if (j < 0)
                return luaL_error(L, "expand: -1 is not allowed for a new leading dim");
            shape[k] = t->shape[j];
        }
    if (!needs_grad(t))
        return push_result(L, pr_tensor_expand(t, nd, shape));
    /* Recorded path: adding zeros broadcasts with a gradient that sums back. */
    pr_tensor *z = pr_lua_check_result(L, pr_tensor_zeros(PR_FLOAT32, nd, shape));
    pr_lua_push_tensor(L, z);
    return push_result(L, pr_add(t, z));
}

static int tensor_contiguous(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (pr_tensor_is_contiguous(t)) {
        lua_pushvalue(L, 1);
        return 1;
    }
    /* multiplying by one is exact and recorded, and its result is a fresh contiguous tensor */
    return push_result(L, needs_grad(t) ? pr_mul_scalar(t, 1.0) : pr_tensor_contiguous(t));
}

static int tensor_clone(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    return push_result(L, needs_grad(t) ? pr_mul_scalar(t, 1.0) : pr_tensor_clone(t));
}

/* Collects the tensors of the list at `arg` into a GC-owned array pushed on the stack. */
static pr_tensor **check_list(lua_State *L, int arg, int *n, int *any_grad)
{
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_Integer len = luaL_len(L, arg);
    if (len < 1)
        luaL_argerror(L, arg, "expected a non-empty list of tensors");
    if (len > 1 << 20)
        luaL_argerror(L, arg, "list too long");
    pr_tensor **ts = (pr_tensor **)lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
    *any_grad = 0;
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, arg, i);
        ts[i - 1] = pr_lua_test_tensor(L, -1);
        if (!ts[i - 1])
            luaL_argerror(L, arg, lua_pushfstring(L, "element %I is a %s, not a tensor", i, luaL_typename(L, -1)));
        *any_grad |= needs_grad(ts[i - 1]);
        lua_pop(L, 1); /* the list keeps it alive */
    }
    *n = (int)len;
    return ts;
}

static int tensor_cat(lua_State *L)
{
    int n, g;
    lua_settop(L, 2); /* the list array is pushed at 3 */
    pr_tensor **ts = check_list(L, 1, &n, &g);
    int d = lua_isnoneornil(L, 2) ? 0 : pr_lua_check_dim(L, 2, ts[0], 0);
    return push_result(L, pr_cat(ts, n, d));
}

static int tensor_stack(lua_State *L)
{
    int n, g;
    lua_settop(L, 2); /* the list array is pushed at 3 */
    pr_tensor **ts = check_list(L, 1, &n, &g);
    int d = lua_isnoneornil(L, 2) ? 0 : pr_lua_check_dim(L, 2, ts[0], 1);
    if (ts[0]->ndim == PR_MAX_DIMS)
        return luaL_error(L, "stack: tensors already have %d dims", PR_MAX_DIMS);
    if (!g)
        return push_result(L, pr_stack(ts, n, d));
    /* Recorded path: unsqueeze each through reshape, then cat. */
    pr_tensor **us = (pr_tensor **)lua_newuserdatauv(L, (size_t)n * sizeof *us, 0);
    for (int i = 0; i < n; i++) {
        int64_t shape[PR_MAX_DIMS];
        int nd = 0;
        for (int k = 0; k <= ts[i]->ndim; k++) {
            if (k == d)
                shape[nd++] = 1;
            if (k < ts[i]->ndim)
                shape[nd++] = ts[i]->shape[k];
        }
        us[i] = pr_lua_check_result(L, pr_reshape(ts[i], nd, shape));
        pr_lua_push_tensor(L, us[i]); /* the box owns it; us[] only borrows */
    }
    return push_result(L, pr_cat(us, n, d));
}

/* A fresh 0-based int64 index tensor from a list or tensor of 1-based indices into a dim of
 * `size`, boxed on the stack. */
static pr_tensor *index_arg(lua_State *L, int arg, int d, int64_t size)
{
    pr_tensor *src = pr_lua_test_tensor(L, arg);
    if (!src && !lua_istable(L, arg))
        luaL_typeerror(L, arg, "tensor or table of indices");
    int64_t n;
    if (src) {
        if (src->ndim > 1)
            luaL_argerror(L, arg, lua_pushfstring(L, "index tensor must be 1-d, got %d-d", src->ndim));
        n = pr_tensor_numel(src);
    } else {
        n = (int64_t)lua_rawlen(L, arg);
    }
    pr_tensor *idx = pr_lua_check_result(L, pr_tensor_empty(PR_INT64, 1, &n));
    pr_lua_push_tensor(L, idx);
    int64_t *out = n ? pr_tensor_i64(idx) : NULL;
    int64_t pos[PR_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        double v;
        lua_Integer iv;
        if (src) {
            const char *p = elem_ptr(src, pos);
            next_index(src, pos);
            if (src->dtype == PR_INT64) {
                iv = *(const int64_t *)p;
            } else {
                v = read_elem(src, p);
                if (v != floor(v) || fabs(v) > 9e15)
                    luaL_argerror(L, arg, lua_pushfstring(L, "index %f at position %I is not an integer",
                                  v, (lua_Integer)k + 1));
                iv = (lua_Integer)v;
            }
        } else {
            lua_rawgeti(L, arg, (lua_Integer)k + 1);
            int isint;
            iv = lua_tointegerx(L, -1, &isint);
            if (!isint)
                luaL_argerror(L, arg, lua_pushfstring(L, "index at position %I is not an integer",
                              (lua_Integer)k + 1));
            lua_pop(L, 1);
        }
        if (iv < 1 || iv > size)
            luaL_argerror(L, arg, lua_pushfstring(L, "index %I out of range for dim %d of size %I",
                          iv, d + 1, (lua_Integer)size));
        out[k] = (int64_t)iv - 1;
    }
    return idx;
}

static int tensor_index_select(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = pr_lua_check_dim(L, 2, t, 0);
    luaL_checkany(L, 3);
    pr_tensor *idx = index_arg(L, 3, d, t->shape[d]);
    return push_result(L, pr_index_select(t, d, idx));
}

static int tensor_masked_select(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    pr_tensor *m = arg_tensor(L, 2);
    return push_result(L, pr_masked_select(t, m));
}

/* ------------------------------------------------------------------------------------------
 * Math
 * ------------------------------------------------------------------------------------------ */

static int binary(lua_State *L, pr_tensor *(*fn)(pr_tensor *, pr_tensor *))
{
    pr_tensor *a = arg_tensor(L, 1);
    pr_tensor *b = arg_tensor(L, 2);
    return push_result(L, fn(a, b));
}

static int tensor_add(lua_State *L) { return binary(L, pr_add); }
static int tensor_sub(lua_State *L) { return binary(L, pr_sub); }
static int tensor_mul(lua_State *L) { return binary(L, pr_mul); }
static int tensor_div(lua_State *L) { return binary(L, pr_div); }
static int tensor_matmul(lua_State *L) { return binary(L, pr_matmul); }

static int tensor_pow(lua_State *L)
{
    if (pr_lua_test_tensor(L, 1) && lua_type(L, 2) == LUA_TNUMBER)
        return push_result(L, pr_pow_scalar(pr_lua_check_tensor(L, 1), lua_tonumber(L, 2)));
    return binary(L, pr_pow);
}

static int unary(lua_State *L, pr_tensor *(*fn)(pr_tensor *))
{
    return push_result(L, fn(pr_lua_check_tensor(L, 1)));
}

static int tensor_neg(lua_State *L) { return unary(L, pr_neg); }
static int tensor_abs(lua_State *L) { return unary(L, pr_abs); }
static int tensor_sign(lua_State *L) { return unary(L, pr_sign); }
static int tensor_sqrt(lua_State *L) { return unary(L, pr_sqrt); }
static int tensor_exp(lua_State *L) { return unary(L, pr_exp); }
static int tensor_log(lua_State *L) { return unary(L, pr_log); }
static int tensor_tanh(lua_State *L) { return unary(L, pr_tanh); }
static int tensor_sigmoid(lua_State *L) { return unary(L, pr_sigmoid); }
static int tensor_relu(lua_State *L) { return unary(L, pr_relu); }

static int tensor_clamp(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    double lo = lua_isnoneornil(L, 2) ? -HUGE_VAL : luaL_checknumber(L, 2);
    double hi = lua_isnoneornil(L, 3) ? HUGE_VAL : luaL_checknumber(L, 3);
    if (lo > hi)
        return luaL_error(L, "clamp: min %f is greater than max %f", lo, hi);
    return push_result(L, pr_clamp(t, lo, hi));
}

static int compare(lua_State *L, pr_cmp op)
{
    pr_tensor *a = arg_tensor(L, 1);
    pr_tensor *b = arg_tensor(L, 2);
    return push_result(L, pr_compare(a, b, op));
}

static int tensor_eq(lua_State *L) { return compare(L, PR_CMP_EQ); }
static int tensor_ne(lua_State *L) { return compare(L, PR_CMP_NE); }
static int tensor_lt(lua_State *L) { return compare(L, PR_CMP_LT); }
static int tensor_le(lua_State *L) { return compare(L, PR_CMP_LE); }
static int tensor_gt(lua_State *L) { return compare(L, PR_CMP_GT); }
static int tensor_ge(lua_State *L) { return compare(L, PR_CMP_GE); }

static int tensor_where(lua_State *L)
{
    pr_tensor *c = arg_tensor(L, 1);
    pr_tensor *a = arg_tensor(L, 2);
    pr_tensor *b = arg_tensor(L, 3);
    return push_result(L, pr_where(c, a, b));
}

/* ---- in place: return self ---- */

static int tensor_add_(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    pr_tensor *x = arg_tensor(L, 2);
    double alpha = luaL_optnumber(L, 3, 1.0);
    pr_lua_check_status(L, pr_add_(t, x, alpha));
    lua_settop(L, 1);
    return 1;
}

static int tensor_mul_(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (lua_type(L, 2) == LUA_TNUMBER)
        pr_lua_check_status(L, pr_scale_(t, lua_tonumber(L, 2)));
    else
        pr_lua_check_status(L, pr_mul_(t, arg_tensor(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int tensor_fill_(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    luaL_checknumber(L, 2);
    const char *bad = value_fits(L, 2, t->dtype);
    if (bad)
        luaL_argerror(L, 2, bad);
    pr_lua_check_status(L, pr_tensor_fill_(t, lua_tonumber(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int tensor_zero_(lua_State *L)
{
    pr_lua_check_status(L, pr_tensor_fill_(pr_lua_check_tensor(L, 1), 0.0));
    lua_settop(L, 1);
    return 1;
}

static int tensor_copy_(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    pr_tensor *src = arg_tensor(L, 2);
    pr_lua_check_status(L, pr_tensor_copy_(t, src));
    lua_settop(L, 1);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Reductions and selection
 * ------------------------------------------------------------------------------------------ */

static int reduce(lua_State *L, pr_tensor *(*fn)(pr_tensor *, int, int))
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = opt_dim(L, 2, t, PR_ALL);
    return push_result(L, fn(t, d, lua_toboolean(L, 3)));
}

static int tensor_sum(lua_State *L) { return reduce(L, pr_sum); }
static int tensor_mean(lua_State *L) { return reduce(L, pr_mean); }

/* Pushes an index result converted to 1-based. */
static void push_indices(lua_State *L, pr_tensor *idx)
{
    pr_lua_push_tensor(L, idx);
    shift_elems(idx, 1);
}

static int tensor_argmax(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = opt_dim(L, 2, t, PR_ALL);
    push_indices(L, pr_lua_check_result(L, pr_argmax(t, d, lua_toboolean(L, 3))));
    return 1;
}

static int tensor_argmin(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int d = opt_dim(L, 2, t, PR_ALL);
    push_indices(L, pr_lua_check_result(L, pr_argmin(t, d, lua_toboolean(L, 3))));
    return 1;
}

/* max/min: without a dim the value over everything; with one, values and 1-based indices. */
static int extreme(lua_State *L, int is_max)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2))
        return push_result(L, is_max ? pr_max(t, PR_ALL, 0) : pr_min(t, PR_ALL, 0));
    int d = pr_lua_check_dim(L, 2, t, 0);
    int keep = lua_toboolean(L, 3);
    push_result(L, is_max ? pr_max(t, d, keep) : pr_min(t, d, keep));
    push_indices(L, pr_lua_check_result(L, is_max ? pr_argmax(t, d, keep) : pr_argmin(t, d, keep)));
    return 2;
}

static int tensor_max(lua_State *L) { return extreme(L, 1); }
static int tensor_min(lua_State *L) { return extreme(L, 0); }

static int tensor_norm(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    double p = 2.0;
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *s = lua_tostring(L, 2);
        if (strcmp(s, "inf") == 0)
            p = INFINITY;
        else if (strcmp(s, "fro") == 0)
            p = 2.0;
        else
            return luaL_argerror(L, 2, lua_pushfstring(L, "unknown norm '%s' (use a number, 'inf' or 'fro')", s));
    } else if (!lua_isnoneornil(L, 2)) {
        p = luaL_checknumber(L, 2);
        luaL_argcheck(L, p > 0, 2, "p must be > 0 (or 'inf')");
    }
    int d = opt_dim(L, 3, t, PR_ALL);
    return push_result(L, pr_norm(t, p, d, lua_toboolean(L, 4)));
}

/* Two-output core calls (values, indices): both boxes exist before the call; on success the
 * indices become 1-based. Returns 2 with the boxes on top, or raises. */
static int push_pair(lua_State *L, pr_tensor **bv, pr_tensor **bi, int rc, pr_tensor *v, pr_tensor *i)
{
    if (rc < 0 || !v || !i) {
        pr_tensor_release(v);
        pr_tensor_release(i);
        if (rc >= 0)
            pr_error("prunert: the core returned no result");
        return core_error(L);
    }
    *bv = v;
    *bi = i;
    shift_elems(i, 1);
    gc_account(L, v);
    gc_account(L, i);
    return 2;
}

static int last_dim(const pr_tensor *t) { return t->ndim > 0 ? t->ndim - 1 : 0; }

static int tensor_sort(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (t->ndim == 0)
        return luaL_error(L, "sort: expects a tensor with at least 1 dim");
    int d = opt_dim(L, 2, t, last_dim(t));
    int desc = lua_toboolean(L, 3);
    pr_tensor **bv = new_box(L), **bi = new_box(L), *v = NULL, *i = NULL;
    int rc = pr_sort(t, d, desc, &v, &i);
    return push_pair(L, bv, bi, rc, v, i);
}

static int tensor_topk(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    if (t->ndim == 0)
        return luaL_error(L, "topk: expects a tensor with at least 1 dim");
    int d = opt_dim(L, 3, t, last_dim(t));
    int largest = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
    if (k < 0 || k > t->shape[d])
        return luaL_argerror(L, 2, lua_pushfstring(L, "k=%I out of range for dim %d of size %I",
                             k, d + 1, (lua_Integer)t->shape[d]));
    pr_tensor **bv = new_box(L), **bi = new_box(L), *v = NULL, *i = NULL;
    int rc = pr_topk(t, (int64_t)k, d, largest, &v, &i);
    return push_pair(L, bv, bi, rc, v, i);
}

static int tensor_kthvalue(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    lua_Integer k = luaL_checkinteger(L, 2);
    if (t->ndim == 0)
        return luaL_error(L, "kthvalue: expects a tensor with at least 1 dim");
    int d = opt_dim(L, 3, t, last_dim(t));
    if (k < 1 || k > t->shape[d])
        return luaL_argerror(L, 2, lua_pushfstring(L, "k=%I out of range for dim %d of size %I",
                             k, d + 1, (lua_Integer)t->shape[d]));
    int keep = lua_toboolean(L, 4);
    pr_tensor **bv = new_box(L), **bi = new_box(L), *v = NULL, *i = NULL;
    int rc = pr_kthvalue(t, (int64_t)k, d, keep, &v, &i);
    return push_pair(L, bv, bi, rc, v, i);
}

static int tensor_quantile(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    double q = luaL_checknumber(L, 2);
    if (!(q >= 0.0 && q <= 1.0))
        return luaL_argerror(L, 2, lua_pushfstring(L, "q must be in [0, 1], got %f", q));
    int d = opt_dim(L, 3, t, PR_ALL);
    return push_result(L, pr_quantile(t, q, d, lua_toboolean(L, 4)));
}

/* ------------------------------------------------------------------------------------------
 * Element access
 * ------------------------------------------------------------------------------------------ */

static void check_indices(lua_State *L, const pr_tensor *t, int first, int nidx, int64_t *idx,
                          const char *fname)
{
    if (nidx != t->ndim)
        luaL_error(L, "%s: expected %d indices for a %d-d tensor, got %d", fname, t->ndim, t->ndim, nidx);
    for (int d = 0; d < nidx; d++)
        idx[d] = check_index(L, first + d, luaL_checkinteger(L, first + d), d, t->shape[d]);
}

static int tensor_get(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t idx[PR_MAX_DIMS];
    check_indices(L, t, 2, lua_gettop(L) - 1, idx, "get");
    push_elem(L, t, elem_ptr(t, idx));
    return 1;
}

static int tensor_set(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int top = lua_gettop(L);
    if (top < 2)
        return luaL_error(L, "set: expected %d indices and a value", t->ndim);
    int64_t idx[PR_MAX_DIMS];
    check_indices(L, t, 2, top - 2, idx, "set");
    luaL_checknumber(L, top);
    const char *bad = value_fits(L, top, t->dtype);
    if (bad)
        luaL_argerror(L, top, bad);
    write_elem(L, top, t->dtype, elem_ptr(t, idx));
    pr_tensor_written(t);
    lua_settop(L, 1);
    return 1;
}

static int tensor_item(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t n = pr_tensor_numel(t);
    if (n != 1)
        return luaL_error(L, "item: tensor has %I elements, expected exactly 1", (lua_Integer)n);
    int64_t idx[PR_MAX_DIMS] = {0};
    push_elem(L, t, elem_ptr(t, idx));
    return 1;
}

static void totable_rec(lua_State *L, const pr_tensor *t, int64_t *idx, int d)
{
    luaL_checkstack(L, 3, "tensor too deep");
    lua_createtable(L, (int)(t->shape[d] > INT_MAX ? INT_MAX : t->shape[d]), 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        idx[d] = i;
        if (d + 1 < t->ndim)
            totable_rec(L, t, idx, d + 1);
        else
            push_elem(L, t, elem_ptr(t, idx));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    idx[d] = 0;
}

static int tensor_totable(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    int64_t idx[PR_MAX_DIMS] = {0};
    if (t->ndim == 0)
        push_elem(L, t, elem_ptr(t, idx));
    else
        totable_rec(L, t, idx, 0);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Autograd
 * ------------------------------------------------------------------------------------------ */

static int tensor_requires_grad(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (lua_isnone(L, 2)) {
        lua_pushboolean(L, t->requires_grad);
        return 1;
    }
    int on = lua_toboolean(L, 2);
    if (on && t->dtype != PR_FLOAT32)
        return luaL_error(L, "requires_grad: only float32 tensors can require grad (this one is %s)",
                          dtype_names[t->dtype]);
    if (t->grad_fn && !on)
        return luaL_error(L, "requires_grad: cannot turn off on a non-leaf tensor (use detach())");
    t->requires_grad = on;
    lua_settop(L, 1);
    return 1;
}

static int tensor_grad(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (!t->grad) {
        lua_pushnil(L);
        return 1;
    }
    pr_tensor_retain(t->grad);
    pr_lua_push_tensor(L, t->grad);
    return 1;
}

static int tensor_is_leaf(lua_State *L)
{
    lua_pushboolean(L, pr_lua_check_tensor(L, 1)->grad_fn == NULL);
    return 1;
}

static int tensor_grad_fn(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    if (t->grad_fn)
        lua_pushstring(L, pr_ops[t->grad_fn->op].name);
    else
        lua_pushnil(L);
    return 1;
}

static int tensor_backward(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    pr_tensor *g = lua_isnoneornil(L, 2) ? NULL : arg_tensor(L, 2);
    pr_lua_check_status(L, pr_backward(t, g));
    return 0;
}

static int tensor_detach(lua_State *L)
{
    return push_result(L, pr_tensor_alias(pr_lua_check_tensor(L, 1)));
}

/* Drops .grad (PyTorch's set_to_none): the next backward starts a fresh buffer, so a
 * gradient someone still holds is never overwritten behind their back. */
static int tensor_zero_grad(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    pr_tensor_release(t->grad);
    t->grad = NULL;
    lua_settop(L, 1);
    return 1;
}

static int tensor_set_grad_enabled(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, pr_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int tensor_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, pr_grad_enabled());
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * tostring, PyTorch's layout: edge items 3, summarize past 1000 elements, line width 80
 * ------------------------------------------------------------------------------------------ */

typedef struct {
    luaL_Buffer *B;
    const pr_tensor *t;
    int sci;
    int width;
    int summarize;
    int64_t idx[PR_MAX_DIMS];
} printer;

enum { EDGE = 3, SUMMARIZE_OVER = 1000, LINE_WIDTH = 80 };

static int format_raw(char *buf, size_t n, const pr_tensor *t, const char *p, int sci)
{
    switch (t->dtype) {
    case PR_FLOAT32: {
        double v = *(const float *)p;
        if (isnan(v))
            return snprintf(buf, n, "nan");
        if (isinf(v))
            return snprintf(buf, n, v > 0 ? "inf" : "-inf");
        return snprintf(buf, n, sci ? "%.4e" : "%.4f", v);
    }
    case PR_INT64: return snprintf(buf, n, "%lld", (long long)*(const int64_t *)p);
    default: return snprintf(buf, n, "%u", (unsigned)*(const uint8_t *)p);
    }
}

static void put_elem(printer *P)
{
    char tmp[64];
    int len = format_raw(tmp, sizeof tmp, P->t, elem_ptr(P->t, P->idx), P->sci);
    for (int k = len; k < P->width; k++)
        luaL_addchar(P->B, ' ');
    luaL_addstring(P->B, tmp);
}

static void put_spaces(printer *P, int n)
{
    for (int k = 0; k < n; k++)
        luaL_addchar(P->B, ' ');
}

static void print_dim(printer *P, int d, int indent)
{
    const pr_tensor *t = P->t;
    int64_t n = t->shape[d];
    int skip = P->summarize && n > 2 * EDGE;
    int last = d == t->ndim - 1;
    int per_line = (LINE_WIDTH - indent) / (P->width + 2);
    if (per_line < 1)
        per_line = 1;
    int64_t item = 0;
    luaL_addchar(P->B, '[');
    for (int64_t i = 0; i < n; i++, item++) {
        int dots = skip && i == EDGE;
        if (item > 0) {
            if (last) {
                if (item % per_line == 0) {
                    luaL_addstring(P->B, ",\n");
                    put_spaces(P, indent + 1);
                } else {
                    luaL_addstring(P->B, ", ");
                }
            } else {
                luaL_addchar(P->B, ',');
                for (int k = 0; k < t->ndim - 1 - d; k++)
                    luaL_addchar(P->B, '\n');
                put_spaces(P, indent + 1);
            }
        }
        if (dots) {
            luaL_addstring(P->B, last ? " ..." : "...");
            i = n - EDGE - 1;
            continue;
        }
        P->idx[d] = i;
        if (last)
            put_elem(P);
        else
            print_dim(P, d + 1, indent + 1);
    }
    P->idx[d] = 0;
    luaL_addchar(P->B, ']');
}

static int tensor_tostring(lua_State *L)
{
    pr_tensor **b = (pr_tensor **)luaL_checkudata(L, 1, PR_TENSOR_MT);
    if (!*b) {
        lua_pushliteral(L, "tensor (closed)");
        return 1;
    }
    const pr_tensor *t = *b;
    int64_t numel = pr_tensor_numel(t);
    printer P;
    memset(&P, 0, sizeof P);
    P.t = t;
    P.summarize = numel > SUMMARIZE_OVER;
    /* Scientific notation when fixed point would hide magnitudes, as PyTorch decides. */
    if (t->dtype == PR_FLOAT32 && numel > 0) {
        double hi = 0, lo = HUGE_VAL;
        int64_t idx[PR_MAX_DIMS] = {0};
        do {
            double v = fabs(*(const float *)elem_ptr(t, idx));
            if (isfinite(v) && v > 0) {
                if (v > hi)
                    hi = v;
                if (v < lo)
                    lo = v;
            }
        } while (next_index(t, idx));
        P.sci = hi >= 1e8 || (hi > 0 && lo < 1e-4);
    }
    if (numel > 0) {
        int64_t idx[PR_MAX_DIMS] = {0};
        char tmp[64];
        do {
            int len = format_raw(tmp, sizeof tmp, t, elem_ptr(t, idx), P.sci);
            if (len > P.width)
                P.width = len;
        } while (next_index(t, idx));
    }
    luaL_Buffer B;
    luaL_buffinit(L, &B);
    P.B = &B;
    luaL_addstring(&B, "tensor(");
    if (t->ndim == 0)
        put_elem(&P);
    else if (numel == 0)
        luaL_addstring(&B, "[]");
    else
        print_dim(&P, 0, 7);
    if (t->grad_fn) {
        luaL_addstring(&B, ", grad_fn=<");
        luaL_addstring(&B, pr_ops[t->grad_fn->op].name);
        luaL_addchar(&B, '>');
    } else if (t->requires_grad) {
        luaL_addstring(&B, ", requires_grad=true");
    }
    char shp[160], line[200];
    snprintf(line, sizeof line, ")\n[%s tensor of shape %s]", dtype_names[t->dtype],
             shape_str(t, shp, sizeof shp));
    luaL_addstring(&B, line);
    luaL_pushresult(&B);
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------------ */

static int tensor_gc(lua_State *L)
{
    pr_tensor **b = (pr_tensor **)luaL_checkudata(L, 1, PR_TENSOR_MT);
    pr_tensor_release(*b);
    *b = NULL;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Registration
 * ------------------------------------------------------------------------------------------ */

static const luaL_Reg tensor_methods[] = {
    {"shape", tensor_shape}, {"size", tensor_size}, {"stride", tensor_stride},
    {"dim", tensor_dim}, {"numel", tensor_numel}, {"is_contiguous", tensor_is_contiguous},
    {"dtype", tensor_dtype}, {"float", tensor_float}, {"long", tensor_long},
    {"byte", tensor_byte}, {"to", tensor_to},
    {"reshape", tensor_reshape}, {"view", tensor_view}, {"transpose", tensor_transpose},
    {"t", tensor_t}, {"permute", tensor_permute}, {"narrow", tensor_narrow},
    {"select", tensor_select}, {"squeeze", tensor_squeeze}, {"unsqueeze", tensor_unsqueeze},
    {"expand", tensor_expand}, {"contiguous", tensor_contiguous}, {"clone", tensor_clone},
    {"index_select", tensor_index_select}, {"masked_select", tensor_masked_select},
    {"add", tensor_add}, {"sub", tensor_sub}, {"mul", tensor_mul}, {"div", tensor_div},
    {"pow", tensor_pow}, {"neg", tensor_neg}, {"abs", tensor_abs}, {"sign", tensor_sign},
    {"sqrt", tensor_sqrt}, {"exp", tensor_exp}, {"log", tensor_log}, {"tanh", tensor_tanh},
    {"sigmoid", tensor_sigmoid}, {"relu", tensor_relu}, {"clamp", tensor_clamp},
    {"eq", tensor_eq}, {"ne", tensor_ne}, {"lt", tensor_lt}, {"le", tensor_le},
    {"gt", tensor_gt}, {"ge", tensor_ge},
    {"add_", tensor_add_}, {"mul_", tensor_mul_}, {"fill_", tensor_fill_},
    {"zero_", tensor_zero_}, {"copy_", tensor_copy_},
    {"sum", tensor_sum}, {"mean", tensor_mean}, {"max", tensor_max}, {"min", tensor_min},
    {"argmax", tensor_argmax}, {"argmin", tensor_argmin}, {"norm", tensor_norm},
    {"sort", tensor_sort}, {"topk", tensor_topk}, {"kthvalue", tensor_kthvalue},
    {"quantile", tensor_quantile}, {"matmul", tensor_matmul}, {"mm", tensor_matmul},
    {"get", tensor_get}, {"set", tensor_set}, {"item", tensor_item}, {"totable", tensor_totable},
    {"requires_grad", tensor_requires_grad}, {"grad", tensor_grad}, {"is_leaf", tensor_is_leaf},
    {"grad_fn", tensor_grad_fn}, {"backward", tensor_backward}, {"detach", tensor_detach},
    {"zero_grad", tensor_zero_grad},
    {NULL, NULL}
};

static const luaL_Reg tensor_metamethods[] = {
    {"__add", tensor_add}, {"__sub", tensor_sub}, {"__mul", tensor_mul}, {"__div", tensor_div},
    {"__pow", tensor_pow}, {"__unm", tensor_neg}, {"__len", tensor_len},
    {"__tostring", tensor_tostring}, {"__gc", tensor_gc}, {"__close", tensor_gc},
    {NULL, NULL}
};

/* Library-level functions that are not methods. */
static const luaL_Reg tensor_functions[] = {
    {"tensor", tensor_new}, {"zeros", tensor_zeros}, {"ones", tensor_ones},
    {"full", tensor_full}, {"empty", tensor_empty}, {"arange", tensor_arange},
    {"linspace", tensor_linspace}, {"eye", tensor_eye}, {"rand", tensor_rand},
    {"randn", tensor_randn}, {"randint", tensor_randint}, {"seed", tensor_seed},
    {"cat", tensor_cat}, {"stack", tensor_stack}, {"where", tensor_where},
    {"is_tensor", tensor_is_tensor}, {"set_grad_enabled", tensor_set_grad_enabled},
    {"is_grad_enabled", tensor_is_grad_enabled},
    {NULL, NULL}
};

/* Pushes the Tensor metatable, creating it on first use so any part (or a C host that never
 * opened this one) can push tensors safely. */
static void push_tensor_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, PR_TENSOR_MT)) {
        luaL_setfuncs(L, tensor_metamethods, 0);
        lua_newtable(L);
        luaL_setfuncs(L, tensor_methods, 0);
        lua_setfield(L, -2, "__index");
    }
}

void pr_open_tensor(lua_State *L, int lib)
{
    lib = lua_absindex(L, lib);
    push_tensor_metatable(L);
    lua_getfield(L, -1, "__index");
    /* Methods double as functions: pr.sum(t, 1) == t:sum(1). Lua sugar may add methods to
     * pr.Tensor (the methods table). */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, lib);
    }
    lua_setfield(L, lib, "Tensor");
    lua_pop(L, 1);
    lua_pushvalue(L, lib);
    luaL_setfuncs(L, tensor_functions, 0);
    lua_pop(L, 1);
}

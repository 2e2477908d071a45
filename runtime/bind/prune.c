/* prune.c (bind): the `prune_core` table of the library, Lua's access to the pruning hot
 * paths of core/prune (scores, thresholds, masks). The Lua pruning policy (lua/prunert/prune)
 * composes these; dims are 1-based here, as everywhere in Lua. Tensor arguments are borrowed
 * from the Lua stack; every tensor returned is a new userdata owning its reference. Scratch
 * memory is Lua userdata so that a raised error frees it too. */
#include <math.h>
#include <string.h>

#include "bind.h"
#include "prune/prune.h"

/* Pushes a new tensor result or raises the core's message. */
static int push_new(lua_State *L, pr_tensor *t)
{
    pr_lua_push_tensor(L, pr_lua_check_result(L, t));
    return 1;
}

/* A 1-based Lua dim (negative from the end) for an ndim-d shape -> 0-based, or raises. */
static int shape_dim(lua_State *L, int arg, int ndim, lua_Integer def)
{
    lua_Integer d = luaL_optinteger(L, arg, def);
    if (d >= 1 && d <= ndim)
        return (int)d - 1;
    if (d <= -1 && d >= -ndim)
        return (int)(ndim + d);
    return luaL_argerror(L, arg, lua_pushfstring(L, "dim %I out of range for %d dims "
                         "(expected 1..%d or -%d..-1)", d, ndim, ndim, ndim));
}

/* A shape given as a tensor (its shape is taken) or a table of sizes; returns ndim. */
static int check_shape_arg(lua_State *L, int arg, int64_t *shape)
{
    pr_tensor *t = pr_lua_test_tensor(L, arg);
    if (t) {
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        return t->ndim;
    }
    luaL_argexpected(L, lua_istable(L, arg), arg, "tensor or table of sizes");
    lua_Integer n = luaL_len(L, arg);
    if (n < 1 || n > PR_MAX_DIMS)
        luaL_argerror(L, arg, lua_pushfstring(L, "shape must have 1 to %d sizes, got %I",
                                              PR_MAX_DIMS, n));
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, arg, i);
        int ok;
        lua_Integer s = lua_tointegerx(L, -1, &ok);
        if (!ok || s < 0)
            luaL_argerror(L, arg, lua_pushfstring(L, "size %I of the shape is not an integer "
                                                  ">= 0", i));
        shape[i - 1] = (int64_t)s;
        lua_pop(L, 1);
    }
    return (int)n;
}

static double check_amount(lua_State *L, int arg)
{
    double a = luaL_checknumber(L, arg);
    if (!(a >= 0.0 && a <= 1.0))
        luaL_argerror(L, arg, lua_pushfstring(L, "amount must be in [0,1], got %f", a));
    return a;
}

/* ---- scores ---- */

/* magnitude(w [, p=1]) -> |w|^p */
static int prune_magnitude(lua_State *L)
{
    pr_tensor *w = pr_lua_check_tensor(L, 1);
    return push_new(L, pr_score_magnitude(w, luaL_optnumber(L, 2, 1.0)));
}

/* taylor(w, g) -> |w*g| */
static int prune_taylor(lua_State *L)
{
    pr_tensor *w = pr_lua_check_tensor(L, 1), *g = pr_lua_check_tensor(L, 2);
    return push_new(L, pr_score_taylor(w, g));
}

/* accumulate_abs(acc, g) -> acc, after acc += |g| */
static int prune_accumulate_abs(lua_State *L)
{
    pr_tensor *acc = pr_lua_check_tensor(L, 1), *g = pr_lua_check_tensor(L, 2);
    pr_lua_check_status(L, pr_score_accumulate_abs(acc, g));
    lua_settop(L, 1);
    return 1;
}

/* structure_norm(w, dim [, p=1]) -> [w:size(dim)]; p may be math.huge */
static int prune_structure_norm(lua_State *L)
{
    pr_tensor *w = pr_lua_check_tensor(L, 1);
    int dim = pr_lua_check_dim(L, 2, w, 0);
    return push_new(L, pr_score_structure_norm(w, dim, luaL_optnumber(L, 3, 1.0)));
}

/* structure_reduce(score, dim [, "sum"|"mean"|"max"]) -> [score:size(dim)] */
static int prune_structure_reduce(lua_State *L)
{
    static const char *const modes[] = {"sum", "mean", "max", NULL};
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    int dim = pr_lua_check_dim(L, 2, s, 0);
    int mode = luaL_checkoption(L, 3, "sum", modes);
    return push_new(L, pr_score_structure_reduce(s, dim, (pr_sreduce)mode));
}

/* depthwise_coupled(dw [C,1,kh,kw], pw [O,C,...] [, p=1]) -> [C], ||dw[i]|| * ||pw[:,i]|| */
static int prune_depthwise_coupled(lua_State *L)
{
    pr_tensor *dw = pr_lua_check_tensor(L, 1), *pw = pr_lua_check_tensor(L, 2);
    return push_new(L, pr_score_depthwise_coupled(dw, pw, luaL_optnumber(L, 3, 1.0)));
}

/* activity_accumulate(act, sum_acc|nil, zero_acc|nil) -> values added per channel */
static int prune_activity_accumulate(lua_State *L)
{
    pr_tensor *act = pr_lua_check_tensor(L, 1);
    pr_tensor *sum = lua_isnoneornil(L, 2) ? NULL : pr_lua_check_tensor(L, 2);
    pr_tensor *zero = lua_isnoneornil(L, 3) ? NULL : pr_lua_check_tensor(L, 3);
    int64_t n = pr_activity_accumulate(act, sum, zero);
    pr_lua_check_status(L, n < 0 ? (int)n : 0);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* ---- thresholds ---- */

static void push_threshold(lua_State *L, const pr_threshold *th)
{
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, th->value);
    lua_setfield(L, -2, "value");
    lua_pushinteger(L, (lua_Integer)th->ties);
    lua_setfield(L, -2, "ties");
    lua_pushinteger(L, (lua_Integer)th->count);
    lua_setfield(L, -2, "count");
}

/* threshold_amount(scores, amount) -> value, ties, count: prune score < value and the first
 * `ties` entries equal to it; exactly count = round(amount * numel) entries. */
static int prune_threshold_amount(lua_State *L)
{
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    double amount = check_amount(L, 2);
    pr_threshold th;
    pr_lua_check_status(L, pr_threshold_amount(s, amount, &th));
    lua_pushnumber(L, th.value);
    lua_pushinteger(L, (lua_Integer)th.ties);
    lua_pushinteger(L, (lua_Integer)th.count);
    return 3;
}

/* The tensors of the list at arg, into a scratch userdata pushed on the stack (so read the
 * other arguments first); returns n. */
static int check_tensor_list(lua_State *L, int arg, pr_tensor ***out)
{
    if (pr_lua_test_tensor(L, arg)) {
        pr_tensor **ts = lua_newuserdatauv(L, sizeof *ts, 0);
        ts[0] = pr_lua_check_tensor(L, arg);
        *out = ts;
        return 1;
    }
    luaL_argexpected(L, lua_istable(L, arg), arg, "tensor or list of tensors");
    lua_Integer n = luaL_len(L, arg);
    if (n < 1 || n > 1 << 20)
        luaL_argerror(L, arg, "expected a non-empty list of tensors");
    pr_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, arg, i);
        ts[i - 1] = pr_lua_test_tensor(L, -1);
        if (!ts[i - 1])
            luaL_argerror(L, arg, lua_pushfstring(L, "entry %I is not a tensor", i));
        lua_pop(L, 1); /* still referenced by the list, which is on the stack */
    }
    *out = ts;
    return (int)n;
}

/* threshold_global({scores...}, amount [, min_keep=0]) -> {{value=, ties=, count=}...}, total:
 * one ranking over all tensors, no tensor keeping fewer than min_keep entries. */
static int prune_threshold_global(lua_State *L)
{
    double amount = check_amount(L, 2);
    lua_Integer min_keep = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, min_keep >= 0, 3, "min_keep must be >= 0");
    lua_settop(L, 3); /* the scratch below goes above the arguments */
    pr_tensor **ts;
    int n = check_tensor_list(L, 1, &ts);
    pr_threshold *th = lua_newuserdatauv(L, sizeof *th * (size_t)n, 0);
    int64_t total = pr_threshold_global(ts, n, amount, (int64_t)min_keep, th);
    pr_lua_check_status(L, total < 0 ? (int)total : 0);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_threshold(L, &th[i]);
        lua_seti(L, -2, i + 1);
    }
    lua_pushinteger(L, (lua_Integer)total);
    return 2;
}

/* mean_std(scores | {scores...}) -> mean, population std over every entry */
static int prune_mean_std(lua_State *L)
{
    lua_settop(L, 1);
    pr_tensor **ts;
    int n = check_tensor_list(L, 1, &ts);
    double mean, std;
    pr_lua_check_status(L, pr_stats_mean_std(ts, n, &mean, &std));
    lua_pushnumber(L, mean);
    lua_pushnumber(L, std);
    return 2;
}

/* ---- masks ---- */

/* mask_from_scores(scores, threshold [, ties=0]) or mask_from_scores(scores, {value=, ties=})
 * -> 0/1 mask, 0 where score < threshold and at the first `ties` entries equal to it */
static int prune_mask_from_scores(lua_State *L)
{
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    double value;
    lua_Integer ties;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "value");
        if (!lua_isnumber(L, -1))
            luaL_argerror(L, 2, "threshold table has no number 'value'");
        value = lua_tonumber(L, -1);
        lua_getfield(L, 2, "ties");
        int ok = 1;
        ties = lua_isnil(L, -1) ? 0 : lua_tointegerx(L, -1, &ok);
        if (!ok)
            luaL_argerror(L, 2, "threshold table's 'ties' is not an integer");
        lua_pop(L, 2);
    } else {
        value = luaL_checknumber(L, 2);
        ties = luaL_optinteger(L, 3, 0);
    }
    luaL_argcheck(L, ties >= 0, 3, "ties must be >= 0");
    return push_new(L, pr_mask_from_scores(s, (float)value, (int64_t)ties));
}

/* mask_amount(scores, amount) -> mask pruning exactly round(amount * numel), count */
static int prune_mask_amount(lua_State *L)
{
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    double amount = check_amount(L, 2);
    pr_threshold th;
    pr_lua_check_status(L, pr_threshold_amount(s, amount, &th));
    push_new(L, pr_mask_from_scores(s, th.value, th.ties));
    lua_pushinteger(L, (lua_Integer)th.count);
    return 2;
}

/* structure_expand(structure_mask, shape | like_tensor, dim) -> full mask */
static int prune_structure_expand(lua_State *L)
{
    pr_tensor *m = pr_lua_check_tensor(L, 1);
    int64_t shape[PR_MAX_DIMS];
    int ndim = check_shape_arg(L, 2, shape);
    int dim = shape_dim(L, 3, ndim, 1);
    return push_new(L, pr_mask_structure_expand(m, ndim, shape, dim));
}

/* mask_nm(scores, n, m [, dim = 2 (the input dim), or 1 for a 1-d tensor]) */
static int prune_mask_nm(lua_State *L)
{
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2), m = luaL_checkinteger(L, 3);
    luaL_argcheck(L, m >= 1 && m <= (1 << 20), 3, "M must be in 1..2^20");
    luaL_argcheck(L, n >= 0 && n <= m, 2, "N must be in 0..M");
    int dim = lua_isnoneornil(L, 4) ? (s->ndim >= 2 ? 1 : 0) : pr_lua_check_dim(L, 4, s, 0);
    return push_new(L, pr_mask_nm(s, (int)n, (int)m, dim));
}

/* mask_blocks(scores [R,C], bh, bw, amount) */
static int prune_mask_blocks(lua_State *L)
{
    pr_tensor *s = pr_lua_check_tensor(L, 1);
    lua_Integer bh = luaL_checkinteger(L, 2), bw = luaL_checkinteger(L, 3);
    double amount = check_amount(L, 4);
    return push_new(L, pr_mask_blocks(s, (int64_t)bh, (int64_t)bw, amount));
}

/* mask_apply(w, mask) -> w, after w *= mask in place (pruned entries exactly 0) */
static int prune_mask_apply(lua_State *L)
{
    pr_tensor *w = pr_lua_check_tensor(L, 1), *m = pr_lua_check_tensor(L, 2);
    pr_lua_check_status(L, pr_mask_apply(w, m));
    lua_settop(L, 1);
    return 1;
}

/* mask_random(shape | like_tensor, amount) -> exactly round(amount * numel) zeros */
static int prune_mask_random(lua_State *L)
{
    int64_t shape[PR_MAX_DIMS];
    int ndim = check_shape_arg(L, 1, shape);
    double amount = check_amount(L, 2);
    return push_new(L, pr_mask_random(ndim, shape, amount));
}

/* count_zeros(t) -> entries equal to 0 */
static int prune_count_zeros(lua_State *L)
{
    int64_t z = pr_mask_count_zeros(pr_lua_check_tensor(L, 1));
    pr_lua_check_status(L, z < 0 ? (int)z : 0);
    lua_pushinteger(L, (lua_Integer)z);
    return 1;
}

/* grad_clip_mask_(g, threshold) -> how many entries had |g| < threshold (now 0) */
static int prune_grad_clip_mask_(lua_State *L)
{
    pr_tensor *g = pr_lua_check_tensor(L, 1);
    double t = luaL_checknumber(L, 2);
    int64_t z = pr_grad_clip_mask_(g, (float)t);
    pr_lua_check_status(L, z < 0 ? (int)z : 0);
    lua_pushinteger(L, (lua_Integer)z);
    return 1;
}

static const luaL_Reg prune_functions[] = {
    {"magnitude", prune_magnitude},
    {"taylor", prune_taylor},
    {"accumulate_abs", prune_accumulate_abs},
    {"structure_norm", prune_structure_norm},
    {"structure_reduce", prune_structure_reduce},
    {"depthwise_coupled", prune_depthwise_coupled},
    {"activity_accumulate", prune_activity_accumulate},
    {"threshold_amount", prune_threshold_amount},
    {"threshold_global", prune_threshold_global},
    {"mean_std", prune_mean_std},
    {"mask_from_scores", prune_mask_from_scores},
    {"mask_amount", prune_mask_amount},
    {"structure_expand", prune_structure_expand},
    {"mask_nm", prune_mask_nm},
    {"mask_blocks", prune_mask_blocks},
    {"mask_apply", prune_mask_apply},
    {"mask_random", prune_mask_random},
    {"count_zeros", prune_count_zeros},
    {"grad_clip_mask_", prune_grad_clip_mask_},
    {NULL, NULL},
};

void pr_open_prune(lua_State *L, int lib)
{
    lib = lua_absindex(L, lib);
    luaL_newlib(L, prune_functions);
    lua_setfield(L, lib, "prune_core");
}

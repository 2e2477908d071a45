/* module.c (binding): the Module userdata over core modules (module.h), and the optimizer
 * steps (optim.h). The friendly constructors, dotted names, state_dict and printing live in
 * lua/prunert/nn.lua on top of these primitives; the methods table is exported as
 * core.Module so the Lua side can add to it. */
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "module.h"
#include "optim.h"

#define PR_MODULE_MT "prunert.Module"

void pr_lua_push_module(lua_State *L, pr_module *m)
{
    pr_module **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = m;
    luaL_setmetatable(L, PR_MODULE_MT);
}

pr_module *pr_lua_check_module(lua_State *L, int idx)
{
    pr_module **box = luaL_checkudata(L, idx, PR_MODULE_MT);
    if (!*box)
        luaL_argerror(L, idx, "module has been freed");
    return *box;
}

static int module_gc(lua_State *L)
{
    pr_module **box = luaL_checkudata(L, 1, PR_MODULE_MT);
    pr_module_release(*box);
    *box = NULL;
    return 0;
}

/* core.module_new(kind, {name = number, ...}) */
static int module_new(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const pr_module_vt *vt = pr_module_kind(kind);
    if (!vt)
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown module kind '%s'", kind));
    const char *names[PR_MODULE_MAXCFG + 4];
    double values[PR_MODULE_MAXCFG + 4];
    int n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "%s: option names must be strings", kind);
            if (n == PR_MODULE_MAXCFG + 4)
                return luaL_error(L, "%s: too many options", kind);
            names[n] = lua_tostring(L, -2); /* anchored by the table at index 2 */
            if (lua_isboolean(L, -1))
                values[n] = lua_toboolean(L, -1);
            else if (lua_isnumber(L, -1))
                values[n] = lua_tonumber(L, -1);
            else
                return luaL_error(L, "%s: option '%s' must be a number or boolean, got %s", kind,
                                  names[n], luaL_typename(L, -1));
            n++;
            lua_pop(L, 1);
        }
    }
    pr_module *m = pr_module_new(kind, n, names, values);
    if (!m)
        return luaL_error(L, "%s", pr_last_error());
    pr_lua_push_module(L, m);
    return 1;
}

/* core.module_load_state(m, {name = tensor, ...}, strict): pr_module_load_state; raises its
 * message. */
static int module_load_state(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int strict = lua_toboolean(L, 3);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        n++;
    }
    /* arrays in a userdata, so an error below frees them; names are anchored by the table */
    const char **names = lua_newuserdatauv(L, ((size_t)n + 1) * (sizeof *names + sizeof(pr_tensor *)), 0);
    pr_tensor **tensors = (pr_tensor **)(names + n + 1);
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "load_state_dict: keys must be names, got a %s", luaL_typename(L, -2));
        pr_tensor *t = pr_lua_test_tensor(L, -1);
        if (!t)
            return luaL_error(L, "load_state_dict: '%s' is a %s, not a tensor", lua_tostring(L, -2),
                              luaL_typename(L, -1));
        names[k] = lua_tostring(L, -2);
        tensors[k++] = t;
        lua_pop(L, 1);
    }
    if (pr_module_load_state(m, k, names, tensors, strict) < 0)
        return luaL_error(L, "%s", pr_last_error());
    lua_settop(L, 1);
    return 1;
}

static int module_add(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    pr_module *c = pr_lua_check_module(L, 2);
    if (c == m)
        return luaL_argerror(L, 2, "a module cannot contain itself");
    pr_lua_check_status(L, pr_module_add_child(m, c));
    lua_settop(L, 1);
    return 1;
}

static int module_forward(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    pr_tensor *x = pr_lua_check_tensor(L, 2);
    pr_lua_push_tensor(L, pr_lua_check_result(L, pr_module_forward(m, x)));
    return 1;
}

static int module_call(lua_State *L) { return module_forward(L); }

static int module_set_training(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    pr_module_train(m, lua_isnone(L, 2) ? 1 : lua_toboolean(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int module_is_training(lua_State *L)
{
    lua_pushboolean(L, pr_lua_check_module(L, 1)->training);
    return 1;
}

static int module_kind(lua_State *L)
{
    lua_pushstring(L, pr_lua_check_module(L, 1)->vt->kind);
    return 1;
}

/* m:config() -> {kind = "Conv2d", in = 1, out = 20, ...} as the core stores it (0-based dims). */
static int module_config(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    lua_newtable(L);
    lua_pushstring(L, m->vt->kind);
    lua_setfield(L, -2, "kind");
    for (int i = 0; m->vt->cfg_names && m->vt->cfg_names[i]; i++) {
        lua_pushinteger(L, m->cfg[i]);
        lua_setfield(L, -2, m->vt->cfg_names[i]);
    }
    for (int i = 0; m->vt->fcfg_names && m->vt->fcfg_names[i]; i++) {
        lua_pushnumber(L, m->fcfg[i]);
        lua_setfield(L, -2, m->vt->fcfg_names[i]);
    }
    return 1;
}

static int module_children(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    lua_createtable(L, m->nchildren, 0);
    for (int i = 0; i < m->nchildren; i++) {
        pr_module_retain(m->children[i]);
        pr_lua_push_module(L, m->children[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int push_named(lua_State *L, int n, const char *const *names, pr_tensor *const *ts)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, 1);
        pr_tensor_retain(ts[i]);
        pr_lua_push_tensor(L, ts[i]);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* m:own_params() / m:own_buffers() -> { {name, tensor}, ... } (this module only, shared tensors) */
static int module_own_params(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    return push_named(L, m->nparams, m->param_names, m->params);
}

static int module_own_buffers(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    return push_named(L, m->nbuffers, m->buffer_names, m->buffers);
}

/* m:replace(name, tensor): swaps a parameter or buffer for another tensor (load_state_dict,
 * compaction). The new tensor is shared, not copied; a parameter keeps requires_grad. */
static int module_replace(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    const char *name = luaL_checkstring(L, 2);
    pr_tensor *t = pr_lua_check_tensor(L, 3);
    if (t->dtype != PR_FLOAT32)
        return luaL_argerror(L, 3, "parameters and buffers are float32");
    pr_module_set_exec(m, NULL); /* a packed copy of the old weights would be stale */
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->param_names[i], name) == 0) {
            pr_tensor_retain(t);
            t->requires_grad = 1;
            pr_tensor_release(m->params[i]);
            m->params[i] = t;
            return 0;
        }
    for (int i = 0; i < m->nbuffers; i++)
        if (strcmp(m->buffer_names[i], name) == 0) {
            pr_tensor_retain(t);
            pr_tensor_release(m->buffers[i]);
            m->buffers[i] = t;
            return 0;
        }
    return luaL_error(L, "%s has no parameter or buffer '%s'", m->vt->kind, name);
}

/* m:set_config(name, value): used by compaction when a layer's width changes. */
static int module_set_config(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    const char *name = luaL_checkstring(L, 2);
    for (int i = 0; m->vt->cfg_names && m->vt->cfg_names[i]; i++)
        if (strcmp(m->vt->cfg_names[i], name) == 0) {
            m->cfg[i] = luaL_checkinteger(L, 3);
            return 0;
        }
    for (int i = 0; m->vt->fcfg_names && m->vt->fcfg_names[i]; i++)
        if (strcmp(m->vt->fcfg_names[i], name) == 0) {
            m->fcfg[i] = luaL_checknumber(L, 3);
            return 0;
        }
    return luaL_error(L, "%s has no option '%s'", m->vt->kind, name);
}

/* m:set_child(i, child): replaces the i-th child (1-based), e.g. a folded BatchNorm by Identity. */
static int module_set_child(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    pr_module *c = pr_lua_check_module(L, 3);
    luaL_argcheck(L, i >= 1 && i <= m->nchildren, 2, "child index out of range");
    luaL_argcheck(L, c != m, 3, "a module cannot contain itself");
    pr_module_retain(c);
    pr_module_release(m->children[i - 1]);
    m->children[i - 1] = c;
    return 0;
}

static int module_clone(lua_State *L)
{
    pr_module *c = pr_module_clone(pr_lua_check_module(L, 1));
    if (!c)
        return luaL_error(L, "%s", pr_last_error());
    pr_lua_push_module(L, c);
    return 1;
}

static int module_collect_activity(lua_State *L)
{
    pr_module_collect_activity(pr_lua_check_module(L, 1), lua_toboolean(L, 2));
    return 0;
}

/* m:activity() -> sum [C], zeros [C], count (positions per channel), or nil if nothing seen */
static int module_activity(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    if (!m->activity.sum)
        return 0;
    pr_tensor_retain(m->activity.sum);
    pr_lua_push_tensor(L, m->activity.sum);
    pr_tensor_retain(m->activity.zeros);
    pr_lua_push_tensor(L, m->activity.zeros);
    lua_pushnumber(L, m->activity.count);
    return 3;
}

static int module_same(lua_State *L)
{
    lua_pushboolean(L, pr_lua_check_module(L, 1) == pr_lua_check_module(L, 2));
    return 1;
}

static int module_tostring(lua_State *L)
{
    pr_module **box = luaL_checkudata(L, 1, PR_MODULE_MT);
    lua_pushfstring(L, "%s (%p)", *box ? (*box)->vt->kind : "freed module", (void *)*box);
    return 1;
}

/* ---- masks on parameters ---- */
static int param_set_mask(lua_State *L)
{
    pr_tensor *p = pr_lua_check_tensor(L, 1);
    pr_tensor *m = lua_isnoneornil(L, 2) ? NULL : pr_lua_check_tensor(L, 2);
    pr_lua_check_status(L, pr_param_set_mask(p, m));
    lua_settop(L, 1);
    return 1;
}

static int param_mask(lua_State *L)
{
    pr_tensor *p = pr_lua_check_tensor(L, 1);
    if (!p->mask)
        return 0;
    pr_tensor_retain(p->mask);
    pr_lua_push_tensor(L, p->mask);
    return 1;
}

static int param_apply_mask(lua_State *L)
{
    pr_param_apply_mask(pr_lua_check_tensor(L, 1));
    lua_settop(L, 1);
    return 1;
}

/* ---- optimizer steps ---- */
static double opt_number(lua_State *L, int t, const char *k, double dflt)
{
    lua_getfield(L, t, k);
    double v = luaL_optnumber(L, -1, dflt);
    lua_pop(L, 1);
    return v;
}

/* core.sgd_step(p, buf_or_nil, {lr, momentum, dampening, weight_decay, l1, nesterov}, first) */
static int optim_sgd_step(lua_State *L)
{
    pr_tensor *p = pr_lua_check_tensor(L, 1);
    pr_tensor *buf = lua_isnil(L, 2) ? NULL : pr_lua_check_tensor(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    pr_sgd_opts o = {
        .lr = opt_number(L, 3, "lr", 0.01), .momentum = opt_number(L, 3, "momentum", 0),
        .dampening = opt_number(L, 3, "dampening", 0), .weight_decay = opt_number(L, 3, "weight_decay", 0),
        .l1 = opt_number(L, 3, "l1", 0),
    };
    lua_getfield(L, 3, "nesterov");
    o.nesterov = lua_toboolean(L, -1);
    lua_pop(L, 1);
    pr_lua_check_status(L, pr_sgd_step(p, buf, &o, lua_toboolean(L, 4)));
    return 0;
}

/* core.adam_step(p, m, v, step, {lr, beta1, beta2, eps, weight_decay, l1, decoupled}) */
static int optim_adam_step(lua_State *L)
{
    pr_tensor *p = pr_lua_check_tensor(L, 1);
    pr_tensor *m = pr_lua_check_tensor(L, 2);
    pr_tensor *v = pr_lua_check_tensor(L, 3);
    lua_Integer step = luaL_checkinteger(L, 4);
    luaL_checktype(L, 5, LUA_TTABLE);
    pr_adam_opts o = {
        .lr = opt_number(L, 5, "lr", 1e-3), .beta1 = opt_number(L, 5, "beta1", 0.9),
        .beta2 = opt_number(L, 5, "beta2", 0.999), .eps = opt_number(L, 5, "eps", 1e-8),
        .weight_decay = opt_number(L, 5, "weight_decay", 0), .l1 = opt_number(L, 5, "l1", 0),
    };
    lua_getfield(L, 5, "decoupled");
    o.decoupled = lua_toboolean(L, -1);
    lua_pop(L, 1);
    pr_lua_check_status(L, pr_adam_step(p, m, v, step, &o));
    return 0;
}

/* ---- losses: class labels are 1-based in Lua (like every index), 0-based in the core ---- */
static int check_reduction(lua_State *L, int arg)
{
    static const char *const names[] = {"mean", "sum", "none", NULL};
    return luaL_checkoption(L, arg, "mean", names);
}

static int class_loss(lua_State *L, pr_op_id op)
{
    pr_tensor *x = pr_lua_check_tensor(L, 1);
    pr_tensor *t = pr_lua_check_tensor(L, 2);
    pr_opargs a = {.ni = 1};
    a.i[0] = check_reduction(L, 3);
    if (t->dtype != PR_INT64)
        return luaL_argerror(L, 2, lua_pushfstring(L, "targets must be an int64 tensor of class "
                                                   "labels 1..C, got %s", pr_dtype_name(t->dtype)));
    pr_tensor *t0 = pr_tensor_clone(t);
    if (!t0)
        return luaL_error(L, "%s", pr_last_error());
    int64_t *d = pr_tensor_i64(t0);
    for (int64_t i = 0, n = pr_tensor_numel(t0); i < n; i++)
        d[i] -= 1;
    pr_tensor *in[2] = {x, t0};
    pr_tensor *y = pr_op_call(op, in, 2, &a);
    pr_tensor_release(t0);
    if (!y) {
        /* The core counts classes from 0; say it the Lua way. */
        return luaL_error(L, "%s (labels are 1-based in Lua)", pr_last_error());
    }
    pr_lua_push_tensor(L, y);
    return 1;
}

static int loss_cross_entropy(lua_State *L) { return class_loss(L, PR_OP_cross_entropy); }
static int loss_nll(lua_State *L) { return class_loss(L, PR_OP_nll_loss); }

static int loss_mse(lua_State *L)
{
    pr_tensor *x = pr_lua_check_tensor(L, 1);
    pr_tensor *y = pr_lua_check_tensor(L, 2);
    pr_opargs a = {.ni = 1};
    a.i[0] = check_reduction(L, 3);
    pr_tensor *in[2] = {x, y};
    pr_lua_push_tensor(L, pr_lua_check_result(L, pr_op_call(PR_OP_mse_loss, in, 2, &a)));
    return 1;
}

static int module_kinds(lua_State *L)
{
    static const char *const all[] = {"Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "ReLU",
        "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "Flatten", "Identity",
        "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Sequential", "Residual", "Concat", NULL};
    lua_newtable(L);
    for (int i = 0; all[i]; i++) {
        lua_pushboolean(L, pr_module_kind(all[i]) != NULL);
        lua_setfield(L, -2, all[i]);
    }
    return 1;
}

void pr_open_module(lua_State *L, int lib)
{
    static const luaL_Reg methods[] = {
        {"add", module_add}, {"forward", module_forward}, {"train", module_set_training},
        {"is_training", module_is_training}, {"kind", module_kind}, {"config", module_config},
        {"children", module_children}, {"own_params", module_own_params},
        {"own_buffers", module_own_buffers}, {"replace", module_replace},
        {"set_config", module_set_config}, {"set_child", module_set_child}, {"clone", module_clone},
        {"collect_activity", module_collect_activity}, {"activity", module_activity},
        {"same", module_same}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", module_gc}, {"__close", module_gc},
                                    {"__call", module_call}, {"__tostring", module_tostring},
                                    {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"module_load_state", module_load_state}, {"module_new", module_new}, {"module_kinds", module_kinds}, {"param_set_mask", param_set_mask},
        {"param_mask", param_mask}, {"param_apply_mask", param_apply_mask},
        {"sgd_step", optim_sgd_step}, {"adam_step", optim_adam_step},
        {"cross_entropy", loss_cross_entropy}, {"nll_loss", loss_nll}, {"mse_loss", loss_mse},
        {NULL, NULL}};
    lib = lua_absindex(L, lib);
    luaL_newmetatable(L, PR_MODULE_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, lib, "Module");   /* core.Module = the methods table, for nn.lua to extend */
    lua_pop(L, 1);
    lua_pushvalue(L, lib);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

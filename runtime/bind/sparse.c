/* sparse.c (bind): the Lua face of sparse execution plans (core/sparse/exec.h).
 *
 * Adds two methods to core.Module (the methods table module.c exports for extension):
 *   m:set_exec(name)  installs plan `name` ("dense", "csr", "bsr1x4", "bsr4x1", "nm2:4", or
 *                     "direct" for Conv2d) on a Linear or Conv2d in eval mode; returns m.
 *                     Errors name the layer and why.
 *   m:exec()          the current plan's name, "dense" when none.
 * and core.sparse_kernel() -> the code path the sparse kernels use ("avx512", "avx2", "generic"),
 * for benchmark reports. */
#include "bind.h"
#include "module.h"
#include "sparse/exec.h"
#include "sparse/sparse.h"

static int module_set_exec(lua_State *L)
{
    pr_module *m = pr_lua_check_module(L, 1);
    const char *name = luaL_checkstring(L, 2);
    /* The core makes and installs the plan in one call, so nothing is owned here when the
     * status is turned into a Lua error. */
    pr_lua_check_status(L, pr_sparse_exec_set(m, name));
    lua_settop(L, 1);
    return 1;
}

static int module_exec(lua_State *L)
{
    lua_pushstring(L, pr_sparse_exec_name(pr_lua_check_module(L, 1)));
    return 1;
}

static int sparse_kernel(lua_State *L)
{
    lua_pushstring(L, pr_sparse_kernel_name());
    return 1;
}

void pr_open_sparse(lua_State *L, int lib)
{
    static const luaL_Reg methods[] = {{"set_exec", module_set_exec}, {"exec", module_exec},
                                       {NULL, NULL}};
    lib = lua_absindex(L, lib);
    if (lua_getfield(L, lib, "Module") != LUA_TTABLE)
        luaL_error(L, "prunert.core: the Module methods table must be opened before sparse");
    luaL_setfuncs(L, methods, 0);
    lua_pop(L, 1);
    lua_pushcfunction(L, sparse_kernel);
    lua_setfield(L, lib, "sparse_kernel");
}

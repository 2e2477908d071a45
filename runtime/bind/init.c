/* init.c (bind): luaopen_prunert_core, the entry of the Lua C module `prunert.core`.
 * It makes the library table and lets each part of the binding (one file per userdata type)
 * add its functions. The tensor part goes first: the others push and check tensors. */
#include "bind.h"

/* Every part of the library, in opening order. A new binding file adds its pr_open_* here
 * (and its declaration to bind.h). */
static void (*const parts[])(lua_State *L, int lib) = {
    pr_open_tensor,   /* tensor.c */
    pr_open_module,   /* module.c */
    pr_open_data,     /* data.c */
    pr_open_threads,  /* capi.c */
    pr_open_prune,    /* prune.c */
    pr_open_io,       /* io.c */
    pr_open_image,    /* image.c */
    pr_open_sparse,   /* sparse.c (after module.c: it extends core.Module) */
};

int luaopen_prunert_core(lua_State *L)
{
    lua_newtable(L);
    int lib = lua_gettop(L);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        parts[i](L, lib);
        lua_settop(L, lib); /* a part that leaves values behind must not shift the others */
    }
#ifdef PRUNERT_VERSION
    lua_pushliteral(L, PRUNERT_VERSION);
    lua_setfield(L, lib, "version");
#endif
    return 1;
}

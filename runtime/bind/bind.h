/* bind.h: what every Lua binding file shares. One file per userdata type (tensor.c, module.c,
 * io.c, sparse.c, ...), each with a `void pr_open_<part>(lua_State *L, int lib)` that adds its
 * functions to the library table at stack index `lib`; luaopen_prunert_core (init.c) calls them.
 *
 * Conventions (liolib's): binding functions are static and named like tensor_add; argument
 * errors go through luaL_argerror / luaL_error naming shapes; expected I/O failures return
 * nil, message. Free what you own BEFORE raising (a Lua error longjmps past your frees). */
#ifndef PR_BIND_H
#define PR_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "ops.h"
#include "tensor.h"

#define PR_TENSOR_MT "prunert.Tensor"

/* Pushes a userdata owning the reference `t` (the binding takes it over; t must not be NULL). */
void pr_lua_push_tensor(lua_State *L, pr_tensor *t);
/* The tensor at idx (borrowed; valid while the value is on the stack), or an argument error. */
pr_tensor *pr_lua_check_tensor(lua_State *L, int idx);
/* Same, or NULL when the value is not a tensor. */
pr_tensor *pr_lua_test_tensor(lua_State *L, int idx);
/* A tensor at idx, or a number (made a 0-d float32 tensor), or a nested table of numbers.
 * Returns a NEW reference the caller must release (before raising). */
pr_tensor *pr_lua_to_tensor(lua_State *L, int idx);
/* Converts a 1-based Lua dim (negative counts from the end) to 0-based, or raises. */
int pr_lua_check_dim(lua_State *L, int arg, const pr_tensor *t, int allow_extra);
/* Raises a Lua error with pr_last_error() when p is NULL / rc < 0 (p/rc pass through). */
pr_tensor *pr_lua_check_result(lua_State *L, pr_tensor *p);
int pr_lua_check_status(lua_State *L, int rc);

/* The Lua C module's entry (init.c): `require "prunert.core"` or preloaded by a host. */
int luaopen_prunert_core(lua_State *L);

/* Parts of the library (each defined by its own file; add yours to init.c's list). */
void pr_open_tensor(lua_State *L, int lib);
void pr_open_module(lua_State *L, int lib);   /* module.c: Module userdata, masks, optimizer steps */
void pr_open_data(lua_State *L, int lib);     /* data.c: randperm, batch gather, byte conversion */
void pr_open_threads(lua_State *L, int lib);  /* capi.c: threads(), set_threads(n) */
void pr_open_prune(lua_State *L, int lib);    /* prune.c: the prune_core table (scores, thresholds, masks) */
void pr_open_io(lua_State *L, int lib);       /* io.c: the io table (idx, npz, model files) and json */
void pr_open_image(lua_State *L, int lib);    /* image.c: png_write, png_encode (mask images) */
void pr_open_sparse(lua_State *L, int lib);   /* sparse.c: m:set_exec / m:exec (sparse execution plans) */

/* Modules (module.c): push takes over the reference; check returns a borrowed pointer. */
struct pr_module;
void pr_lua_push_module(lua_State *L, struct pr_module *m);
struct pr_module *pr_lua_check_module(lua_State *L, int idx);

#endif

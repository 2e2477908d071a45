/* prunert.h: the public C API for embedding prunert in a host program.
 *
 * A prunert_state is a Lua 5.4 state with the standard libraries open and the runtime loaded
 * (`require "prunert"` has already run). The host runs Lua code in it, hands it float buffers
 * as tensors and reads tensors back. One state must not be used by two threads at once;
 * separate states are independent.
 *
 * Errors: functions returning int return PRUNERT_OK (0) or a negative PRUNERT_E* code (or, for
 * prunert_get_tensor, a non-negative element count); the message is then in prunert_error().
 * A failed call leaves the state usable: the host may go on running code in it.
 *
 * Link with `pkg-config --cflags --libs prunert`.
 */
#ifndef PRUNERT_H
#define PRUNERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct prunert_state prunert_state;
/* Same typedef as lua.h's (a repeated identical typedef is valid C11), so including this
 * header does not require Lua's headers. */
typedef struct lua_State lua_State;

enum {
    PRUNERT_OK = 0,
    PRUNERT_ERUN = -1,      /* the Lua code raised an error (message has a traceback) */
    PRUNERT_ENOTFOUND = -2, /* no such global, or no such file */
    PRUNERT_ETYPE = -3,     /* the global is not a tensor */
    PRUNERT_ERANGE = -4,    /* the output buffer is too small for the tensor */
    PRUNERT_EINVAL = -5,    /* a bad argument (NULL name, bad shape, ...) */
    PRUNERT_ENOMEM = -6
};

/* How prunert_set_tensor treats the host's buffer. */
enum {
    PRUNERT_BORROW = 0, /* no copy: Lua reads and writes the host's memory directly */
    PRUNERT_COPY = 1    /* the state copies the data; the host may free its buffer at once */
};

#define PRUNERT_MAX_DIMS 8

/* ---- states ---- */

/* A new state (owned by the caller; free with prunert_close), or NULL when memory is short or
 * the Lua library (lua/prunert/init.lua) cannot be found or fails to load; prunert_error(NULL)
 * then says why (there is no state to hold the message). Applies PRUNERT_THREADS when set. */
prunert_state *prunert_open(void);
/* Frees the state and everything Lua holds. NULL is allowed. */
void prunert_close(prunert_state *S);

/* Runs a Lua file. `path` is borrowed. PRUNERT_OK, PRUNERT_ENOTFOUND (cannot open the file)
 * or PRUNERT_ERUN (syntax or run-time error). */
int prunert_run_file(prunert_state *S, const char *path);
/* Runs a chunk of Lua source. `code` is borrowed (need not outlive the call). */
int prunert_run_string(prunert_state *S, const char *code);
/* The message of the last failed call on S, "" after a call that succeeded. Owned by S; valid
 * until the next call on S. With S == NULL: why the last prunert_open on this thread failed
 * (owned by the library, valid until the next prunert_open on this thread). Never NULL. */
const char *prunert_error(const prunert_state *S);

/* ---- tensors ---- */

/* Makes the global `name` a float32 tensor of shape shape[0..ndim-1] (row-major, contiguous)
 * over `data`. `name` and `shape` are borrowed.
 *   PRUNERT_BORROW: no copy; `data` stays owned by the host, and the host keeps data alive
 *     while the state may use it: that is until prunert_close(S), because Lua code may keep
 *     views of it (x:t(), x:view(...), values held in tables or closures) after the global is
 *     replaced. Writes from either side are visible to the other; the host must not write to
 *     it while Lua code runs in S.
 *   PRUNERT_COPY: the state copies numel floats from `data`; the host keeps ownership of
 *     `data` and may free or reuse it as soon as the call returns.
 * ndim may be 0 (a scalar, one float). Returns PRUNERT_OK, PRUNERT_EINVAL or PRUNERT_ENOMEM. */
int prunert_set_tensor(prunert_state *S, const char *name, float *data, int ndim,
                       const int64_t *shape, int mode);
/* Copies the global tensor `name` into `out` (owned by the host, room for `capacity` floats)
 * in row-major order, converting other element types to float. When shape_out (host's, room
 * for PRUNERT_MAX_DIMS entries) and ndim_out (host's) are not NULL they receive the shape,
 * also when the call fails with PRUNERT_ERANGE, so the host can size a buffer and retry.
 * With out == NULL nothing is copied and the call only reports the size.
 * Returns the element count, or a negative code: PRUNERT_ENOTFOUND (no such global),
 * PRUNERT_ETYPE (not a tensor), PRUNERT_ERANGE (capacity too small), PRUNERT_EINVAL,
 * PRUNERT_ENOMEM, or PRUNERT_ERUN (reading the global raised, e.g. a closed tensor). */
int64_t prunert_get_tensor(prunert_state *S, const char *name, float *out, size_t capacity,
                           int64_t *shape_out, int *ndim_out);

/* ---- threads ---- */

/* Threads for OpenBLAS and the runtime's kernels, process-wide (all states); n <= 0 restores
 * the default (PRUNERT_THREADS, else the number of CPUs). */
void prunert_set_threads(int n);
int prunert_threads(void);

/* ---- models (inference without Lua) ----
 * A model file written by pr.save, loaded and run from C with no Lua state: the architecture,
 * parameters, masks and the execution plans pr.optimize chose, in eval mode. One model may be
 * used by one thread at a time; separate models are independent. */
typedef struct prunert_model prunert_model;

/* Loads `path` (borrowed). A new model (free with prunert_model_free), or NULL for a missing,
 * damaged, foreign or newer file, with the reason in prunert_error(NULL). Applies
 * PRUNERT_THREADS when set. */
prunert_model *prunert_model_load(const char *path);
/* Runs the model's forward (no gradient) on `in`, a float32 row-major array of `ndim` dims of
 * sizes `shape` (all borrowed; `in` is only read). The output's dims go to ndim_out and
 * shape_out (room for PRUNERT_MAX_DIMS; either may be NULL) and its values to `out` when
 * `out` has room for them (`capacity` floats). Returns the number of output elements, or a
 * negative PRUNERT_* code with the reason in prunert_model_error(m): PRUNERT_EINVAL for bad
 * arguments or an input the model does not take (the message names the layer and shapes),
 * PRUNERT_ERANGE when `out` is too small (shape_out/ndim_out are filled all the same, so a
 * call with out = NULL returns the size and writes nothing), PRUNERT_ENOMEM. */
int64_t prunert_model_forward(prunert_model *m, const float *in, int ndim, const int64_t *shape,
                              float *out, size_t capacity, int64_t *shape_out, int *ndim_out);
/* The last failure's message for m ("" after a success), owned by m. */
const char *prunert_model_error(const prunert_model *m);
/* The metadata table saved with the model (pr.save's `meta`), as JSON text owned by m. */
const char *prunert_model_meta(const prunert_model *m);
/* Frees the model. NULL is allowed. */
void prunert_model_free(prunert_model *m);

/* ---- Lua access ---- */

/* The state's Lua state (owned by S; do not lua_close it). For hosts that want to push their
 * own functions or read other values. Leave the stack as you found it. */
lua_State *prunert_lua(prunert_state *S);
/* Makes `require "prunert"` work in a Lua state the host created itself: puts the runtime's C
 * module in package.preload and the Lua library's directory in front of package.path. Needs
 * the package library open. Loads nothing yet. `L` is borrowed. Returns PRUNERT_OK,
 * PRUNERT_ENOTFOUND when the Lua library directory was not found (preload is set anyway; a
 * LUA_PATH may still find it), or PRUNERT_EINVAL when `package` is missing.
 * This is what the `prunert` program calls. */
int prunert_openlibs(lua_State *L);
/* lua_pcall with the prunert program's message handler: string errors get a traceback, other
 * error values their __tostring. The function and its nargs arguments are on L's stack (L
 * borrowed); on failure the message is left on the stack, as lua_pcall does. */
int prunert_pcall(lua_State *L, int nargs, int nresults);
/* The directory prunert_openlibs chose ("" when none), owned by the library. */
const char *prunert_lua_dir(void);
const char *prunert_version(void);

#ifdef __cplusplus
}
#endif

#endif

/* io.c (bind): the Lua face of runtime/core/io: pr.io (IDX, .npz, model files) and pr.json.
 *
 * Expected failures (a missing, damaged or unwritable file; malformed JSON text) return
 * nil, message as Lua's io library does; wrong argument types raise. Whatever the core hands
 * over (tensors, name arrays, JSON trees) sits in an `owned` box with a __gc until it has been
 * given to Lua, so a memory error raised half-way through pushing leaks nothing. */
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "io/io.h"
#include "module.h"

#define OWNED_MT "prunert.io.owned"
#define JSON_ARRAY_MT "prunert.json.array"

/* ------------------------------------------------------------------ owned box */

typedef struct owned {
    pr_json *json;
    char *text;
    char **names;
    pr_tensor **tensors;
    int count;
    pr_npz_entry *entries;
    int n_entries;
    pr_mfile_chunk_info *chunks;
} owned;

static void owned_clear(owned *o)
{
    pr_json_free(o->json);
    pr_mfile_read_free(o->text, o->names, o->tensors, o->count);
    pr_npz_entries_free(o->entries, o->n_entries);
    free(o->chunks);
    memset(o, 0, sizeof *o);
}

static int owned_gc(lua_State *L)
{
    owned_clear(luaL_checkudata(L, 1, OWNED_MT));
    return 0;
}

static owned *push_owned(lua_State *L)
{
    owned *o = lua_newuserdatauv(L, sizeof *o, 0);
    memset(o, 0, sizeof *o);
    luaL_setmetatable(L, OWNED_MT);
    return o;
}

static int fail(lua_State *L)
{
    const char *m = pr_last_error();
    luaL_pushfail(L);
    lua_pushstring(L, (m && *m) ? m : "prunert: I/O failed without a message");
    return 2;
}

/* ------------------------------------------------------------------ Lua <-> JSON */

static int is_null(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* Appends ".key" / "[i]" to the path shown in messages. */
static void path_push(char *path, size_t cap, const char *fmt_key, const char *key, lua_Integer i)
{
    size_t n = strlen(path);
    if (n + 2 >= cap)
        return;
    if (key)
        snprintf(path + n, cap - n, fmt_key, key);
    else
        snprintf(path + n, cap - n, "[%lld]", (long long)i);
}

/* Converts the Lua value at idx into a new pr_json. Never raises (so nothing leaks): on
 * failure returns NULL with `err` filled. */
static pr_json *to_json(lua_State *L, int idx, int depth, char *path, size_t cap, char *err, size_t errcap)
{
    idx = lua_absindex(L, idx);
    size_t mark = strlen(path);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return pr_json_new(PR_JSON_NULL);
    case LUA_TBOOLEAN:
        return pr_json_new_bool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return pr_json_new_integer(lua_tointeger(L, idx));
        {
            double d = lua_tonumber(L, idx);
            if (d != d || d - d != 0) {
                snprintf(err, errcap, "%s: cannot encode %g (JSON has no NaN or infinity)", path, d);
                return NULL;
            }
            return pr_json_new_number(d);
        }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return pr_json_new_string(s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (is_null(L, idx))
            return pr_json_new(PR_JSON_NULL);
        break;
    case LUA_TTABLE: {
        if (depth >= PR_JSON_MAX_DEPTH || !lua_checkstack(L, 4)) {
            snprintf(err, errcap, "%s: nested deeper than %d (a cycle?)", path, PR_JSON_MAX_DEPTH);
            return NULL;
        }
        /* An array has exactly the keys 1..n; an empty table is an object unless marked with
         * pr.json.array (or decoded from "[]"). */
        lua_Integer n = 0, max = 0;
        int strings = 0, others = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            n++;
            if (lua_type(L, -2) == LUA_TSTRING)
                strings++;
            else if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1)
                max = lua_tointeger(L, -2) > max ? lua_tointeger(L, -2) : max;
            else
                others++;
            lua_pop(L, 1);
        }
        int marked = 0;
        if (lua_getmetatable(L, idx)) {
            luaL_getmetatable(L, JSON_ARRAY_MT);
            marked = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        int is_array = (n > 0 && strings == 0 && others == 0 && max == n) || (n == 0 && marked);
        if (!is_array && (others > 0 || strings != n)) {
            snprintf(err, errcap, "%s: a table must have only keys 1..n (an array) or only string keys "
                     "(an object)", path);
            return NULL;
        }
        pr_json *c = pr_json_new(is_array ? PR_JSON_ARRAY : PR_JSON_OBJECT);
        if (!c)
            return NULL;
        if (is_array) {
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                path_push(path, cap, NULL, NULL, i);
                pr_json *v = to_json(L, -1, depth + 1, path, cap, err, errcap);
                path[mark] = '\0';
                lua_pop(L, 1);
                if (!v || pr_json_array_push(c, v) < 0) {
                    pr_json_free(c);
                    return NULL;
                }
            }
        } else {
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                size_t klen;
                const char *k = lua_tolstring(L, -2, &klen); /* a string already: safe in lua_next */
                path_push(path, cap, ".%s", k, 0);
                pr_json *v = to_json(L, -1, depth + 1, path, cap, err, errcap);
                path[mark] = '\0';
                lua_pop(L, 1);
                if (!v || pr_json_object_set(c, k, klen, v) < 0) {
                    lua_pop(L, 1);
                    pr_json_free(c);
                    return NULL;
                }
            }
            pr_json_object_sort(c);   /* Lua's order is random; files should not be */
        }
        return c;
    }
    default:
        break;
    }
    snprintf(err, errcap, "%s: cannot encode a %s", path, luaL_typename(L, idx));
    return NULL;
}

/* Encodes the value at idx to JSON text on the stack, or raises naming where it failed. */
static void push_json_text(lua_State *L, int idx, int indent, const char *root)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s", root);
    err[0] = '\0';
    pr_json *v = to_json(L, idx, 0, path, sizeof path, err, sizeof err);
    size_t len = 0;
    char *text = v ? pr_json_encode(v, indent, &len) : NULL;
    pr_json_free(v);
    if (!text) {
        if (!err[0])
            snprintf(err, sizeof err, "%s", pr_last_error());
        luaL_error(L, "json.encode: %s", err);
    }
    owned *o = push_owned(L);
    o->text = text;
    lua_pushlstring(L, text, len);
    owned_clear(o);
    lua_remove(L, -2);
}

static void push_json(lua_State *L, const pr_json *v)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    switch (v->type) {
    case PR_JSON_NULL: lua_pushlightuserdata(L, NULL); break;
    case PR_JSON_BOOL: lua_pushboolean(L, v->boolean); break;
    case PR_JSON_INTEGER: lua_pushinteger(L, (lua_Integer)v->integer); break;
    case PR_JSON_NUMBER: lua_pushnumber(L, v->number); break;
    case PR_JSON_STRING: lua_pushlstring(L, v->str, v->len); break;
    case PR_JSON_ARRAY:
        lua_createtable(L, (int)v->count, 0);
        for (size_t i = 0; i < v->count; i++) {
            push_json(L, v->items[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, JSON_ARRAY_MT);
        break;
    case PR_JSON_OBJECT:
        lua_createtable(L, 0, (int)v->count);
        for (size_t i = 0; i < v->count; i++) {
            lua_pushlstring(L, v->keys[i], v->key_lens[i]);
            push_json(L, v->items[i]);
            lua_rawset(L, -3);
        }
        break;
    }
}

/* Parses text into a Lua value on the stack; returns 0 (with nothing pushed) on bad JSON. */
static int push_parsed(lua_State *L, const char *text, size_t len, const char *what)
{
    pr_json *v = pr_json_parse(text, len, what);
    if (!v)
        return 0;
    owned *o = push_owned(L);
    o->json = v;
    push_json(L, v);
    owned_clear(o);
    lua_remove(L, -2);
    return 1;
}

static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    int indent = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "indent");
        indent = (int)luaL_optinteger(L, -1, 0);
        luaL_argcheck(L, indent >= 0 && indent <= 16, 2, "indent must be 0..16");
        lua_pop(L, 1);
    }
    lua_settop(L, 1);
    push_json_text(L, 1, indent, "value");
    return 1;
}

static int json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (!push_parsed(L, s, len, "json.decode"))
        return fail(L);
    return 1;
}

static int json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, JSON_ARRAY_MT);
    return 1;
}

/* ------------------------------------------------------------------ IDX */

static int io_read_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer limit = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, limit >= 0, 2, "limit must be >= 0 (0 reads everything)");
    pr_tensor *t = pr_idx_read(path, limit);
    if (!t)
        return fail(L);
    pr_lua_push_tensor(L, t);
    return 1;
}

static int io_write_idx(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    pr_tensor *t = pr_lua_check_tensor(L, 2);
    if (pr_idx_write(path, t) < 0)
        return fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------------ npz */

static int io_load_npz(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    owned *o = push_owned(L);
    if (pr_npz_load(path, &o->entries, &o->n_entries) < 0)
        return fail(L);
    lua_createtable(L, 0, o->n_entries);
    for (int i = 0; i < o->n_entries; i++) {
        pr_tensor *t = o->entries[i].t;
        o->entries[i].t = NULL;          /* the userdata owns it from here */
        pr_lua_push_tensor(L, t);
        lua_setfield(L, -2, o->entries[i].name);
    }
    owned_clear(o);
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Collects a {name = tensor} table at idx into arrays in a GC-managed userdata, sorted by
 * name so that files do not depend on Lua's table order. Returns the count. */
static int collect_tensors(lua_State *L, int idx, const char ***names, pr_tensor ***tensors)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, idx, "tensor names must be strings");
        if (!pr_lua_test_tensor(L, -1))
            luaL_argerror(L, idx, lua_pushfstring(L, "value for '%s' is not a tensor", lua_tostring(L, -2)));
        n++;
        lua_pop(L, 1);
    }
    const char **nm = lua_newuserdatauv(L, (size_t)(n ? n : 1) * (sizeof *nm + sizeof(pr_tensor *)), 0);
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        nm[k++] = lua_tostring(L, -2); /* kept alive by the table */
        lua_pop(L, 1);
    }
    qsort(nm, (size_t)n, sizeof *nm, cmp_names);
    pr_tensor **ts = (pr_tensor **)(nm + (n ? n : 1));
    for (int i = 0; i < n; i++) {
        lua_getfield(L, idx, nm[i]);
        ts[i] = pr_lua_check_tensor(L, -1);   /* borrowed: the table keeps the userdata */
        lua_pop(L, 1);
    }
    *names = nm;
    *tensors = ts;
    return n;
}

static int opt_bool(lua_State *L, int idx, const char *field, int def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, field);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int io_save_npz(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int compress = opt_bool(L, 3, "compress", 0);
    const char **names;
    pr_tensor **tensors;
    int n = collect_tensors(L, 2, &names, &tensors);
    luaL_argcheck(L, n <= 65535, 2, "at most 65535 arrays");
    if (pr_npz_save(path, n, names, tensors, compress) < 0)
        return fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------------ model files */

static int io_write_model_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    int level = -1;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "level");
        level = (int)luaL_optinteger(L, -1, -1);
        luaL_argcheck(L, level >= -1 && level <= 9, 4, "level must be -1..9");
        lua_pop(L, 1);
    }
    lua_settop(L, 4);
    const char **names;
    pr_tensor **tensors;
    int n = collect_tensors(L, 3, &names, &tensors);          /* slot 5 */
    uint32_t *enc = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *enc, 0); /* slot 6 */
    for (int i = 0; i < n; i++) {
        enc[i] = PR_ENC_DENSE;
        if (lua_istable(L, 4)) {
            lua_getfield(L, 4, "encodings");
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, names[i]);
                if (lua_isinteger(L, -1)) {
                    lua_Integer id = lua_tointeger(L, -1);
                    luaL_argcheck(L, id >= 0 && id < PR_ENC_MAX && pr_mfile_encoding_find((uint32_t)id), 4,
                                  lua_pushfstring(L, "unknown encoding id for '%s'", names[i]));
                    enc[i] = (uint32_t)id;
                } else if (lua_type(L, -1) == LUA_TSTRING) {
                    const pr_mfile_encoding *e = pr_mfile_encoding_by_name(lua_tostring(L, -1));
                    luaL_argcheck(L, e != NULL, 4, lua_pushfstring(L, "unknown encoding '%s' for '%s'",
                                                                   lua_tostring(L, -1), names[i]));
                    enc[i] = e->id;
                } else if (!lua_isnil(L, -1)) {
                    luaL_argerror(L, 4, "encodings values must be names or ids");
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    push_json_text(L, 2, 0, "manifest");                       /* slot 7 */
    size_t mlen;
    const char *manifest = lua_tolstring(L, -1, &mlen);
    /* From here on nothing raises until the writer is finished or aborted. */
    pr_mfile_writer *w = pr_mfile_writer_open(path, level);
    if (!w)
        return fail(L);
    int rc = pr_mfile_writer_set_manifest(w, manifest, mlen);
    for (int i = 0; i < n && rc == PR_OK; i++)
        rc = pr_mfile_writer_add_tensor(w, names[i], tensors[i], enc[i]);
    if (rc < 0) {
        pr_mfile_writer_abort(w);
        return fail(L);
    }
    if (pr_mfile_writer_commit(w) < 0)
        return fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static int io_read_model_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    owned *o = push_owned(L);
    if (pr_mfile_read(path, &o->text, &o->names, &o->tensors, &o->count) < 0)
        return fail(L);
    char what[512];
    snprintf(what, sizeof what, "%s: manifest", path);
    if (!push_parsed(L, o->text, strlen(o->text), what))
        return fail(L);   /* the core checked it already; kept for safety */
    lua_createtable(L, 0, o->count);
    for (int i = 0; i < o->count; i++) {
        pr_tensor *t = o->tensors[i];
        o->tensors[i] = NULL;
        pr_lua_push_tensor(L, t);
        lua_setfield(L, -2, o->names[i]);
    }
    owned_clear(o);
    return 2;
}

/* core.module_from_config(cfg) -> module: pr_module_from_config on the table, through JSON. */
static int io_module_from_config(lua_State *L)
{
    luaL_checkany(L, 1);
    char path[256] = "config", err[512] = "";
    pr_json *v = to_json(L, 1, 0, path, sizeof path, err, sizeof err);
    if (!v)
        return luaL_error(L, "from_config: %s", err[0] ? err : pr_last_error());
    pr_module *m = pr_module_from_config(v, "from_config");
    pr_json_free(v);
    if (!m)
        return luaL_error(L, "%s", pr_last_error());
    pr_lua_push_module(L, m);
    return 1;
}

/* core.io.load_model(path) -> model, manifest  (or nil, message) */
static int io_load_model(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    pr_json *manifest = NULL;
    pr_module *m = pr_model_load(path, &manifest);
    if (!m)
        return fail(L);
    pr_lua_push_module(L, m);
    push_json(L, manifest);
    pr_json_free(manifest);
    return 2;
}

static void push_shape(lua_State *L, int ndim, const int64_t *shape)
{
    lua_createtable(L, ndim, 0);
    for (int d = 0; d < ndim; d++) {
        lua_pushinteger(L, (lua_Integer)shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
}

static int io_model_file_info(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    owned *o = push_owned(L);
    int n = 0;
    uint32_t version = 0;
    if (pr_mfile_info(path, &version, &o->chunks, &n) < 0)
        return fail(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const pr_mfile_chunk_info *c = &o->chunks[i];
        const pr_mfile_encoding *e = pr_mfile_encoding_find(c->encoding);
        lua_createtable(L, 0, 7);
        lua_pushstring(L, c->kind == PR_MFILE_MANIFEST ? "manifest" : "tensor");
        lua_setfield(L, -2, "kind");
        lua_pushstring(L, c->name);
        lua_setfield(L, -2, "name");
        if (c->kind == PR_MFILE_TENSOR) {
            lua_pushstring(L, pr_dtype_name(c->dtype));
            lua_setfield(L, -2, "dtype");
            push_shape(L, c->ndim, c->shape);
            lua_setfield(L, -2, "shape");
            lua_pushstring(L, e ? e->name : "unknown");
            lua_setfield(L, -2, "encoding");
        }
        lua_pushinteger(L, (lua_Integer)c->raw_bytes);
        lua_setfield(L, -2, "raw_bytes");
        lua_pushinteger(L, (lua_Integer)c->stored_bytes);
        lua_setfield(L, -2, "stored_bytes");
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, (lua_Integer)version);
    return 2;
}

void pr_open_io(lua_State *L, int lib)
{
    static const luaL_Reg io_funcs[] = {
        {"read_idx", io_read_idx}, {"write_idx", io_write_idx},
        {"load_npz", io_load_npz}, {"save_npz", io_save_npz},
        {"write_model_file", io_write_model_file}, {"read_model_file", io_read_model_file},
        {"load_model", io_load_model}, {"module_from_config", io_module_from_config},
        {"model_file_info", io_model_file_info}, {NULL, NULL}};
    static const luaL_Reg json_funcs[] = {
        {"encode", json_encode}, {"decode", json_decode}, {"array", json_array}, {NULL, NULL}};
    if (luaL_newmetatable(L, OWNED_MT)) {
        lua_pushcfunction(L, owned_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_newmetatable(L, JSON_ARRAY_MT);
    lua_pop(L, 1);

    luaL_newlib(L, io_funcs);
    lua_pushinteger(L, PR_MFILE_VERSION);
    lua_setfield(L, -2, "model_file_version");
    lua_setfield(L, lib, "io");

    luaL_newlib(L, json_funcs);
    lua_pushlightuserdata(L, NULL);  /* json.null: what JSON null decodes to and encodes from */
    lua_setfield(L, -2, "null");
    lua_setfield(L, lib, "json");
}

/* image.c (bind): images from tensors. core.png_write(path, t) writes a PNG (core/png.c);
 * core.png_encode(t) returns the PNG file's bytes as a Lua string (for data URIs).
 *
 * t is [H, W] (gray) or [H, W, 3] (RGB), uint8 (0..255 as is) or float32 (0..1 scaled to
 * 0..255, clamped; NaN is black). Mask images use it: white = kept, black = pruned. */
#include <math.h>
#include <stdlib.h>

#include "bind.h"
#include "png.h"

/* Checks t's shape and makes the 8-bit pixel buffer. Returns a malloc'd buffer the caller
 * frees (before raising), or NULL with *msg set (nothing to free then). */
static uint8_t *image_pixels(pr_tensor *t, int64_t *h, int64_t *w, int *channels, const char **msg)
{
    if (t->dtype != PR_UINT8 && t->dtype != PR_FLOAT32) {
        *msg = "image must be a uint8 or float32 tensor";
        return NULL;
    }
    if (!(t->ndim == 2 || (t->ndim == 3 && t->shape[2] == 3))) {
        *msg = "image must be [H, W] (gray) or [H, W, 3] (RGB)";
        return NULL;
    }
    *h = t->shape[0];
    *w = t->shape[1];
    *channels = t->ndim == 2 ? 1 : 3;
    int64_t n = pr_tensor_numel(t);
    if (n == 0) {
        *msg = "image is empty";
        return NULL;
    }
    uint8_t *px = malloc((size_t)n);
    if (!px) {
        *msg = "out of memory";
        return NULL;
    }
    /* get_flat honours strides, so views (transposes, narrows) need no contiguous copy. */
    for (int64_t i = 0; i < n; i++) {
        double v = pr_tensor_get_flat(t, i);
        if (t->dtype == PR_FLOAT32) {
            v = v * 255.0;
            if (!(v > 0)) v = 0; /* also NaN */
            if (v > 255) v = 255;
            px[i] = (uint8_t)lrint(v);
        } else {
            px[i] = (uint8_t)v;
        }
    }
    return px;
}

/* core.png_write(path, image) -> true, or nil and a message when the file cannot be written. */
static int image_png_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    pr_tensor *t = pr_lua_check_tensor(L, 2);
    int64_t h, w;
    int ch;
    const char *msg = NULL;
    uint8_t *px = image_pixels(t, &h, &w, &ch, &msg);
    if (!px) {
        char shape[128];
        pr_tensor_shape_str(t, shape, sizeof shape);
        return luaL_error(L, "png_write: %s (got %s %s)", msg, pr_dtype_name(t->dtype), shape);
    }
    int rc = pr_png_write(path, px, w, h, ch);
    free(px);
    if (rc < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, pr_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* A box that owns a malloc'd buffer until Lua collects it, so raising (e.g. out of memory in
 * lua_pushlstring) after encoding cannot leak the PNG bytes. */
#define PNG_BOX_MT "prunert.png_buffer"
static int png_box_gc(lua_State *L)
{
    uint8_t **box = luaL_checkudata(L, 1, PNG_BOX_MT);
    free(*box);
    *box = NULL;
    return 0;
}

/* core.png_encode(image) -> the PNG file's bytes as a string. */
static int image_png_encode(lua_State *L)
{
    pr_tensor *t = pr_lua_check_tensor(L, 1);
    uint8_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, PNG_BOX_MT)) {
        lua_pushcfunction(L, png_box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int64_t h, w;
    int ch;
    const char *msg = NULL;
    uint8_t *px = image_pixels(t, &h, &w, &ch, &msg);
    if (!px) {
        char shape[128];
        pr_tensor_shape_str(t, shape, sizeof shape);
        return luaL_error(L, "png_encode: %s (got %s %s)", msg, pr_dtype_name(t->dtype), shape);
    }
    size_t len = 0;
    int rc = pr_png_encode(px, w, h, ch, box, &len);
    free(px);
    if (rc < 0) return luaL_error(L, "png_encode: %s", pr_last_error());
    lua_pushlstring(L, (const char *)*box, len);
    free(*box);
    *box = NULL;
    return 1;
}

void pr_open_image(lua_State *L, int lib)
{
    static const luaL_Reg funcs[] = {
        {"png_write", image_png_write}, {"png_encode", image_png_encode}, {NULL, NULL}};
    lua_pushvalue(L, lib);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}

/* io/model.c: a saved model back as a module tree, in C. pr.load calls it from Lua and
 * prunert_model_load from a C host with no Lua (include/prunert.h). The manifest's
 * architecture is a configuration tree of known layer kinds with numeric options only, so
 * loading builds modules from a fixed list and never executes anything from the file. */
#include "io.h"

#include <stdio.h>
#include <string.h>

#include "../autograd.h"
#include "../module.h"
#include "../sparse/exec.h"

#define MODEL_FORMAT "prunert-model"
#define MODEL_MAX_DEPTH 64

pr_module *pr_module_from_config(const pr_json *cfg, const char *what)
{
    static int depth;
    if (!cfg || cfg->type != PR_JSON_OBJECT) {
        pr_error("%s: not a module configuration (an object with a \"kind\")", what);
        return NULL;
    }
    const pr_json *kind = pr_json_object_get(cfg, "kind");
    if (!kind || kind->type != PR_JSON_STRING || !pr_module_kind(kind->str)) {
        pr_error("%s: unknown module kind '%s'", what,
                 kind && kind->type == PR_JSON_STRING ? kind->str : "(none)");
        return NULL;
    }
    const char *names[PR_MODULE_MAXCFG + 4];
    double values[PR_MODULE_MAXCFG + 4];
    int n = 0;
    for (size_t i = 0; i < cfg->count; i++) {
        const char *k = cfg->keys[i];
        const pr_json *v = cfg->items[i];
        if (!strcmp(k, "kind") || !strcmp(k, "children") || v->type == PR_JSON_NULL)
            continue; /* null: not given, the kind's default */
        if (v->type != PR_JSON_INTEGER && v->type != PR_JSON_NUMBER) {
            pr_error("%s: %s option '%s' is not a number", what, kind->str, k);
            return NULL;
        }
        if (n == PR_MODULE_MAXCFG + 4) {
            pr_error("%s: %s has too many options", what, kind->str);
            return NULL;
        }
        names[n] = k;
        values[n++] = v->type == PR_JSON_INTEGER ? (double)v->integer : v->number;
    }
    pr_module *m = pr_module_new(kind->str, n, names, values);
    if (!m) {
        pr_error("%s: %s", what, pr_last_error());
        return NULL;
    }
    const pr_json *kids = pr_json_object_get(cfg, "children");
    if (kids && kids->type == PR_JSON_OBJECT && kids->count == 0)
        kids = NULL; /* an empty Lua table encodes as {} */
    if (kids && kids->type != PR_JSON_ARRAY) {
        pr_error("%s: %s's children are not a list", what, kind->str);
        pr_module_release(m);
        return NULL;
    }
    if (kids && kids->count && depth >= MODEL_MAX_DEPTH) {
        pr_error("%s: modules nested more than %d deep", what, MODEL_MAX_DEPTH);
        pr_module_release(m);
        return NULL;
    }
    for (size_t i = 0; kids && i < kids->count; i++) {
        depth++;
        pr_module *c = pr_module_from_config(kids->items[i], what);
        depth--;
        int rc = c ? pr_module_add_child(m, c) : PR_EINVAL;
        pr_module_release(c);
        if (rc < 0) {
            pr_module_release(m);
            return NULL;
        }
    }
    return m;
}

typedef struct {
    const char *path;
    pr_module *found;
} find_ctx;

static int find_visit(pr_module *m, const char *path, void *ctx)
{
    find_ctx *f = ctx;
    if (!f->found && strcmp(path, f->path) == 0)
        f->found = m;
    return PR_OK;
}

/* plans: {"module path": "plan name"} as pr.optimize records them. */
static int restore_plans(pr_module *m, const pr_json *plans, const char *path)
{
    if (!plans || plans->type == PR_JSON_NULL)
        return PR_OK;
    if (plans->type != PR_JSON_OBJECT)
        return pr_error("%s: the manifest's plans are not an object", path);
    for (size_t i = 0; i < plans->count; i++) {
        find_ctx f = { plans->keys[i], NULL };
        pr_module_walk(m, find_visit, &f);
        if (!f.found)
            return pr_error("%s: a plan names module '%s', which the model does not have", path,
                            plans->keys[i]);
        if (plans->items[i]->type != PR_JSON_STRING)
            return pr_error("%s: the plan for '%s' is not a name", path, plans->keys[i]);
        if (pr_sparse_exec_set(f.found, plans->items[i]->str) < 0)
            return pr_error("%s: plan for '%s': %s", path, plans->keys[i], pr_last_error());
    }
    return PR_OK;
}

pr_module *pr_model_load(const char *path, pr_json **manifest_out)
{
    char *text = NULL, **names = NULL;
    pr_tensor **tensors = NULL;
    int count = 0;
    pr_json *manifest = NULL;
    pr_module *m = NULL;
    if (manifest_out)
        *manifest_out = NULL;
    if (!path) {
        pr_error("load: path is NULL");
        return NULL;
    }
    if (pr_mfile_read(path, &text, &names, &tensors, &count) < 0)
        return NULL;
    char what[600];
    snprintf(what, sizeof what, "%s: manifest", path);
    if (!(manifest = pr_json_parse(text, strlen(text), what)))
        goto fail;
    const pr_json *format = pr_json_object_get(manifest, "format");
    const pr_json *arch = pr_json_object_get(manifest, "architecture");
    if (!format || format->type != PR_JSON_STRING || strcmp(format->str, MODEL_FORMAT) != 0 ||
        !arch || arch->type != PR_JSON_OBJECT) {
        pr_error("%s: not a prunert model (a model-file container without a model manifest)", path);
        goto fail;
    }
    snprintf(what, sizeof what, "%s: architecture", path);
    if (!(m = pr_module_from_config(arch, what)))
        goto fail;
    if (pr_module_load_state(m, count, (const char *const *)names, tensors, 1) < 0) {
        pr_error("%s: %s", path, pr_last_error());
        goto fail;
    }
    pr_module_train(m, 0);
    if (restore_plans(m, pr_json_object_get(manifest, "plans"), path) < 0)
        goto fail;
    pr_mfile_read_free(text, names, tensors, count);
    if (manifest_out)
        *manifest_out = manifest;
    else
        pr_json_free(manifest);
    return m;
fail:
    pr_mfile_read_free(text, names, tensors, count);
    pr_json_free(manifest);
    pr_module_release(m);
    return NULL;
}

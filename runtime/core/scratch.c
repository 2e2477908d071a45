/* scratch.c: see scratch.h. The buffers hang off a per-thread struct registered with a pthread
 * key, whose destructor frees them when the thread exits (a host's worker threads would
 * otherwise leak a slice's worth of memory each). */
#include "scratch.h"
#include "error.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    float *p[PR_SCRATCH_SLOTS];
    size_t cap[PR_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void scratch_free(void *v)
{
    scratch_set *s = v;
    for (int i = 0; i < PR_SCRATCH_SLOTS; i++)
        free(s->p[i]);
    free(s);
}

static void key_init(void) { key_ok = pthread_key_create(&key, scratch_free) == 0; }

static scratch_set *this_thread(void)
{
    pthread_once(&key_once, key_init);
    if (!key_ok)
        return NULL;
    scratch_set *s = pthread_getspecific(key);
    if (!s && (s = calloc(1, sizeof *s)) && pthread_setspecific(key, s) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}

float *pr_scratch(pr_scratch_slot slot, size_t n, const char *who)
{
    scratch_set *s = this_thread();
    if (s && n <= s->cap[slot])
        return s->p[slot];
    if (s) {
        free(s->p[slot]);
        s->cap[slot] = 0;
        if ((s->p[slot] = malloc((n ? n : 1) * sizeof(float)))) {
            s->cap[slot] = n;
            return s->p[slot];
        }
    }
    pr_error_code(PR_ENOMEM, "%s: out of memory for %zu bytes of scratch", who, n * sizeof(float));
    return NULL;
}

void pr_scratch_trim(pr_scratch_slot slot, size_t max_bytes)
{
    scratch_set *s = this_thread();
    if (s && s->cap[slot] * sizeof(float) > max_bytes) {
        free(s->p[slot]);
        s->p[slot] = NULL;
        s->cap[slot] = 0;
    }
}

/* error.c: per-thread error messages for the core (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];

/* Formatted aside first: a message may wrap the previous one (pr_error("%s: %s", path,
 * pr_last_error())), and vsnprintf must not read the buffer it writes. */
static void set_message(const char *fmt, va_list ap)
{
    char buf[sizeof last_error];
    vsnprintf(buf, sizeof buf, fmt, ap);
    memcpy(last_error, buf, sizeof buf);
}

int pr_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return PR_EINVAL;
}

int pr_error_code(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return code;
}

const char *pr_last_error(void) { return last_error; }

void pr_clear_error(void) { last_error[0] = '\0'; }

char *pr_shape_str(char *buf, size_t bufsize, int ndim, const int64_t *shape)
{
    size_t n = 0;
    if (bufsize == 0)
        return buf;
    n += (size_t)snprintf(buf + n, bufsize - n, "[");
    for (int i = 0; i < ndim && n < bufsize; i++)
        n += (size_t)snprintf(buf + n, bufsize - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < bufsize)
        snprintf(buf + n, bufsize - n, "]");
    return buf;
}

/* error.h: the core's one error channel.
 * Core functions never exit, abort or print. A failing function sets a message here and
 * returns its failure value (NULL, or a negative status); the caller (a binding, the C API,
 * a test) reads the message. The message is per thread so OpenBLAS-free worker threads and
 * embedding hosts with several threads do not see each other's errors. */
#ifndef PR_ERROR_H
#define PR_ERROR_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define PR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PR_PRINTF(a, b)
#endif

/* Statuses returned by core functions that return int. */
enum { PR_OK = 0, PR_EINVAL = -1, PR_ENOMEM = -2, PR_EIO = -3, PR_EFORMAT = -4 };

/* Sets the current thread's message (printf-style, truncated to 512 bytes); it may quote the
 * previous one (pr_last_error() as an argument). Returns PR_EINVAL so a failing function can
 * `return pr_error(...)`. */
int pr_error(const char *fmt, ...) PR_PRINTF(1, 2);
/* Like pr_error but with an explicit status to return. */
int pr_error_code(int code, const char *fmt, ...) PR_PRINTF(2, 3);
/* The last message set on this thread ("" if none). Owned by the core; valid until the next
 * pr_error on this thread. */
const char *pr_last_error(void);
void pr_clear_error(void);

/* Formats "[2,3,4]" into buf (owned by caller) for messages; returns buf. */
char *pr_shape_str(char *buf, size_t bufsize, int ndim, const int64_t *shape);

#endif

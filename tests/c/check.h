/* check.h: the C test runner's few macros. Each test file is one executable (one ctest entry);
 * CHECK failures are counted, printed with file:line, and make main return 1. */
#ifndef PR_CHECK_H
#define PR_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_failures, check_count;

#define CHECK(cond) do { check_count++; if (!(cond)) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { check_count++; if (!(cond)) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); check_count++; \
    if (!(fabs(a_ - b_) <= (tol))) { check_failures++; \
    fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %g, %s = %g (tol %g)\n", \
            __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol)); } } while (0)
#define RUN(test) do { int f0_ = check_failures; test(); \
    printf("%-40s %s\n", #test, check_failures == f0_ ? "ok" : "FAILED"); } while (0)
#define CHECK_DONE() (printf("%d checks, %d failed\n", check_count, check_failures), \
    check_failures ? 1 : 0)

#endif

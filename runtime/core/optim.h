/* optim.h: one optimizer step for one parameter, in C because it touches every weight every
 * step. The Lua side (lua/prunert/optim.lua) owns parameter groups, state tables and schedules.
 * A parameter with a mask (tensor.h) stays exactly zero where the mask is zero: the gradient is
 * already masked by autograd, and the step re-applies the mask to the weight and to every state
 * buffer so momentum, Adam moments and weight decay can never move a pruned weight off zero. */
#ifndef PR_OPTIM_H
#define PR_OPTIM_H

#include "tensor.h"

typedef struct pr_sgd_opts {
    double lr, momentum, dampening, weight_decay, l1;
    int nesterov;
} pr_sgd_opts;

typedef struct pr_adam_opts {
    double lr, beta1, beta2, eps, weight_decay, l1;
    int decoupled;   /* 1 = AdamW (decay applied to the weight, not the gradient) */
} pr_adam_opts;

/* p: the parameter (float32, contiguous, with p->grad set; a NULL grad is a no-op).
 * buf: momentum buffer of p's shape (borrowed), required when momentum != 0.
 * first: 1 on the first step (the buffer is initialised from the gradient, as PyTorch). */
int pr_sgd_step(pr_tensor *p, pr_tensor *buf, const pr_sgd_opts *o, int first);

/* m, v: first and second moment buffers of p's shape (borrowed); step: 1-based step count. */
int pr_adam_step(pr_tensor *p, pr_tensor *m, pr_tensor *v, int64_t step, const pr_adam_opts *o);

#endif

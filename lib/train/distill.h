/* distill.h: knowledge distillation on the teacher's logits (cb-train(1), phase
 * distill): the loss alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) CE,
 * whose KL part and its gradient are computed here, on the host, row by row in double. */
#ifndef CB_TRAIN_DISTILL_H
#define CB_TRAIN_DISTILL_H

/* The mean over rows of KL(softmax(t / temp) || softmax(s / temp)), for s and t (rows, V)
 * the student's and the teacher's logits; ds (rows, V) += scale * temp^2 times its
 * gradient with respect to s, that is scale * temp * (softmax(s / temp) - softmax(t / temp))
 * / rows (ds may be NULL). */
double cb_distill_kl(float *ds, const float *s, const float *t, int rows, int V, double temp, double scale);

#endif

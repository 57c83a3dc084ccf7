/* compare.c: the L1 distance between teacher and student, layer by layer, on the same
 * batches. Sums are in double: a mean over millions of elements keeps its digits. The
 * rows of a batch run one at a time (the models are causal, so a row's outputs do not
 * depend on the others): the logits of a whole batch at a Llama vocabulary would take B
 * times the memory (8 x 2048 x 128256 floats are 8 GB per model). */
#include "verify/compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "verify/batch_forward.h"

double cb_l1_mean(const cb_l1_stat *s) { return s->n ? s->sum / (double)s->n : 0.0; }

void cb_l1_add(cb_l1_stat *s, const float *a, const float *b, size_t n) {
    double sum = 0, max = s->max;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        sum += d;
        if (isnan(d) || d > max) max = d; /* a NaN stays: nothing compares above it */
    }
    s->sum += sum;
    s->max = max;
    s->n += n;
}

static int vocab_of(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

/* pair the attention ops of both programs; fills r->layers */
static int pair_layers(cb_compare_result *r, const cb_batch_forward *t, const cb_batch_forward *s, int **t_ops,
                       int **s_ops, cb_error *e) {
    int nt = cb_batch_forward_attention_ops(t, NULL, 0), ns = cb_batch_forward_attention_ops(s, NULL, 0);
    if (nt != ns)
        return cb_fail(e, CB_E_INVALID, "", "the teacher has %d attention layers and the student %d: compare pairs "
                       "them one to one", nt, ns);
    *t_ops = cb_calloc((size_t)nt + 1, sizeof **t_ops, e);
    *s_ops = cb_calloc((size_t)nt + 1, sizeof **s_ops, e);
    r->layers = cb_calloc((size_t)nt + 1, sizeof *r->layers, e);
    if (!*t_ops || !*s_ops || !r->layers) return CB_E_RUNTIME;
    r->n_layers = nt;
    cb_batch_forward_attention_ops(t, *t_ops, nt);
    cb_batch_forward_attention_ops(s, *s_ops, nt);
    for (int i = 0; i < nt; i++) {
        const cb_op *a = &t->prog.ops[(*t_ops)[i]], *b = &s->prog.ops[(*s_ops)[i]];
        snprintf(r->layers[i].teacher_op, sizeof r->layers[i].teacher_op, "%s", a->id);
        snprintf(r->layers[i].student_op, sizeof r->layers[i].student_op, "%s", b->id);
        int wa = t->prog.slots[a->out].width, wb = s->prog.slots[b->out].width;
        if (wa != wb)
            return cb_fail(e, CB_E_INVALID, "", "attention layer %d: the teacher's output (%s) is %d wide and the "
                           "student's (%s) %d", i, a->id, wa, b->id, wb);
    }
    return CB_OK;
}

static int finite_all(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int cb_compare_run(cb_compare_result *r, const cb_model *teacher, const cb_model *student, const cb_dataset *ds,
                   int B, int T, int batches, const cb_verify_progress *progress, cb_error *e) {
    memset(r, 0, sizeof *r);
    r->batches = batches;
    r->B = B;
    r->T = T;
    if (vocab_of(teacher) != vocab_of(student))
        return cb_fail(e, CB_E_INVALID, "", "the teacher's vocabulary has %d ids and the student's %d: their logits "
                       "cannot be compared", vocab_of(teacher), vocab_of(student));
    cb_batch_forward tf, sf;
    int *t_ops = NULL, *s_ops = NULL;
    int32_t *x = NULL, *y = NULL;
    cb_batcher batcher;
    CB_TRY(cb_batcher_init(&batcher, ds, B, T, 0, 0, e));
    CB_TRY(cb_batch_forward_init(&tf, teacher, 1, T, e));
    int rc = cb_batch_forward_init(&sf, student, 1, T, e);
    if (rc != CB_OK) {
        cb_batch_forward_free(&tf);
        return rc;
    }
    rc = pair_layers(r, &tf, &sf, &t_ops, &s_ops, e);
    x = cb_malloc((size_t)B * (size_t)T, sizeof *x, e);
    y = cb_malloc((size_t)B * (size_t)T, sizeof *y, e);
    if (rc == CB_OK && (!x || !y)) rc = CB_E_RUNTIME;
    for (int b = 0; rc == CB_OK && b < batches; b++) {
        cb_batcher_next(&batcher, x, y);
        for (int row = 0; row < B; row++) {
            const int32_t *xr = x + (size_t)row * (size_t)T;
            cb_batch_forward_run(&tf, xr, NULL);
            cb_batch_forward_run(&sf, xr, NULL);
            for (int l = 0; l < r->n_layers; l++) {
                int w;
                const float *a = cb_batch_forward_output(&tf, t_ops[l], &w);
                const float *o = cb_batch_forward_output(&sf, s_ops[l], &w);
                size_t n = (size_t)T * (size_t)w;
                cb_l1_add(&r->layers[l].l1, a, o, n);
                r->nonfinite |= !finite_all(a, n) || !finite_all(o, n);
            }
            size_t nl = (size_t)T * (size_t)tf.prog.vocab_size;
            const float *lt = cb_batch_forward_logits(&tf), *ls = cb_batch_forward_logits(&sf);
            cb_l1_add(&r->logits, lt, ls, nl);
            r->nonfinite |= !finite_all(lt, nl) || !finite_all(ls, nl);
        }
        cb_verify_progress_step(progress, "compare: batches", b + 1, batches);
    }
    free(x);
    free(y);
    free(t_ops);
    free(s_ops);
    cb_batch_forward_free(&tf);
    cb_batch_forward_free(&sf);
    if (rc != CB_OK) cb_compare_result_free(r);
    return rc;
}

void cb_compare_result_free(cb_compare_result *r) {
    free(r->layers);
    memset(r, 0, sizeof *r);
}

/* test_model_reference.c: whole models (Llama with GQA, DBA with the gate, GPT-2 style, every
 * topology) run forward and backward in float against PyTorch fixtures made by
 * tests/reference/make_model_fixtures.py from the committed plans tests/reference/models/M.plan.json. */
#include "test.h"

#include <stdlib.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "tensor/safetensors.h"

/* Per tensor: max|c - torch| / (max|torch| + 1e-6) <= 1e-5. The reference is float64 rounded
 * once to float32; the C side runs in float32, so this bounds its accumulated rounding.
 * A gradient that is zero by construction (torch's float64 value below REF_ZERO: an attention
 * k.bias without RoPE, as softmax ignores a constant added to a row of scores) holds only
 * float32 rounding noise in C; it is measured against the model's largest gradient instead. */
#define REF_RTOL 1e-5
#define REF_ZERO 1e-12

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* max|got - want| / (scale + 1e-6) */
static double rel_diff(const float *got, const float *want, size_t n, double scale) {
    double diff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        diff = cb_test_worst(diff, d); /* a NaN wins and stays */
    }
    return diff / (scale + 1e-6);
}

static void path_of(char *out, size_t n, const char *model, const char *ext) {
    const char *root = getenv("CB_ROOT");
    snprintf(out, n, "%s/tests/reference/models/%s%s", root && *root ? root : ".", model, ext);
}

/* The committed plan must be what today's compiler makes of the committed YAML, so the
 * fixtures cannot silently describe another model. */
static void check_plan_fresh(const char *model, const json_t *plan) {
    char path[1024], name[256];
    path_of(path, sizeof path, model, ".yml");
    /* the plan was made by `cb-parse tests/reference/models/M.yml`: same source locations */
    snprintf(name, sizeof name, "tests/reference/models/%s.yml", model);
    char *text = NULL;
    size_t len;
    cb_error e;
    if (cb_read_file(path, 0, &text, &len, &e) != CB_OK) { FAILF("%.300s: %.300s", path, e.msg); return; }
    json_t *fresh = test_compile(text, name);
    free(text);
    if (!fresh) { FAILF("%s: does not compile", name); return; }
    if (!json_equal(json_object_get(fresh, "model"), json_object_get(plan, "model")))
        FAILF("%s: its plan differs from %s.plan.json: regenerate the plan and the fixture "
              "(see tests/reference/make_model_fixtures.py)", name, model);
    json_decref(fresh);
}

/* A copy of the I32 tensor name, which must be [B,T] (*B, *T set when 0); NULL on failure. */
static int32_t *read_tokens(const cb_safetensors *st, const char *name, int *B, int *T) {
    cb_tensor t;
    cb_error e;
    if (cb_safetensors_get(st, name, &t, &e) != CB_OK) { FAILF("%.300s: %.300s", e.where, e.msg); return NULL; }
    if (t.dtype != CB_DTYPE_I32 || t.ndim != 2 || (*B && (t.shape[0] != *B || t.shape[1] != *T))) {
        FAILF("%.300s: %s must be I32 [B,T] like tokens", st->path, name);
        return NULL;
    }
    *B = (int)t.shape[0], *T = (int)t.shape[1];
    int32_t *copy = malloc(t.nbytes); /* the view may be unaligned for int32 */
    if (copy) memcpy(copy, t.data, t.nbytes);
    else FAILF("out of memory");
    return copy;
}

/* Compares loss, logits and every gradient of the float run r (after forward and backward)
 * with the fixture; want: scratch of max(B*T*V, total_floats) floats. */
static void compare(const char *model, const cb_safetensors *st, const cb_model *m, const cb_run *r,
                    const cb_program *prog, float loss, const float *grads, float *want) {
    char label[320];
    cb_error e;
    float want_loss;
    size_t n_logits = (size_t)prog->B * prog->T * prog->vocab_size;
    if (cb_safetensors_read_f32(st, "loss", &want_loss, 1, &e) != CB_OK ||
        cb_safetensors_read_f32(st, "logits", want, n_logits, &e) != CB_OK) {
        FAILF("%s: %.300s", model, e.msg);
        return;
    }
    double d = fabs((double)loss - want_loss) / (fabs(want_loss) + 1e-6);
    snprintf(label, sizeof label, "%s loss (C %.8f, torch %.8f)", model, loss, want_loss);
    REPORT_DIFF(label, d, REF_RTOL);
    if (!(d <= REF_RTOL)) FAILF("%s: loss %.9g, torch %.9g", model, loss, want_loss);
    const float *logits = cb_run_op_output(r, prog, prog->n_ops - 1, NULL);
    d = rel_diff(logits, want, n_logits, max_abs(want, n_logits));
    snprintf(label, sizeof label, "%s logits", model);
    REPORT_DIFF(label, d, REF_RTOL);
    if (!(d <= REF_RTOL)) FAILF("%s: logits differ from torch: %.3e", model, d);

    /* the reference gradients in the weights' layout */
    memset(want, 0, m->params.total_floats * sizeof *want);
    for (int i = 0; i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        char gname[CB_PARAM_NAME_MAX + 8];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        if (cb_safetensors_read_f32(st, gname, want + p->offset, p->numel, &e) != CB_OK) {
            FAILF("%s: %.300s", model, e.msg);
            return;
        }
    }
    double largest = max_abs(want, m->params.total_floats), worst = 0;
    for (int i = 0; i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        double scale = max_abs(want + p->offset, p->numel);
        int zero = scale < REF_ZERO;
        d = rel_diff(grads + p->offset, want + p->offset, p->numel, zero ? largest : scale);
        worst = cb_test_worst(worst, d);
        snprintf(label, sizeof label, "%s grad.%s%s", model, p->name, zero ? " (0 in torch)" : "");
        REPORT_DIFF(label, d, REF_RTOL);
        if (!(d <= REF_RTOL)) FAILF("%s: grad.%s differs from torch: %.3e", model, p->name, d);
    }
    snprintf(label, sizeof label, "%s every gradient", model);
    REPORT_DIFF(label, worst, REF_RTOL);
}

static void check_reference(const char *model) {
    char path[1024];
    cb_error e;
    json_t *plan = NULL;
    cb_model m;
    cb_safetensors st;
    cb_program prog;
    cb_run r;
    int have_model = 0, have_st = 0, have_prog = 0, have_run = 0, B = 0, T = 0;
    int32_t *tokens = NULL, *targets = NULL;
    float *grads = NULL, *want = NULL, loss;
    size_t n_logits;

    path_of(path, sizeof path, model, ".plan.json");
    if (cb_doc_load(path, "plan", &plan, &e) != CB_OK) { FAILF("%.300s: %.300s", e.where, e.msg); return; }
    check_plan_fresh(model, plan);
    if (cb_model_init_empty(&m, plan, &e) != CB_OK) { FAILF("%s: %.300s", model, e.msg); goto done; }
    have_model = 1;
    path_of(path, sizeof path, model, ".safetensors");
    if (cb_safetensors_open(&st, path, &e) != CB_OK) { FAILF("%.300s: %.300s", e.where, e.msg); goto done; }
    have_st = 1;
    /* every weight and its gradient, plus tokens, targets, logits and loss: nothing else */
    EXPECT_EQ_INT(2 * m.params.n + 4, st.n_tensors);
    for (int i = 0; i < m.params.n; i++) {
        const cb_param *p = &m.params.items[i];
        if (cb_safetensors_check_shape(&st, p->name, p->ndim, p->shape, &e) != CB_OK ||
            cb_safetensors_read_f32(&st, p->name, m.weights + p->offset, p->numel, &e) != CB_OK) {
            FAILF("%s: %.300s", model, e.msg);
            goto done;
        }
    }
    if (!(tokens = read_tokens(&st, "tokens", &B, &T)) || !(targets = read_tokens(&st, "targets", &B, &T)))
        goto done;
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK) { FAILF("%s: %.300s", model, e.msg); goto done; }
    have_prog = 1;
    if (cb_run_init(&r, &prog, 1, &e) != CB_OK) { FAILF("%s: %.300s", model, e.msg); goto done; }
    have_run = 1;
    n_logits = (size_t)B * T * prog.vocab_size;
    grads = calloc(m.params.total_floats, sizeof *grads);
    want = malloc((n_logits > m.params.total_floats ? n_logits : m.params.total_floats) * sizeof *want);
    if (!grads || !want) { FAILF("out of memory"); goto done; }
    r.dropout_seed = 1; /* irrelevant: every DropoutLayer of the reference models has p 0 */
    loss = cb_run_forward(&r, &prog, m.weights, tokens, targets);
    cb_run_backward(&r, &prog, m.weights, grads);
    compare(model, &st, &m, &r, &prog, loss, grads, want);

done:
    free(tokens);
    free(targets);
    free(grads);
    free(want);
    if (have_run) cb_run_free(&r);
    if (have_prog) cb_program_free(&prog);
    if (have_st) cb_safetensors_close(&st);
    if (have_model) cb_model_free(&m);
    json_decref(plan);
}

TEST(reference_llama_gqa) { check_reference("llama_gqa"); }
TEST(reference_dba_gate) { check_reference("dba_gate"); }
TEST(reference_gpt2) { check_reference("gpt2"); }
TEST(reference_topologies) { check_reference("topologies"); }

/* plan_print.c: cb_plan_print, a plan as a readable tree for `cb compile --print-plan`:
 * one line per node, a NestedTopology once with its "xN", totals last. */
#include "plan/plan.h"

#include <stdint.h>
#include <string.h>

/* 1234567 -> "1,234,567"; a missing count -> "?". */
static const char *with_commas(const json_t *v, char *buf, size_t n) {
    if (!json_is_integer(v)) return "?";
    char digits[32];
    long long x = json_integer_value(v);
    snprintf(digits, sizeof digits, "%lld", x < 0 ? -x : x);
    size_t len = strlen(digits), o = 0;
    if (x < 0 && o + 1 < n) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* 1235814400 -> "1.24B", 124439808 -> "124.44M". */
static const char *short_count(const json_t *v, char *buf, size_t n) {
    double x = json_is_integer(v) ? (double)json_integer_value(v) : 0;
    if (x >= 1e9) snprintf(buf, n, "%.2fB", x / 1e9);
    else if (x >= 1e6) snprintf(buf, n, "%.2fM", x / 1e6);
    else if (x >= 1e3) snprintf(buf, n, "%.2fK", x / 1e3);
    else snprintf(buf, n, "%.0f", x);
    return buf;
}

static const char *width(const json_t *v, char *buf, size_t n) {
    if (json_is_integer(v)) snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else snprintf(buf, n, "?");
    return buf;
}

static const char *node_label(const json_t *node) {
    const char *id = json_string_value(json_object_get(node, "id"));
    return id && id[0] ? id : "(topology)";
}

/* Widest "indent + id" of the tree, for the column layout. */
static int label_width(const json_t *node, int depth) {
    int wd = 2 * depth + (int)strlen(node_label(node));
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(node, "children"), i, child) {
        int c = label_width(child, depth + 1);
        if (c > wd) wd = c;
    }
    return wd;
}

static void line(FILE *fp, int col, int depth, const char *label, const char *type,
                 const json_t *d_in, const json_t *d_out, const json_t *params, const char *extra) {
    char a[32], b[32], p[40], io[80];
    snprintf(io, sizeof io, "%s->%s", width(d_in, a, sizeof a), width(d_out, b, sizeof b));
    fprintf(fp, "%*s%-*s  %-22s %-15s %15s%s\n", 2 * depth, "", col - 2 * depth, label, type, io,
            with_commas(params, p, sizeof p), extra);
}

static void print_node(FILE *fp, const json_t *node, int depth, int col) {
    const char *type = json_string_value(json_object_get(node, "type"));
    char tbuf[64], extra[96] = "", k[40];
    const json_t *repeat = json_object_get(node, "repeat");
    const json_t *kv = json_object_get(node, "kv_cache_elems_per_token");
    if (json_is_integer(repeat))
        snprintf(tbuf, sizeof tbuf, "%s x%lld", type ? type : "?", (long long)json_integer_value(repeat));
    else
        snprintf(tbuf, sizeof tbuf, "%s", type ? type : "?");
    if (json_is_integer(json_object_get(node, "cycles")))
        snprintf(extra, sizeof extra, "  cycles %lld", (long long)json_integer_value(json_object_get(node, "cycles")));
    if (json_is_integer(json_object_get(node, "steps")))
        snprintf(extra, sizeof extra, "  steps %lld", (long long)json_integer_value(json_object_get(node, "steps")));
    if (json_is_string(json_object_get(node, "combine")))
        snprintf(extra, sizeof extra, "  combine %s", json_string_value(json_object_get(node, "combine")));
    if (kv) snprintf(extra, sizeof extra, "  kv %s elems/token", with_commas(kv, k, sizeof k));
    line(fp, col, depth, node_label(node), tbuf, json_object_get(node, "d_in"), json_object_get(node, "d_out"),
         json_object_get(node, "params"), extra);
    size_t i;
    json_t *child;
    json_array_foreach(json_object_get(node, "children"), i, child) print_node(fp, child, depth + 1, col);
}

/* One model: its header line, the tree, its totals. */
static void print_model(FILE *fp, const char *title, const json_t *model, const json_t *tot) {
    const json_t *emb = json_object_get(model, "embedder"), *topo = json_object_get(model, "topology");
    const json_t *head = json_object_get(model, "head");
    char a[40], b[40], c[40], s[40];
    int col = json_is_object(topo) ? label_width(topo, 0) : 0;
    if (col < 12) col = 12;

    fprintf(fp, "%s: %s, vocab %s, d_model %s%s\n", title,
            json_string_value(json_object_get(model, "type")) ? json_string_value(json_object_get(model, "type")) : "?",
            width(json_object_get(model, "vocab_size"), a, sizeof a), width(json_object_get(model, "d_model"), b, sizeof b),
            json_is_true(json_object_get(model, "tie_embeddings")) ? ", tied embeddings" : "");
    fprintf(fp, "%-*s  %-22s %-15s %15s\n", col, "id", "type", "d_in->d_out", "params");
    char etype[64];
    snprintf(etype, sizeof etype, "embedder %s", json_string_value(json_object_get(emb, "type")) ? json_string_value(json_object_get(emb, "type")) : "?");
    line(fp, col, 0, "embed", etype, json_object_get(emb, "vocab_size"), json_object_get(emb, "d_model"),
         json_object_get(emb, "params"), "");
    if (json_is_object(topo)) print_node(fp, topo, 0, col);
    line(fp, col, 0, "head", json_is_true(json_object_get(head, "tied")) ? "lm head (tied)" : "lm head",
         json_object_get(head, "d_in"), json_object_get(head, "vocab_size"), json_object_get(head, "params"), "");

    const json_t *kv = json_object_get(tot, "kv_cache_elems_per_token");
    long long kv_elems = json_is_integer(kv) ? json_integer_value(kv) : 0;
    int fits = kv_elems >= 0 && kv_elems <= INT64_MAX / 4;
    json_t *fp16 = fits ? json_integer(kv_elems * 2) : json_null();
    json_t *fp32 = fits ? json_integer(kv_elems * 4) : json_null();
    fprintf(fp, "totals\n");
    fprintf(fp, "  params            %s (%s): embedding %s, topology %s, head %s\n",
            with_commas(json_object_get(tot, "params"), s, sizeof s), short_count(json_object_get(tot, "params"), a, sizeof a),
            with_commas(json_object_get(tot, "params_embedding"), b, sizeof b),
            with_commas(json_object_get(tot, "params_topology"), c, sizeof c),
            with_commas(json_object_get(tot, "params_head"), etype, sizeof etype));
    fprintf(fp, "  attention layers  %s\n", with_commas(json_object_get(tot, "attention_layers"), a, sizeof a));
    fprintf(fp, "  KV cache/token    %s elems = %s bytes fp16, %s bytes fp32\n", with_commas(kv, a, sizeof a),
            with_commas(fp16, b, sizeof b), with_commas(fp32, c, sizeof c));
    json_decref(fp16);
    json_decref(fp32);
}

/* The students (plan/student.c), each distinct one once, naming the runs that train it,
 * with its KV cache per token beside the teacher's (keys and values of every layer). */
static void print_students(FILE *fp, const json_t *students, const json_t *teacher_totals) {
    size_t i, k;
    const json_t *s, *o;
    json_array_foreach(students, i, s) {
        int seen = 0;
        for (k = 0; k < i && !seen; k++) {
            o = json_array_get(students, k);
            seen = json_equal(json_object_get(o, "model"), json_object_get(s, "model"));
        }
        if (seen) continue;
        char title[1024];
        size_t n = (size_t)snprintf(title, sizeof title, "\nstudent of");
        json_array_foreach(students, k, o) {
            if (k < i || !json_equal(json_object_get(o, "model"), json_object_get(s, "model"))) continue;
            if (n < sizeof title)
                n += (size_t)snprintf(title + n, sizeof title - n, "%s %s/%s%s", k > i ? "," : "",
                                      json_string_value(json_object_get(o, "group")),
                                      json_string_value(json_object_get(o, "run")),
                                      json_is_true(json_object_get(o, "surgery")) ? " (surgery)" : "");
        }
        print_model(fp, title, json_object_get(s, "model"), json_object_get(s, "totals"));
        const json_t *skv = json_object_get(json_object_get(s, "totals"), "kv_cache_elems_per_token");
        const json_t *tkv = json_object_get(teacher_totals, "kv_cache_elems_per_token");
        if (json_is_integer(skv) && json_is_integer(tkv) && json_integer_value(tkv) > 0) {
            char a[40], b[40];
            double r = (double)json_integer_value(skv) / (double)json_integer_value(tkv);
            fprintf(fp, "  KV cache/token    student %s elems, teacher %s: %.4g of the teacher's (1/%.3g), keys and values\n",
                    with_commas(skv, a, sizeof a), with_commas(tkv, b, sizeof b), r, r > 0 ? 1 / r : 0);
        }
    }
}

int cb_plan_print(FILE *fp, const json_t *plan_doc) {
    const char *name = json_string_value(json_object_get(plan_doc, "name"));
    char title[512];
    snprintf(title, sizeof title, "plan %s", name ? name : "(unnamed)");
    const json_t *tot = json_object_get(plan_doc, "totals");
    print_model(fp, title, json_object_get(plan_doc, "model"), tot);
    print_students(fp, json_object_get(plan_doc, "students"), tot);
    return ferror(fp) ? -1 : 0;
}

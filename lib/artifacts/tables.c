/* tables.c: tables.tex (booktabs, for \input in a paper) and tables.md with the same
 * tables: the models compared (the reference first, then each other model and its change
 * as value / reference, x), an arrow on each metric for the better direction; the
 * training runs; and, in tables.md, the sample texts of generation benchmarks. */
#include "artifacts/artifacts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/atomic_file.h"

static void fmt_value(char *buf, size_t n, double v) {
    double a = fabs(v);
    if (!isfinite(v)) snprintf(buf, n, "--");
    else if (a >= 1000) snprintf(buf, n, "%.0f", v);
    else if (a >= 100) snprintf(buf, n, "%.1f", v);
    else if (a >= 1) snprintf(buf, n, "%.2f", v);
    else snprintf(buf, n, "%.3g", v);
}

static void tex_escape(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '\\': fputs("\\textbackslash{}", f); break;
        case '~': fputs("\\textasciitilde{}", f); break;
        case '^': fputs("\\textasciicircum{}", f); break;
        case '_': case '%': case '&': case '#': case '$': case '{': case '}': fputc('\\', f); fputc(*s, f); break;
        default: fputc(*s, f);
        }
    }
}

static void md_escape(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '|' || *s == '\\' || *s == '*' || *s == '_' || *s == '`') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

static double num(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

/* the columns: the reference, then the other models */
static int columns(const json_t *models, const char *cols[], int cap) {
    const char *ref = cb_artifacts_reference(models);
    int n = 0;
    if (ref) cols[n++] = ref;
    for (size_t k = 0; k < json_array_size(models) && n < cap; k++) {
        const char *m = json_string_value(json_array_get(models, k));
        if (!ref || strcmp(m, ref) != 0) cols[n++] = m;
    }
    return n;
}

#define MAX_COLS 16

static void write_tex(FILE *f, const json_t *compare, const json_t *models, const cb_artifacts_input *in,
                      const char *caption) {
    const char *cols[MAX_COLS];
    int nc = columns(models, cols, MAX_COLS);
    char buf[64];
    if (json_array_size(compare) > 0 && nc > 0) {
        fputs("\\begin{table}[h]\n\\centering\n\\caption{", f);
        tex_escape(f, caption);
        fputs("}\n\\begin{tabular}{l", f);
        for (int c = 0; c < nc; c++) fputs(c ? "rr" : "r", f);
        fputs("}\n\\toprule\n\\textbf{Metric}", f);
        for (int c = 0; c < nc; c++) {
            fputs(" & \\textbf{", f);
            tex_escape(f, cols[c]);
            fputs("}", f);
            if (c) {
                fputs(" & \\textbf{Change", f);
                if (nc > 2) {
                    fputs(" (", f);
                    tex_escape(f, cols[c]);
                    fputs(")", f);
                }
                fputs("}", f);
            }
        }
        fputs(" \\\\\n\\midrule\n", f);
        size_t i;
        json_t *row;
        json_array_foreach(compare, i, row) {
            const char *unit = json_string_value(json_object_get(row, "unit"));
            tex_escape(f, json_string_value(json_object_get(row, "metric")));
            if (unit && *unit) {
                fputs(" (", f);
                tex_escape(f, unit);
                fputs(")", f);
            }
            fputs(strcmp(json_string_value(json_object_get(row, "better")), "lower") == 0 ? " $\\downarrow$" : " $\\uparrow$",
                  f);
            for (int c = 0; c < nc; c++) {
                fmt_value(buf, sizeof buf, num(json_object_get(json_object_get(row, "values"), cols[c])));
                fprintf(f, " & %s", buf);
                if (c) {
                    double ch = num(json_object_get(json_object_get(row, "change"), cols[c]));
                    if (isfinite(ch)) fprintf(f, " & %.2f$\\times$", ch);
                    else fputs(" & --", f);
                }
            }
            fputs(" \\\\\n", f);
        }
        fputs("\\bottomrule\n\\end{tabular}\n\\end{table}\n", f);
    }
    if (json_array_size(in->training) > 0) {
        fputs("\n\\begin{table}[h]\n\\centering\n\\caption{Training runs}\n\\begin{tabular}{lrrr}\n\\toprule\n"
              "\\textbf{Run} & \\textbf{Steps} & \\textbf{Loss} $\\downarrow$ & \\textbf{Validation loss} $\\downarrow$ \\\\\n"
              "\\midrule\n", f);
        size_t i;
        json_t *t;
        json_array_foreach(in->training, i, t) {
            const json_t *rows = json_object_get(t, "rows");
            const json_t *last = json_array_get(rows, json_array_size(rows) - 1);
            double vl = NAN;
            for (size_t k = json_array_size(rows); k-- > 0 && isnan(vl);) vl = num(json_object_get(json_array_get(rows, k), "val_loss"));
            tex_escape(f, json_string_value(json_object_get(t, "run")));
            fprintf(f, " & %lld", (long long)json_integer_value(json_object_get(last, "step")));
            fmt_value(buf, sizeof buf, num(json_object_get(last, "loss")));
            fprintf(f, " & %s", buf);
            fmt_value(buf, sizeof buf, vl);
            fprintf(f, " & %s \\\\\n", buf);
        }
        fputs("\\bottomrule\n\\end{tabular}\n\\end{table}\n", f);
    }
    if (json_array_size(compare) == 0 && json_array_size(in->training) == 0) fputs("% no measurements to tabulate\n", f);
}

static void write_md(FILE *f, const json_t *compare, const json_t *models, const cb_artifacts_input *in,
                     const char *caption) {
    const char *cols[MAX_COLS];
    int nc = columns(models, cols, MAX_COLS);
    char buf[64];
    fputs("# ", f);
    md_escape(f, caption);
    fputs("\n", f);
    if (json_array_size(compare) > 0 && nc > 0) {
        fputs("\n| Metric |", f);
        for (int c = 0; c < nc; c++) {
            fputc(' ', f);
            md_escape(f, cols[c]);
            fputs(" |", f);
            if (c) {
                fputs(" Change", f);
                if (nc > 2) {
                    fputs(" (", f);
                    md_escape(f, cols[c]);
                    fputs(")", f);
                }
                fputs(" |", f);
            }
        }
        fputs("\n|---|", f);
        for (int c = 0; c < nc; c++) fputs(c ? "---:|---:|" : "---:|", f);
        fputs("\n", f);
        size_t i;
        json_t *row;
        json_array_foreach(compare, i, row) {
            const char *unit = json_string_value(json_object_get(row, "unit"));
            fputs("| ", f);
            md_escape(f, json_string_value(json_object_get(row, "metric")));
            if (unit && *unit) {
                fputs(" (", f);
                md_escape(f, unit);
                fputs(")", f);
            }
            fputs(strcmp(json_string_value(json_object_get(row, "better")), "lower") == 0 ? " ↓ |" : " ↑ |", f);
            for (int c = 0; c < nc; c++) {
                fmt_value(buf, sizeof buf, num(json_object_get(json_object_get(row, "values"), cols[c])));
                fprintf(f, " %s |", buf);
                if (c) {
                    double ch = num(json_object_get(json_object_get(row, "change"), cols[c]));
                    if (isfinite(ch)) fprintf(f, " %.2f× |", ch);
                    else fputs(" -- |", f);
                }
            }
            fputs("\n", f);
        }
        fputs("\nChange: the model's value over ", f);
        md_escape(f, cols[0]);
        fputs("'s; ↓ lower is better, ↑ higher is better.\n", f);
    }
    if (json_array_size(in->training) > 0) {
        fputs("\n## Training runs\n\n| Run | Steps | Loss ↓ | Validation loss ↓ |\n|---|---:|---:|---:|\n", f);
        size_t i;
        json_t *t;
        json_array_foreach(in->training, i, t) {
            const json_t *rows = json_object_get(t, "rows");
            const json_t *last = json_array_get(rows, json_array_size(rows) - 1);
            double vl = NAN;
            for (size_t k = json_array_size(rows); k-- > 0 && isnan(vl);) vl = num(json_object_get(json_array_get(rows, k), "val_loss"));
            fputs("| ", f);
            md_escape(f, json_string_value(json_object_get(t, "run")));
            fprintf(f, " | %lld", (long long)json_integer_value(json_object_get(last, "step")));
            fmt_value(buf, sizeof buf, num(json_object_get(last, "loss")));
            fprintf(f, " | %s", buf);
            fmt_value(buf, sizeof buf, vl);
            fprintf(f, " | %s |\n", buf);
        }
    }
    int samples = 0;
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        const char *type = json_string_value(json_object_get(r, "type"));
        const char *text = json_string_value(json_object_get(json_object_get(r, "values"), "text"));
        const char *prompt = json_string_value(json_object_get(json_object_get(r, "params"), "prompt"));
        if (!type || strcmp(type, "generation") != 0 || !text) continue;
        if (!samples++) fputs("\n## Samples\n", f);
        fputs("\n**", f);
        md_escape(f, json_string_value(json_object_get(r, "model")));
        fputs("**, prompt: ", f);
        md_escape(f, prompt);
        fputs("\n\n````text\n", f);
        for (const char *p = text; *p; p++) /* a fence of four backticks: no line may start one */
            fputc(*p == '`' ? '\'' : *p, f);
        fputs("\n````\n", f);
    }
}

int cb_artifacts_write_tables(const json_t *compare, const json_t *models, const cb_artifacts_input *in,
                              const char *caption, const char *dir, cb_error *e) {
    char path[4200];
    cb_atomic_file af;
    snprintf(path, sizeof path, "%s/tables.tex", dir);
    CB_TRY(cb_atomic_open(&af, path, e));
    write_tex(af.fp, compare, models, in, caption);
    CB_TRY(cb_atomic_commit(&af, e));
    snprintf(path, sizeof path, "%s/tables.md", dir);
    CB_TRY(cb_atomic_open(&af, path, e));
    write_md(af.fp, compare, models, in, caption);
    return cb_atomic_commit(&af, e);
}

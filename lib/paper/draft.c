/* draft.c: the inputs of a paper, the offline draft, figures and versions. */
#include "paper/draft.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "manifest/schema_table.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

void cb_sb_printf(cb_sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->n + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->s, cap);
        if (!q) return;
        b->s = q;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void cb_sb_puts(cb_sb *b, const char *s) { cb_sb_printf(b, "%s", s); }

void cb_sb_tex(cb_sb *b, const char *s) {
    char *t = cb_tex_escape(s ? s : "");
    if (t) cb_sb_puts(b, t);
    free(t);
}

int cb_mkdirs(const char *path, cb_error *e) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, p, "cannot make folder: %s", strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, p, "cannot make folder: %s", strerror(errno));
    return CB_OK;
}

static json_t *section_with_defaults(const json_t *plan, const char *name, const cb_schema *s) {
    json_t *v = json_object_get(plan, name);
    json_t *o = json_is_object(v) ? json_deep_copy(v) : json_object();
    cb_schema_fill_object(o, s, 1);
    return o;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* sorted names of results_dir ending in ext */
static json_t *list_ext(const char *dir, const char *ext) {
    json_t *out = json_array();
    DIR *d = opendir(dir);
    if (!d) return out;
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name), le = strlen(ext);
        /* names LaTeX takes as they are: letters, digits, '_', '-', '.' */
        int plain = de->d_name[0] != '.' && strspn(de->d_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                               "0123456789_-.") == l;
        if (plain && l > le && strcmp(de->d_name + l - le, ext) == 0) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) { json_array_append_new(out, json_string(names[i])); free(names[i]); }
    return out;
}

int cb_paper_inputs_load(cb_paper_inputs *in, const char *manifest_path, const char *results_dir, cb_diags *d,
                         cb_error *e) {
    memset(in, 0, sizeof *in);
    cb_numsrc_init(&in->numbers);
    snprintf(in->manifest_path, sizeof in->manifest_path, "%s", manifest_path);
    size_t ml = strlen(manifest_path);
    if (ml > 5 && strcmp(manifest_path + ml - 5, ".json") == 0) {
        CB_TRY(cb_doc_load(manifest_path, "plan", &in->plan, e));
    } else {
        json_t *m = NULL, *lowered = NULL;
        CB_TRY(cb_yaml_parse_file(manifest_path, &m, e));
        int rc = cb_lower(m, &lowered, d);
        json_decref(m);
        if (rc != CB_OK) return rc;
        rc = cb_validate(lowered, &in->plan, d);
        json_decref(lowered);
        if (rc != CB_OK) return rc;
    }
    in->paper = section_with_defaults(in->plan, "paper", &cb_paper_schema);
    if (!json_object_get(in->paper, "title")) {
        const char *name = json_string_value(json_object_get(in->plan, "name"));
        json_object_set_new(in->paper, "title", json_string(name ? name : "caramba experiment"));
    }
    in->review = section_with_defaults(in->plan, "review", &cb_review_schema);
    in->research = section_with_defaults(in->plan, "research", &cb_research_schema);
    snprintf(in->results_dir, sizeof in->results_dir, "%s", results_dir ? results_dir : "");
    in->csvs = json_array();
    in->pngs = json_array();
    /* the plan's figures (parameters, cache per token, widths) may be shown */
    cb_numsrc_add_json(&in->numbers, json_object_get(in->plan, "totals"));
    cb_numsrc_add_json(&in->numbers, json_object_get(in->plan, "model"));
    cb_numsrc_add_json(&in->numbers, json_object_get(in->plan, "groups"));
    if (!results_dir || !results_dir[0]) return CB_OK;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/report.json", results_dir);
    struct stat st;
    if (stat(p, &st) == 0) {
        CB_TRY(cb_doc_load(p, NULL, &in->report, e));
        cb_numsrc_add_json(&in->numbers, in->report);
    }
    json_decref(in->csvs);
    json_decref(in->pngs);
    in->csvs = list_ext(results_dir, ".csv");
    in->pngs = list_ext(results_dir, ".png");
    size_t i;
    json_t *f;
    json_array_foreach(in->csvs, i, f) {
        snprintf(p, sizeof p, "%s/%s", results_dir, json_string_value(f));
        CB_TRY(cb_numsrc_add_csv(&in->numbers, p, e));
    }
    return CB_OK;
}

void cb_paper_inputs_free(cb_paper_inputs *in) {
    json_decref(in->plan);
    json_decref(in->paper);
    json_decref(in->review);
    json_decref(in->research);
    json_decref(in->report);
    json_decref(in->csvs);
    json_decref(in->pngs);
    cb_numsrc_free(&in->numbers);
    memset(in, 0, sizeof *in);
}

/* ---- the offline draft ---------------------------------------------------------- */

static const char *str(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* every attention layer config of the topology, once per distinct config */
static void collect_attention(const json_t *node, json_t *out) {
    const char *type = json_string_value(json_object_get(node, "type"));
    if (type && strstr(type, "Attention")) {
        json_t *cfg = json_object_get(node, "config");
        size_t i;
        json_t *c;
        int seen = 0;
        json_array_foreach(out, i, c) if (json_equal(c, cfg)) seen = 1;
        if (!seen && cfg) json_array_append(out, cfg);
    }
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(node, "children"), i, ch) collect_attention(ch, out);
}

static void find_type(const json_t *node, const char *want, const json_t **found) {
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!*found && type && strstr(type, want)) *found = node;
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(node, "children"), i, ch) find_type(ch, want, found);
}

static void row_int(cb_sb *b, const char *label, const json_t *v) {
    if (!json_is_number(v)) return;
    cb_sb_printf(b, "%s & ", label);
    if (json_is_integer(v)) cb_sb_printf(b, "%lld", (long long)json_integer_value(v));
    else cb_sb_printf(b, "%.6g", json_number_value(v));
    cb_sb_puts(b, " \\\\\n");
}

static void methodology(cb_sb *b, const cb_paper_inputs *in) {
    const json_t *model = json_object_get(in->plan, "model"), *tot = json_object_get(in->plan, "totals");
    cb_sb_puts(b, "The model is described by the experiment's manifest and was compiled by caramba into a plan; "
                  "Table~\\ref{tab:architecture} gives its shape, parameter count and the size of its "
                  "key-value cache, all read from that plan.\n\n");
    cb_sb_puts(b, "\\begin{table}[t]\n\\centering\n\\caption{Architecture, from the compiled plan.}\n"
                  "\\label{tab:architecture}\n\\begin{tabular}{lr}\n\\toprule\nQuantity & Value \\\\\n\\midrule\n");
    row_int(b, "Vocabulary size", json_object_get(model, "vocab_size"));
    row_int(b, "Model width $d$", json_object_get(model, "d_model"));
    row_int(b, "Attention layers", json_object_get(tot, "attention_layers"));
    json_t *attn = json_array();
    collect_attention(json_object_get(model, "topology"), attn);
    size_t i;
    json_t *c;
    json_array_foreach(attn, i, c) {
        char label[128];
        const char *mode = str(c, "mode");
        snprintf(label, sizeof label, "Query heads%s%s%s", mode[0] ? " (" : "", mode, mode[0] ? ")" : "");
        cb_sb_puts(b, "");
        row_int(b, label, json_object_get(c, "n_heads"));
        row_int(b, "Key/value heads", json_object_get(c, "n_kv_heads"));
        row_int(b, "Semantic key width", json_object_get(c, "sem_dim"));
        row_int(b, "Geometric key width", json_object_get(c, "geo_dim"));
        row_int(b, "Value width", json_object_get(c, "v_dim"));
    }
    const json_t *mlp = NULL;
    find_type(json_object_get(model, "topology"), "SwiGLU", &mlp);
    if (!mlp) find_type(json_object_get(model, "topology"), "MLP", &mlp);
    if (mlp) row_int(b, "Feed-forward width", json_object_get(json_object_get(mlp, "config"), "d_ff"));
    cb_sb_puts(b, "\\midrule\n");
    row_int(b, "Parameters", json_object_get(tot, "params"));
    row_int(b, "Embedding parameters", json_object_get(tot, "params_embedding"));
    row_int(b, "Block parameters", json_object_get(tot, "params_topology"));
    row_int(b, "KV cache values per token", json_object_get(tot, "kv_cache_elems_per_token"));
    cb_sb_puts(b, "\\bottomrule\n\\end{tabular}\n\\end{table}\n\n");
    if (json_array_size(attn) > 0) {
        const char *mode = str(json_array_get(attn, 0), "mode");
        if (strcmp(mode, "decoupled") == 0 || strcmp(mode, "dba") == 0)
            cb_sb_puts(b, "Attention is decoupled: queries and keys are split into a semantic path without "
                          "rotary position embedding and a geometric path with it, and the two scores are added "
                          "before the softmax, so the cache holds the smaller keys of both paths and the values.\n\n");
        else
            cb_sb_puts(b, "Attention groups its query heads on shared key and value heads, so the cache holds "
                          "keys and values of the key/value heads only.\n\n");
    }
    json_decref(attn);
}

static void experiments(cb_sb *b, const cb_paper_inputs *in) {
    const json_t *groups = json_object_get(in->plan, "groups");
    if (json_array_size(groups) == 0) {
        cb_sb_puts(b, "The manifest declares no experiment groups.\n\n");
        return;
    }
    cb_sb_puts(b, "The manifest declares the following experiment groups and runs.\n\\begin{itemize}\n");
    size_t i, j;
    json_t *g, *r;
    json_array_foreach(groups, i, g) {
        cb_sb_puts(b, "\\item \\textbf{");
        cb_sb_tex(b, str(g, "name"));
        cb_sb_puts(b, "}");
        if (str(g, "description")[0]) { cb_sb_puts(b, ": "); cb_sb_tex(b, str(g, "description")); }
        json_t *runs = json_object_get(g, "runs");
        if (json_array_size(runs) > 0) {
            cb_sb_puts(b, ". Runs: ");
            json_array_foreach(runs, j, r) {
                cb_sb_printf(b, "%s\\texttt{", j ? ", " : "");
                cb_sb_tex(b, str(r, "id"));
                cb_sb_puts(b, "}");
                if (str(r, "mode")[0]) { cb_sb_puts(b, " ("); cb_sb_tex(b, str(r, "mode")); cb_sb_puts(b, ")"); }
            }
        }
        cb_sb_puts(b, ".\n");
    }
    cb_sb_puts(b, "\\end{itemize}\n\n");
}

/* report.json's numbers, flattened to (path, value) rows */
static void flatten(const json_t *v, const char *path, json_t *rows) {
    if (json_array_size(rows) >= 40) return;
    if (json_is_number(v)) { json_array_append_new(rows, json_pack("[s,O]", path, v)); return; }
    char p[512];
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (k[0] == '@' || strcmp(k, "cb_version") == 0) continue;
            snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", k);
            flatten(x, p, rows);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            const char *id = json_string_value(json_object_get(x, "id"));
            if (!id) id = json_string_value(json_object_get(x, "name"));
            if (id) snprintf(p, sizeof p, "%s[%s]", path, id);
            else snprintf(p, sizeof p, "%s[%zu]", path, i);
            flatten(x, p, rows);
        }
    }
}

static void csv_table(cb_sb *b, const char *dir, const char *name, int index) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return;
    char line[8192];
    int row = 0, ncol = 0;
    char label[300];
    snprintf(label, sizeof label, "%s", name);
    char *dot = strrchr(label, '.');
    if (dot) *dot = 0;
    while (fgets(line, sizeof line, f) && row <= 30) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        char *cells[8];
        int n = 0;
        char *save = NULL;
        for (char *c = strtok_r(line, ",", &save); c && n < 8; c = strtok_r(NULL, ",", &save)) {
            if (*c == '"') c++;
            size_t l = strlen(c);
            if (l && c[l - 1] == '"') c[l - 1] = 0;
            cells[n++] = c;
        }
        if (row == 0) {
            ncol = n;
            cb_sb_puts(b, "\\begin{table}[t]\n\\centering\n\\caption{Results from \\texttt{");
            cb_sb_tex(b, name);
            cb_sb_printf(b, "}.}\n\\label{tab:results%d}\n\\begin{tabular}{l", index);
            for (int i = 1; i < ncol; i++) cb_sb_puts(b, "r");
            cb_sb_puts(b, "}\n\\toprule\n");
        }
        for (int i = 0; i < ncol; i++) {
            if (i) cb_sb_puts(b, " & ");
            if (i < n) cb_sb_tex(b, cells[i]);
        }
        cb_sb_puts(b, row == 0 ? " \\\\\n\\midrule\n" : " \\\\\n");
        row++;
    }
    fclose(f);
    if (row > 0) cb_sb_puts(b, "\\bottomrule\n\\end{tabular}\n\\end{table}\n\n");
}

static void results(cb_sb *b, const cb_paper_inputs *in) {
    int any = 0;
    if (in->report) {
        json_t *rows = json_array();
        flatten(in->report, "", rows);
        if (json_array_size(rows) > 0) {
            any = 1;
            cb_sb_puts(b, "Table~\\ref{tab:report} lists the measurements of the experiment's report.\n\n");
            cb_sb_puts(b, "\\begin{table}[t]\n\\centering\n\\caption{Measurements from \\texttt{report.json}.}\n"
                          "\\label{tab:report}\n\\begin{tabular}{lr}\n\\toprule\nMeasurement & Value \\\\\n\\midrule\n");
            size_t i;
            json_t *r;
            json_array_foreach(rows, i, r) {
                cb_sb_puts(b, "\\texttt{");
                cb_sb_tex(b, json_string_value(json_array_get(r, 0)));
                json_t *v = json_array_get(r, 1);
                if (json_is_integer(v)) cb_sb_printf(b, "} & %lld \\\\\n", (long long)json_integer_value(v));
                else cb_sb_printf(b, "} & %.6g \\\\\n", json_number_value(v));
            }
            cb_sb_puts(b, "\\bottomrule\n\\end{tabular}\n\\end{table}\n\n");
        }
        json_decref(rows);
    }
    size_t i;
    json_t *f;
    if (json_array_size(in->csvs) > 0) {
        any = 1;
        cb_sb_puts(b, "The result tables below are the experiment's CSV files as written.\n\n");
        json_array_foreach(in->csvs, i, f) csv_table(b, in->results_dir, json_string_value(f), (int)i + 1);
    }
    json_array_foreach(in->pngs, i, f) {
        any = 1;
        const char *name = json_string_value(f);
        cb_sb_printf(b, "\\begin{figure}[t]\n\\centering\n\\includegraphics[width=0.9\\linewidth]{figures/%s}\n"
                        "\\caption{\\texttt{", name);
        cb_sb_tex(b, name);
        cb_sb_printf(b, "}, drawn from the experiment's results.}\n\\label{fig:fig%zu}\n\\end{figure}\n\n", i + 1);
    }
    if (!any) cb_sb_puts(b, "No result files were found for this experiment yet; this section is filled in when "
                            "its runs and benchmarks have written their report.\n\n");
}

static const char *section_title(const char *s) {
    static const char *const map[][2] = {
        {"introduction", "Introduction"}, {"background", "Background"}, {"related_work", "Related Work"},
        {"methodology", "Method"}, {"experiments", "Experimental Setup"}, {"results", "Results"},
        {"discussion", "Discussion"}, {"limitations", "Limitations"}, {"conclusion", "Conclusion"},
        {"appendix", "Appendix"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) if (strcmp(map[i][0], s) == 0) return map[i][1];
    return s;
}

static void keyword_list(cb_sb *b, const json_t *kw) {
    size_t i, n = json_array_size(kw);
    json_t *k;
    json_array_foreach(kw, i, k) {
        if (i) cb_sb_puts(b, i + 1 == n ? " and " : ", ");
        cb_sb_tex(b, json_string_value(k));
    }
}

char *cb_draft_offline(const cb_paper_inputs *in, const cb_bib *bib) {
    cb_sb b = {0};
    const json_t *paper = in->paper;
    const char *type = str(paper, "paper_type");
    int blog = strcmp(type, "blog_post") == 0;
    cb_sb_puts(&b, "% Drafted by cb-paper from the experiment's manifest, plan and result files.\n");
    cb_sb_puts(&b, "% Every number in the body is found in a result file (cb-paper checks it).\n");
    cb_sb_printf(&b, "\\documentclass[11pt]{%s}\n", strcmp(type, "technical_report") == 0 ? "report" : "article");
    cb_sb_puts(&b, "\\usepackage[utf8]{inputenc}\n"
                   "\\usepackage{amsmath}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\usepackage{hyperref}\n");
    cb_sb_puts(&b, "\\title{");
    cb_sb_tex(&b, str(paper, "title"));
    cb_sb_puts(&b, "}\n\\author{");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(paper, "authors"), i, a) {
        if (i) cb_sb_puts(&b, " \\and ");
        cb_sb_tex(&b, json_string_value(a));
    }
    cb_sb_puts(&b, "}\n\\date{}\n\\begin{document}\n\\maketitle\n\n");
    const char *kind = blog ? "post" : strcmp(type, "technical_report") == 0 ? "report" : "paper";
    const char *name = str(in->plan, "name");
    json_t *sec;
    json_array_foreach(json_object_get(paper, "sections"), i, sec) {
        const char *s = json_string_value(sec);
        if (strcmp(s, "abstract") == 0) {
            cb_sb_puts(&b, "\\begin{abstract}\n");
            cb_sb_printf(&b, "This %s reports the experiment \\texttt{", kind);
            cb_sb_tex(&b, name);
            cb_sb_puts(&b, "}. We describe the model as compiled from its manifest, the runs that were declared, "
                           "and the measurements its benchmarks recorded; every figure given is read from the "
                           "experiment's plan and result files.\n\\end{abstract}\n\n");
            continue;
        }
        cb_sb_printf(&b, "\\section{%s}\n\\label{sec:%s}\n", section_title(s), s);
        if (strcmp(s, "introduction") == 0) {
            cb_sb_puts(&b, "Transformer language models spend much of their inference memory on the key-value "
                           "cache. ");
            if (json_array_size(json_object_get(paper, "keywords")) > 0) {
                cb_sb_puts(&b, "This work concerns ");
                keyword_list(&b, json_object_get(paper, "keywords"));
                cb_sb_puts(&b, ". ");
            }
            cb_sb_puts(&b, "Section~\\ref{sec:methodology} describes the model, and the experiments and their "
                           "results follow.\n\n");
        } else if (strcmp(s, "related_work") == 0 || strcmp(s, "background") == 0) {
            if (bib && cb_bib_count(bib) > 0) {
                cb_sb_puts(&b, "This work builds on earlier studies of ");
                keyword_list(&b, json_object_get(paper, "keywords"));
                cb_sb_puts(&b, "~\\cite{");
                json_t *en;
                size_t j;
                json_array_foreach(bib->entries, j, en) cb_sb_printf(&b, "%s%s", j ? "," : "", str(en, "key"));
                cb_sb_puts(&b, "}.\n\n");
            } else {
                cb_sb_puts(&b, "% No citations yet: cb-paper cites only papers found through the arXiv or "
                               "Semantic Scholar APIs, which an offline draft does not query.\n");
                cb_sb_puts(&b, "Related work is to be added from a literature search.\n\n");
            }
        } else if (strcmp(s, "methodology") == 0) {
            methodology(&b, in);
        } else if (strcmp(s, "experiments") == 0) {
            experiments(&b, in);
        } else if (strcmp(s, "results") == 0) {
            results(&b, in);
        } else if (strcmp(s, "discussion") == 0) {
            cb_sb_puts(&b, "The measurements above are those of the runs declared in the manifest; conclusions "
                           "beyond them would need further experiments.\n\n");
        } else if (strcmp(s, "limitations") == 0) {
            cb_sb_puts(&b, "The results cover only the configurations and data of this manifest.\n\n");
        } else if (strcmp(s, "conclusion") == 0) {
            cb_sb_printf(&b, "This %s described the experiment \\texttt{", kind);
            cb_sb_tex(&b, name);
            cb_sb_puts(&b, "}, its model and its measured results.\n\n");
        } else if (strcmp(s, "appendix") == 0) {
            cb_sb_puts(&b, "The manifest and plan of the experiment are kept beside its results.\n\n");
        }
    }
    if (bib && cb_bib_count(bib) > 0) cb_sb_puts(&b, "\\bibliographystyle{plain}\n\\bibliography{references}\n");
    cb_sb_puts(&b, "\\end{document}\n");
    return b.s;
}

int cb_paper_copy_figures(const cb_paper_inputs *in, const char *paper_dir, cb_error *e) {
    if (json_array_size(in->pngs) == 0) return CB_OK;
    char dir[PATH_MAX], src[PATH_MAX], dst[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/figures", paper_dir);
    CB_TRY(cb_mkdirs(dir, e));
    size_t i;
    json_t *f;
    json_array_foreach(in->pngs, i, f) {
        snprintf(src, sizeof src, "%s/%s", in->results_dir, json_string_value(f));
        snprintf(dst, sizeof dst, "%s/%s", dir, json_string_value(f));
        char *data = NULL;
        size_t n = 0;
        CB_TRY(cb_read_file(src, 0, &data, &n, e));
        int rc = cb_atomic_write(dst, data, n, e);
        free(data);
        CB_TRY(rc);
    }
    return CB_OK;
}

int cb_paper_save_version(const char *paper_dir, const char *tag, int max_versions, cb_error *e) {
    char cur[PATH_MAX], vdir[PATH_MAX], dst[PATH_MAX];
    snprintf(cur, sizeof cur, "%s/paper.tex", paper_dir);
    struct stat st;
    if (stat(cur, &st) != 0) return CB_OK;
    snprintf(vdir, sizeof vdir, "%s/versions", paper_dir);
    CB_TRY(cb_mkdirs(vdir, e));
    char prefix[64];
    snprintf(prefix, sizeof prefix, "paper_%s", tag);
    json_t *names = list_ext(vdir, ".tex");
    int next = 1;
    size_t i;
    json_t *f;
    json_array_foreach(names, i, f) {
        const char *n = json_string_value(f);
        if (strncmp(n, prefix, strlen(prefix)) == 0) {
            int k = atoi(n + strlen(prefix));
            if (k >= next) next = k + 1;
        }
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    snprintf(dst, sizeof dst, "%s/%s%03d_%s.tex", vdir, prefix, next, stamp);
    char *data = NULL;
    size_t n = 0;
    int rc = cb_read_file(cur, 0, &data, &n, e);
    if (rc == CB_OK) rc = cb_atomic_write(dst, data, n, e);
    free(data);
    json_decref(names);
    if (rc != CB_OK || max_versions <= 0) return rc;
    /* the oldest of this tag go first: names sort by their number */
    names = list_ext(vdir, ".tex");
    json_t *mine = json_array();
    json_array_foreach(names, i, f)
        if (strncmp(json_string_value(f), prefix, strlen(prefix)) == 0) json_array_append(mine, f);
    size_t have = json_array_size(mine);
    for (i = 0; have > (size_t)max_versions && i < have - (size_t)max_versions; i++) {
        snprintf(dst, sizeof dst, "%s/%s", vdir, json_string_value(json_array_get(mine, i)));
        unlink(dst);
    }
    json_decref(mine);
    json_decref(names);
    return CB_OK;
}

/* test_numbers.c: the number check of drafts, the key's redaction, and section edits. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "paper/http.h"
#include "paper/numbers.h"
#include "paper/paper_agent.h"
#include "test.h"

TEST(untraced_numbers) {
    cb_numsrc s;
    cb_numsrc_init(&s);
    cb_numsrc_add(&s, 4.8125);
    cb_numsrc_add(&s, 1235814400);
    cb_numsrc_add(&s, 0.25);
    cb_numsrc_add(&s, 1.5e-5);
    const char *tex = "\\documentclass{article}\\usepackage{x}\n\\title{Llama 3.2 1B}\n\\begin{document}\n"
                      "Loss 4.81 and 4.8125 and 4.8; params 1,235,814,400.\n"    /* line 4: all traced */
                      "Gain of 25\\% and lr 1.5e-05; see Table~\\ref{tab:3} and \\cite{x2023}.\n" /* line 5 */
                      "% a comment with 99.9\n"
                      "\\includegraphics[width=0.9\\linewidth]{figures/f1.png} gpt2 sm90 top-5\n"
                      "\\begin{tabular}{lrr} made up: 97.3 and -12\n"          /* line 8 */
                      "\\end{document}\n";
    json_t *bad = cb_numbers_untraced(tex, &s);
    EXPECT_EQ_INT(2, json_array_size(bad));
    EXPECT_EQ_STR("97.3", json_string_value(json_object_get(json_array_get(bad, 0), "text")));
    EXPECT_EQ_INT(8, json_integer_value(json_object_get(json_array_get(bad, 0), "line")));
    EXPECT_EQ_STR("-12", json_string_value(json_object_get(json_array_get(bad, 1), "text")));
    /* 4.9 is not 4.8125 rounded */
    json_t *b2 = cb_numbers_untraced("\\begin{document}4.9\\end{document}", &s);
    EXPECT_EQ_INT(1, json_array_size(b2));
    json_decref(b2);
    json_decref(bad);
    cb_numsrc_free(&s);
}

TEST(numbers_from_json_and_csv) {
    cb_numsrc s;
    cb_numsrc_init(&s);
    json_t *doc = json_loads("{\"a\": [1, {\"b\": 2.5, \"@loc\": 77}], \"c\": \"3.75\", \"d\": \"x9\"}", 0, NULL);
    cb_numsrc_add_json(&s, doc);
    json_decref(doc);
    EXPECT(cb_numsrc_has(&s, 2.5, 0.05));
    EXPECT(cb_numsrc_has(&s, 3.75, 0.005));
    EXPECT(!cb_numsrc_has(&s, 77, 0.5)); /* annotations are not results */
    EXPECT(!cb_numsrc_has(&s, 9, 0.5));
    char tmp_path[64];
    snprintf(tmp_path, sizeof tmp_path, "/tmp/cb_test_numbers.csv.%d", (int)getpid());
    FILE *f = fopen(tmp_path, "w");
    fputs("model,ppl,\"tok/s\"\nteacher,\"123.06\",5321.4\n", f);
    fclose(f);
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_OK, cb_numsrc_add_csv(&s, tmp_path, &e));
    EXPECT(cb_numsrc_has(&s, 123.06, 0.005));
    EXPECT(cb_numsrc_has(&s, 5321, 0.5));
    remove(tmp_path);
    EXPECT_EQ_INT(CB_E_IO, cb_numsrc_add_csv(&s, "/nonexistent/x.csv", &e));
    cb_numsrc_free(&s);
}

TEST(redact) {
    char buf[200] = "HTTP 401: Incorrect API key provided: sk-SECRET-1234 (sk-SECRET-1234)";
    cb_redact(buf, sizeof buf, "sk-SECRET-1234");
    EXPECT_EQ_STR("HTTP 401: Incorrect API key provided: [redacted] ([redacted])", buf);
    char small[20] = "key=abc;";
    cb_redact(small, sizeof small, "abc");
    EXPECT_EQ_STR("key=***;", small);
    cb_redact(small, sizeof small, "");
    cb_redact(small, sizeof small, NULL);
    EXPECT_EQ_STR("key=***;", small);
    char *q = cb_url_escape("KV cache & a/b");
    EXPECT_EQ_STR("KV%20cache%20%26%20a%2Fb", q);
    free(q);
}

TEST(sections) {
    const char *tex = "\\begin{document}\n\\section{Related Work}\n\\label{sec:related_work}\nold text\n\n"
                      "\\section{Results}\n\\label{sec:results}\nR\n\\bibliographystyle{plain}\n\\end{document}\n";
    char *b = cb_tex_section_body(tex, "related_work");
    EXPECT_EQ_STR("old text\n\n", b);
    free(b);
    char *t = cb_tex_replace_section(tex, "results", "New results.");
    EXPECT(t && strstr(t, "\\label{sec:results}\nNew results.\n\n\\bibliographystyle{plain}") != NULL);
    free(t);
    EXPECT(cb_tex_replace_section(tex, "conclusion", "x") == NULL);
}

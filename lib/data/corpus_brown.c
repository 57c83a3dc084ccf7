/* corpus_brown.c: the Brown corpus's tagged form C back to running text, so that it can be
 * tokenized like any other prose. */
#include "data/corpus.h"

#include <string.h>

static int is_blank_char(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static int word_is(const char *w, size_t n, const char *s) { return strlen(s) == n && memcmp(w, s, n) == 0; }

/* closing punctuation: no space before it */
static int closes(const char *w, size_t n) {
    static const char *const list[] = {".", ",", ";", ":", "?", "!", ")", "]", "}", "''", "'", "...", "?!", "!!"};
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if (word_is(w, n, list[i])) return 1;
    return 0;
}

/* opening punctuation: no space after it */
static int opens(const char *w, size_t n) { return word_is(w, n, "(") || word_is(w, n, "[") || word_is(w, n, "{") || word_is(w, n, "``"); }

int cb_brown_detag(const char *tagged, size_t n, cb_bytes *out, cb_error *e) {
    size_t i = 0;
    int in_paragraph = 0, any_paragraph = 0, prev_opens = 0;
    while (i < n) {
        /* one line */
        size_t line_end = i;
        while (line_end < n && tagged[line_end] != '\n') line_end++;
        int blank = 1;
        for (size_t k = i; k < line_end; k++) blank &= is_blank_char(tagged[k]);
        if (blank) {
            in_paragraph = 0;
        } else {
            for (size_t k = i; k < line_end;) {
                while (k < line_end && is_blank_char(tagged[k])) k++;
                if (k == line_end) break;
                size_t t0 = k;
                while (k < line_end && !is_blank_char(tagged[k])) k++;
                /* the word is everything before the token's last '/' */
                size_t wn = k - t0;
                for (size_t s = k; s > t0 + 1; s--)
                    if (tagged[s - 1] == '/') { wn = s - 1 - t0; break; }
                const char *w = tagged + t0;
                if (!in_paragraph) {
                    if (any_paragraph) CB_TRY(cb_bytes_append(out, "\n\n", 2, e));
                    in_paragraph = any_paragraph = 1;
                } else if (!prev_opens && !closes(w, wn)) {
                    CB_TRY(cb_bytes_append(out, " ", 1, e));
                }
                prev_opens = opens(w, wn);
                if (word_is(w, wn, "``") || word_is(w, wn, "''")) CB_TRY(cb_bytes_append(out, "\"", 1, e));
                else CB_TRY(cb_bytes_append(out, w, wn, e));
            }
        }
        i = line_end < n ? line_end + 1 : n;
    }
    return CB_OK;
}

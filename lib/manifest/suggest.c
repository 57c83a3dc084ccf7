/* suggest.c: Damerau-Levenshtein (optimal string alignment) distance and the
 * closest-name pick behind every "did you mean ...?" in manifest errors. */
#include "manifest/suggest.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cb_edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 256 || m > 256) return (int)(n > m ? n : m); /* names are short; no huge tables */
    /* three rows of the (n+1) x (m+1) table: i-2, i-1, i */
    int *rows = malloc(3 * (m + 1) * sizeof *rows);
    if (!rows) return (int)(n > m ? n : m);
    int *prev2 = rows, *prev = rows + (m + 1), *cur = rows + 2 * (m + 1);
    for (size_t j = 0; j <= m; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = prev[j] + 1;                          /* deletion */
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1; /* insertion */
            if (prev[j - 1] + cost < best) best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;                      /* transposition */
            cur[j] = best;
        }
        int *t = prev2; prev2 = prev; prev = cur; cur = t;
    }
    int d = prev[m];
    free(rows);
    return d;
}

const char *cb_suggest(const char *word, const char *const *candidates, int n) {
    size_t len = strlen(word);
    int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    if (limit >= (int)len) limit = (int)len - 1;
    const char *best = NULL;
    int best_d = limit + 1;
    for (int i = 0; i < n; i++) /* a name that differs only in case is the likeliest */
        if (candidates[i] && strcasecmp(word, candidates[i]) == 0) return candidates[i];
    for (int i = 0; i < n; i++) {
        if (!candidates[i]) continue;
        int d = cb_edit_distance(word, candidates[i]);
        if (d < best_d) { best_d = d; best = candidates[i]; }
    }
    return best;
}

/* suggest.h: "did you mean ...?" for misspelt names, by Damerau-Levenshtein distance. */
#ifndef CB_MANIFEST_SUGGEST_H
#define CB_MANIFEST_SUGGEST_H

/* Edit distance with adjacent transpositions (optimal string alignment), counting
 * insertions, deletions, substitutions and swaps of two neighbours as 1 each. */
int cb_edit_distance(const char *a, const char *b);

/* The candidate closest to word, or NULL when none is close enough to be a likely typo
 * (distance <= 1 for words of up to 4 characters, <= 2 up to 8, else <= 3, and always
 * less than the word's length). Ties go to the earlier candidate. candidates holds n
 * names; NULL entries are skipped. */
const char *cb_suggest(const char *word, const char *const *candidates, int n);

#endif

/* test_ids_text.c: ids written as a JSON array and read back from JSON arrays and
 * white-space lists, with errors located at line:column. */
#include "test.h"

#include <stdlib.h>
#include "tokenizer/ids_text.h"
#include "tokenizer/load.h"

static const char *parse(const char *text, const cb_tokenizer *t, cb_error *e) {
    static char out[256];
    cb_ids ids = {0};
    cb_error_clear(e);
    if (cb_ids_parse(text, strlen(text), "ids", t, &ids, e) != CB_OK) {
        snprintf(out, sizeof out, "%.100s: %.140s", e->where, e->msg);
    } else {
        size_t k = 0;
        out[0] = '\0';
        for (size_t i = 0; i < ids.n; i++) k += (size_t)snprintf(out + k, sizeof out - k, "%s%d", i ? " " : "", (int)ids.v[i]);
    }
    cb_ids_free(&ids);
    return out;
}

TEST(format_json) {
    cb_bytes b = {0};
    cb_error e;
    int32_t ids[] = {15496, 995, 0, 2147483647};
    EXPECT_EQ_INT(CB_OK, cb_ids_format_json(ids, 4, &b, &e));
    EXPECT_EQ_INT(25, (long long)b.n);
    EXPECT(b.n == 25 && memcmp(b.p, "[15496,995,0,2147483647]\n", 25) == 0);
    b.n = 0;
    EXPECT_EQ_INT(CB_OK, cb_ids_format_json(ids, 0, &b, &e));
    EXPECT(b.n == 3 && memcmp(b.p, "[]\n", 3) == 0);
    cb_bytes_free(&b);
}

TEST(parse_forms_and_errors) {
    cb_error e;
    EXPECT_EQ_STR("1 2 3", parse("[1, 2,3]\n", NULL, &e));
    EXPECT_EQ_STR("", parse(" [ ] ", NULL, &e));
    EXPECT_EQ_STR("", parse("", NULL, &e));
    EXPECT_EQ_STR("7 8 9", parse("7 8\n\t9\n", NULL, &e));
    EXPECT_EQ_STR("ids:1:5: the array has no closing ']'", parse("[1,2", NULL, &e));
    EXPECT_EQ_STR("ids:1:4: expected a token id", parse("[1,,2]", NULL, &e));
    EXPECT_EQ_STR("ids:1:4: expected a token id", parse("[1,]", NULL, &e));
    EXPECT_EQ_STR("ids:1:4: expected ',' or ']'", parse("[1 2]", NULL, &e));
    EXPECT_EQ_STR("ids:2:2: -2 is not a token id", parse("[1,\n -2]", NULL, &e));
    EXPECT_EQ_STR("ids:1:1: 99999999999 is not a token id", parse("99999999999", NULL, &e));
    EXPECT_EQ_STR("ids:1:2: expected a token id", parse("1x", NULL, &e));
    EXPECT_EQ_STR("ids:1:5: text after the array", parse("[1] 2", NULL, &e));
    EXPECT_EQ_INT(CB_E_INVALID, e.code);
    cb_tokenizer t;
    EXPECT_EQ_INT(CB_OK, cb_tokenizer_init_bytes(&t, &e));
    EXPECT_EQ_STR("ids:1:4: 256 is not a token id of this tokenizer (byte, 256 ids)", parse("[0,256]", &t, &e));
    EXPECT_EQ_STR("255", parse("255", &t, &e));
    cb_tokenizer_free(&t);
}

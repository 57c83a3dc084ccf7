/* schema_paper.c: schema tables of the optional paper, review and research sections
 * (AI-assisted drafting, reviewing, and the write-review-experiment loop). */
#include "core/json_doc.h"
#include "manifest/schema_table.h"

static const cb_field citations_fields[] = {
    FIELD("enabled", T_BOOL, .def = "true"),
    FIELD("max_citations", T_INT_GE(0), .def = "25"),
    FIELD("sources", T_LIST_NE(T_ENUM("arxiv", "semantic_scholar")), .def = "[\"arxiv\", \"semantic_scholar\"]"),
    FIELD("prefer_recent", T_BOOL, .def = "true"),
    FIELD("recent_years", T_INT_GE(1), .def = "3"),
};
const cb_schema cb_citations_schema = {"citations", citations_fields, CB_NFIELDS(citations_fields), NULL, NULL};

static const cb_field paper_fields[] = {
    FIELD("enabled", T_BOOL, .def = "true"),
    FIELD("title", T_NAME),
    FIELD("authors", T_LIST(T_NAME), .def = "[]"),
    FIELD("paper_type", T_ENUM("paper", "technical_report", "arxiv", "blog_post"), .def = "\"paper\""),
    FIELD("sections",
          T_LIST_NE(T_ENUM("abstract", "introduction", "background", "related_work", "methodology", "experiments",
                           "results", "discussion", "limitations", "conclusion", "appendix")),
          .def = "[\"abstract\", \"introduction\", \"related_work\", \"methodology\", \"experiments\", "
                 "\"results\", \"discussion\", \"conclusion\"]"),
    FIELD("citations", T_OBJ(cb_citations_schema),
          .def = "{\"enabled\": true, \"max_citations\": 25, \"sources\": [\"arxiv\", \"semantic_scholar\"], "
                 "\"prefer_recent\": true, \"recent_years\": 3}"),
    FIELD("keywords", T_LIST(T_NAME), .def = "[]"),
    FIELD("model", T_NAME, .def = "\"gpt-4o\""),
    FIELD("temperature", T_FLOAT_IN(0, 2), .def = "0.7"),
    FIELD("auto_version", T_BOOL, .def = "true"),
    FIELD("max_versions", T_INT_GE(1), .def = "5"),
    FIELD("custom_instructions", T_STRING),
    FIELD("output_dir", T_NAME),
    /* the OpenAI-compatible endpoint; the key is read from the environment variable
     * api_key_env and never appears in the manifest */
    FIELD("base_url", T_NAME, .def = "\"https://api.openai.com/v1\""),
    FIELD("api_key_env", T_NAME, .def = "\"OPENAI_API_KEY\""),
    FIELD("max_steps", T_INT_GE(1), .def = "40"),
    FIELD("max_tokens", T_INT_GE(0), .def = "0"),
    FIELD("timeout_s", T_FLOAT_GT(0), .def = "120"),
    FIELD("price_prompt_per_1m", T_FLOAT_GE(0)),
    FIELD("price_completion_per_1m", T_FLOAT_GE(0)),
};
const cb_schema cb_paper_schema = {"paper", paper_fields, CB_NFIELDS(paper_fields), NULL, NULL};

static const cb_field review_fields[] = {
    FIELD("enabled", T_BOOL, .def = "true"),
    FIELD("strictness", T_ENUM("workshop", "conference", "journal", "top_venue"), .def = "\"conference\""),
    FIELD("check_methodology", T_BOOL, .def = "true"),
    FIELD("check_experiments", T_BOOL, .def = "true"),
    FIELD("check_results", T_BOOL, .def = "true"),
    FIELD("check_writing", T_BOOL, .def = "true"),
    FIELD("check_citations", T_BOOL, .def = "true"),
    FIELD("min_score_to_approve", T_FLOAT_IN(0, 10), .def = "7.0"),
    FIELD("auto_generate_experiments", T_BOOL, .def = "true"),
    FIELD("max_proposed_experiments", T_INT_GE(0), .def = "3"),
    FIELD("reviewer_persona", T_ENUM("senior_researcher", "methodology_expert", "practitioner"),
          .def = "\"senior_researcher\""),
    FIELD("model", T_NAME, .def = "\"gpt-4o\""),
    FIELD("temperature", T_FLOAT_IN(0, 2), .def = "0.3"),
    /* the OpenAI-compatible endpoint; the key is read from the environment variable
     * api_key_env and never appears in the manifest */
    FIELD("base_url", T_NAME, .def = "\"https://api.openai.com/v1\""),
    FIELD("api_key_env", T_NAME, .def = "\"OPENAI_API_KEY\""),
    FIELD("max_steps", T_INT_GE(1), .def = "40"),
    FIELD("max_tokens", T_INT_GE(0), .def = "0"),
    FIELD("timeout_s", T_FLOAT_GT(0), .def = "120"),
    FIELD("price_prompt_per_1m", T_FLOAT_GE(0)),
    FIELD("price_completion_per_1m", T_FLOAT_GE(0)),
};
const cb_schema cb_review_schema = {"review", review_fields, CB_NFIELDS(review_fields), NULL, NULL};

static void research_check(cb_check_ctx *c, const json_t *obj, const char *path) {
    const json_t *lo = json_object_get(obj, "min_score_to_approve"), *hi = json_object_get(obj, "auto_approve_score");
    if (json_is_number(lo) && json_is_number(hi) && json_number_value(hi) < json_number_value(lo)) {
        char p[512];
        cb_schema_errorf(c, cb_loc(obj, "auto_approve_score"), cb_path_key(p, sizeof p, path, "auto_approve_score"),
                         "must be >= min_score_to_approve (%g), got %g", json_number_value(lo),
                         json_number_value(hi));
    }
}

static const cb_field research_fields[] = {
    FIELD("max_iterations", T_INT_GE(1), .def = "5"),
    FIELD("max_experiments_per_iteration", T_INT_GE(0), .def = "2"),
    FIELD("max_total_experiments", T_INT_GE(0), .def = "5"),
    FIELD("min_score_to_approve", T_FLOAT_IN(0, 10), .def = "7.5"),
    FIELD("auto_approve_score", T_FLOAT_IN(0, 10), .def = "9.0"),
    FIELD("auto_run_experiments", T_BOOL, .def = "true"),
    FIELD("save_all_versions", T_BOOL, .def = "true"),
};
const cb_schema cb_research_schema = {"research", research_fields, CB_NFIELDS(research_fields), research_check,
                                      NULL};

/* chat.h: an OpenAI-compatible chat-completions client with tool calling, and the agent
 * loop on top of it: send the conversation, run the tools the model asks for, return
 * their results, until the model finishes or a step or token budget is hit. */
#ifndef CB_PAPER_CHAT_H
#define CB_PAPER_CHAT_H

#include <jansson.h>
#include <stdio.h>
#include "core/error.h"
#include "paper/http.h"

typedef struct cb_llm {
    char base_url[1024];   /* "https://api.openai.com/v1"; "/chat/completions" is appended */
    char model[256];
    double temperature;
    const char *key;       /* borrowed from the environment; never printed, logged or written */
    cb_http_opts http;
    int max_steps;         /* model calls per agent run */
    long max_tokens;       /* prompt + completion tokens per agent run (0 = no bound) */
    double price_prompt_per_1m, price_completion_per_1m; /* cost reporting; 0 = unknown */
    FILE *trace;           /* JSON lines of requests, answers and tool calls; NULL = none */
    /* running totals */
    long prompt_tokens, completion_tokens;
    int steps;
    const char *stopped_by; /* "finished", "max_steps", "max_tokens" after cb_agent_run */
} cb_llm;

void cb_llm_init(cb_llm *l);

/* One chat completion. On CB_OK *message is the assistant message (a new reference):
 * {"role": "assistant", "content": ..., "tool_calls": [...]}, checked for shape.
 * A malformed answer is CB_E_INVALID; transport failures as cb_http_request. */
int cb_llm_chat(cb_llm *l, json_t *messages, json_t *tools, json_t **message, cb_error *e);

/* A tool: run `name` with its parsed arguments, set *result (malloc'd text for the model).
 * Set *done to end the loop after this call (submit_review). A non-CB_OK return stops the
 * loop with that error (an I/O failure); a mistake of the model's is a result, not an error. */
typedef int (*cb_tool_fn)(void *ctx, const char *name, json_t *args, char **result, int *done, cb_error *e);

/* Run the loop. tools: the "tools" array of the request (function schemas). On CB_OK,
 * l->stopped_by says why it ended; *final_text (if not NULL) gets the last content. */
int cb_agent_run(cb_llm *l, const char *system, const char *user, json_t *tools, cb_tool_fn fn, void *ctx,
                 char **final_text, cb_error *e);

/* Write one trace event (a JSON object, stolen) as a line, the key redacted. */
void cb_llm_trace(cb_llm *l, json_t *event);

/* A function tool schema: {"type":"function","function":{"name","description","parameters"}}.
 * params_json is the JSON Schema of the arguments as text. */
json_t *cb_tool_schema(const char *name, const char *description, const char *params_json);



/* Settings from a manifest section (paper: or review:, defaults filled): base_url, model,
 * temperature, max_steps, max_tokens, timeout_s, prices; the key from the environment
 * variable api_key_env (l->key NULL when unset or empty). */
void cb_llm_from_section(cb_llm *l, const json_t *section);
#endif

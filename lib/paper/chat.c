/* chat.c: chat completions over cb_http_request and the tool-calling agent loop. */
#include "paper/chat.h"

#include <stdlib.h>
#include <string.h>

void cb_llm_init(cb_llm *l) {
    memset(l, 0, sizeof *l);
    snprintf(l->base_url, sizeof l->base_url, "https://api.openai.com/v1");
    snprintf(l->model, sizeof l->model, "gpt-4o");
    l->temperature = 0.7;
    cb_http_opts_default(&l->http);
    l->http.what = "chat endpoint";
    l->max_steps = 40;
    l->stopped_by = "finished";
}

void cb_llm_trace(cb_llm *l, json_t *event) {
    if (!l->trace) { json_decref(event); return; }
    char *s = json_dumps(event, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(event);
    if (!s) return;
    cb_redact(s, strlen(s) + 1, l->key);
    fprintf(l->trace, "%s\n", s);
    fflush(l->trace);
    free(s);
}

json_t *cb_tool_schema(const char *name, const char *description, const char *params_json) {
    json_t *params = json_loads(params_json, 0, NULL);
    if (!params) params = json_pack("{s:s,s:{}}", "type", "object", "properties");
    return json_pack("{s:s,s:{s:s,s:s,s:o}}", "type", "function", "function", "name", name, "description",
                     description, "parameters", params);
}

/* The answer's shape: choices[0].message with string-or-null content and well-formed
 * tool calls. Returns NULL with why filled when it is not. */
static json_t *checked_message(json_t *answer, char *why, size_t n) {
    json_t *choices = json_object_get(answer, "choices");
    if (!json_is_array(choices) || json_array_size(choices) == 0) {
        json_t *err = json_object_get(answer, "error");
        const char *m = json_string_value(json_object_get(err, "message"));
        snprintf(why, n, m ? "the endpoint reported an error: %.300s" : "no choices in the answer", m);
        return NULL;
    }
    json_t *msg = json_object_get(json_array_get(choices, 0), "message");
    if (!json_is_object(msg)) { snprintf(why, n, "choices[0] has no message"); return NULL; }
    json_t *content = json_object_get(msg, "content"), *calls = json_object_get(msg, "tool_calls");
    if (content && !json_is_string(content) && !json_is_null(content)) {
        snprintf(why, n, "message.content is neither text nor null");
        return NULL;
    }
    if (calls && !json_is_null(calls)) {
        if (!json_is_array(calls)) { snprintf(why, n, "message.tool_calls is not a list"); return NULL; }
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c) {
            json_t *fn = json_object_get(c, "function");
            if (!json_is_string(json_object_get(c, "id")) || !json_is_object(fn) ||
                !json_is_string(json_object_get(fn, "name")) || !json_is_string(json_object_get(fn, "arguments"))) {
                snprintf(why, n, "message.tool_calls[%zu] lacks id, function.name or function.arguments", i);
                return NULL;
            }
        }
    }
    if (!json_is_string(content) && (!json_is_array(calls) || json_array_size(calls) == 0)) {
        snprintf(why, n, "the message has neither content nor tool calls");
        return NULL;
    }
    return msg;
}

int cb_llm_chat(cb_llm *l, json_t *messages, json_t *tools, json_t **message, cb_error *e) {
    *message = NULL;
    json_t *req = json_pack("{s:s,s:O,s:f}", "model", l->model, "messages", messages, "temperature", l->temperature);
    if (!req) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    if (tools && json_array_size(tools) > 0) json_object_set(req, "tools", tools);
    char *body = json_dumps(req, JSON_COMPACT);
    cb_llm_trace(l, json_pack("{s:s,s:i,s:O}", "event", "request", "step", l->steps + 1, "body", req));
    json_decref(req);
    if (!body) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    char url[1200];
    snprintf(url, sizeof url, "%s/chat/completions", l->base_url);
    cb_http_opts o = l->http;
    o.bearer_key = l->key;
    char *resp = NULL;
    size_t resp_len = 0;
    int rc = cb_http_request(url, body, &o, &resp, &resp_len, e);
    free(body);
    if (rc != CB_OK) {
        cb_llm_trace(l, json_pack("{s:s,s:s}", "event", "error", "message", e->msg));
        return rc;
    }
    l->steps++;
    json_error_t je;
    json_t *answer = json_loadb(resp, resp_len, 0, &je);
    if (!answer) {
        cb_llm_trace(l, json_pack("{s:s,s:s%}", "event", "malformed_answer", "text", resp, resp_len > 2000 ? (size_t)2000 : resp_len));
        free(resp);
        return cb_fail(e, CB_E_INVALID, url, "chat endpoint: the answer is not JSON (line %d: %s)", je.line, je.text);
    }
    free(resp);
    char why[512];
    json_t *msg = checked_message(answer, why, sizeof why);
    if (!msg) {
        cb_llm_trace(l, json_pack("{s:s,s:O}", "event", "malformed_answer", "answer", answer));
        json_decref(answer);
        cb_fail(e, CB_E_INVALID, url, "chat endpoint: %s", why);
        cb_redact(e->msg, sizeof e->msg, l->key);
        return CB_E_INVALID;
    }
    json_t *usage = json_object_get(answer, "usage");
    l->prompt_tokens += (long)json_integer_value(json_object_get(usage, "prompt_tokens"));
    l->completion_tokens += (long)json_integer_value(json_object_get(usage, "completion_tokens"));
    cb_llm_trace(l, json_pack("{s:s,s:i,s:O,s:O?}", "event", "answer", "step", l->steps, "message", msg, "usage", usage));
    /* keep only what a follow-up request may carry */
    json_t *out = json_pack("{s:s}", "role", "assistant");
    json_t *content = json_object_get(msg, "content"), *calls = json_object_get(msg, "tool_calls");
    json_object_set(out, "content", content ? content : json_null());
    if (json_is_array(calls) && json_array_size(calls) > 0) json_object_set(out, "tool_calls", calls);
    json_decref(answer);
    *message = out;
    return CB_OK;
}

int cb_agent_run(cb_llm *l, const char *system, const char *user, json_t *tools, cb_tool_fn fn, void *ctx,
                 char **final_text, cb_error *e) {
    if (final_text) *final_text = NULL;
    json_t *messages = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", system, "role", "user",
                                 "content", user);
    int rc = CB_OK, done = 0;
    l->stopped_by = "finished";
    int start_steps = l->steps;
    long start_tokens = l->prompt_tokens + l->completion_tokens;
    while (!done) {
        if (l->steps - start_steps >= l->max_steps) { l->stopped_by = "max_steps"; break; }
        if (l->max_tokens > 0 && l->prompt_tokens + l->completion_tokens - start_tokens >= l->max_tokens) {
            l->stopped_by = "max_tokens";
            break;
        }
        json_t *msg = NULL;
        rc = cb_llm_chat(l, messages, tools, &msg, e);
        if (rc != CB_OK) break;
        json_array_append_new(messages, msg);
        json_t *calls = json_object_get(msg, "tool_calls");
        if (!json_is_array(calls) || json_array_size(calls) == 0) {
            if (final_text) *final_text = strdup(json_string_value(json_object_get(msg, "content")));
            break;
        }
        size_t i;
        json_t *c;
        json_array_foreach(calls, i, c) {
            json_t *f = json_object_get(c, "function");
            const char *name = json_string_value(json_object_get(f, "name"));
            const char *arg_text = json_string_value(json_object_get(f, "arguments"));
            json_t *args = json_loads(arg_text, 0, NULL);
            char *result = NULL;
            if (!json_is_object(args)) {
                result = strdup("error: the arguments are not a JSON object; call the tool again with valid JSON");
            } else {
                int d = 0;
                rc = fn(ctx, name, args, &result, &d, e);
                if (d) done = 1;
            }
            json_decref(args);
            if (rc != CB_OK) { free(result); break; }
            if (!result) result = strdup("ok");
            cb_redact(result, strlen(result) + 1, l->key);
            cb_llm_trace(l, json_pack("{s:s,s:s,s:s,s:s}", "event", "tool_call", "name", name, "arguments", arg_text,
                                      "result", result));
            json_array_append_new(messages, json_pack("{s:s,s:O,s:s}", "role", "tool", "tool_call_id",
                                                      json_object_get(c, "id"), "content", result));
            free(result);
        }
        if (rc != CB_OK) break;
    }
    json_decref(messages);
    cb_llm_trace(l, json_pack("{s:s,s:s,s:i,s:I,s:I}", "event", "end", "stopped_by", rc == CB_OK ? l->stopped_by : "error",
                              "steps", l->steps, "prompt_tokens", (json_int_t)l->prompt_tokens, "completion_tokens",
                              (json_int_t)l->completion_tokens));
    return rc;
}

void cb_llm_from_section(cb_llm *l, const json_t *s) {
    const char *v;
    if ((v = json_string_value(json_object_get(s, "base_url")))) snprintf(l->base_url, sizeof l->base_url, "%s", v);
    size_t n = strlen(l->base_url);
    while (n > 0 && l->base_url[n - 1] == '/') l->base_url[--n] = 0;
    if ((v = json_string_value(json_object_get(s, "model")))) snprintf(l->model, sizeof l->model, "%s", v);
    json_t *x;
    if (json_is_number(x = json_object_get(s, "temperature"))) l->temperature = json_number_value(x);
    if (json_is_integer(x = json_object_get(s, "max_steps"))) l->max_steps = (int)json_integer_value(x);
    if (json_is_integer(x = json_object_get(s, "max_tokens"))) l->max_tokens = (long)json_integer_value(x);
    if (json_is_number(x = json_object_get(s, "timeout_s"))) l->http.timeout_ms = (long)(json_number_value(x) * 1000);
    if (json_is_number(x = json_object_get(s, "price_prompt_per_1m"))) l->price_prompt_per_1m = json_number_value(x);
    if (json_is_number(x = json_object_get(s, "price_completion_per_1m"))) l->price_completion_per_1m = json_number_value(x);
    const char *env = json_string_value(json_object_get(s, "api_key_env"));
    const char *key = getenv(env ? env : "OPENAI_API_KEY");
    l->key = key && key[0] ? key : NULL;
}

/* bench/cuda_decode.c: batch-1 decode tokens/s on the GPU (backend/cuda/decode.c) of the
 * model of a manifest (bench/llama32_1b.yml: the Llama-3.2-1B shape, random weights) with
 * its weights stored as one kind (bf16 by default) and the KV cache in another (bf16), at
 * growing contexts; beside each, the bound the GPU's memory bandwidth sets: the bytes one
 * token reads (every weight matrix once, a row of the embedding, the norms, and the cache
 * of every layer at that context) over the device-to-device copy bandwidth measured in
 * the same run (bytes read plus written per second, best of 5 copies of 1 GiB).
 *   build/rel/bench/cuda_decode [-m manifest] [-w KIND] [-c KIND] [-x CONTEXTS] [-n STEPS] [-p CHUNK]
 * CONTEXTS comma separated (default 1024,2048,4096,8192,16384,32768); STEPS decode steps
 * timed at each (default 64, after 4 untimed): op by op with the logits brought back to
 * the host for the argmax (one (V) download a token: the step before CUDA graphs), op by
 * op with the argmax on the GPU (4 bytes back), each graphed variant of VARIANTS below
 * (fused or not, programmatic dependent launch, the product kernel and its loads in
 * flight), and last the default step (what the environment's CB_CUDA_GRAPHS,
 * CB_DECODE_FUSED, CB_CUDA_PDL, CB_DECODE_PRODUCTS, CB_DECODE_AHEAD, CB_DECODE_STAGE,
 * CB_DECODE_ATTN, CB_DECODE_COMBINE choose: graphed unfused without them), the main line. CHUNK rows per prefill pass
 * (default 512).
 * The session grows from one context to the next (the prefill of the difference), and the
 * decoded tokens are truncated away after each measurement. Prints per context:
 *   ctx L ungraphed, logits to host: tokens/s R ms/token T share S%
 *   ctx L ungraphed, argmax on gpu: tokens/s R ms/token T share S%
 *   ctx L graphed, VARIANT: tokens/s R ms/token T share S%   (one line a variant)
 *   ctx L: tokens/s R ms/token T bytes/token B bound R0 share S% prefill P tok/s (graphs ...) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/pass.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/rng.h"
#include "infer/sample.h"
#include "infer/session.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "plan/validate.h"
#ifdef CB_HAVE_CUDA
#include <cuda_runtime_api.h>
#include "backend/cuda/cuda.h"
#endif

#define MAX_CTX 16

#ifdef CB_HAVE_CUDA
/* A graphed step's variant (backend/cuda/cuda.h's setters; the environment variables that
 * choose each for cb-generate and the rest in brackets) */
typedef struct variant {
    const char *name;
    int graphs, fused, pdl, products, ahead, stage, attn, combine;
} variant;
static const variant VARIANTS[] = {
    /* name                                 graphs fused pdl products ahead stage attn combine */
    {"unfused", 1, 0, 0, 0, 4, 0, 0, 0},                /* the default (as the main line, first) */
    {"unfused, pdl", 1, 0, 1, 0, 4, 0, 0, 0},           /* CB_CUDA_PDL=1 */
    {"unfused, step attn", 1, 0, 0, 0, 4, 0, 1, 0},     /* CB_DECODE_ATTN=step */
    {"unfused, split combine", 1, 0, 0, 0, 4, 0, 0, 1}, /* CB_DECODE_COMBINE=split */
    {"unfused, step products", 1, 0, 0, 1, 4, 0, 0, 0}, /* CB_DECODE_PRODUCTS=step */
    {"unfused, step products, pdl", 1, 0, 1, 1, 4, 0, 0, 0},
    {"unfused, step products a8, pdl", 1, 0, 1, 1, 8, 0, 0, 0}, /* CB_DECODE_AHEAD=8 */
    {"unfused, step products a8, step attn, split combine, pdl", 1, 0, 1, 1, 8, 0, 1, 1},
    {"fused", 1, 1, 0, 0, 4, 0, 0, 0},                  /* CB_DECODE_FUSED=1 */
    {"fused, pdl", 1, 1, 1, 0, 4, 0, 0, 0},
    {"fused a8", 1, 1, 0, 0, 8, 0, 0, 0},
    {"fused a8, pdl", 1, 1, 1, 0, 8, 0, 0, 0},
    {"fused staged, pdl", 1, 1, 1, 0, 4, 1, 0, 0},      /* CB_DECODE_STAGE=1 */
    {"fused a8 staged, pdl", 1, 1, 1, 0, 8, 1, 0, 0},
    {"fused, split combine, pdl", 1, 1, 1, 0, 4, 0, 0, 1},
    {"fused a8, split combine, pdl", 1, 1, 1, 0, 8, 0, 0, 1},
    {"fused a8, step attn, split combine, pdl", 1, 1, 1, 0, 8, 0, 1, 1},
    {"fused, step attn, split combine, pdl", 1, 1, 1, 0, 4, 0, 1, 1},
};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof *VARIANTS))
#endif

static json_t *compile_manifest(const char *path) {
    char *text = NULL;
    size_t len = 0;
    cb_error e;
    if (cb_read_file(path, 1 << 20, &text, &len, &e) != CB_OK) {
        fprintf(stderr, "cuda_decode: %s: %s\n", path, e.msg);
        return NULL;
    }
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    if (cb_yaml_parse(text, len, path, &manifest, &e) != CB_OK) {
        fprintf(stderr, "cuda_decode: %s: %s\n", e.where, e.msg);
        free(text);
        return NULL;
    }
    free(text);
    cb_diags d;
    cb_diags_init(&d);
    if (cb_lower(manifest, &lowered, &d) != CB_OK || cb_validate(lowered, &plan, &d) != CB_OK) {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "cuda_decode: %s: %s\n", d.items[i].where, d.items[i].msg);
        plan = NULL;
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    return plan;
}

static void die(const char *what, const cb_error *e) {
    fprintf(stderr, "cuda_decode: %s: %s%s%s\n", what, e->where, e->where[0] ? ": " : "", e->msg);
    exit(e->code ? e->code : 4);
}

/* Weight bytes one token reads: every weight matrix once (a shared one once), one row of
 * each embedding table, every norm's parameters (as bench/decode.c counts them). */
static double weight_bytes_per_token(const cb_session *s) {
    const cb_program *p = &s->prog;
    double bytes = 0;
    const int nm = p->n_ops * CB_OP_MAX_PARAMS;
    for (int i = 0; i < nm; i++) {
        const cb_weight_matrix *w = &s->dec.mats[i];
        if (!w->data) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = s->dec.mats[j].data == w->data;
        if (!seen) bytes += (double)cb_weight_matrix_bytes(w);
    }
    for (int i = 0; i < p->n_ops; i++) {
        const cb_op *op = &p->ops[i];
        if (op->kind == CB_OP_EMBED) bytes += (op->p[CB_P_POS] != CB_NO_PARAM ? 2.0 : 1.0) * op->d_out * sizeof(float);
        else if (op->kind == CB_OP_RMSNORM) bytes += (double)op->d_in * sizeof(float);
        else if (op->kind == CB_OP_LAYERNORM) bytes += 2.0 * op->d_in * sizeof(float);
    }
    return bytes;
}

#ifdef CB_HAVE_CUDA
/* Device-to-device copy bandwidth: (read + written) bytes per second, best of 5 copies of
 * 1 GiB (far past the 50 MB L2). */
static double copy_bandwidth(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0;
    cudaMemset(a, 1, bytes);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = cb_clock_s();
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaDeviceSynchronize();
        double t = cb_clock_s() - t0;
        if (t < best) best = t;
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)bytes / best;
}
#endif

int main(int argc, char **argv) {
    const char *manifest = "bench/llama32_1b.yml";
    cb_kv_kind wkind = CB_KV_BF16, ckind = CB_KV_BF16;
    int ctx[MAX_CTX] = {1024, 2048, 4096, 8192, 16384, 32768}, n_ctx = 6, steps = 64, chunk = 512;
    int opt;
    while ((opt = getopt(argc, argv, "m:w:c:x:n:p:h")) != -1) {
        switch (opt) {
        case 'm': manifest = optarg; break;
        case 'w':
            if (!cb_kv_kind_from_name(optarg, &wkind)) return fprintf(stderr, "cuda_decode: -w %s?\n", optarg), 2;
            break;
        case 'c':
            if (!cb_kv_kind_from_name(optarg, &ckind)) return fprintf(stderr, "cuda_decode: -c %s?\n", optarg), 2;
            break;
        case 'x': {
            n_ctx = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *t = strtok(buf, ","); t && n_ctx < MAX_CTX; t = strtok(NULL, ",")) ctx[n_ctx++] = atoi(t);
            break;
        }
        case 'n': steps = atoi(optarg); break;
        case 'p': chunk = atoi(optarg); break;
        default:
            printf("usage: cuda_decode [-m manifest] [-w kind] [-c kind] [-x contexts] [-n steps] [-p chunk]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (steps < 1 || chunk < 1 || n_ctx < 1) return fprintf(stderr, "cuda_decode: bad -n, -p or -x\n"), 2;
#ifndef CB_HAVE_CUDA
    fprintf(stderr, "cuda_decode: this build has no cuda backend (no nvcc)\n");
    return 0;
#else
    cb_backend *be = cb_backend_cuda();
    if (!be) {
        printf("cuda_decode: skipped: %s\n", cb_backend_cuda_absent());
        return 0;
    }
    for (int i = 1; i < n_ctx; i++)
        if (ctx[i] <= ctx[i - 1]) return fprintf(stderr, "cuda_decode: contexts must grow\n"), 2;
    const double bw = copy_bandwidth();
    json_t *plan = compile_manifest(manifest);
    if (!plan) return 2;
    cb_model m;
    cb_error e;
    double t0 = cb_clock_s();
    if (cb_model_init(&m, plan, 1, &e) != CB_OK) die("model", &e);
    json_decref(plan);
    const double t_init = cb_clock_s() - t0;
    cb_session s;
    cb_session_config sc = cb_session_config_default();
    sc.backend = be;
    sc.weight_kind = wkind;
    sc.kinds.k = sc.kinds.k_sem = sc.kinds.v = ckind;
    sc.chunk = chunk;
    sc.max_seq_len = ctx[n_ctx - 1] + steps + 8;
    t0 = cb_clock_s();
    if (cb_session_init(&s, &m, &sc, &e) != CB_OK) die("session", &e);
    const double t_sess = cb_clock_s() - t0;
    const int V = s.vocab, total = sc.max_seq_len;
    int32_t *ids = malloc(sizeof *ids * (size_t)total);
    float *logits = malloc(sizeof *logits * (size_t)V);
    cb_rng r;
    cb_rng_init(&r, 1337);
    for (int i = 0; i < total; i++) ids[i] = (int32_t)(cb_rng_next(&r) % (uint64_t)V);
    /* the default step: what a decoding state is made with (the environment's choice) */
    variant dflt = {"default", 1, 0, 0, 0, 4, 0, 0, 0};
    const char *env = getenv("CB_CUDA_GRAPHS");
    dflt.graphs = !(env && strcmp(env, "0") == 0);
    dflt.fused = (env = getenv("CB_DECODE_FUSED")) && strcmp(env, "1") == 0;
    dflt.pdl = (env = getenv("CB_CUDA_PDL")) && strcmp(env, "1") == 0;
    dflt.products = (env = getenv("CB_DECODE_PRODUCTS")) && strcmp(env, "step") == 0;
    dflt.ahead = (env = getenv("CB_DECODE_AHEAD")) && strcmp(env, "8") == 0 ? 8 : 4;
    dflt.stage = (env = getenv("CB_DECODE_STAGE")) && strcmp(env, "1") == 0;
    dflt.attn = (env = getenv("CB_DECODE_ATTN")) && strcmp(env, "step") == 0;
    dflt.combine = (env = getenv("CB_DECODE_COMBINE")) && strcmp(env, "split") == 0;
    const double wbytes = weight_bytes_per_token(&s), kv_per_token = (double)cb_kv_cache_bytes_per_token(&s.dec.kv);
    printf("model %s: %zu parameters, init %.1f s, session (upload, convert) %.1f s\n", manifest,
           m.params.total_floats, t_init, t_sess);
    printf("weights %s: %.1f MB a token; cache %s: %.0f bytes a token of context; copy bandwidth %.1f GB/s\n",
           cb_kv_kind_name(wkind), wbytes / 1e6, cb_kv_kind_name(ckind), kv_per_token, bw / 1e9);
    fflush(stdout);
    for (int ci = 0; ci < n_ctx; ci++) {
        const int L = ctx[ci];
        t0 = cb_clock_s();
        if (cb_session_forward(&s, ids + s.len, L - s.len, NULL, 0, &e) != CB_OK) die("prefill", &e);
        if (be->synchronize(be, &e) != CB_OK) die("prefill", &e);
        const double t_pre = cb_clock_s() - t0, pre_tokens = L - (ci ? ctx[ci - 1] : 0);
        const double mean_ctx = L + 4 + (steps + 1) / 2.0; /* keys the timed steps read, on average */
        const double bytes = wbytes + kv_per_token * mean_ctx, bound = bw / bytes;
        /* the step as before this graphs (op by op, the logits to the host), op by
         * op with the argmax on the GPU, the graphed variants of the table (VARIANTS), then
         * the default step (graphed unfused unless the environment says otherwise: the main
         * line) */
        for (int mode = 0; mode < 3 + N_VARIANTS; mode++) {
            const variant *v = mode >= 2 && mode < 2 + N_VARIANTS ? &VARIANTS[mode - 2] : NULL;
            cb_cuda_decode_set_graphs(&s.dec, v ? 1 : dflt.graphs && mode > 1);
            cb_cuda_decode_set_fused(&s.dec, v ? v->fused : mode > 1 && dflt.fused);
            cb_cuda_decode_set_pdl(&s.dec, v ? v->pdl : mode > 1 && dflt.pdl);
            cb_cuda_decode_set_products(&s.dec, v ? v->products : dflt.products, v ? v->ahead : dflt.ahead,
                                        v ? v->stage : dflt.stage);
            cb_cuda_decode_set_attn(&s.dec, v ? v->attn : dflt.attn, v ? v->combine : dflt.combine);
            double t = 0;
            for (int k = -4; k < steps; k++) {
                if (k == 0) t0 = cb_clock_s();
                int32_t next;
                int bad;
                if (mode == 0 && cb_session_forward(&s, ids + s.len, 1, logits, 0, &e) != CB_OK) die("decode", &e);
                if (mode == 0) next = cb_argmax(logits, V);
                if (mode > 0 && cb_session_forward_argmax(&s, ids + s.len, 1, &next, &bad, &e) != CB_OK)
                    die("decode", &e);
                (void)next;
            }
            t = (cb_clock_s() - t0) / steps;
            cb_session_truncate(&s, L);
            if (mode < 2 + N_VARIANTS) {
                printf("ctx %d %s%s: tokens/s %.1f ms/token %.3f share %.1f%%\n", L, v ? "graphed, " : "",
                       mode == 0 ? "ungraphed, logits to host" : mode == 1 ? "ungraphed, argmax on gpu" : v->name,
                       1.0 / t, t * 1e3, 100.0 / t / bound);
                continue;
            }
            long captures = 0, replays = 0;
            cb_cuda_decode_graph_counts(&s.dec, &captures, &replays);
            printf("ctx %d: tokens/s %.1f ms/token %.3f bytes/token %.4g bound %.1f share %.1f%% prefill %.0f tok/s "
                   "(graphs captured %ld, replayed %ld)\n",
                   L, 1.0 / t, t * 1e3, bytes, bound, 100.0 / t / bound, pre_tokens / t_pre, captures, replays);
        }
        fflush(stdout);
        cb_session_truncate(&s, L);
    }
    cb_session_free(&s);
    cb_model_free(&m);
    free(ids);
    free(logits);
    return 0;
#endif
}

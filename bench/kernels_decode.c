/* bench/kernels_decode.c: throughput of the decoding kernels per storage kind against the
 * machine's memory bandwidth: matvec over a weight matrix larger than the last-level cache,
 * and decode attention of one token over a long KV cache: one layer of Llama 3.2 1B's shape
 * (GQA, then the DBA preset's decoupled keys), then the 12 layers of the 110M shape (standard attention, 12 heads of 64), each
 * layer its own cache, so that a step reads what a decode step reads and not L3.
 *   build/rel/bench/kernels_decode [ROWS COLS CONTEXT]   (default 8192 4096 4096)
 * Prints, for 1 thread and for all threads (OMP_NUM_THREADS, the decoding pool's; the 1-thread
 * column runs the pool's loops on the caller alone), the best of 5 runs: time, GB/s of
 * stored bytes read, and that as a share of a streaming read on as many of the pool's
 * threads (bench/bandwidth.h, the reference bench/decode uses too). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bandwidth.h"
#include "backend/cpu/attention_decode.h"
#include "backend/cpu/matvec.h"
#include "backend/cpu/parallel.h"

/* ---- one row of a table: a kernel timed on one thread and on all ---- */

typedef void (*kernel_fn)(void *ctx);

/* Prints the best of 5 calls of fn(ctx) on threads[0] (one: the pool's loops on the caller)
 * and on threads[1]: ms, GB/s of `bytes`, and that as a share of the bandwidth bw[t]. */
static void print_timings(kernel_fn fn, void *ctx, double bytes, const int *threads, const double *bw,
                          const char *ms_format) {
    for (int ti = 0; ti < 2; ti++) {
        omp_set_num_threads(threads[ti]);
        cb_parallel_set_serial(threads[ti] == 1);
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = cb_clock_s();
            fn(ctx);
            double t = cb_clock_s() - t0;
            if (t < best) best = t;
        }
        printf(ms_format, best * 1e3);
        printf(" %9.2f %8.0f%%", bytes / best / 1e9, 100 * bytes / best / 1e9 / bw[ti]);
    }
    cb_parallel_set_serial(0);
    printf("\n");
}

typedef struct matvec_call {
    float *y;
    const cb_weight_matrix *m;
    const float *x;
    float sink;
} matvec_call;

static void run_matvec(void *ctx) {
    matvec_call *c = ctx;
    cb_matvec(c->y, c->m, c->x, NULL);
    c->sink += c->y[0];
}

/* One new token at position context - 1 against `layers` caches in turn. */
typedef struct attention_call {
    float *out, *scratch;
    const float *q, *q_sem; /* q_sem: decoupled layers' semantic queries, else NULL */
    const cb_layer_cache *caches;
    const cb_attention_config *cfg;
    int layers, context;
    float sink;
} attention_call;

static void run_attention(void *ctx) {
    attention_call *c = ctx;
    for (int l = 0; l < c->layers; l++)
        cb_attention_decode(c->out, c->q, c->q_sem, NULL, &c->caches[l], c->cfg, c->context - 1, 1, NULL, c->scratch);
    c->sink += c->out[0];
}

int main(int argc, char **argv) {
    int rows = 8192, cols = 4096, context = 4096;
    if (argc == 4) {
        rows = atoi(argv[1]);
        cols = atoi(argv[2]);
        context = atoi(argv[3]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: kernels_decode [ROWS COLS CONTEXT]\n");
        return 2;
    }
    if (rows <= 0 || cols <= 0 || context <= 0 || (size_t)rows * cols % 32) {
        fprintf(stderr, "kernels_decode: sizes must be positive, ROWS * COLS a multiple of 32\n");
        return 2;
    }
    const int max_threads = omp_get_max_threads();
    cb_parallel_threads(); // the decoding pool starts now, with all of them
    const size_t nw = (size_t)rows * cols;
    float *w = malloc(sizeof(float) * nw), *x = malloc(sizeof(float) * cols);
    float *y = malloc(sizeof(float) * rows), sink = 0;
    if (!w || !x || !y) {
        fprintf(stderr, "kernels_decode: out of memory\n");
        return 4;
    }
    unsigned long long s = 88172645463325252ULL;
    for (size_t i = 0; i < nw; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        w[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    for (int j = 0; j < cols; j++) x[j] = w[j];
    const int threads[2] = {1, max_threads};
    double bw[2];
    for (int ti = 0; ti < 2; ti++) {
        omp_set_num_threads(threads[ti]);
        bw[ti] = bench_stream_gbs(w, nw, threads[ti], &sink);
        printf("stream read f32 %zu MB, %d thread(s): %.2f GB/s\n", nw * 4 >> 20, threads[ti], bw[ti]);
    }
    cb_error e;
    printf("\nmatvec %d x %d (y = W x, one token)\n", rows, cols);
    printf("%-6s %9s %8s %9s %9s %8s %9s %9s\n", "kind", "MB", "ms/1t", "GB/s/1t", "%bw/1t",
           "ms/all", "GB/s/all", "%bw/all");
    for (int k = 0; k < CB_KV_COUNT; k++) {
        cb_weight_matrix m;
        if (cb_weight_matrix_from_f32(&m, (cb_kv_kind)k, w, rows, cols, &e) != CB_OK) {
            fprintf(stderr, "kernels_decode: %s\n", e.msg);
            return e.code;
        }
        const double bytes = (double)cb_weight_matrix_bytes(&m);
        printf("%-6s %9.1f", cb_kv_kind_name((cb_kv_kind)k), bytes / 1048576.0);
        matvec_call call = {y, &m, x, 0};
        print_timings(run_matvec, &call, bytes, threads, bw, " %8.2f");
        sink += call.sink;
        cb_weight_matrix_free(&m);
    }
    free(w);

    // decode attention, one layer of Llama 3.2 1B's shape (32 query heads over 8 kv heads),
    // one new token at the end: GQA with heads of 64, then the DBA preset's decoupled keys
    // (llama32_1b_dba.yml: 4 semantic + 8 geometric values a head, values of 64)
    cb_attention_config cfgs[2] = {{0}, {0}};
    for (int ci = 0; ci < 2; ci++) {
        cfgs[ci].mode = ci ? CB_ATTENTION_DECOUPLED : CB_ATTENTION_GQA;
        cfgs[ci].d_model = 2048;
        cfgs[ci].n_heads = 32;
        cfgs[ci].n_kv_heads = 8;
        cfgs[ci].head_dim = 64;
        cfgs[ci].rope_enabled = true;
        cfgs[ci].is_causal = true;
    }
    cfgs[1].sem_dim = 128;
    cfgs[1].geo_dim = 256;
    cfgs[1].v_dim = 2048;
    const int kv_width = 8 * 64, q_width = 32 * 64; // the widest rows either reads
    float *kv = malloc(sizeof(float) * (size_t)context * kv_width), *q = malloc(sizeof(float) * q_width);
    float *out = malloc(sizeof(float) * q_width);
    for (size_t i = 0; i < (size_t)context * kv_width; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        kv[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    for (int i = 0; i < q_width; i++) q[i] = kv[i];
    for (int ci = 0; ci < 2; ci++) {
        const cb_attention_config *cfg = &cfgs[ci];
        printf("\ndecode attention, %s, one token over %d cached\n",
               ci ? "DBA 32/8 heads, keys 4 + 8, values 64" : "GQA 32/8 heads of 64", context);
        printf("%-6s %9s %8s %9s %9s %8s %9s %9s\n", "kind", "MB", "ms/1t", "GB/s/1t", "%bw/1t",
               "ms/all", "GB/s/all", "%bw/all");
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_layer_cache c;
            cb_kv_kinds kinds = {(cb_kv_kind)k, (cb_kv_kind)k, (cb_kv_kind)k};
            if (cb_layer_cache_init(&c, cfg, &kinds, context, &e) != CB_OK ||
                cb_layer_cache_append(&c, kv, ci ? kv : NULL, kv, context, &e) != CB_OK) {
                fprintf(stderr, "kernels_decode: %s\n", e.msg);
                return e.code;
            }
            // packed tensors (DBA's small heads in block kinds) need room for their fp32 view
            float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(cfg, &c, 1, context, NULL));
            const double bytes = (double)cb_layer_cache_bytes(&c).payload;
            printf("%-6s %9.1f", cb_kv_kind_name((cb_kv_kind)k), bytes / 1048576.0);
            attention_call call = {out, scratch, q, ci ? q + 256 : NULL, &c, cfg, 1, context, 0};
            print_timings(run_attention, &call, bytes, threads, bw, " %8.3f");
            sink += call.sink;
            cb_layer_cache_free(&c);
            free(scratch);
        }
    }

    // decode attention, 110M shape: 12 layers, standard 12 heads of 64, one token at the end
    enum { LAYERS_110M = 12 };
    cb_attention_config std = {0};
    std.mode = CB_ATTENTION_STANDARD;
    std.d_model = 768;
    std.n_heads = std.n_kv_heads = 12;
    std.head_dim = 64;
    std.rope_enabled = true;
    std.is_causal = true;
    free(kv);
    const size_t n110 = (size_t)context * 768 + LAYERS_110M * 64;
    kv = malloc(sizeof(float) * n110);
    if (!kv) {
        fprintf(stderr, "kernels_decode: out of memory\n");
        return 4;
    }
    for (size_t i = 0; i < n110; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        kv[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    float *scratch = malloc(sizeof(float) * cb_attention_decode_scratch_size(&std, NULL, 1, context, NULL));
    printf("\ndecode attention, %d layers of 12 heads of 64 (110M), one token over %d cached\n", LAYERS_110M,
           context);
    printf("%-6s %9s %8s %9s %9s %8s %9s %9s\n", "kind", "MB", "ms/1t", "GB/s/1t", "%bw/1t",
           "ms/all", "GB/s/all", "%bw/all");
    for (int k = 0; k < CB_KV_COUNT; k++) {
        cb_layer_cache c[LAYERS_110M];
        cb_kv_kinds kinds = {(cb_kv_kind)k, (cb_kv_kind)k, (cb_kv_kind)k};
        double bytes = 0;
        for (int l = 0; l < LAYERS_110M; l++) {
            // each layer a different window of the random floats, so no two caches are alike
            const float *src = kv + (size_t)l * 64; // (context, 768) from float l*64 on
            if (cb_layer_cache_init(&c[l], &std, &kinds, context, &e) != CB_OK ||
                cb_layer_cache_append(&c[l], src, NULL, src + 32, context, &e) != CB_OK) {
                fprintf(stderr, "kernels_decode: %s\n", e.msg);
                return e.code;
            }
            bytes += (double)cb_layer_cache_bytes(&c[l]).payload;
        }
        printf("%-6s %9.1f", cb_kv_kind_name((cb_kv_kind)k), bytes / 1048576.0);
        attention_call call = {out, scratch, q, NULL, c, &std, LAYERS_110M, context, 0};
        print_timings(run_attention, &call, bytes, threads, bw, " %8.3f");
        sink += call.sink;
        for (int l = 0; l < LAYERS_110M; l++) cb_layer_cache_free(&c[l]);
    }
    fprintf(stderr, "(checksum %g)\n", (double)sink);
    free(kv); free(q); free(out); free(scratch); free(x); free(y);
    return 0;
}

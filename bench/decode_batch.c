/* bench/decode_batch.c: batched decoding (infer/batch.h) against batch 1 in the same run:
 * the tokens/s of k sequences decoded together (one pass of k rows a step, each weight
 * matrix read once for all k) per weight kind, beside the same sequences decoded one at a
 * time, on the 110M Llama shape (bench/llama110m.yml, random weights: speed does not depend
 * on them). Each sequence starts from its own prompt of P tokens; a measurement is S steps
 * of every sequence. The configurations are measured in rounds, each round every batch size
 * once in turn, and the median of the rounds is printed, so a machine whose bandwidth moves
 * moves them alike.
 *   build/rel/bench/decode_batch [-d cpu|cuda] [-m manifest] [-w KINDS] [-b BATCHES] [-p P] [-s S] [-r ROUNDS]
 * Defaults: the CPU; bf16,q8_0,q4_0; 1,2,4,8; P 64; S 16; 5 rounds; a q8_0 cache. Threads:
 * OMP_NUM_THREADS (backend/cpu/parallel.h). On cuda a step alone is the GPU's one-row step
 * (a captured graph), a batched one its pass of k rows. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/diag.h"
#include "infer/batch.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "plan/validate.h"

#define MAX_LIST 16

static void die(const char *what, const cb_error *e) {
    fprintf(stderr, "decode_batch: %s: %s%s%s\n", what, e->where, e->where[0] ? ": " : "", e->msg);
    exit(4);
}

static json_t *compile_manifest(const char *path) {
    char *text = NULL;
    size_t len = 0;
    cb_error e;
    if (cb_read_file(path, 1 << 20, &text, &len, &e) != CB_OK) die(path, &e);
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    if (cb_yaml_parse(text, len, path, &manifest, &e) != CB_OK) die(path, &e);
    free(text);
    cb_diags d;
    cb_diags_init(&d);
    if (cb_lower(manifest, &lowered, &d) != CB_OK || cb_validate(lowered, &plan, &d) != CB_OK) {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "decode_batch: %s: %s\n", d.items[i].where, d.items[i].msg);
        exit(3);
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    return plan;
}

static int parse_list(const char *s, char items[][16], int max) {
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        size_t len = strcspn(p, ",");
        snprintf(items[n++], 16, "%.*s", (int)len, p);
        p += len + (p[len] == ',');
    }
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* S steps of k sequences of b, together (one pass of k rows a step) or one at a time, each
 * step's logits (V) of every sequence into logits (k, V) as a generation takes them;
 * tokens/s over all of them. Each sequence is truncated back to its prompt first. */
static double measure(cb_batch *b, int k, int together, int P, int S, const int32_t *const *prompts, float *logits) {
    const int V = b->seqs[0].vocab;
    cb_error e;
    cb_session *rows[64];
    int32_t tok[64];
    for (int i = 0; i < k; i++) {
        rows[i] = &b->seqs[i];
        cb_session_truncate(rows[i], P);
        tok[i] = prompts[i][P];
    }
    double t0 = cb_clock_s();
    for (int s = 0; s < S; s++) {
        if (together) {
            if (cb_session_forward_batch(rows, k, tok, logits, &e) != CB_OK) die("batched step", &e);
        } else {
            for (int i = 0; i < k; i++)
                if (cb_session_forward(rows[i], &tok[i], 1, logits + (size_t)i * V, 0, &e) != CB_OK) die("step", &e);
        }
        for (int i = 0; i < k; i++) tok[i] = prompts[i][P + 1 + s];
    }
    return (double)k * S / (cb_clock_s() - t0);
}

int main(int argc, char **argv) {
    const char *manifest = "bench/llama110m.yml", *kinds_arg = "bf16,q8_0,q4_0", *batches_arg = "1,2,4,8";
    int P = 64, S = 16, rounds = 5, ch;
    cb_backend *be = NULL; /* the CPU */
    while ((ch = getopt(argc, argv, "d:m:w:b:p:s:r:h")) != -1) {
        switch (ch) {
        case 'd':
            if (strcmp(optarg, "cuda") == 0 && !(be = cb_backend_cuda())) {
                printf("decode_batch: skipped: %s\n", cb_backend_cuda_absent());
                return 0;
            } else if (strcmp(optarg, "cuda") != 0 && strcmp(optarg, "cpu") != 0) {
                fprintf(stderr, "decode_batch: -d cpu or cuda\n");
                return 2;
            }
            break;
        case 'm': manifest = optarg; break;
        case 'w': kinds_arg = optarg; break;
        case 'b': batches_arg = optarg; break;
        case 'p': P = atoi(optarg); break;
        case 's': S = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default:
            printf("usage: decode_batch [-d cpu|cuda] [-m manifest] [-w KINDS] [-b BATCHES] [-p P] [-s S] [-r ROUNDS]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    char kinds[MAX_LIST][16], bl[MAX_LIST][16];
    int nk = parse_list(kinds_arg, kinds, MAX_LIST), nb = parse_list(batches_arg, bl, MAX_LIST), batches[MAX_LIST],
        kmax = 1;
    for (int i = 0; i < nb; i++) {
        batches[i] = atoi(bl[i]);
        if (batches[i] < 1 || batches[i] > 64 || P < 1 || S < 1 || rounds < 1) {
            fprintf(stderr, "decode_batch: batches 1 to 64, P, S and rounds at least 1\n");
            return 2;
        }
        if (batches[i] > kmax) kmax = batches[i];
    }
    json_t *plan = compile_manifest(manifest);
    cb_model m;
    cb_error e;
    if (cb_model_init(&m, plan, 1, &e) != CB_OK) die("model", &e);
    const int V = (int)json_integer_value(json_object_get(json_object_get(m.plan, "model"), "vocab_size"));
    int32_t *storage = malloc((size_t)kmax * (P + S + 1) * sizeof *storage);
    const int32_t *prompts[64];
    unsigned long long seed = 88172645463325252ULL;
    for (size_t i = 0; i < (size_t)kmax * (P + S + 1); i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        storage[i] = (int32_t)(seed % (unsigned long long)V);
    }
    for (int i = 0; i < kmax; i++) prompts[i] = storage + (size_t)i * (P + S + 1);
    printf("decode_batch: %s on %s, random weights; prompts of %d tokens, %d steps a sequence, median of %d rounds; "
           "q8_0 cache; threads from OMP_NUM_THREADS\n", manifest, be ? be->name : "cpu", P, S, rounds);
    printf("%-6s %5s %14s %14s %10s %12s\n", "weights", "batch", "alone tok/s", "batched tok/s", "batched/alone",
           "vs batch 1");
    for (int w = 0; w < nk; w++) {
        cb_session_config c = cb_session_config_default();
        c.kinds.k = c.kinds.k_sem = c.kinds.v = CB_KV_Q8_0;
        if (!cb_kv_kind_from_name(kinds[w], &c.weight_kind)) {
            fprintf(stderr, "decode_batch: unknown weight kind %s\n", kinds[w]);
            return 2;
        }
        c.max_seq_len = P + S + 1;
        c.backend = be;
        cb_batch b;
        if (cb_batch_init(&b, &m, &c, kmax, &e) != CB_OK) die("batch", &e);
        for (int i = 0; i < kmax; i++)
            if (cb_session_forward(&b.seqs[i], prompts[i], P, NULL, 0, &e) != CB_OK) die("prompt", &e);
        double *alone = calloc((size_t)nb * rounds, sizeof *alone), *together = calloc((size_t)nb * rounds, sizeof *together);
        float *logits = malloc((size_t)kmax * V * sizeof *logits);
        measure(&b, kmax, 1, P, 2, prompts, logits); /* warm: every sequence's pages and the pool */
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < nb; i++) {
                alone[i * rounds + r] = measure(&b, batches[i], 0, P, S, prompts, logits);
                together[i * rounds + r] = measure(&b, batches[i], 1, P, S, prompts, logits);
            }
        double base = 0;
        for (int i = 0; i < nb; i++) {
            qsort(alone + i * rounds, (size_t)rounds, sizeof *alone, cmp_double);
            qsort(together + i * rounds, (size_t)rounds, sizeof *together, cmp_double);
            double a = alone[i * rounds + rounds / 2], t = together[i * rounds + rounds / 2];
            if (i == 0) base = a;
            printf("%-6s %5d %14.1f %14.1f %10.2f %12.2f\n", kinds[w], batches[i], a, t, t / a, t / base);
        }
        fflush(stdout);
        free(alone);
        free(together);
        free(logits);
        cb_batch_free(&b);
    }
    free(storage);
    cb_model_free(&m);
    json_decref(plan);
    return 0;
}

/* attention.h: causal multi-head self-attention on the CPU in three modes: standard,
 * grouped-query (GQA) and decoupled bottleneck attention (DBA), forward and backward
 * (docs/DESIGN.md section 5). RoPE tables come from layers/rope.h. */
#ifndef CB_LAYERS_ATTENTION_H
#define CB_LAYERS_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef enum cb_attention_mode {
    CB_ATTENTION_STANDARD = 0,  /* n_kv_heads == n_heads */
    CB_ATTENTION_GQA = 1,       /* n_kv_heads divides n_heads */
    CB_ATTENTION_DECOUPLED = 2, /* DBA: semantic + geometric scores */
} cb_attention_mode;

/* The AttentionLayer fields of the plan (CONTRACTS.md "Model section"). RoPE theta and
 * scaling are not here: they only shape the tables the caller builds with
 * cb_rope_tables(cos, sin, T_max, cb_attention_rope_dim(cfg), theta, scaling). */
typedef struct cb_attention_config {
    cb_attention_mode mode;
    int d_model;    /* d */
    int n_heads;    /* H */
    int n_kv_heads; /* H_kv; query head h uses kv head h / (H / H_kv) */
    int head_dim;   /* standard/gqa: d_model / n_heads (q, k and v per head) */
    int sem_dim;    /* decoupled: semantic width of all query heads, d_sem = sem_dim / H */
    int geo_dim;    /* decoupled: geometric width, d_geo = geo_dim / H (RoPE path) */
    int v_dim;      /* decoupled: value width, d_v = v_dim / H */
    bool rope_enabled;
    bool bias;      /* every projection has a bias (decoupled too: q_sem.bias, ...) */
    /* DBA gate, on when either is set: g = sigmoid(z) per head (and token), with
     * z = a_h (decoupled_gate, a = gate (H)) + x . gate_proj_h (decoupled_gate_dynamic,
     * gate_proj (H, d)); the semantic query is scaled by 2g, the geometric by 2 - 2g. */
    bool decoupled_gate;
    bool decoupled_gate_dynamic;
    bool is_causal;
    double dropout; /* attention dropout is not implemented: must be 0 */
} cb_attention_config;

/* Parameter pointers, named after the tensors of CONTRACTS.md (q.weight -> q_weight).
 * The same struct holds the gradients. Unused entries are NULL; a NULL gradient
 * pointer is not computed. */
#define CB_ATTENTION_WEIGHT_FIELDS(T)                                                      \
    T *q_weight, *q_bias;         /* standard/gqa: (H*hd, d), (H*hd) */                   \
    T *k_weight, *k_bias;         /* standard/gqa: (Hkv*hd, d), (Hkv*hd) */               \
    T *v_weight, *v_bias;         /* (Hkv*d_v, d), (Hkv*d_v); standard/gqa: d_v = hd */   \
    T *o_weight, *o_bias;         /* (d, H*d_v), (d) */                                    \
    T *q_sem_weight, *q_sem_bias; /* decoupled: (sem_dim, d), (sem_dim) */                 \
    T *k_sem_weight, *k_sem_bias; /* decoupled: (Hkv*d_sem, d), (Hkv*d_sem) */            \
    T *q_geo_weight, *q_geo_bias; /* decoupled: (geo_dim, d), (geo_dim) */                 \
    T *k_geo_weight, *k_geo_bias; /* decoupled: (Hkv*d_geo, d), (Hkv*d_geo) */            \
    T *gate;                      /* decoupled_gate: (H), a_h */                           \
    T *gate_proj_weight;          /* decoupled_gate_dynamic: (H, d) */
typedef struct cb_attention_weights { CB_ATTENTION_WEIGHT_FIELDS(float) } cb_attention_weights;
typedef struct cb_attention_weights_f64 { CB_ATTENTION_WEIGHT_FIELDS(double) } cb_attention_weights_f64;

/* What forward saves for backward: pointers into one buffer of cb_attention_acts_size
 * reals, laid out by cb_attention_acts_layout. d_rot is the per-head width of the
 * RoPE path: head_dim (standard/gqa) or d_geo (decoupled). q and k are unscaled. */
#define CB_ATTENTION_ACT_FIELDS(T)                                                          \
    T *q;     /* (B,T,H*d_rot) query after RoPE: q (standard/gqa) or q_geo (decoupled) */    \
    T *k;     /* (B,T,Hkv*d_rot) key after RoPE: k or k_geo */                               \
    T *q_sem; /* (B,T,H*d_sem) decoupled, no RoPE; NULL otherwise */                         \
    T *k_sem; /* (B,T,Hkv*d_sem) decoupled; NULL otherwise */                                \
    T *v;     /* (B,T,Hkv*d_v) */                                                            \
    T *gate;  /* (B,T,H) g per token and head when gated; NULL otherwise */                  \
    T *lse;   /* (B,H,T) log-sum-exp of each row of scaled scores */                         \
    T *att;   /* (B,T,H*d_v) softmax(scores) v per head: the output projection's input */
typedef struct cb_attention_acts { CB_ATTENTION_ACT_FIELDS(float) } cb_attention_acts;
typedef struct cb_attention_acts_f64 { CB_ATTENTION_ACT_FIELDS(double) } cb_attention_acts_f64;

/* Checks the config (divisibility, even RoPE width, dropout 0, mode against heads).
 * CB_OK or CB_E_INVALID with e filled. */
int cb_attention_check(const cb_attention_config *cfg, cb_error *e);

/* Per-head width the RoPE tables must be built for: head_dim or geo_dim / n_heads. */
int cb_attention_rope_dim(const cb_attention_config *cfg);

/* Reals (floats or doubles) of saved activations, and of scratch that forward and
 * backward use for (B,T); the scratch may be shared by all layers. */
size_t cb_attention_acts_size(const cb_attention_config *cfg, int B, int T);
size_t cb_attention_scratch_size(const cb_attention_config *cfg, int B, int T);

/* Points acts into buf (cb_attention_acts_size reals). */
void cb_attention_acts_layout(cb_attention_acts *acts, float *buf, const cb_attention_config *cfg,
                              int B, int T);
void cb_attention_acts_layout_f64(cb_attention_acts_f64 *acts, double *buf,
                                  const cb_attention_config *cfg, int B, int T);

/* out (B,T,d), in (B,T,d); rope_cos, rope_sin (T_max >= T, d_rot/2) (unused when
 * rope_enabled is false); scratch (cb_attention_scratch_size). Fills acts. */
void cb_attention_forward(float *out, const cb_attention_acts *acts, const float *in,
                          const cb_attention_weights *w, const cb_attention_config *cfg,
                          const float *rope_cos, const float *rope_sin, float *scratch,
                          int B, int T);
void cb_attention_forward_f64(double *out, const cb_attention_acts_f64 *acts, const double *in,
                              const cb_attention_weights_f64 *w, const cb_attention_config *cfg,
                              const double *rope_cos, const double *rope_sin, double *scratch,
                              int B, int T);

/* din (B,T,d) += dL/din (NULL: not needed); every non-NULL pointer of grads += its
 * gradient; dout (B,T,d); in and acts as forward left them. */
void cb_attention_backward(float *din, const cb_attention_weights *grads, const float *dout,
                           const float *in, const cb_attention_acts *acts,
                           const cb_attention_weights *w, const cb_attention_config *cfg,
                           const float *rope_cos, const float *rope_sin, float *scratch,
                           int B, int T);
void cb_attention_backward_f64(double *din, const cb_attention_weights_f64 *grads,
                               const double *dout, const double *in,
                               const cb_attention_acts_f64 *acts,
                               const cb_attention_weights_f64 *w, const cb_attention_config *cfg,
                               const double *rope_cos, const double *rope_sin, double *scratch,
                               int B, int T);

#endif

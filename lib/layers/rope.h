/* rope.h: rotary position embedding in the Hugging Face Llama convention (rotate_half:
 * dimension i pairs with i + D/2), with optional Llama 3 frequency scaling. */
#ifndef CB_LAYERS_ROPE_H
#define CB_LAYERS_ROPE_H

/* Frequency scaling of the rotary inverse frequencies (manifest field rope_scaling). */
typedef enum cb_rope_scaling_type {
    CB_ROPE_SCALING_NONE = 0,
    CB_ROPE_SCALING_LLAMA3 = 1, /* transformers' _compute_llama3_parameters */
} cb_rope_scaling_type;

typedef struct cb_rope_scaling {
    cb_rope_scaling_type type;
    double factor;                        /* llama3: 8 (3.1) or 32 (3.2) */
    double low_freq_factor;               /* llama3: 1 */
    double high_freq_factor;              /* llama3: 4 */
    int original_max_position_embeddings; /* llama3: 8192 */
} cb_rope_scaling;

/* The D/2 inverse frequencies theta^(-2i/D), then scaled (scaling NULL or NONE: unscaled).
 * Computed in float32 arithmetic exactly as transformers (and Meta's reference) do, so a
 * checkpoint trained there sees the same angles here. inv_freq (D/2), D even. */
void cb_rope_inv_freq(double *inv_freq, int D, double theta, const cb_rope_scaling *scaling);

/* cos, sin (T_max, D/2): position t, frequency i. The angle t * inv_freq[i] is rounded to
 * float32 as in transformers; its cosine and sine are then taken in double. */
void cb_rope_tables(float *cos, float *sin, int T_max, int D, double theta,
                    const cb_rope_scaling *scaling);
void cb_rope_tables_f64(double *cos, double *sin, int T_max, int D, double theta,
                        const cb_rope_scaling *scaling);

/* Rotate (B,T,H,D) by position pos0 + t, using rows pos0 .. pos0+T-1 of the tables:
 *   out[i]       = in[i] cos - in[i+D/2] sin
 *   out[i+D/2]   = in[i+D/2] cos + in[i] sin        (i < D/2)
 * out, in (B,T,H,D); out may be in. This is also the RoPE layer's forward
 * (d_model split into H heads of D = d_model / H dims). */
void cb_rope_forward(float *out, const float *in, const float *cos, const float *sin,
                     int B, int T, int H, int D, int pos0);
void cb_rope_forward_f64(double *out, const double *in, const double *cos, const double *sin,
                         int B, int T, int H, int D, int pos0);

/* The RoPE layer's backward: din += R^T dout. din, dout (B,T,H,D); din != dout;
 * din NULL does nothing. */
void cb_rope_backward(float *din, const float *dout, const float *cos, const float *sin,
                      int B, int T, int H, int D, int pos0);
void cb_rope_backward_f64(double *din, const double *dout, const double *cos, const double *sin,
                          int B, int T, int H, int D, int pos0);

/* In place x = R^T x (the inverse rotation): turns a gradient with respect to rotated
 * values into one with respect to the values before rotation. x (B,T,H,D). */
void cb_rope_unrotate(float *x, const float *cos, const float *sin, int B, int T, int H, int D,
                      int pos0);
void cb_rope_unrotate_f64(double *x, const double *cos, const double *sin, int B, int T, int H,
                          int D, int pos0);

#endif

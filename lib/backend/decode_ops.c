/* decode_ops.c: the ops as decoding sees them (decode_ops.h). */
#include "backend/decode_ops.h"

cb_head_dims cb_head_dims_of(const cb_attention_config *a) {
    cb_head_dims m = {a->n_heads, a->n_kv_heads, 0, a->head_dim, a->head_dim, 0};
    if (a->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = a->sem_dim / a->n_heads;
        m.dr = a->geo_dim / a->n_heads;
        m.dv = a->v_dim / a->n_heads;
        m.gated = a->decoupled_gate || a->decoupled_gate_dynamic;
    }
    return m;
}

static size_t attention_work(const cb_attention_config *a, size_t m) {
    cb_head_dims d = cb_head_dims_of(a);
    const size_t qkv = (size_t)d.H * d.dr + (size_t)d.Hkv * d.dr + (size_t)d.Hkv * d.dv;
    /* q, k, v, q_sem, k_sem, gate, the attention's output; then (CPU, several rows) the joined
       q, k, v product's rows before they are placed apart */
    return m * (qkv + (size_t)d.H * d.ds + (size_t)d.Hkv * d.ds + (size_t)d.H + (size_t)d.H * d.dv) + (m > 1 ? m * qkv : 0);
}

size_t cb_decode_op_work(const cb_op *op, size_t m) {
    switch (op->kind) {
    case CB_OP_RMSNORM: return m;
    case CB_OP_LAYERNORM: return 2 * m;
    case CB_OP_SWIGLU: return 3 * m * (size_t)op->d_ff;
    case CB_OP_MLP: return 2 * m * (size_t)op->d_ff;
    case CB_OP_ATTENTION: return attention_work(&op->attn, m);
    default: return 0;
    }
}

int cb_decode_is_matrix(const cb_op *op, int role) {
    switch (op->kind) {
    case CB_OP_ATTENTION:
        return role == CB_P_Q_W || role == CB_P_K_W || role == CB_P_V_W || role == CB_P_O_W || role == CB_P_QSEM_W ||
               role == CB_P_KSEM_W || role == CB_P_QGEO_W || role == CB_P_KGEO_W || role == CB_P_GATE_PROJ;
    case CB_OP_SWIGLU: return role == CB_P_GATE || role == CB_P_UP || role == CB_P_DOWN;
    case CB_OP_MLP: return role == CB_P_FC_W || role == CB_P_PROJ_W;
    case CB_OP_LINEAR:
    case CB_OP_HEAD: return role == CB_P_WEIGHT;
    default: return 0;
    }
}

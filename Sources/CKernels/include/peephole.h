// The peephole LSTM cell's element-wise step (CaptionKit's PeepholeCell), vectorised; see peephole.c.
#ifndef CK_PEEPHOLE_H
#define CK_PEEPHOLE_H

/// As ck_lstm_forward, with the peephole weights peep [3, hidden] (rows p_i, p_f, p_o): gates
/// [batch, 4·hidden] pre-activations in, activations out; writes c, tanh_c, h [batch, hidden]
/// (c may be c_prev).
void ck_peephole_forward(float *gates, const float *peep, const float *c_prev, float *c,
                         float *tanh_c, float *h, int batch, int hidden);

/// As ck_lstm_backward; also adds the peephole gradient into dpeep [3, hidden]. c: c_t as the
/// forward wrote it (the output gate's peephole input).
void ck_peephole_backward(float *dpre, float *dc, float *dpeep, const float *dh, const float *gates,
                          const float *peep, const float *c_prev, const float *c,
                          const float *tanh_c, int batch, int hidden);

#endif

// The LSTM cell's element-wise step (CaptionKit's LSTMCell), vectorised; see lstm.c.
#ifndef CK_LSTM_H
#define CK_LSTM_H

/// One step for `batch` rows of `hidden` units. gates [batch, 4·hidden], per row the blocks
/// a_i, a_f, a_g, a_o: pre-activations in, activations i = σ(a_i), f = σ(a_f), g = tanh(a_g),
/// o = σ(a_o) out. Reads c_prev [batch, hidden]; writes c = f ⊙ c_prev + i ⊙ g, tanh_c = tanh(c)
/// and h = o ⊙ tanh(c) (each [batch, hidden]). c may be c_prev (updated in place).
void ck_lstm_forward(float *gates, const float *c_prev, float *c, float *tanh_c, float *h, int batch,
                     int hidden);

/// Backpropagation through that step. dh [batch, hidden]: the total gradient on h; dc: the
/// gradient on c arriving from the next step, overwritten with the gradient on c_prev. gates: the
/// forward's activations; tanh_c as the forward wrote it. Writes dpre [batch, 4·hidden], the
/// gradient on the pre-activations.
void ck_lstm_backward(float *dpre, float *dc, const float *dh, const float *gates,
                      const float *c_prev, const float *tanh_c, int batch, int hidden);

#endif

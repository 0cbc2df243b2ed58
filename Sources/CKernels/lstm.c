// The LSTM cell, 16 units at a time (SPEC §3, PyTorch's nn.LSTM gate order i, f, g, o):
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c_t = f ⊙ c_{t−1} + i ⊙ g,  h_t = o ⊙ tanh(c_t)
// and its adjoint (σ′ = σ(1 − σ), tanh′ = 1 − tanh²).

#include "lstm.h"

#include "vector16.h"

/// The forward of 16 units (or `lanes` < 16 at a row's end) of one row.
INLINE void forward_lanes(float *row, int hidden, int j, int lanes, const float *c_prev,
                             float *c, float *tanh_c, float *h) {
  float *a_i = row + j, *a_f = row + hidden + j, *a_g = row + 2 * hidden + j,
        *a_o = row + 3 * hidden + j;
  v16 i, f, g, o, cp;
  if (lanes == 16) {
    i = load(a_i), f = load(a_f), g = load(a_g), o = load(a_o);
    cp = load(c_prev + j);
  } else {
    i = load_first(a_i, lanes, 0), f = load_first(a_f, lanes, 0);
    g = load_first(a_g, lanes, 0), o = load_first(a_o, lanes, 0);
    cp = load_first(c_prev + j, lanes, 0);
  }
  i = sigmoid16(i);
  f = sigmoid16(f);
  g = tanh16(g);
  o = sigmoid16(o);
  v16 cn = f * cp + i * g;
  v16 tc = tanh16(cn);
  v16 hn = o * tc;
  if (lanes == 16) {
    store(a_i, i), store(a_f, f), store(a_g, g), store(a_o, o);
    store(c + j, cn), store(tanh_c + j, tc), store(h + j, hn);
  } else {
    store_first(a_i, lanes, i), store_first(a_f, lanes, f);
    store_first(a_g, lanes, g), store_first(a_o, lanes, o);
    store_first(c + j, lanes, cn), store_first(tanh_c + j, lanes, tc);
    store_first(h + j, lanes, hn);
  }
}

INLINE void lstm_forward(float *gates, const float *c_prev, float *c, float *tanh_c, float *h,
                            int batch, int hidden) {
  for (int b = 0; b < batch; b++) {
    size_t s = (size_t)b * (size_t)hidden;
    float *row = gates + 4 * s;
    for (int j = 0; j < hidden; j += 16) {
      int lanes = hidden - j < 16 ? hidden - j : 16;
      forward_lanes(row, hidden, j, lanes, c_prev + s, c + s, tanh_c + s, h + s);
    }
  }
}

/// The backward of 16 units (or `lanes` < 16) of one row.
INLINE void backward_lanes(float *drow, const float *row, int hidden, int j, int lanes,
                              float *dc, const float *dh, const float *c_prev,
                              const float *tanh_c) {
  const float *sources[7] = {row + j,          row + hidden + j, row + 2 * hidden + j,
                             row + 3 * hidden + j, dh + j,        c_prev + j,
                             tanh_c + j};
  v16 x[7];
  for (int k = 0; k < 7; k++)
    x[k] = lanes == 16 ? load(sources[k]) : load_first(sources[k], lanes, 0);
  v16 i = x[0], f = x[1], g = x[2], o = x[3], dhj = x[4], cp = x[5], tc = x[6];
  v16 dcj = lanes == 16 ? load(dc + j) : load_first(dc + j, lanes, 0);
  // h = o ⊙ tanh(c): into o and into c
  v16 d_o = dhj * tc;
  dcj = dcj + dhj * o * (1.0f - tc * tc);
  // c = f ⊙ c_prev + i ⊙ g
  v16 d_i = dcj * g, d_f = dcj * cp, d_g = dcj * i;
  v16 outputs[5] = {d_i * i * (1.0f - i), d_f * f * (1.0f - f), d_g * (1.0f - g * g),
                     d_o * o * (1.0f - o), dcj * f};
  float *targets[5] = {drow + j, drow + hidden + j, drow + 2 * hidden + j, drow + 3 * hidden + j,
                       dc + j};
  for (int k = 0; k < 5; k++) {
    if (lanes == 16)
      store(targets[k], outputs[k]);
    else
      store_first(targets[k], lanes, outputs[k]);
  }
}

INLINE void lstm_backward(float *dpre, float *dc, const float *dh, const float *gates,
                             const float *c_prev, const float *tanh_c, int batch, int hidden) {
  for (int b = 0; b < batch; b++) {
    size_t s = (size_t)b * (size_t)hidden;
    for (int j = 0; j < hidden; j += 16) {
      int lanes = hidden - j < 16 ? hidden - j : 16;
      backward_lanes(dpre + 4 * s, gates + 4 * s, hidden, j, lanes, dc + s, dh + s, c_prev + s,
                     tanh_c + s);
    }
  }
}

CK_INSTANTIATE(ck_lstm_forward,
               (float *gates, const float *c_prev, float *c, float *tanh_c, float *h, int batch,
                int hidden),
               (gates, c_prev, c, tanh_c, h, batch, hidden), lstm_forward)

CK_INSTANTIATE(ck_lstm_backward,
               (float *dpre, float *dc, const float *dh, const float *gates, const float *c_prev,
                const float *tanh_c, int batch, int hidden),
               (dpre, dc, dh, gates, c_prev, tanh_c, batch, hidden), lstm_backward)

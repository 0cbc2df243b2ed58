// The peephole LSTM cell (Gers & Schmidhuber; SPEC §3), 16 units at a time:
//   i = σ(a_i + p_i ⊙ c_{t−1})   f = σ(a_f + p_f ⊙ c_{t−1})   g = tanh(a_g)
//   c_t = f ⊙ c_{t−1} + i ⊙ g    o = σ(a_o + p_o ⊙ c_t)       h_t = o ⊙ tanh(c_t)
// and its adjoint (σ′ = σ(1 − σ), tanh′ = 1 − tanh²), as CaptionKit's PeepholeCell documents.

#include "peephole.h"

#include "vector16.h"

INLINE v16 get(const float *p, int lanes) { return lanes == 16 ? load(p) : load_first(p, lanes, 0); }
INLINE void put(float *p, int lanes, v16 x) {
  if (lanes == 16)
    store(p, x);
  else
    store_first(p, lanes, x);
}

INLINE void peephole_forward(float *gates, const float *peep, const float *c_prev, float *c,
                             float *tanh_c, float *h, int batch, int hidden) {
  for (int b = 0; b < batch; b++) {
    size_t s = (size_t)b * (size_t)hidden;
    float *row = gates + 4 * s;
    for (int j = 0; j < hidden; j += 16) {
      int lanes = hidden - j < 16 ? hidden - j : 16;
      v16 cp = get(c_prev + s + j, lanes);
      v16 i = sigmoid16(get(row + j, lanes) + get(peep + j, lanes) * cp);
      v16 f = sigmoid16(get(row + hidden + j, lanes) + get(peep + hidden + j, lanes) * cp);
      v16 g = tanh16(get(row + 2 * hidden + j, lanes));
      v16 cn = f * cp + i * g;
      v16 o = sigmoid16(get(row + 3 * hidden + j, lanes) + get(peep + 2 * hidden + j, lanes) * cn);
      v16 tc = tanh16(cn);
      put(row + j, lanes, i), put(row + hidden + j, lanes, f);
      put(row + 2 * hidden + j, lanes, g), put(row + 3 * hidden + j, lanes, o);
      put(c + s + j, lanes, cn), put(tanh_c + s + j, lanes, tc), put(h + s + j, lanes, o * tc);
    }
  }
}

INLINE void peephole_backward(float *dpre, float *dc, float *dpeep, const float *dh,
                              const float *gates, const float *peep, const float *c_prev,
                              const float *c, const float *tanh_c, int batch, int hidden) {
  for (int b = 0; b < batch; b++) {
    size_t s = (size_t)b * (size_t)hidden;
    const float *row = gates + 4 * s;
    float *drow = dpre + 4 * s;
    for (int j = 0; j < hidden; j += 16) {
      int lanes = hidden - j < 16 ? hidden - j : 16;
      v16 i = get(row + j, lanes), f = get(row + hidden + j, lanes);
      v16 g = get(row + 2 * hidden + j, lanes), o = get(row + 3 * hidden + j, lanes);
      v16 tc = get(tanh_c + s + j, lanes), cp = get(c_prev + s + j, lanes);
      v16 dhj = get(dh + s + j, lanes);
      v16 pi = get(peep + j, lanes), pf = get(peep + hidden + j, lanes);
      v16 po = get(peep + 2 * hidden + j, lanes);
      // h = o ⊙ tanh(c); o = σ(a_o + p_o ⊙ c) also depends on c
      v16 d_o = dhj * tc * o * (1.0f - o);
      v16 dcj = get(dc + s + j, lanes) + dhj * o * (1.0f - tc * tc) + d_o * po;
      // c = f ⊙ c_prev + i ⊙ g
      v16 d_i = dcj * g * i * (1.0f - i);
      v16 d_f = dcj * cp * f * (1.0f - f);
      v16 d_g = dcj * i * (1.0f - g * g);
      // c_prev reaches c directly and through the i and f peepholes
      put(dc + s + j, lanes, dcj * f + d_i * pi + d_f * pf);
      put(dpeep + j, lanes, get(dpeep + j, lanes) + d_i * cp);
      put(dpeep + hidden + j, lanes, get(dpeep + hidden + j, lanes) + d_f * cp);
      put(dpeep + 2 * hidden + j, lanes, get(dpeep + 2 * hidden + j, lanes) + d_o * get(c + s + j, lanes));
      put(drow + j, lanes, d_i), put(drow + hidden + j, lanes, d_f);
      put(drow + 2 * hidden + j, lanes, d_g), put(drow + 3 * hidden + j, lanes, d_o);
    }
  }
}

CK_INSTANTIATE(ck_peephole_forward,
               (float *gates, const float *peep, const float *c_prev, float *c, float *tanh_c,
                float *h, int batch, int hidden),
               (gates, peep, c_prev, c, tanh_c, h, batch, hidden), peephole_forward)

CK_INSTANTIATE(ck_peephole_backward,
               (float *dpre, float *dc, float *dpeep, const float *dh, const float *gates,
                const float *peep, const float *c_prev, const float *c, const float *tanh_c,
                int batch, int hidden),
               (dpre, dc, dpeep, dh, gates, peep, c_prev, c, tanh_c, batch, hidden),
               peephole_backward)

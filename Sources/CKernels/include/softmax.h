// Row-wise softmax (CaptionKit's SoftmaxCrossEntropy), vectorised; see softmax.c.
#ifndef CK_SOFTMAX_H
#define CK_SOFTMAX_H

/// For each of `rows` rows of logits z [rows, classes]: m = max z, s = Σ e^(z − m), and
/// p = e^(z − m) / s into probabilities [rows, classes]; row_max[r] = m and row_sum[r] = s (the
/// loss is −log p_t = log s − (z_t − m), exact even where p_t underflows).
void ck_softmax_rows(const float *logits, float *probabilities, int rows, int classes,
                     float *row_max, float *row_sum);

#endif

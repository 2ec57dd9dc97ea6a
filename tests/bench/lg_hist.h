/*
 * lg_hist.h - a log-bucket latency histogram in the style of HdrHistogram:
 * values up to 127 are exact, larger ones keep their top 7 significant bits
 * (at most 1/64, about 1.6 %, relative error), over the whole uint64 range
 * in a fixed 30 KB table. Recording is O(1) and never allocates.
 *
 * Ownership: lg_hist is a plain value the caller owns.
 * Thread safety: none; one histogram per thread.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define LG_HIST_HALF_BITS 6
#define LG_HIST_HALF (1u << LG_HIST_HALF_BITS) /* sub-buckets per power of two */
#define LG_HIST_BUCKETS ((64 - LG_HIST_HALF_BITS) * LG_HIST_HALF + LG_HIST_HALF)

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} lg_hist;

void lg_hist_reset(lg_hist *h);
void lg_hist_record(lg_hist *h, uint64_t v);
/* Bucket index of `v`, and the largest value that bucket holds. */
unsigned lg_hist_index(uint64_t v);
uint64_t lg_hist_bucket_high(unsigned idx);
/* The value at percentile `q` (0 < q <= 100): the high end of the bucket
 * holding that sample, never above the recorded maximum; 0 when empty. */
uint64_t lg_hist_percentile(const lg_hist *h, double q);
/* Adds every sample of `src` to `dst`. */
void lg_hist_merge(lg_hist *dst, const lg_hist *src);

#endif

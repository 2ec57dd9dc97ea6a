/*
 * lg_hist.c - log-bucket histogram (see lg_hist.h).
 */
#include "lg_hist.h"

#include <string.h>

void lg_hist_reset(lg_hist *h)
{
    memset(h, 0, sizeof *h);
}

unsigned lg_hist_index(uint64_t v)
{
    if (v < 2 * LG_HIST_HALF)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - LG_HIST_HALF_BITS; /* keeps v >> shift in [HALF, 2*HALF) */
    return shift * LG_HIST_HALF + (unsigned)(v >> shift);
}

uint64_t lg_hist_bucket_high(unsigned idx)
{
    if (idx < 2 * LG_HIST_HALF)
        return idx;
    unsigned shift = idx / LG_HIST_HALF - 1;
    uint64_t m = idx - shift * LG_HIST_HALF;
    return (m << shift) + ((UINT64_C(1) << shift) - 1);
}

void lg_hist_record(lg_hist *h, uint64_t v)
{
    h->counts[lg_hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

uint64_t lg_hist_percentile(const lg_hist *h, double q)
{
    if (h->total == 0)
        return 0;
    double r = q / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = lg_hist_bucket_high(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

void lg_hist_merge(lg_hist *dst, const lg_hist *src)
{
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Decode attention over a head-major KV pool layer, reading each key and value once, in place.
 *
 * Built at first use by interleaf.runtime.engine.attention (cc -O3 -march=native -fopenmp) and called
 * through ctypes. Why native: a decode query is 3 query rows per KV head, and the BLAS's GEMM kernels
 * for 3-row products run at a fraction of the core's FLOP rate (measured 7-8 GB/s of keys from memory
 * on one core, where a plain streaming read reaches 25), so attention at long context was bound by
 * instruction throughput, not memory. Here each (sequence, KV head) pair is one task: its group of query
 * heads scores every key of the slot table (contiguous runs stream, scattered slots are read where they
 * are), one exact softmax in fp32, then the weighted sum of values. OpenMP splits the tasks across the
 * threads torch uses (the same libgomp, loaded by torch first), one fork-join per layer.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_GROUP 16
#define MAX_HEAD_DIM 256
/* Keys ahead to prefetch (16 floats = one cache line at a time): the slot indirection hides the stream from
   the hardware prefetcher at run boundaries, and measured 10-15% faster from memory at 8 to 32 ahead. */
#define PREFETCH 16

/* exp(x) for x <= 0, ~2e-7 relative error: 2^t as 2^floor(t) * a degree-6 polynomial of the fraction.
   Written out so that the softmax loop vectorises (libm's expf is scalar). */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.4426950408889634f;
    float fi = floorf(t);
    float f = t - fi;
    float p = 1.5403530e-4f;
    p = p * f + 1.3333558e-3f;
    p = p * f + 9.6181291e-3f;
    p = p * f + 5.5504109e-2f;
    p = p * f + 2.4022651e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)fi + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* The key pass for head_dim 64, 16 keys at a time, in GCC's vector extensions (AVX-512 here; other compilers
   take the plain loop below): per key and query head 4 vector FMAs, and the 16 keys' horizontal sums done
   together by reduce16. Measured in CPU time on one core: 24 -> 33 GB/s of keys and values in cache, 22.6 -> 25.5 from
   memory (the whole kernel, 8 x 4k keys x 30 layers). */
#if defined(__GNUC__) && !defined(__clang__)
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
#define HAVE_V16 1

static inline v16f load16(const float *p) {
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Sums of each of 16 vectors' lanes, in one vector: a transposition network of 15 shuffle pairs instead of
   16 horizontal sums. Output lane i holds the sum of p[REDUCE_ORDER[i]]. */
static const int REDUCE_ORDER[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

static inline v16f reduce16(v16f *p) {
    const v16i lo8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const v16i hi8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const v16i lo4 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
    const v16i hi4 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
    const v16i lo2 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
    const v16i hi2 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
    const v16i lo1 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
    const v16i hi1 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
    v16f a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = __builtin_shuffle(p[2 * i], p[2 * i + 1], lo8) + __builtin_shuffle(p[2 * i], p[2 * i + 1], hi8);
    for (int i = 0; i < 4; i++)
        b[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], lo4) + __builtin_shuffle(a[2 * i], a[2 * i + 1], hi4);
    for (int i = 0; i < 2; i++)
        c[i] = __builtin_shuffle(b[2 * i], b[2 * i + 1], lo2) + __builtin_shuffle(b[2 * i], b[2 * i + 1], hi2);
    return __builtin_shuffle(c[0], c[1], lo1) + __builtin_shuffle(c[0], c[1], hi1);
}
#endif

/* One task: query heads h*group .. h*group+group-1 of row r against KV head h over the row's n slots.
   Inlined with constant group and dim for the shapes models use, so the dot products and the value
   accumulators unroll into registers. */
static inline __attribute__((always_inline)) void attend_task(const float *qt, const float *kh, const float *vh,
                                                              const int64_t *sl, int64_t n, int64_t width, float *s,
                                                              float *o, const int64_t group, const int64_t dim) {
    float top[MAX_GROUP], total[MAX_GROUP];
    for (int64_t g = 0; g < group; g++) top[g] = -INFINITY;
    int64_t j0 = 0;
#ifdef HAVE_V16
    if (dim == 64) {
        for (; j0 + 16 <= n; j0 += 16) {
            if (j0 + 16 + PREFETCH <= n)
                for (int64_t jj = 0; jj < 16; jj++)
                    for (int64_t c = 0; c < dim; c += 16) __builtin_prefetch(kh + sl[j0 + 16 + jj] * dim + c);
            for (int64_t g = 0; g < group; g++) {
                const float *qg = qt + g * dim;
                const v16f q0 = load16(qg), q1 = load16(qg + 16), q2 = load16(qg + 32), q3 = load16(qg + 48);
                v16f p[16];
                for (int jj = 0; jj < 16; jj++) {
                    const float *key = kh + sl[j0 + jj] * dim;
                    p[jj] = q0 * load16(key) + q1 * load16(key + 16) + q2 * load16(key + 32) + q3 * load16(key + 48);
                }
                v16f r = reduce16(p);
                float sums[16];
                memcpy(sums, &r, sizeof sums);
                for (int i = 0; i < 16; i++) {
                    s[g * width + j0 + REDUCE_ORDER[i]] = sums[i];
                    top[g] = sums[i] > top[g] ? sums[i] : top[g];
                }
            }
        }
    }
#endif
    for (int64_t j = j0; j < n; j++) {
        const float *key = kh + sl[j] * dim;
        if (j + PREFETCH < n)
            for (int64_t c = 0; c < dim; c += 16) __builtin_prefetch(kh + sl[j + PREFETCH] * dim + c);
        for (int64_t g = 0; g < group; g++) {
            const float *qg = qt + g * dim;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t d = 0; d < dim; d++) acc += qg[d] * key[d];
            s[g * width + j] = acc;
            top[g] = acc > top[g] ? acc : top[g];
        }
    }
    for (int64_t g = 0; g < group; g++) {
        float *sg = s + g * width, m = top[g], sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) {
            float e = exp_nonpositive(sg[j] - m);
            sg[j] = e;
            sum += e;
        }
        total[g] = sum;
    }
    float acc[MAX_GROUP * MAX_HEAD_DIM];
    for (int64_t i = 0; i < group * dim; i++) acc[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float *value = vh + sl[j] * dim;
        if (j + PREFETCH < n)
            for (int64_t c = 0; c < dim; c += 16) __builtin_prefetch(vh + sl[j + PREFETCH] * dim + c);
        for (int64_t g = 0; g < group; g++) {
            const float p = s[g * width + j];
            float *ag = acc + g * dim;
#pragma omp simd
            for (int64_t d = 0; d < dim; d++) ag[d] += p * value[d];
        }
    }
    for (int64_t g = 0; g < group; g++)
        for (int64_t d = 0; d < dim; d++) o[g * dim + d] = acc[g * dim + d] / total[g];
}

/* q: (rows, heads, group, dim) fp32, already scaled by dim^-0.5; query head h*group+g reads KV head h.
   k, v: one layer of the pool, (heads, slots, dim) fp32, head stride head_stride floats.
   slots: (rows, width) int64, row r's first lens[r] entries are the slots it attends to.
   scores: scratch of rows * heads * group * width floats. out: (rows, heads, group, dim) fp32.
   Returns 0, or -1 when group or dim exceed what the kernel was built for. */
int decode_attention(const float *q, const float *k, const float *v, int64_t head_stride, const int64_t *slots,
                     const int64_t *lens, int64_t width, int64_t rows, int64_t heads, int64_t group, int64_t dim,
                     float *scores, float *out) {
    if (group > MAX_GROUP || dim > MAX_HEAD_DIM) return -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < rows * heads; task++) {
        const int64_t r = task / heads, h = task % heads;
        const float *qt = q + task * group * dim, *kh = k + h * head_stride, *vh = v + h * head_stride;
        const int64_t *sl = slots + r * width;
        float *s = scores + task * group * width, *o = out + task * group * dim;
        if (group == 3 && dim == 64)  /* SmolLM2-135M */
            attend_task(qt, kh, vh, sl, lens[r], width, s, o, 3, 64);
        else if (group == 4 && dim == 64)
            attend_task(qt, kh, vh, sl, lens[r], width, s, o, 4, 64);
        else if (group == 4 && dim == 128)  /* Llama-3 8B */
            attend_task(qt, kh, vh, sl, lens[r], width, s, o, 4, 128);
        else
            attend_task(qt, kh, vh, sl, lens[r], width, s, o, group, dim);
    }
    return 0;
}

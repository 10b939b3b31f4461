/* mma.cuh — the PTX wrappers of the tensor-core kernels (linear.cu, indexer_mma.cu,
 * sparse_attention_mma.cu): warp-level mma.sync m16n8k16 with fp32 accumulation, ldmatrix
 * fragment loads from shared memory, and cp.async 16-byte copies into shared memory (sm_80+;
 * built for sm_90). Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
 * g = lane / 4, t = lane % 4:
 *   A (16 x 16, row-major), a0..a3 (two halves each): rows g / g+8, columns 2t, 2t+1 / +8;
 *   B (16 x 8, "col"), b0, b1: rows (k) 2t, 2t+1 / +8, column (n) g;
 *   C (16 x 8), c0..c3: row g columns 2t, 2t+1; row g+8 the same.
 * The asm statements are volatile: the kernels order them against the cp.async waits and
 * barriers by program order. */
#ifndef DSV4_CUDA_MMA_CUH
#define DSV4_CUDA_MMA_CUH

#include <cstdint>

/* the shared-memory address (32-bit) of a generic pointer into shared memory */
__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* c[16x8] += a[16x16] b[16x8], bf16 inputs, fp32 accumulate */
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    mma_bf16_16816(c, a[0], a[1], a[2], a[3], b0, b1);
}
/* the same with f16 inputs (FP8 e4m3 / FP4 e2m1 codes are exact f16 values) */
__device__ __forceinline__ void mma_f16_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* four 8x8 b16 matrices; lane l supplies the address of row l % 8 of matrix l / 8; lane l
 * receives, of matrix i in register i, row l / 4, columns 2 (l % 4), +1 (low half first) */
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
/* the same, transposed: lane l receives rows 2 (l % 4), +1 of column l / 4 */
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}

/* 16-byte asynchronous copy global -> shared; src_bytes = 0 zero-fills the destination and
 * reads nothing */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, uint32_t src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* all but the newest N committed groups of this thread have landed */
template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}

#endif

/*
 * Fallback for <cuda_runtime_api.h>, used by shim/build_shim.rs only when no CUDA toolkit
 * header is found. TensorRT's public headers need just these two opaque handle types; the
 * shim never calls CUDA.
 */
#ifndef SPARSEQC_CUDA_STUB_H
#define SPARSEQC_CUDA_STUB_H
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#endif

/*
 * sparseqc's C ABI over TensorRT's C++ network-definition API (see docs/tensorrt.md).
 *
 * The Rust side (src/trt/engine.rs) drives a build as a flat sequence of calls:
 *
 *   ctx = sqc_new(log_fn, user)
 *   sqc_create_builder(ctx, createInferBuilder_INTERNAL)   -- pointer from dlopen("libnvinfer.so.N")
 *   sqc_create_network(ctx, creation_flag_bits)
 *   sqc_add_input / sqc_add_<layer> / sqc_layer_set_* / sqc_layer_output / sqc_tensor_set_name ...
 *   sqc_mark_output
 *   sqc_create_config, sqc_config_set_flag, sqc_config_set_memory_pool_limit,
 *   sqc_add_profile, sqc_profile_set_dims, sqc_config_add_profile
 *   sqc_build(ctx, &data, &size)     -- plan bytes, owned by ctx
 *   sqc_free(ctx)
 *
 * Every function returning int32_t returns 0 on success and -1 on failure; the message is
 * then available from sqc_error(ctx) until the next call. No C++ exception crosses the ABI.
 *
 * Handles: tensors and layers are small integers (indices into tables in ctx), never raw
 * pointers. Enum-valued arguments (data types, activation types, builder flags, ...) are
 * the numeric values of the TensorRT headers the shim was compiled against
 * (sqc_header_version()).
 *
 * Ownership: ctx owns the logger, the IBuilder, INetworkDefinition, IBuilderConfig and the
 * serialized plan, and deletes them in sqc_free. Weight buffers (SqcWeights::values) are
 * NOT copied: TensorRT keeps the pointers until buildSerializedNetwork returns, so the
 * caller must keep every buffer alive and unchanged until sqc_build has returned (the Rust
 * side borrows the whole network for the duration of the build).
 *
 * The shim never links libnvinfer: the only entry point it uses is the
 * createInferBuilder_INTERNAL function pointer handed to sqc_create_builder; all other
 * TensorRT calls go through the objects it returns.
 */
#ifndef SPARSEQC_TRT_SHIM_H
#define SPARSEQC_TRT_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped when a signature below changes. */
#define SQC_SHIM_ABI_VERSION 1

typedef struct SqcBuild SqcBuild;

/** Receives every TensorRT log message: severity is ILogger::Severity (0 = internal error .. 4 = verbose). */
typedef void (*SqcLogFn)(void* user, int32_t severity, const char* msg);

/** Signature of TensorRT's `createInferBuilder_INTERNAL(void* logger, int32_t version)`. */
typedef void* (*SqcCreateBuilderFn)(void* logger, int32_t version);

/** Mirrors nvinfer1::Weights; values == NULL and count == 0 mean "empty weights". */
typedef struct SqcWeights {
    int32_t dtype;
    const void* values;
    int64_t count;
} SqcWeights;

/** Attributes settable with sqc_layer_set_int / _float / _dims. */
enum SqcAttr {
    SQC_ATTR_STRIDE = 1,                /* dims: conv, deconv, pooling */
    SQC_ATTR_PRE_PADDING = 2,           /* dims: conv, deconv, pooling */
    SQC_ATTR_POST_PADDING = 3,          /* dims: conv, deconv, pooling */
    SQC_ATTR_DILATION = 4,              /* dims: conv, deconv */
    SQC_ATTR_NB_GROUPS = 5,             /* int: conv, deconv */
    SQC_ATTR_AXIS = 6,                  /* int: quantize, dequantize, concatenation */
    SQC_ATTR_ALPHA = 7,                 /* float: activation */
    SQC_ATTR_BETA = 8,                  /* float: activation */
    SQC_ATTR_AVG_EXCLUDES_PADDING = 9,  /* int (bool): pooling */
    SQC_ATTR_FIRST_TRANSPOSE = 10,      /* dims (permutation): shuffle */
    SQC_ATTR_RESHAPE = 11,              /* dims: shuffle */
    SQC_ATTR_SECOND_TRANSPOSE = 12,     /* dims (permutation): shuffle */
    SQC_ATTR_ZERO_IS_PLACEHOLDER = 13,  /* int (bool): shuffle */
    SQC_ATTR_SOFTMAX_AXES = 14,         /* int (bitmask): softmax */
    SQC_ATTR_SLICE_MODE = 15,           /* int (SampleMode): slice */
    SQC_ATTR_SLICE_AXES = 16            /* dims: slice (ISliceLayer::setAxes) */
};

int32_t sqc_shim_abi_version(void);
/** NV_TENSORRT_VERSION of the headers the shim was compiled with (major*10000+minor*100+patch). */
int32_t sqc_header_version(void);

SqcBuild* sqc_new(SqcLogFn log, void* user);
void sqc_free(SqcBuild* ctx);
/** Last error message; never NULL; valid until the next call on ctx. */
const char* sqc_error(const SqcBuild* ctx);

int32_t sqc_create_builder(SqcBuild* ctx, SqcCreateBuilderFn entry);
/** flags: bitmask of 1 << NetworkDefinitionCreationFlag values. */
int32_t sqc_create_network(SqcBuild* ctx, uint32_t flags);
int32_t sqc_set_network_name(SqcBuild* ctx, const char* name);

int32_t sqc_add_input(SqcBuild* ctx, const char* name, int32_t dtype, const int64_t* dims, int32_t nb_dims,
                      int32_t* out_tensor);
int32_t sqc_add_convolution(SqcBuild* ctx, int32_t input, int64_t nb_output_maps, const int64_t* kernel_size,
                            int32_t nb_dims, SqcWeights kernel, SqcWeights bias, int32_t* out_layer);
int32_t sqc_add_deconvolution(SqcBuild* ctx, int32_t input, int64_t nb_output_maps, const int64_t* kernel_size,
                              int32_t nb_dims, SqcWeights kernel, SqcWeights bias, int32_t* out_layer);
int32_t sqc_add_matrix_multiply(SqcBuild* ctx, int32_t input0, int32_t op0, int32_t input1, int32_t op1,
                                int32_t* out_layer);
int32_t sqc_add_quantize(SqcBuild* ctx, int32_t input, int32_t scale, int32_t to_type, int32_t* out_layer);
int32_t sqc_add_dequantize(SqcBuild* ctx, int32_t input, int32_t scale, int32_t to_type, int32_t* out_layer);
int32_t sqc_add_constant(SqcBuild* ctx, const int64_t* dims, int32_t nb_dims, SqcWeights weights, int32_t* out_layer);
int32_t sqc_add_elementwise(SqcBuild* ctx, int32_t input0, int32_t input1, int32_t op, int32_t* out_layer);
int32_t sqc_add_activation(SqcBuild* ctx, int32_t input, int32_t type, int32_t* out_layer);
int32_t sqc_add_pooling(SqcBuild* ctx, int32_t input, int32_t type, const int64_t* window, int32_t nb_dims,
                        int32_t* out_layer);
int32_t sqc_add_shuffle(SqcBuild* ctx, int32_t input, int32_t* out_layer);
int32_t sqc_add_concatenation(SqcBuild* ctx, const int32_t* inputs, int32_t nb_inputs, int32_t* out_layer);
int32_t sqc_add_reduce(SqcBuild* ctx, int32_t input, int32_t op, uint32_t axes, int32_t keep_dims,
                       int32_t* out_layer);
int32_t sqc_add_softmax(SqcBuild* ctx, int32_t input, int32_t* out_layer);
int32_t sqc_add_slice(SqcBuild* ctx, int32_t input, const int64_t* start, const int64_t* size,
                      const int64_t* stride, int32_t nb_dims, int32_t* out_layer);
int32_t sqc_add_padding(SqcBuild* ctx, int32_t input, const int64_t* pre, const int64_t* post, int32_t nb_dims,
                        int32_t* out_layer);
int32_t sqc_add_identity(SqcBuild* ctx, int32_t input, int32_t* out_layer);
int32_t sqc_add_cast(SqcBuild* ctx, int32_t input, int32_t to_type, int32_t* out_layer);

int32_t sqc_layer_set_name(SqcBuild* ctx, int32_t layer, const char* name);
int32_t sqc_layer_set_input(SqcBuild* ctx, int32_t layer, int32_t index, int32_t tensor);
int32_t sqc_layer_set_int(SqcBuild* ctx, int32_t layer, int32_t attr, int64_t value);
int32_t sqc_layer_set_float(SqcBuild* ctx, int32_t layer, int32_t attr, float value);
int32_t sqc_layer_set_dims(SqcBuild* ctx, int32_t layer, int32_t attr, const int64_t* values, int32_t nb);
int32_t sqc_layer_output(SqcBuild* ctx, int32_t layer, int32_t index, int32_t* out_tensor);
int32_t sqc_tensor_set_name(SqcBuild* ctx, int32_t tensor, const char* name);
int32_t sqc_mark_output(SqcBuild* ctx, int32_t tensor);

int32_t sqc_create_config(SqcBuild* ctx);
int32_t sqc_config_set_flag(SqcBuild* ctx, int32_t flag);
int32_t sqc_config_set_memory_pool_limit(SqcBuild* ctx, int32_t pool, uint64_t bytes);
int32_t sqc_add_profile(SqcBuild* ctx, int32_t* out_profile);
/** selector: OptProfileSelector (0 = kMIN, 1 = kOPT, 2 = kMAX). */
int32_t sqc_profile_set_dims(SqcBuild* ctx, int32_t profile, const char* input, int32_t selector,
                             const int64_t* dims, int32_t nb_dims);
int32_t sqc_config_add_profile(SqcBuild* ctx, int32_t profile);

/** buildSerializedNetwork; on success (*data, *size) describe the plan, owned by ctx until sqc_free. */
int32_t sqc_build(SqcBuild* ctx, const uint8_t** data, uint64_t* size);

#ifdef __cplusplus
}
#endif

#endif /* SPARSEQC_TRT_SHIM_H */

// sparseqc's C ABI over TensorRT's C++ network-definition API. See trt_shim.h for the
// calling sequence and ownership rules, docs/tensorrt.md for the overall design.
//
// Compiled only with `cargo build --features tensorrt`, against the TensorRT headers found
// by shim/build_shim.rs. Never linked against libnvinfer: the builder comes from the
// createInferBuilder_INTERNAL pointer that the Rust side obtained with dlopen/dlsym.

#include "trt_shim.h"

#include <NvInfer.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

// The Rust side passes enum values as plain integers (src/trt/network.rs, config.rs).
// These checks make a header whose numbering differs fail at compile time instead of
// building a wrong engine.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static_assert(static_cast<int32_t>(DataType::kFLOAT) == 0 && static_cast<int32_t>(DataType::kHALF) == 1
        && static_cast<int32_t>(DataType::kINT8) == 2 && static_cast<int32_t>(DataType::kINT32) == 3
        && static_cast<int32_t>(DataType::kBOOL) == 4 && static_cast<int32_t>(DataType::kUINT8) == 5
        && static_cast<int32_t>(DataType::kFP8) == 6 && static_cast<int32_t>(DataType::kBF16) == 7
        && static_cast<int32_t>(DataType::kINT64) == 8 && static_cast<int32_t>(DataType::kINT4) == 9,
    "DataType numbering");
static_assert(static_cast<int32_t>(ActivationType::kRELU) == 0 && static_cast<int32_t>(ActivationType::kSIGMOID) == 1
        && static_cast<int32_t>(ActivationType::kTANH) == 2 && static_cast<int32_t>(ActivationType::kLEAKY_RELU) == 3
        && static_cast<int32_t>(ActivationType::kELU) == 4 && static_cast<int32_t>(ActivationType::kSOFTPLUS) == 7
        && static_cast<int32_t>(ActivationType::kCLIP) == 8 && static_cast<int32_t>(ActivationType::kHARD_SIGMOID) == 9,
    "ActivationType numbering");
static_assert(static_cast<int32_t>(ElementWiseOperation::kSUM) == 0 && static_cast<int32_t>(ElementWiseOperation::kPROD) == 1
        && static_cast<int32_t>(ElementWiseOperation::kMAX) == 2 && static_cast<int32_t>(ElementWiseOperation::kMIN) == 3
        && static_cast<int32_t>(ElementWiseOperation::kSUB) == 4 && static_cast<int32_t>(ElementWiseOperation::kDIV) == 5
        && static_cast<int32_t>(ElementWiseOperation::kPOW) == 6,
    "ElementWiseOperation numbering");
static_assert(static_cast<int32_t>(PoolingType::kMAX) == 0 && static_cast<int32_t>(PoolingType::kAVERAGE) == 1,
    "PoolingType numbering");
static_assert(static_cast<int32_t>(ReduceOperation::kSUM) == 0 && static_cast<int32_t>(ReduceOperation::kAVG) == 4,
    "ReduceOperation numbering");
static_assert(static_cast<int32_t>(MatrixOperation::kNONE) == 0 && static_cast<int32_t>(MatrixOperation::kTRANSPOSE) == 1
        && static_cast<int32_t>(MatrixOperation::kVECTOR) == 2,
    "MatrixOperation numbering");
static_assert(static_cast<int32_t>(SampleMode::kSTRICT_BOUNDS) == 0 && static_cast<int32_t>(SampleMode::kWRAP) == 1
        && static_cast<int32_t>(SampleMode::kCLAMP) == 2 && static_cast<int32_t>(SampleMode::kFILL) == 3,
    "SampleMode numbering");
static_assert(static_cast<int32_t>(MemoryPoolType::kWORKSPACE) == 0, "MemoryPoolType numbering");
static_assert(static_cast<int32_t>(OptProfileSelector::kMIN) == 0 && static_cast<int32_t>(OptProfileSelector::kOPT) == 1
        && static_cast<int32_t>(OptProfileSelector::kMAX) == 2,
    "OptProfileSelector numbering");
static_assert(static_cast<int32_t>(BuilderFlag::kSPARSE_WEIGHTS) == 7 && static_cast<int32_t>(BuilderFlag::kTF32) == 6,
    "BuilderFlag numbering");
#if NV_TENSORRT_MAJOR >= 11
static_assert(static_cast<int32_t>(ActivationType::kGELU_ERF) == 12 && static_cast<int32_t>(ActivationType::kGELU_TANH) == 13,
    "ActivationType numbering (11.x)");
static_assert(static_cast<int32_t>(BuilderFlag::kVERSION_COMPATIBLE) == 12
        && static_cast<int32_t>(BuilderFlag::kEXCLUDE_LEAN_RUNTIME) == 13
        && static_cast<int32_t>(BuilderFlag::kSTRIP_PLAN) == 18 && static_cast<int32_t>(BuilderFlag::kREFIT_IDENTICAL) == 19
        && static_cast<int32_t>(BuilderFlag::kSTRICT_NANS) == 23,
    "BuilderFlag numbering (11.x)");
#else
static_assert(static_cast<int32_t>(BuilderFlag::kFP16) == 0 && static_cast<int32_t>(BuilderFlag::kINT8) == 1
        && static_cast<int32_t>(BuilderFlag::kVERSION_COMPATIBLE) == 13
        && static_cast<int32_t>(BuilderFlag::kSTRIP_PLAN) == 19,
    "BuilderFlag numbering (10.x)");
static_assert(static_cast<int32_t>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED) == 1,
    "NetworkDefinitionCreationFlag numbering (10.x)");
#endif
#pragma GCC diagnostic pop

namespace
{

// Forwards every TensorRT log message to the Rust callback; remembers the last error for
// sqc_build's message.
class ForwardingLogger : public ILogger
{
public:
    ForwardingLogger(SqcLogFn fn, void* user)
        : mFn(fn)
        , mUser(user)
    {
    }

    void log(Severity severity, char const* msg) noexcept override
    {
        char const* m = msg != nullptr ? msg : "";
        if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR)
        {
            try
            {
                mLastError = m;
            }
            catch (...)
            {
            }
        }
        if (mFn != nullptr)
        {
            mFn(mUser, static_cast<int32_t>(severity), m);
        }
    }

    std::string const& lastError() const
    {
        return mLastError;
    }

private:
    SqcLogFn mFn;
    void* mUser;
    std::string mLastError;
};

enum class Kind
{
    kCONV,
    kDECONV,
    kMATMUL,
    kQUANTIZE,
    kDEQUANTIZE,
    kCONSTANT,
    kELEMENTWISE,
    kACTIVATION,
    kPOOLING,
    kSHUFFLE,
    kCONCAT,
    kREDUCE,
    kSOFTMAX,
    kSLICE,
    kPADDING,
    kIDENTITY,
    kCAST,
};

struct LayerRec
{
    Kind kind;
    ILayer* layer;
};

} // namespace

struct SqcBuild
{
    SqcBuild(SqcLogFn fn, void* user)
        : logger(fn, user)
    {
    }

    ~SqcBuild()
    {
        // Children before the builder that created them.
        delete plan;
        delete config;
        delete network;
        delete builder;
    }

    SqcBuild(SqcBuild const&) = delete;
    SqcBuild& operator=(SqcBuild const&) = delete;

    ForwardingLogger logger;
    IBuilder* builder{nullptr};
    INetworkDefinition* network{nullptr};
    IBuilderConfig* config{nullptr};
    IHostMemory* plan{nullptr};
    std::vector<ITensor*> tensors;
    std::vector<LayerRec> layers;
    std::vector<IOptimizationProfile*> profiles; // owned by the builder
    std::string error;
};

namespace
{

int32_t fail(SqcBuild* ctx, std::string msg)
{
    ctx->error = std::move(msg);
    return -1;
}

// Runs f, turning C++ exceptions into an error status.
template <typename F>
int32_t guarded(SqcBuild* ctx, F&& f)
{
    if (ctx == nullptr)
    {
        return -1;
    }
    try
    {
        ctx->error.clear();
        return f();
    }
    catch (std::exception const& e)
    {
        return fail(ctx, std::string("C++ exception: ") + e.what());
    }
    catch (...)
    {
        return fail(ctx, "unknown C++ exception");
    }
}

bool toDims(SqcBuild* ctx, int64_t const* v, int32_t nb, Dims& out)
{
    if (nb < 0 || nb > Dims::MAX_DIMS || (nb > 0 && v == nullptr))
    {
        fail(ctx, "invalid dimensions (rank " + std::to_string(nb) + ")");
        return false;
    }
    out = Dims{};
    out.nbDims = nb;
    for (int32_t i = 0; i < nb; ++i)
    {
        out.d[i] = v[i];
    }
    return true;
}

Weights toWeights(SqcWeights const& w)
{
    Weights out{};
    out.type = static_cast<DataType>(w.dtype);
    out.values = w.values;
    out.count = w.count;
    return out;
}

ITensor* tensorAt(SqcBuild* ctx, int32_t t)
{
    if (t < 0 || static_cast<size_t>(t) >= ctx->tensors.size() || ctx->tensors[static_cast<size_t>(t)] == nullptr)
    {
        fail(ctx, "invalid tensor handle " + std::to_string(t));
        return nullptr;
    }
    return ctx->tensors[static_cast<size_t>(t)];
}

LayerRec* layerAt(SqcBuild* ctx, int32_t l)
{
    if (l < 0 || static_cast<size_t>(l) >= ctx->layers.size())
    {
        fail(ctx, "invalid layer handle " + std::to_string(l));
        return nullptr;
    }
    return &ctx->layers[static_cast<size_t>(l)];
}

bool needNetwork(SqcBuild* ctx)
{
    if (ctx->network == nullptr)
    {
        fail(ctx, "no network: call sqc_create_network first");
        return false;
    }
    return true;
}

int32_t pushLayer(SqcBuild* ctx, Kind kind, ILayer* layer, char const* what, int32_t* out)
{
    if (layer == nullptr)
    {
        std::string msg = std::string("TensorRT rejected ") + what;
        if (!ctx->logger.lastError().empty())
        {
            msg += ": " + ctx->logger.lastError();
        }
        return fail(ctx, msg);
    }
    ctx->layers.push_back(LayerRec{kind, layer});
    if (out != nullptr)
    {
        *out = static_cast<int32_t>(ctx->layers.size() - 1);
    }
    return 0;
}

int32_t pushTensor(SqcBuild* ctx, ITensor* t, int32_t* out)
{
    if (t == nullptr)
    {
        return fail(ctx, "TensorRT returned no tensor");
    }
    ctx->tensors.push_back(t);
    if (out != nullptr)
    {
        *out = static_cast<int32_t>(ctx->tensors.size() - 1);
    }
    return 0;
}

int32_t addConvLike(SqcBuild* ctx, bool deconv, int32_t input, int64_t nbOutputMaps, int64_t const* kernelSize,
    int32_t nb, SqcWeights kernel, SqcWeights bias, int32_t* out)
{
    if (!needNetwork(ctx))
    {
        return -1;
    }
    ITensor* in = tensorAt(ctx, input);
    Dims k{};
    if (in == nullptr || !toDims(ctx, kernelSize, nb, k))
    {
        return -1;
    }
    if (deconv)
    {
        return pushLayer(ctx, Kind::kDECONV,
            ctx->network->addDeconvolutionNd(*in, nbOutputMaps, k, toWeights(kernel), toWeights(bias)),
            "addDeconvolutionNd", out);
    }
    return pushLayer(ctx, Kind::kCONV,
        ctx->network->addConvolutionNd(*in, nbOutputMaps, k, toWeights(kernel), toWeights(bias)), "addConvolutionNd",
        out);
}

int32_t unaryInput(SqcBuild* ctx, int32_t input, ITensor*& in)
{
    if (!needNetwork(ctx))
    {
        return -1;
    }
    in = tensorAt(ctx, input);
    return in == nullptr ? -1 : 0;
}

int32_t badAttr(SqcBuild* ctx, int32_t attr)
{
    return fail(ctx, "attribute " + std::to_string(attr) + " does not apply to this layer");
}

// ISliceLayer::setAxes exists in recent headers only: the first overload is chosen where it
// compiles (the int argument 0 prefers it), the second one elsewhere.
template <typename L>
auto setSliceAxes(L* layer, Dims const& axes, int) -> decltype(layer->setAxes(axes), bool())
{
    layer->setAxes(axes);
    return true;
}

template <typename L>
bool setSliceAxes(L*, Dims const&, long)
{
    return false;
}

} // namespace

extern "C" {

int32_t sqc_shim_abi_version(void)
{
    return SQC_SHIM_ABI_VERSION;
}

int32_t sqc_header_version(void)
{
    return NV_TENSORRT_VERSION;
}

SqcBuild* sqc_new(SqcLogFn log, void* user)
{
    try
    {
        return new SqcBuild(log, user);
    }
    catch (...)
    {
        return nullptr;
    }
}

void sqc_free(SqcBuild* ctx)
{
    delete ctx;
}

char const* sqc_error(SqcBuild const* ctx)
{
    if (ctx == nullptr)
    {
        return "no build context";
    }
    return ctx->error.c_str();
}

int32_t sqc_create_builder(SqcBuild* ctx, SqcCreateBuilderFn entry)
{
    return guarded(ctx, [&]() -> int32_t {
        if (entry == nullptr)
        {
            return fail(ctx, "no createInferBuilder_INTERNAL entry point");
        }
        if (ctx->builder != nullptr)
        {
            return fail(ctx, "builder already created");
        }
        ILogger* logger = &ctx->logger;
        ctx->builder = static_cast<IBuilder*>(entry(static_cast<void*>(logger), NV_TENSORRT_VERSION));
        if (ctx->builder == nullptr)
        {
            std::string msg = "createInferBuilder failed (TensorRT library and the headers sparseqc was built with ("
                + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR)
                + ") must have the same major version)";
            if (!ctx->logger.lastError().empty())
            {
                msg += ": " + ctx->logger.lastError();
            }
            return fail(ctx, msg);
        }
        return 0;
    });
}

int32_t sqc_create_network(SqcBuild* ctx, uint32_t flags)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->builder == nullptr)
        {
            return fail(ctx, "no builder");
        }
        if (ctx->network != nullptr)
        {
            return fail(ctx, "network already created");
        }
        ctx->network = ctx->builder->createNetworkV2(static_cast<NetworkDefinitionCreationFlags>(flags));
        return ctx->network == nullptr ? fail(ctx, "createNetworkV2 failed") : 0;
    });
}

int32_t sqc_set_network_name(SqcBuild* ctx, char const* name)
{
    return guarded(ctx, [&]() -> int32_t {
        if (!needNetwork(ctx))
        {
            return -1;
        }
        ctx->network->setName(name != nullptr ? name : "");
        return 0;
    });
}

int32_t sqc_add_input(SqcBuild* ctx, char const* name, int32_t dtype, int64_t const* dims, int32_t nb, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        Dims d{};
        if (!needNetwork(ctx) || !toDims(ctx, dims, nb, d))
        {
            return -1;
        }
        ITensor* t = ctx->network->addInput(name != nullptr ? name : "", static_cast<DataType>(dtype), d);
        if (t == nullptr)
        {
            return fail(ctx, std::string("TensorRT rejected addInput '") + (name != nullptr ? name : "") + "'");
        }
        return pushTensor(ctx, t, out);
    });
}

int32_t sqc_add_convolution(SqcBuild* ctx, int32_t input, int64_t nbOutputMaps, int64_t const* kernelSize, int32_t nb,
    SqcWeights kernel, SqcWeights bias, int32_t* out)
{
    return guarded(ctx, [&]() { return addConvLike(ctx, false, input, nbOutputMaps, kernelSize, nb, kernel, bias, out); });
}

int32_t sqc_add_deconvolution(SqcBuild* ctx, int32_t input, int64_t nbOutputMaps, int64_t const* kernelSize,
    int32_t nb, SqcWeights kernel, SqcWeights bias, int32_t* out)
{
    return guarded(ctx, [&]() { return addConvLike(ctx, true, input, nbOutputMaps, kernelSize, nb, kernel, bias, out); });
}

int32_t sqc_add_matrix_multiply(SqcBuild* ctx, int32_t input0, int32_t op0, int32_t input1, int32_t op1, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        if (!needNetwork(ctx))
        {
            return -1;
        }
        ITensor* a = tensorAt(ctx, input0);
        ITensor* b = a != nullptr ? tensorAt(ctx, input1) : nullptr;
        if (b == nullptr)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kMATMUL,
            ctx->network->addMatrixMultiply(*a, static_cast<MatrixOperation>(op0), *b, static_cast<MatrixOperation>(op1)),
            "addMatrixMultiply", out);
    });
}

int32_t sqc_add_quantize(SqcBuild* ctx, int32_t input, int32_t scale, int32_t toType, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        ITensor* s = tensorAt(ctx, scale);
        if (s == nullptr)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kQUANTIZE, ctx->network->addQuantize(*in, *s, static_cast<DataType>(toType)),
            "addQuantize", out);
    });
}

int32_t sqc_add_dequantize(SqcBuild* ctx, int32_t input, int32_t scale, int32_t toType, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        ITensor* s = tensorAt(ctx, scale);
        if (s == nullptr)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kDEQUANTIZE, ctx->network->addDequantize(*in, *s, static_cast<DataType>(toType)),
            "addDequantize", out);
    });
}

int32_t sqc_add_constant(SqcBuild* ctx, int64_t const* dims, int32_t nb, SqcWeights weights, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        Dims d{};
        if (!needNetwork(ctx) || !toDims(ctx, dims, nb, d))
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kCONSTANT, ctx->network->addConstant(d, toWeights(weights)), "addConstant", out);
    });
}

int32_t sqc_add_elementwise(SqcBuild* ctx, int32_t input0, int32_t input1, int32_t op, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        if (!needNetwork(ctx))
        {
            return -1;
        }
        ITensor* a = tensorAt(ctx, input0);
        ITensor* b = a != nullptr ? tensorAt(ctx, input1) : nullptr;
        if (b == nullptr)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kELEMENTWISE,
            ctx->network->addElementWise(*a, *b, static_cast<ElementWiseOperation>(op)), "addElementWise", out);
    });
}

int32_t sqc_add_activation(SqcBuild* ctx, int32_t input, int32_t type, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kACTIVATION, ctx->network->addActivation(*in, static_cast<ActivationType>(type)),
            "addActivation", out);
    });
}

int32_t sqc_add_pooling(SqcBuild* ctx, int32_t input, int32_t type, int64_t const* window, int32_t nb, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        Dims w{};
        if (unaryInput(ctx, input, in) != 0 || !toDims(ctx, window, nb, w))
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kPOOLING, ctx->network->addPoolingNd(*in, static_cast<PoolingType>(type), w),
            "addPoolingNd", out);
    });
}

int32_t sqc_add_shuffle(SqcBuild* ctx, int32_t input, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kSHUFFLE, ctx->network->addShuffle(*in), "addShuffle", out);
    });
}

int32_t sqc_add_concatenation(SqcBuild* ctx, int32_t const* inputs, int32_t n, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        if (!needNetwork(ctx))
        {
            return -1;
        }
        if (n <= 0 || inputs == nullptr)
        {
            return fail(ctx, "concatenation needs at least one input");
        }
        std::vector<ITensor*> ins;
        for (int32_t i = 0; i < n; ++i)
        {
            ITensor* t = tensorAt(ctx, inputs[i]);
            if (t == nullptr)
            {
                return -1;
            }
            ins.push_back(t);
        }
        return pushLayer(ctx, Kind::kCONCAT, ctx->network->addConcatenation(ins.data(), n), "addConcatenation", out);
    });
}

int32_t sqc_add_reduce(SqcBuild* ctx, int32_t input, int32_t op, uint32_t axes, int32_t keepDims, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kREDUCE,
            ctx->network->addReduce(*in, static_cast<ReduceOperation>(op), axes, keepDims != 0), "addReduce", out);
    });
}

int32_t sqc_add_softmax(SqcBuild* ctx, int32_t input, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kSOFTMAX, ctx->network->addSoftMax(*in), "addSoftMax", out);
    });
}

int32_t sqc_add_slice(SqcBuild* ctx, int32_t input, int64_t const* start, int64_t const* size, int64_t const* stride,
    int32_t nb, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        Dims a{};
        Dims b{};
        Dims c{};
        if (unaryInput(ctx, input, in) != 0 || !toDims(ctx, start, nb, a) || !toDims(ctx, size, nb, b)
            || !toDims(ctx, stride, nb, c))
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kSLICE, ctx->network->addSlice(*in, a, b, c), "addSlice", out);
    });
}

int32_t sqc_add_padding(SqcBuild* ctx, int32_t input, int64_t const* pre, int64_t const* post, int32_t nb, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        Dims a{};
        Dims b{};
        if (unaryInput(ctx, input, in) != 0 || !toDims(ctx, pre, nb, a) || !toDims(ctx, post, nb, b))
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kPADDING, ctx->network->addPaddingNd(*in, a, b), "addPaddingNd", out);
    });
}

int32_t sqc_add_identity(SqcBuild* ctx, int32_t input, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(ctx, Kind::kIDENTITY, ctx->network->addIdentity(*in), "addIdentity", out);
    });
}

int32_t sqc_add_cast(SqcBuild* ctx, int32_t input, int32_t toType, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* in = nullptr;
        if (unaryInput(ctx, input, in) != 0)
        {
            return -1;
        }
        return pushLayer(
            ctx, Kind::kCAST, ctx->network->addCast(*in, static_cast<DataType>(toType)), "addCast", out);
    });
}

int32_t sqc_layer_set_name(SqcBuild* ctx, int32_t layer, char const* name)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        if (l == nullptr)
        {
            return -1;
        }
        l->layer->setName(name != nullptr ? name : "");
        return 0;
    });
}

int32_t sqc_layer_set_input(SqcBuild* ctx, int32_t layer, int32_t index, int32_t tensor)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        ITensor* t = l != nullptr ? tensorAt(ctx, tensor) : nullptr;
        if (t == nullptr)
        {
            return -1;
        }
        l->layer->setInput(index, *t);
        return 0;
    });
}

int32_t sqc_layer_set_int(SqcBuild* ctx, int32_t layer, int32_t attr, int64_t value)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        if (l == nullptr)
        {
            return -1;
        }
        switch (l->kind)
        {
        case Kind::kCONV:
            if (attr != SQC_ATTR_NB_GROUPS)
                return badAttr(ctx, attr);
            static_cast<IConvolutionLayer*>(l->layer)->setNbGroups(value);
            return 0;
        case Kind::kDECONV:
            if (attr != SQC_ATTR_NB_GROUPS)
                return badAttr(ctx, attr);
            static_cast<IDeconvolutionLayer*>(l->layer)->setNbGroups(value);
            return 0;
        case Kind::kQUANTIZE:
            if (attr != SQC_ATTR_AXIS)
                return badAttr(ctx, attr);
            static_cast<IQuantizeLayer*>(l->layer)->setAxis(static_cast<int32_t>(value));
            return 0;
        case Kind::kDEQUANTIZE:
            if (attr != SQC_ATTR_AXIS)
                return badAttr(ctx, attr);
            static_cast<IDequantizeLayer*>(l->layer)->setAxis(static_cast<int32_t>(value));
            return 0;
        case Kind::kCONCAT:
            if (attr != SQC_ATTR_AXIS)
                return badAttr(ctx, attr);
            static_cast<IConcatenationLayer*>(l->layer)->setAxis(static_cast<int32_t>(value));
            return 0;
        case Kind::kPOOLING:
            if (attr != SQC_ATTR_AVG_EXCLUDES_PADDING)
                return badAttr(ctx, attr);
            static_cast<IPoolingLayer*>(l->layer)->setAverageCountExcludesPadding(value != 0);
            return 0;
        case Kind::kSHUFFLE:
            if (attr != SQC_ATTR_ZERO_IS_PLACEHOLDER)
                return badAttr(ctx, attr);
            static_cast<IShuffleLayer*>(l->layer)->setZeroIsPlaceholder(value != 0);
            return 0;
        case Kind::kSOFTMAX:
            if (attr != SQC_ATTR_SOFTMAX_AXES)
                return badAttr(ctx, attr);
            static_cast<ISoftMaxLayer*>(l->layer)->setAxes(static_cast<uint32_t>(value));
            return 0;
        case Kind::kSLICE:
            if (attr != SQC_ATTR_SLICE_MODE)
                return badAttr(ctx, attr);
            static_cast<ISliceLayer*>(l->layer)->setMode(static_cast<SampleMode>(value));
            return 0;
        default: return badAttr(ctx, attr);
        }
    });
}

int32_t sqc_layer_set_float(SqcBuild* ctx, int32_t layer, int32_t attr, float value)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        if (l == nullptr)
        {
            return -1;
        }
        if (l->kind != Kind::kACTIVATION)
        {
            return badAttr(ctx, attr);
        }
        auto* a = static_cast<IActivationLayer*>(l->layer);
        if (attr == SQC_ATTR_ALPHA)
        {
            a->setAlpha(value);
        }
        else if (attr == SQC_ATTR_BETA)
        {
            a->setBeta(value);
        }
        else
        {
            return badAttr(ctx, attr);
        }
        return 0;
    });
}

int32_t sqc_layer_set_dims(SqcBuild* ctx, int32_t layer, int32_t attr, int64_t const* values, int32_t nb)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        Dims d{};
        if (l == nullptr || !toDims(ctx, values, nb, d))
        {
            return -1;
        }
        if (l->kind == Kind::kCONV)
        {
            auto* c = static_cast<IConvolutionLayer*>(l->layer);
            switch (attr)
            {
            case SQC_ATTR_STRIDE: c->setStrideNd(d); return 0;
            case SQC_ATTR_PRE_PADDING: c->setPrePadding(d); return 0;
            case SQC_ATTR_POST_PADDING: c->setPostPadding(d); return 0;
            case SQC_ATTR_DILATION: c->setDilationNd(d); return 0;
            default: return badAttr(ctx, attr);
            }
        }
        if (l->kind == Kind::kDECONV)
        {
            auto* c = static_cast<IDeconvolutionLayer*>(l->layer);
            switch (attr)
            {
            case SQC_ATTR_STRIDE: c->setStrideNd(d); return 0;
            case SQC_ATTR_PRE_PADDING: c->setPrePadding(d); return 0;
            case SQC_ATTR_POST_PADDING: c->setPostPadding(d); return 0;
            case SQC_ATTR_DILATION: c->setDilationNd(d); return 0;
            default: return badAttr(ctx, attr);
            }
        }
        if (l->kind == Kind::kPOOLING)
        {
            auto* p = static_cast<IPoolingLayer*>(l->layer);
            switch (attr)
            {
            case SQC_ATTR_STRIDE: p->setStrideNd(d); return 0;
            case SQC_ATTR_PRE_PADDING: p->setPrePadding(d); return 0;
            case SQC_ATTR_POST_PADDING: p->setPostPadding(d); return 0;
            default: return badAttr(ctx, attr);
            }
        }
        if (l->kind == Kind::kSHUFFLE)
        {
            auto* s = static_cast<IShuffleLayer*>(l->layer);
            if (attr == SQC_ATTR_RESHAPE)
            {
                s->setReshapeDimensions(d);
                return 0;
            }
            if (attr == SQC_ATTR_FIRST_TRANSPOSE || attr == SQC_ATTR_SECOND_TRANSPOSE)
            {
                // Entries past nb keep their own index (TensorRT's default is the identity).
                Permutation p{};
                for (int32_t i = 0; i < Dims::MAX_DIMS; ++i)
                {
                    p.order[i] = i < nb ? static_cast<int32_t>(d.d[i]) : i;
                }
                if (attr == SQC_ATTR_FIRST_TRANSPOSE)
                {
                    s->setFirstTranspose(p);
                }
                else
                {
                    s->setSecondTranspose(p);
                }
                return 0;
            }
        }
        if (l->kind == Kind::kSLICE && attr == SQC_ATTR_SLICE_AXES)
        {
            if (!setSliceAxes(static_cast<ISliceLayer*>(l->layer), d, 0))
            {
                return fail(ctx,
                    "ISliceLayer::setAxes is missing from the TensorRT headers this shim was compiled with; "
                    "slicing a tensor with dynamic dimensions needs a TensorRT release that has it (11.x)");
            }
            return 0;
        }
        return badAttr(ctx, attr);
    });
}

int32_t sqc_layer_output(SqcBuild* ctx, int32_t layer, int32_t index, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        LayerRec* l = layerAt(ctx, layer);
        if (l == nullptr)
        {
            return -1;
        }
        if (index < 0 || index >= l->layer->getNbOutputs())
        {
            return fail(ctx, "layer output index " + std::to_string(index) + " out of range");
        }
        return pushTensor(ctx, l->layer->getOutput(index), out);
    });
}

int32_t sqc_tensor_set_name(SqcBuild* ctx, int32_t tensor, char const* name)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* t = tensorAt(ctx, tensor);
        if (t == nullptr)
        {
            return -1;
        }
        t->setName(name != nullptr ? name : "");
        return 0;
    });
}

int32_t sqc_mark_output(SqcBuild* ctx, int32_t tensor)
{
    return guarded(ctx, [&]() -> int32_t {
        ITensor* t = needNetwork(ctx) ? tensorAt(ctx, tensor) : nullptr;
        if (t == nullptr)
        {
            return -1;
        }
        ctx->network->markOutput(*t);
        return 0;
    });
}

int32_t sqc_create_config(SqcBuild* ctx)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->builder == nullptr)
        {
            return fail(ctx, "no builder");
        }
        if (ctx->config != nullptr)
        {
            return fail(ctx, "builder config already created");
        }
        ctx->config = ctx->builder->createBuilderConfig();
        return ctx->config == nullptr ? fail(ctx, "createBuilderConfig failed") : 0;
    });
}

int32_t sqc_config_set_flag(SqcBuild* ctx, int32_t flag)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->config == nullptr)
        {
            return fail(ctx, "no builder config");
        }
        ctx->config->setFlag(static_cast<BuilderFlag>(flag));
        return 0;
    });
}

int32_t sqc_config_set_memory_pool_limit(SqcBuild* ctx, int32_t pool, uint64_t bytes)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->config == nullptr)
        {
            return fail(ctx, "no builder config");
        }
        ctx->config->setMemoryPoolLimit(static_cast<MemoryPoolType>(pool), static_cast<std::size_t>(bytes));
        return 0;
    });
}

int32_t sqc_add_profile(SqcBuild* ctx, int32_t* out)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->builder == nullptr)
        {
            return fail(ctx, "no builder");
        }
        IOptimizationProfile* p = ctx->builder->createOptimizationProfile();
        if (p == nullptr)
        {
            return fail(ctx, "createOptimizationProfile failed");
        }
        ctx->profiles.push_back(p);
        if (out != nullptr)
        {
            *out = static_cast<int32_t>(ctx->profiles.size() - 1);
        }
        return 0;
    });
}

int32_t sqc_profile_set_dims(
    SqcBuild* ctx, int32_t profile, char const* input, int32_t selector, int64_t const* dims, int32_t nb)
{
    return guarded(ctx, [&]() -> int32_t {
        if (profile < 0 || static_cast<size_t>(profile) >= ctx->profiles.size())
        {
            return fail(ctx, "invalid profile handle " + std::to_string(profile));
        }
        if (selector < 0 || selector > 2)
        {
            return fail(ctx, "invalid profile selector " + std::to_string(selector));
        }
        Dims d{};
        if (!toDims(ctx, dims, nb, d))
        {
            return -1;
        }
        char const* name = input != nullptr ? input : "";
        if (!ctx->profiles[static_cast<size_t>(profile)]->setDimensions(name, static_cast<OptProfileSelector>(selector), d))
        {
            return fail(ctx, std::string("TensorRT rejected the profile shapes of input '") + name + "'");
        }
        return 0;
    });
}

int32_t sqc_config_add_profile(SqcBuild* ctx, int32_t profile)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->config == nullptr)
        {
            return fail(ctx, "no builder config");
        }
        if (profile < 0 || static_cast<size_t>(profile) >= ctx->profiles.size())
        {
            return fail(ctx, "invalid profile handle " + std::to_string(profile));
        }
        if (ctx->config->addOptimizationProfile(ctx->profiles[static_cast<size_t>(profile)]) < 0)
        {
            return fail(ctx, "TensorRT rejected optimization profile " + std::to_string(profile)
                    + " (every dynamic input needs min/opt/max shapes)");
        }
        return 0;
    });
}

int32_t sqc_build(SqcBuild* ctx, uint8_t const** data, uint64_t* size)
{
    return guarded(ctx, [&]() -> int32_t {
        if (ctx->builder == nullptr || ctx->network == nullptr || ctx->config == nullptr)
        {
            return fail(ctx, "builder, network and config must exist before the build");
        }
        if (data == nullptr || size == nullptr)
        {
            return fail(ctx, "no output pointers");
        }
        delete ctx->plan;
        ctx->plan = ctx->builder->buildSerializedNetwork(*ctx->network, *ctx->config);
        if (ctx->plan == nullptr || ctx->plan->data() == nullptr)
        {
            std::string msg = "buildSerializedNetwork failed";
            if (!ctx->logger.lastError().empty())
            {
                msg += ": " + ctx->logger.lastError();
            }
            return fail(ctx, msg);
        }
        *data = static_cast<uint8_t const*>(ctx->plan->data());
        *size = static_cast<uint64_t>(ctx->plan->size());
        return 0;
    });
}

} // extern "C"

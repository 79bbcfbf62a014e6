// A recording fake of TensorRT's builder, for testing the shim without libnvinfer.
//
// TensorRT's public classes (IBuilder, INetworkDefinition, IConvolutionLayer, ...) are thin
// non-virtual wrappers that forward every call to a protected `mImpl` pointer of an
// internal pure virtual interface (apiv::VBuilder, apiv::VNetworkDefinition, ...; see
// NvInferImpl.h). The fake derives from the public classes only to set those pointers, and
// implements the apiv interfaces: build_shim.rs generates a stub for every pure virtual
// method (recording the call, returning a default value), and the classes below override
// what a builder must really do (create layers and tensors, hand out outputs, build a plan).
//
// Every call is reported as a kVERBOSE log message "[fake] <object>.<method>(<args>)"
// through the ILogger given to createInferBuilder, so the Rust test receives the recorded
// call sequence through the shim's own logging path, per build and thread-safely.
// The fake's "build" emits TensorRT's two sparsity log lines: every Convolution,
// Deconvolution and MatrixMultiply layer is "eligible"; those whose name contains "dense"
// are not "picked". Any add* call whose input tensor name contains "sqc_fail" returns
// nullptr (to test error paths); a network without outputs fails to build.

#include <NvInfer.h>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace sqcfake
{

struct Rec
{
    nvinfer1::ILogger* logger{nullptr};
};

void call(Rec* rec, std::string const* label, char const* method, std::initializer_list<std::string> args) noexcept
{
    if (rec == nullptr || rec->logger == nullptr)
    {
        return;
    }
    try
    {
        std::string line = "[fake] " + (label != nullptr ? *label : std::string("?")) + "." + method + "(";
        bool first = true;
        for (auto const& a : args)
        {
            line += (first ? "" : ", ") + a;
            first = false;
        }
        line += ")";
        rec->logger->log(nvinfer1::ILogger::Severity::kVERBOSE, line.c_str());
    }
    catch (...)
    {
    }
}

[[noreturn]] void fatal(char const* what) noexcept
{
    std::fprintf(stderr, "fake TensorRT: unsupported call %s\n", what);
    std::abort();
}

char const* dtypeName(nvinfer1::DataType t)
{
    switch (static_cast<int32_t>(t))
    {
    case 0: return "FLOAT";
    case 1: return "HALF";
    case 2: return "INT8";
    case 3: return "INT32";
    case 4: return "BOOL";
    case 5: return "UINT8";
    case 6: return "FP8";
    case 7: return "BF16";
    case 8: return "INT64";
    default: return "OTHER";
    }
}

size_t dtypeSize(nvinfer1::DataType t)
{
    switch (static_cast<int32_t>(t))
    {
    case 0:
    case 3: return 4;
    case 1:
    case 7: return 2;
    case 8: return 8;
    default: return 1;
    }
}

std::string hex32(uint32_t v)
{
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", v);
    return buf;
}

template <typename T>
std::string fmt(T const& v)
{
    using U = std::decay_t<T>;
    if constexpr (std::is_same_v<U, bool>)
    {
        return v ? "true" : "false";
    }
    else if constexpr (std::is_enum_v<U>)
    {
        return std::to_string(static_cast<long long>(v));
    }
    else if constexpr (std::is_integral_v<U>)
    {
        return std::to_string(v);
    }
    else if constexpr (std::is_floating_point_v<U>)
    {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
        return buf;
    }
    else if constexpr (std::is_same_v<U, nvinfer1::Dims>)
    {
        std::string s = "[";
        for (int32_t i = 0; i < v.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i)
        {
            s += (i ? "," : "") + std::to_string(v.d[i]);
        }
        return s + "]";
    }
    else if constexpr (std::is_same_v<U, nvinfer1::Permutation>)
    {
        std::string s = "[";
        for (int32_t i = 0; i < nvinfer1::Dims::MAX_DIMS; ++i)
        {
            s += (i ? "," : "") + std::to_string(v.order[i]);
        }
        return s + "]";
    }
    else if constexpr (std::is_same_v<U, nvinfer1::Weights>)
    {
        if (v.values == nullptr && v.count == 0)
        {
            return "empty";
        }
        // FNV-1a (32 bit) over the bytes, so the test can check the exact buffer TensorRT got.
        uint32_t h = 2166136261u;
        auto const* p = static_cast<unsigned char const*>(v.values);
        size_t n = p == nullptr ? 0 : static_cast<size_t>(v.count) * dtypeSize(v.type);
        for (size_t i = 0; i < n; ++i)
        {
            h = (h ^ p[i]) * 16777619u;
        }
        return std::string(dtypeName(v.type)) + " x" + std::to_string(v.count) + " fnv=" + hex32(h);
    }
    else if constexpr (std::is_same_v<U, nvinfer1::ITensor>)
    {
        return v.getName();
    }
    else if constexpr (std::is_same_v<U, char const*> || std::is_same_v<U, char*>)
    {
        return v == nullptr ? std::string("null") : "\"" + std::string(v) + "\"";
    }
    else if constexpr (std::is_pointer_v<U>)
    {
        return v == nullptr ? "null" : "ptr";
    }
    else
    {
        return "?";
    }
}

} // namespace sqcfake

#include "sqc_fake_stubs.h"

using namespace nvinfer1;
using namespace nvinfer1::apiv::sqcstub;
using sqcfake::call;
using sqcfake::fmt;
using sqcfake::Rec;

namespace
{

class TensorImpl : public Stub_VTensor
{
public:
    explicit TensorImpl(Rec* rec, std::string n)
        : name(std::move(n))
    {
        sqcRec_ = rec;
        sqcLabel_ = &name;
    }
    void setName(char const* n) noexcept override
    {
        call(sqcRec_, sqcLabel_, "setName", {fmt(n)});
        name = n != nullptr ? n : "";
    }
    char const* getName() const noexcept override
    {
        return name.c_str();
    }
    Dims getDimensions() const noexcept override
    {
        return dims;
    }
    DataType getType() const noexcept override
    {
        return type;
    }
    bool isNetworkInput() const noexcept override
    {
        return isInput;
    }
    bool isNetworkOutput() const noexcept override
    {
        return isOutput;
    }

    std::string name;
    Dims dims{};
    DataType type{DataType::kFLOAT};
    bool isInput{false};
    bool isOutput{false};
};

class TensorObj : public ITensor
{
public:
    explicit TensorObj(apiv::VTensor* impl)
    {
        mImpl = impl;
    }
};

struct FakeTensor
{
    FakeTensor(Rec* rec, std::string name)
        : impl(rec, std::move(name))
        , obj(&impl)
    {
    }
    TensorImpl impl;
    TensorObj obj;
};

class LayerImpl : public Stub_VLayer
{
public:
    LayerType getType() const noexcept override
    {
        return type;
    }
    void setName(char const* n) noexcept override
    {
        call(sqcRec_, sqcLabel_, "setName", {fmt(n)});
        name = n != nullptr ? n : "";
    }
    char const* getName() const noexcept override
    {
        return name.c_str();
    }
    int32_t getNbInputs() const noexcept override
    {
        return static_cast<int32_t>(inputs.size());
    }
    ITensor* getInput(int32_t i) const noexcept override
    {
        return i >= 0 && static_cast<size_t>(i) < inputs.size() ? inputs[static_cast<size_t>(i)] : nullptr;
    }
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }
    ITensor* getOutput(int32_t i) const noexcept override
    {
        return i == 0 && output != nullptr ? &output->obj : nullptr;
    }
    void setInput(int32_t i, ITensor& t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "setInput", {fmt(i), fmt(t)});
        if (i < 0)
        {
            return;
        }
        if (static_cast<size_t>(i) >= inputs.size())
        {
            inputs.resize(static_cast<size_t>(i) + 1, nullptr);
        }
        inputs[static_cast<size_t>(i)] = &t;
    }

    std::string name;
    LayerType type{LayerType::kIDENTITY};
    std::vector<ITensor*> inputs;
    FakeTensor* output{nullptr};
};

struct FakeLayer
{
    virtual ~FakeLayer() = default;
    virtual ILayer* layer() = 0;
    LayerImpl base;
};

// A layer of public type IPublic whose type-specific interface is implemented by Stub.
template <typename IPublic, typename Stub>
struct TypedLayer : FakeLayer
{
    struct Obj : IPublic
    {
        Obj(apiv::VLayer* l, Stub* i)
        {
            this->mLayer = l;
            this->mImpl = i;
        }
    };

    explicit TypedLayer(Rec* rec)
        : obj(&base, &impl)
    {
        base.sqcRec_ = rec;
        base.sqcLabel_ = &base.name;
        impl.sqcRec_ = rec;
        impl.sqcLabel_ = &base.name;
    }
    ILayer* layer() override
    {
        return &obj;
    }

    Stub impl;
    Obj obj;
};

class NetworkImpl : public Stub_VNetworkDefinition
{
public:
    explicit NetworkImpl(Rec* rec)
    {
        sqcRec_ = rec;
        sqcLabel_ = &label;
    }

    FakeTensor* newTensor(std::string name)
    {
        tensors.push_back(std::make_unique<FakeTensor>(sqcRec_, std::move(name)));
        return tensors.back().get();
    }

    static bool poisoned(std::vector<ITensor*> const& ins)
    {
        for (ITensor* t : ins)
        {
            if (t != nullptr && std::string(t->getName()).find("sqc_fail") != std::string::npos)
            {
                return true;
            }
        }
        return false;
    }

    // Creates a layer of the given public/stub type, reading `ins`.
    template <typename IPublic, typename Stub>
    IPublic* make(LayerType type, std::vector<ITensor*> ins)
    {
        if (poisoned(ins))
        {
            sqcRec_->logger->log(ILogger::Severity::kERROR, "[fake] rejected layer: poisoned input");
            return nullptr;
        }
        auto l = std::make_unique<TypedLayer<IPublic, Stub>>(sqcRec_);
        size_t idx = layers.size();
        l->base.name = "layer" + std::to_string(idx);
        l->base.type = type;
        l->base.inputs = std::move(ins);
        l->base.output = newTensor("tensor" + std::to_string(tensors.size()));
        IPublic* out = &l->obj;
        layers.push_back(std::move(l));
        return out;
    }

    ITensor* addInput(char const* name, DataType type, Dims const& dims) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addInput", {fmt(name), fmt(type), fmt(dims)});
        FakeTensor* t = newTensor(name != nullptr ? name : "");
        t->impl.type = type;
        t->impl.dims = dims;
        t->impl.isInput = true;
        return &t->obj;
    }
    void markOutput(ITensor& t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "markOutput", {fmt(t)});
        outputs.push_back(&t);
    }
    IConvolutionLayer* addConvolutionNd(
        ITensor& in, int64_t nbOutputMaps, Dims const& k, Weights kernel, Weights bias) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addConvolutionNd", {fmt(in), fmt(nbOutputMaps), fmt(k), fmt(kernel), fmt(bias)});
        return make<IConvolutionLayer, Stub_VConvolutionLayer>(LayerType::kCONVOLUTION, {&in});
    }
    IDeconvolutionLayer* addDeconvolutionNd(
        ITensor& in, int64_t nbOutputMaps, Dims const& k, Weights kernel, Weights bias) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addDeconvolutionNd", {fmt(in), fmt(nbOutputMaps), fmt(k), fmt(kernel), fmt(bias)});
        return make<IDeconvolutionLayer, Stub_VDeconvolutionLayer>(LayerType::kDECONVOLUTION, {&in});
    }
    IMatrixMultiplyLayer* addMatrixMultiply(
        ITensor& a, MatrixOperation opA, ITensor& b, MatrixOperation opB) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addMatrixMultiply", {fmt(a), fmt(opA), fmt(b), fmt(opB)});
        return make<IMatrixMultiplyLayer, Stub_VMatrixMultiplyLayer>(LayerType::kMATRIX_MULTIPLY, {&a, &b});
    }
    IQuantizeLayer* addQuantizeV2(ITensor& in, ITensor& scale, DataType t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addQuantize", {fmt(in), fmt(scale), fmt(t)});
        return make<IQuantizeLayer, Stub_VQuantizeLayer>(LayerType::kQUANTIZE, {&in, &scale});
    }
    IDequantizeLayer* addDequantizeV2(ITensor& in, ITensor& scale, DataType t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addDequantize", {fmt(in), fmt(scale), fmt(t)});
        return make<IDequantizeLayer, Stub_VDequantizeLayer>(LayerType::kDEQUANTIZE, {&in, &scale});
    }
    IConstantLayer* addConstant(Dims const& dims, Weights w) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addConstant", {fmt(dims), fmt(w)});
        return make<IConstantLayer, Stub_VConstantLayer>(LayerType::kCONSTANT, {});
    }
    IElementWiseLayer* addElementWise(ITensor& a, ITensor& b, ElementWiseOperation op) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addElementWise", {fmt(a), fmt(b), fmt(op)});
        return make<IElementWiseLayer, Stub_VElementWiseLayer>(LayerType::kELEMENTWISE, {&a, &b});
    }
    IActivationLayer* addActivation(ITensor& in, ActivationType t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addActivation", {fmt(in), fmt(t)});
        return make<IActivationLayer, Stub_VActivationLayer>(LayerType::kACTIVATION, {&in});
    }
    IPoolingLayer* addPoolingNd(ITensor& in, PoolingType t, Dims const& window) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addPoolingNd", {fmt(in), fmt(t), fmt(window)});
        return make<IPoolingLayer, Stub_VPoolingLayer>(LayerType::kPOOLING, {&in});
    }
    IShuffleLayer* addShuffle(ITensor& in) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addShuffle", {fmt(in)});
        return make<IShuffleLayer, Stub_VShuffleLayer>(LayerType::kSHUFFLE, {&in});
    }
    IConcatenationLayer* addConcatenation(ITensor* const* inputs, int32_t n) noexcept override
    {
        std::vector<ITensor*> ins(inputs, inputs + (n > 0 ? n : 0));
        std::string names = "[";
        for (size_t i = 0; i < ins.size(); ++i)
        {
            names += (i ? "," : "") + std::string(ins[i]->getName());
        }
        call(sqcRec_, sqcLabel_, "addConcatenation", {names + "]", fmt(n)});
        return make<IConcatenationLayer, Stub_VConcatenationLayer>(LayerType::kCONCATENATION, ins);
    }
    IReduceLayer* addReduce(ITensor& in, ReduceOperation op, uint32_t axes, bool keep) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addReduce", {fmt(in), fmt(op), fmt(axes), fmt(keep)});
        return make<IReduceLayer, Stub_VReduceLayer>(LayerType::kREDUCE, {&in});
    }
    ISoftMaxLayer* addSoftMax(ITensor& in) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addSoftMax", {fmt(in)});
        return make<ISoftMaxLayer, Stub_VSoftMaxLayer>(LayerType::kSOFTMAX, {&in});
    }
    ISliceLayer* addSlice(ITensor& in, Dims const& start, Dims const& size, Dims const& stride) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addSlice", {fmt(in), fmt(start), fmt(size), fmt(stride)});
        return make<ISliceLayer, Stub_VSliceLayer>(LayerType::kSLICE, {&in});
    }
    IPaddingLayer* addPaddingNd(ITensor& in, Dims const& pre, Dims const& post) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addPaddingNd", {fmt(in), fmt(pre), fmt(post)});
        return make<IPaddingLayer, Stub_VPaddingLayer>(LayerType::kPADDING, {&in});
    }
    IIdentityLayer* addIdentity(ITensor& in) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addIdentity", {fmt(in)});
        return make<IIdentityLayer, Stub_VIdentityLayer>(LayerType::kIDENTITY, {&in});
    }
    ICastLayer* addCast(ITensor& in, DataType t) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addCast", {fmt(in), fmt(t)});
        return make<ICastLayer, Stub_VCastLayer>(LayerType::kCAST, {&in});
    }
    int32_t getNbLayers() const noexcept override
    {
        return static_cast<int32_t>(layers.size());
    }
    ILayer* getLayer(int32_t i) const noexcept override
    {
        return i >= 0 && static_cast<size_t>(i) < layers.size() ? layers[static_cast<size_t>(i)]->layer() : nullptr;
    }
    int32_t getNbOutputs() const noexcept override
    {
        return static_cast<int32_t>(outputs.size());
    }
    ITensor* getOutput(int32_t i) const noexcept override
    {
        return i >= 0 && static_cast<size_t>(i) < outputs.size() ? outputs[static_cast<size_t>(i)] : nullptr;
    }

    std::string label{"network"};
    std::vector<std::unique_ptr<FakeTensor>> tensors;
    std::vector<std::unique_ptr<FakeLayer>> layers;
    std::vector<ITensor*> outputs;
};

class NetworkObj : public INetworkDefinition
{
public:
    explicit NetworkObj(Rec* rec)
        : impl(rec)
    {
        mImpl = &impl;
    }
    NetworkImpl impl;
};

class ConfigImpl : public Stub_VBuilderConfig
{
public:
    explicit ConfigImpl(Rec* rec)
    {
        sqcRec_ = rec;
        sqcLabel_ = &label;
    }
    int32_t addOptimizationProfile(IOptimizationProfile const* p) noexcept override
    {
        call(sqcRec_, sqcLabel_, "addOptimizationProfile", {fmt(p)});
        return nbProfiles++;
    }
    std::string label{"config"};
    int32_t nbProfiles{0};
};

class ConfigObj : public IBuilderConfig
{
public:
    explicit ConfigObj(Rec* rec)
        : impl(rec)
    {
        mImpl = &impl;
    }
    ConfigImpl impl;
};

class ProfileImpl : public Stub_VOptimizationProfile
{
public:
    ProfileImpl(Rec* rec, std::string l)
        : label(std::move(l))
    {
        sqcRec_ = rec;
        sqcLabel_ = &label;
    }
    bool setDimensions(char const* input, OptProfileSelector s, Dims const& d) noexcept override
    {
        call(sqcRec_, sqcLabel_, "setDimensions", {fmt(input), fmt(s), fmt(d)});
        return true;
    }
    bool isValid() const noexcept override
    {
        return true;
    }
    std::string label;
};

class ProfileObj : public IOptimizationProfile
{
public:
    ProfileObj(Rec* rec, std::string label)
        : impl(rec, std::move(label))
    {
        mImpl = &impl;
    }
    ProfileImpl impl;
};

class HostMemoryImpl : public Stub_VHostMemory
{
public:
    void* data() const noexcept override
    {
        return const_cast<char*>(bytes.data());
    }
    std::size_t size() const noexcept override
    {
        return bytes.size();
    }
    DataType type() const noexcept override
    {
        return DataType::kUINT8;
    }
    std::string bytes;
};

class HostMemoryObj : public IHostMemory
{
public:
    HostMemoryObj()
    {
        mImpl = &impl;
    }
    HostMemoryImpl impl;
};

class BuilderImpl : public Stub_VBuilder
{
public:
    explicit BuilderImpl(ILogger* logger)
    {
        rec.logger = logger;
        sqcRec_ = &rec;
        sqcLabel_ = &label;
    }
    nvinfer1::INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags flags) noexcept override
    {
        call(sqcRec_, sqcLabel_, "createNetworkV2", {fmt(flags)});
        return new NetworkObj(&rec);
    }
    nvinfer1::IBuilderConfig* createBuilderConfig() noexcept override
    {
        call(sqcRec_, sqcLabel_, "createBuilderConfig", {});
        return new ConfigObj(&rec);
    }
    nvinfer1::IOptimizationProfile* createOptimizationProfile() noexcept override
    {
        call(sqcRec_, sqcLabel_, "createOptimizationProfile", {});
        profiles.push_back(std::make_unique<ProfileObj>(&rec, "profile" + std::to_string(profiles.size())));
        return profiles.back().get();
    }
    ILogger* getLogger() const noexcept override
    {
        return rec.logger;
    }
    nvinfer1::IHostMemory* buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig&) noexcept override
    {
        call(sqcRec_, sqcLabel_, "buildSerializedNetwork", {});
        // Only NetworkObj instances reach here: the fake created every network it is given.
        NetworkImpl& net = static_cast<NetworkObj&>(network).impl;
        if (net.outputs.empty())
        {
            rec.logger->log(ILogger::Severity::kERROR, "[fake] Network must have at least one output");
            return nullptr;
        }
        std::string eligible;
        std::string picked;
        for (auto const& l : net.layers)
        {
            LayerType t = l->base.type;
            if (t != LayerType::kCONVOLUTION && t != LayerType::kDECONVOLUTION && t != LayerType::kMATRIX_MULTIPLY)
            {
                continue;
            }
            eligible += (eligible.empty() ? "" : ", ") + l->base.name;
            if (l->base.name.find("dense") == std::string::npos)
            {
                picked += (picked.empty() ? "" : ", ") + l->base.name;
            }
        }
        rec.logger->log(ILogger::Severity::kINFO, ("(Sparsity) Layers eligible for sparse math: " + eligible).c_str());
        rec.logger->log(ILogger::Severity::kINFO,
            ("(Sparsity) TRT inference plan picked sparse implementation for layers: " + picked).c_str());
        auto* mem = new HostMemoryObj();
        mem->impl.bytes = "SQCFAKEPLAN layers=" + std::to_string(net.layers.size());
        return mem;
    }

    Rec rec;
    std::string label{"builder"};
    std::vector<std::unique_ptr<ProfileObj>> profiles;
};

class BuilderObj : public IBuilder
{
public:
    explicit BuilderObj(ILogger* logger)
        : impl(logger)
    {
        mImpl = &impl;
    }
    BuilderImpl impl;
};

} // namespace

extern "C" __attribute__((visibility("default"))) void* sqc_fake_create_infer_builder(void* logger, int32_t version)
{
    auto* log = static_cast<ILogger*>(logger);
    if (version != NV_TENSORRT_VERSION)
    {
        if (log != nullptr)
        {
            log->log(ILogger::Severity::kERROR, "[fake] header version mismatch");
        }
        return nullptr;
    }
    try
    {
        auto* b = new BuilderObj(log);
        call(&b->impl.rec, &b->impl.label, "createInferBuilder", {fmt(version)});
        return static_cast<IBuilder*>(b);
    }
    catch (...)
    {
        return nullptr;
    }
}

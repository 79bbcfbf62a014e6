//! Build-script part for `--features tensorrt` (included by build.rs): finds TensorRT's
//! headers, compiles shim/trt_shim.cpp into `libsqc_trt_shim.a`, generates recording stubs
//! of TensorRT's internal `apiv::V*` interfaces from the same headers and compiles the
//! test-only fake TensorRT (shim/test/fake_trt.cpp) into `libsqc_trt_fake.a`.
//!
//! Header search: `$TENSORRT_ROOT/include`, else `$TENSORRT_ROOT` itself, else
//! `$TENSORRT_INCLUDE_DIR`, else /usr/include/x86_64-linux-gnu, /usr/include,
//! /usr/local/tensorrt/include, /opt/tensorrt/include — the first holding NvInfer.h.
//! `cuda_runtime_api.h`: `$CUDA_HOME/include`, `$CUDA_PATH/include`, /usr/local/cuda/include,
//! the TensorRT include dir and its parent; else shim/cuda_stub (two typedefs).

use std::path::{Path, PathBuf};

fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={msg}");
    std::process::exit(1);
}

fn find_tensorrt_include() -> PathBuf {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(root) = std::env::var_os("TENSORRT_ROOT") {
        let root = PathBuf::from(root);
        cands.push(root.join("include"));
        cands.push(root);
    }
    if let Some(inc) = std::env::var_os("TENSORRT_INCLUDE_DIR") {
        cands.push(PathBuf::from(inc));
    }
    for p in [
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
        "/usr/include",
        "/usr/local/tensorrt/include",
        "/opt/tensorrt/include",
    ] {
        cands.push(PathBuf::from(p));
    }
    match cands.iter().find(|p| p.join("NvInfer.h").is_file()) {
        Some(p) => p.clone(),
        None => die(
            "--features tensorrt: TensorRT headers (NvInfer.h) not found. Set TENSORRT_ROOT to a TensorRT \
             install (or to an include dir); without an install: TENSORRT_ROOT=$(scripts/trt-headers.sh). \
             See docs/tensorrt.md.",
        ),
    }
}

fn find_cuda_include(trt_inc: &Path) -> PathBuf {
    let mut cands: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            cands.push(PathBuf::from(v).join("include"));
        }
    }
    cands.push(PathBuf::from("/usr/local/cuda/include"));
    cands.push(trt_inc.to_path_buf());
    if let Some(parent) = trt_inc.parent() {
        cands.push(parent.to_path_buf());
    }
    cands.push(PathBuf::from("/usr/include"));
    cands
        .into_iter()
        .find(|p| p.join("cuda_runtime_api.h").is_file())
        .unwrap_or_else(|| PathBuf::from("shim/cuda_stub"))
}

/// One pure virtual method parsed from NvInferImpl.h.
struct Method {
    ret: String,
    name: String,
    params: Vec<String>, // types only
    quals: String,
}

/// Splits `s` at top-level commas.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in s.chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && p != "void")
        .collect()
}

/// The type part of a parameter declaration (drops the name when there is one).
fn param_type(p: &str) -> String {
    let p = p.trim();
    if p.ends_with('*') || p.ends_with('&') {
        return p.to_string();
    }
    let toks: Vec<&str> = p.split_whitespace().collect();
    if toks.len() < 2 {
        return p.to_string();
    }
    let last = toks[toks.len() - 1];
    let is_ident = last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_ident && !matches!(last, "const" | "int" | "long" | "char" | "unsigned") {
        p[..p.len() - last.len()].trim().to_string()
    } else {
        p.to_string()
    }
}

/// Parses the pure virtual methods of `class NAME : public VRoot { ... };`.
fn parse_class(src: &str, class: &str) -> Option<Vec<Method>> {
    let head = format!("class {class} : public VRoot");
    let start = src.find(&head)?;
    let body_start = start + src[start..].find('{')? + 1;
    let body_end = body_start + src[body_start..].find("\n};")?;
    let body: String = src[body_start..body_end]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut methods = Vec::new();
    for stmt in body.split(';') {
        let stmt = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(v) = stmt.find("virtual ") else {
            continue;
        };
        let Some(decl) = stmt[v + 8..].trim().strip_suffix("= 0") else {
            continue;
        };
        let decl = decl.trim();
        let open = decl.find('(')?;
        let mut depth = 0;
        let mut close = None;
        for (i, c) in decl.char_indices().skip(open) {
            if c == '(' {
                depth += 1;
            } else if c == ')' {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
        }
        let close = close?;
        let before = decl[..open].trim();
        let name_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let name = before[name_start..].to_string();
        let ret = before[..name_start].trim().to_string();
        if name.is_empty() || ret.is_empty() {
            continue;
        }
        let params = split_params(&decl[open + 1..close])
            .iter()
            .map(|p| param_type(p))
            .collect();
        let quals = decl[close + 1..].trim().to_string();
        methods.push(Method {
            ret,
            name,
            params,
            quals,
        });
    }
    Some(methods)
}

/// Classes the fake implements; each gets `class Stub_<V> : public <V>` recording every call.
const STUB_CLASSES: &[&str] = &[
    "VHostMemory",
    "VOptimizationProfile",
    "VTensor",
    "VLayer",
    "VConvolutionLayer",
    "VActivationLayer",
    "VPoolingLayer",
    "VSoftMaxLayer",
    "VConcatenationLayer",
    "VDeconvolutionLayer",
    "VElementWiseLayer",
    "VReduceLayer",
    "VPaddingLayer",
    "VShuffleLayer",
    "VSliceLayer",
    "VMatrixMultiplyLayer",
    "VIdentityLayer",
    "VCastLayer",
    "VConstantLayer",
    "VQuantizeLayer",
    "VDequantizeLayer",
    "VNetworkDefinition",
    "VBuilderConfig",
    "VBuilder",
];

/// Generates recording stubs for [`STUB_CLASSES`] from NvInferImpl.h.
fn generate_stubs(impl_h: &str) -> String {
    let mut out = String::from(
        "// Generated by shim/build_shim.rs from TensorRT's NvInferImpl.h: one recording stub per\n\
         // pure virtual method. Every call is reported to ::sqcfake::call; reference-returning\n\
         // methods abort (the fake overrides those it needs).\n\
         #pragma GCC diagnostic push\n\
         #pragma GCC diagnostic ignored \"-Wunused-parameter\"\n\
         #pragma GCC diagnostic ignored \"-Wdeprecated-declarations\"\n\
         namespace nvinfer1 {\nnamespace apiv {\nnamespace sqcstub {\n",
    );
    for class in STUB_CLASSES {
        let methods = match parse_class(impl_h, class) {
            Some(m) => m,
            None => die(&format!(
                "NvInferImpl.h: class {class} not found or not parsable"
            )),
        };
        out.push_str(&format!(
            "class Stub_{class} : public {class}\n{{\npublic:\n    ::sqcfake::Rec* sqcRec_{{nullptr}};\n    std::string const* sqcLabel_{{nullptr}};\n"
        ));
        for m in methods {
            let params: Vec<String> = m
                .params
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{t} a{i}"))
                .collect();
            let args: Vec<String> = (0..m.params.len())
                .map(|i| format!("::sqcfake::fmt(a{i})"))
                .collect();
            let record = format!(
                "::sqcfake::call(sqcRec_, sqcLabel_, \"{}\", {{{}}});",
                m.name,
                args.join(", ")
            );
            let body = if m.ret == "void" {
                record
            } else if m.ret.ends_with('&') {
                format!("{record} ::sqcfake::fatal(\"{class}::{}\");", m.name)
            } else {
                format!("{record} return {{}};")
            };
            out.push_str(&format!(
                "    {} {}({}) {} override {{ {} }}\n",
                m.ret,
                m.name,
                params.join(", "),
                m.quals,
                body
            ));
        }
        out.push_str("};\n\n");
    }
    out.push_str("} // namespace sqcstub\n} // namespace apiv\n} // namespace nvinfer1\n#pragma GCC diagnostic pop\n");
    out
}

/// Entry point called from build.rs when the `tensorrt` feature is on.
pub fn build() {
    for var in [
        "TENSORRT_ROOT",
        "TENSORRT_INCLUDE_DIR",
        "CUDA_HOME",
        "CUDA_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=shim");
    let trt_inc = find_tensorrt_include();
    let cuda_inc = find_cuda_include(&trt_inc);
    let out_dir =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| die("OUT_DIR not set")));

    let impl_h = std::fs::read_to_string(trt_inc.join("NvInferImpl.h"))
        .unwrap_or_else(|e| die(&format!("{}: {e}", trt_inc.join("NvInferImpl.h").display())));
    let stubs = generate_stubs(&impl_h);
    if let Err(e) = std::fs::write(out_dir.join("sqc_fake_stubs.h"), stubs) {
        die(&format!("writing generated stubs: {e}"));
    }

    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++17")
            .flag("-Wall")
            .flag("-Wextra")
            .flag("-Werror")
            .flag("-fvisibility=hidden")
            .include("shim")
            // -isystem: warnings inside TensorRT's own headers are not ours to fix.
            .flag("-isystem")
            .flag(trt_inc.to_string_lossy().as_ref())
            .flag("-isystem")
            .flag(cuda_inc.to_string_lossy().as_ref());
        b
    };
    base().file("shim/trt_shim.cpp").compile("sqc_trt_shim");
    base()
        .include(&out_dir)
        .file("shim/test/fake_trt.cpp")
        .compile("sqc_trt_fake");
}

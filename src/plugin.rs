//! Passes from plugin libraries: `sparseqc M -o out.onnx --plugin libmy_pass.so --passes 'my-pass{x=1}'`.
//!
//! A plugin is a `cdylib` crate that depends on the `sparseqc` library, implements
//! [`Pass`](crate::pass::Pass) like the built-in passes do, registers its passes in a
//! [`Registry`] and exports them with [`export_plugin!`](crate::export_plugin). See
//! docs/writing-a-pass.md for a walkthrough and docs/architecture.md for why the
//! boundary looks the way it does.
//!
//! # The boundary
//!
//! The library exports one C symbol, [`ENTRY_SYMBOL`], returning a pointer to a static
//! [`PluginDecl`]. Its first field is an [`AbiStamp`]: plain C data (integers and
//! pointer/length pairs to static strings) whose layout never changes. The host reads
//! and compares the whole stamp — magic number, ABI version, sparseqc version, rustc
//! version, target, a hash of the layouts of the IR and pass types, a fingerprint of the
//! sources defining them, and the panic strategy — before it touches anything else. A
//! plugin built against another sparseqc or by another compiler is refused with a
//! message saying which of these differ; nothing of it runs.
//!
//! Only when every field matches does the host call the decl's function pointers, which
//! exchange Rust values (`&mut Model`, `PassOptions`, `Result<PassReport>`) by pointer.
//! That is sound in practice because both sides then hold the same type definitions
//! compiled by the same compiler for the same target, so every layout agrees. Memory
//! crosses the boundary in both directions (a plugin adds nodes the host later frees);
//! this module therefore pins the global allocator of every program that links sparseqc
//! to [`std::alloc::System`], so host and plugin share the C library's one heap, and a
//! plugin that sets another global allocator fails to link.
//!
//! Every function the host calls is an `extern "C"` shim on the plugin side that runs the
//! plugin's code inside `catch_unwind`: a panic never crosses the boundary; it comes back
//! as an error naming the plugin and the pass. The host's wrapper ([`Pass`] for each
//! plugin pass) holds the library alive; libraries are never unloaded (a plugin may
//! leave threads or thread-local destructors behind that still point into its code).

use crate::error::{Error, Result};
use crate::ir::Model;
use crate::pass::{Pass, PassContext, PassInfo, PassOptions, PassReport, PipelineEntry, Registry};
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every program linking sparseqc (the CLI, tests, and each plugin) allocates with the
/// system allocator: values built on one side of the plugin boundary are freed on the
/// other, and `malloc`/`free` of the process's one C library is the heap both share. A
/// second `#[global_allocator]` anywhere in a plugin makes it fail to link, instead of
/// corrupting memory at run time.
#[global_allocator]
static ALLOCATOR: std::alloc::System = std::alloc::System;

/// The symbol a plugin library exports (`extern "C" fn() -> *const PluginDecl`). The
/// `v1` names the layout of [`AbiStamp`], which never changes; [`ABI_VERSION`] versions
/// everything after it.
pub const ENTRY_SYMBOL: &str = "sparseqc_plugin_v1";

/// First field of every stamp: `SQCPLUGN` in ASCII, little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SQCPLUGN");

/// Version of the plugin protocol (the fields of [`PluginDecl`] after the stamp, and the
/// meaning of its functions). Bump it on any change to them.
pub const ABI_VERSION: u32 = 1;

/// [`AbiStamp::flags`] bit: the library was compiled with `panic = "unwind"`.
pub const FLAG_PANIC_UNWIND: u32 = 1;

/// A string as a C-compatible pointer and length (UTF-8, not NUL-terminated), pointing at
/// static data of the library that made it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawStr {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a RawStr only ever points at immutable `'static` string data.
unsafe impl Sync for RawStr {}
// SAFETY: as above.
unsafe impl Send for RawStr {}

impl RawStr {
    /// Wraps a static string.
    pub const fn new(s: &'static str) -> RawStr {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// Copies the string out (lossy on invalid UTF-8; at most 4 KiB).
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes (or be null).
    unsafe fn read(&self) -> String {
        if self.ptr.is_null() {
            return String::new();
        }
        let len = self.len.min(4096);
        // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, len) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// The identity of the sparseqc build a plugin was compiled against: plain C data with a
/// layout that never changes, read and compared by the host before anything else.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AbiStamp {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// [`FLAG_PANIC_UNWIND`] and future bits.
    pub flags: u32,
    /// The sparseqc crate version (`CARGO_PKG_VERSION`).
    pub crate_version: RawStr,
    /// `rustc -V` of the compiler that built this copy of sparseqc.
    pub rustc_version: RawStr,
    /// The target triple.
    pub target: RawStr,
    /// [`LAYOUT_HASH`].
    pub layout_hash: u64,
    /// A hash of the sources of the IR, the pass API, the error type, this module and the
    /// ONNX schema (computed by build.rs).
    pub source_hash: u64,
}

const fn fnv_u64(mut h: u64, x: u64) -> u64 {
    let b = x.to_le_bytes();
    let mut i = 0;
    while i < 8 {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! layout_hash {
    ($($t:ty),* $(,)?) => {{
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        $(
            h = fnv_u64(h, std::mem::size_of::<$t>() as u64);
            h = fnv_u64(h, std::mem::align_of::<$t>() as u64);
        )*
        h
    }};
}

/// Sizes and alignments of every type that crosses the plugin boundary (and of the
/// standard types inside them), combined. Two builds that disagree on any of them can
/// never exchange values.
pub const LAYOUT_HASH: u64 = layout_hash!(
    crate::ir::Model,
    crate::ir::Graph,
    crate::ir::Node,
    crate::ir::Value,
    crate::ir::ValueType,
    crate::ir::Dim,
    crate::ir::QuantInfo,
    crate::ir::Tensor,
    crate::ir::NodeId,
    crate::ir::ValueId,
    crate::ir::Producer,
    crate::ir::Use,
    crate::proto::ModelProto,
    crate::proto::GraphProto,
    crate::proto::NodeProto,
    crate::proto::TensorProto,
    crate::proto::AttributeProto,
    crate::proto::ValueInfoProto,
    crate::pass::PassReport,
    crate::pass::ReportItem,
    crate::pass::PassOptions,
    crate::pass::PassContext,
    crate::pass::CalibInput,
    crate::pass::PassInfo,
    crate::pass::OptionSpec,
    crate::pass::PipelineEntry,
    crate::pass::Registry,
    crate::error::Error,
    Result<PassReport>,
    Result<Vec<PassInfo>>,
    Box<dyn Pass>,
    String,
    Vec<u8>,
    bytes::Bytes,
    serde_json::Value,
    std::collections::BTreeMap<String, serde_json::Value>,
    std::collections::HashMap<String, crate::ir::ValueId>,
    Option<Result<*mut c_void>>,
);

/// The stamp of this build of sparseqc. A plugin exports the stamp of the sparseqc it
/// was compiled against; the host loads it only if the two are equal.
pub const ABI_STAMP: AbiStamp = AbiStamp {
    magic: MAGIC,
    abi_version: ABI_VERSION,
    flags: if cfg!(panic = "unwind") { FLAG_PANIC_UNWIND } else { 0 },
    crate_version: RawStr::new(env!("CARGO_PKG_VERSION")),
    rustc_version: RawStr::new(env!("SPARSEQC_RUSTC_VERSION")),
    target: RawStr::new(env!("SPARSEQC_TARGET")),
    layout_hash: LAYOUT_HASH,
    source_hash: parse_hex_u64(env!("SPARSEQC_SOURCE_HASH")),
};

const fn parse_hex_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut v: u64 = 0;
    let mut i = 0;
    while i < b.len() {
        let d = match b[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        };
        v = (v << 4) | d as u64;
        i += 1;
    }
    v
}

/// A stamp read out of a library, as owned Rust data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampInfo {
    /// See [`AbiStamp`] for each field.
    pub magic: u64,
    /// See [`AbiStamp::abi_version`].
    pub abi_version: u32,
    /// See [`AbiStamp::flags`].
    pub flags: u32,
    /// See [`AbiStamp::crate_version`].
    pub crate_version: String,
    /// See [`AbiStamp::rustc_version`].
    pub rustc_version: String,
    /// See [`AbiStamp::target`].
    pub target: String,
    /// See [`AbiStamp::layout_hash`].
    pub layout_hash: u64,
    /// See [`AbiStamp::source_hash`].
    pub source_hash: u64,
}

impl StampInfo {
    /// This build's stamp.
    pub fn host() -> StampInfo {
        // SAFETY: ABI_STAMP's strings are this crate's static data.
        unsafe { StampInfo::read(&ABI_STAMP) }
    }

    /// Copies a stamp out of a library.
    ///
    /// # Safety
    /// The string fields must point at readable data (true once `magic` is [`MAGIC`]:
    /// the stamp was made by some sparseqc's `export_plugin!`).
    unsafe fn read(s: &AbiStamp) -> StampInfo {
        // SAFETY: forwarded to the caller.
        unsafe {
            StampInfo {
                magic: s.magic,
                abi_version: s.abi_version,
                flags: s.flags,
                crate_version: s.crate_version.read(),
                rustc_version: s.rustc_version.read(),
                target: s.target.read(),
                layout_hash: s.layout_hash,
                source_hash: s.source_hash,
            }
        }
    }

    /// Every way in which a plugin's stamp (`self`) differs from the host's, in words;
    /// empty when the plugin may be loaded.
    pub fn differences(&self, host: &StampInfo) -> Vec<String> {
        let mut d = Vec::new();
        if self.magic != host.magic {
            d.push("it is not a sparseqc plugin (its entry point has the wrong magic number)".to_string());
            return d;
        }
        if self.abi_version != host.abi_version {
            d.push(format!("plugin ABI version {}, this sparseqc's is {}", self.abi_version, host.abi_version));
        }
        if self.crate_version != host.crate_version {
            d.push(format!("built against sparseqc {}, this is sparseqc {}", self.crate_version, host.crate_version));
        }
        if self.rustc_version != host.rustc_version {
            d.push(format!("compiled by {}, this sparseqc by {}", self.rustc_version, host.rustc_version));
        }
        if self.target != host.target {
            d.push(format!("built for target {}, this sparseqc for {}", self.target, host.target));
        }
        if (self.flags & FLAG_PANIC_UNWIND) != (host.flags & FLAG_PANIC_UNWIND) {
            let s = |f: u32| if f & FLAG_PANIC_UNWIND != 0 { "unwind" } else { "abort" };
            d.push(format!("built with panic = \"{}\", this sparseqc with panic = \"{}\"", s(self.flags), s(host.flags)));
        }
        if self.layout_hash != host.layout_hash {
            d.push(format!(
                "its IR and pass types have other layouts (layout hash {:016x}, this sparseqc's is {:016x})",
                self.layout_hash, host.layout_hash
            ));
        }
        if self.source_hash != host.source_hash && d.is_empty() {
            d.push(format!(
                "built against other sparseqc sources of the same version (source fingerprint {:016x}, this sparseqc's is {:016x})",
                self.source_hash, host.source_hash
            ));
        }
        d
    }

    /// Checks a plugin's stamp against the host's; the error says what differs and what
    /// to do.
    pub fn check(&self, host: &StampInfo, path: &Path) -> Result<()> {
        let d = self.differences(host);
        if d.is_empty() {
            return Ok(());
        }
        if self.magic != host.magic {
            return Err(Error::user(format!("cannot load plugin {}: {}", path.display(), d[0])));
        }
        Err(Error::user(format!(
            "refusing to load plugin {}: it was not built against this sparseqc, and calling into it could crash:\n  - {}\n\
             Rebuild the plugin against this sparseqc (sparseqc {}, {}, {}), e.g. `cargo build` in the plugin's crate \
             with its sparseqc dependency pointing at this sparseqc's source.",
            path.display(),
            d.join("\n  - "),
            host.crate_version,
            host.rustc_version,
            host.target
        )))
    }
}

/// Status returned by every plugin-side shim.
pub mod status {
    /// The call completed; the out slot holds `Ok`.
    pub const OK: u32 = 0;
    /// The call completed; the out slot holds the plugin's `Err`.
    pub const ERROR: u32 = 1;
    /// The plugin panicked; the out slot holds an `Err` with the panic message.
    pub const PANICKED: u32 = 2;
}

/// Creates the plugin's registry. `out: *mut Option<Result<*mut c_void>>`.
pub type InitFn = unsafe extern "C" fn(out: *mut c_void) -> u32;
/// Lists the passes. `reg`: the registry from `init`; `out: *mut Option<Result<Vec<PassInfo>>>`.
pub type ListFn = unsafe extern "C" fn(reg: *const c_void, out: *mut c_void) -> u32;
/// Instantiates a pass. `entry: *const PipelineEntry`; `out: *mut Option<Result<*mut c_void>>`
/// (a `Box<Box<dyn Pass>>` turned raw).
pub type CreateFn = unsafe extern "C" fn(reg: *const c_void, entry: *const c_void, out: *mut c_void) -> u32;
/// Runs a pass. `model: *mut Model`, `ctx: *mut PassContext`,
/// `out: *mut Option<Result<PassReport>>`.
pub type RunFn = unsafe extern "C" fn(pass: *mut c_void, model: *mut c_void, ctx: *mut c_void, out: *mut c_void) -> u32;
/// Drops a pass or the registry. `out: *mut Option<Result<()>>`.
pub type DropFn = unsafe extern "C" fn(obj: *mut c_void, out: *mut c_void) -> u32;

/// What a plugin's entry point returns. Made by [`export_plugin!`](crate::export_plugin);
/// the host reads `stamp` first and touches the rest only if the stamp equals its own.
#[repr(C)]
pub struct PluginDecl {
    /// Checked before anything else.
    pub stamp: AbiStamp,
    /// The plugin's name, for messages.
    pub name: RawStr,
    /// See [`InitFn`].
    pub init: InitFn,
    /// See [`ListFn`].
    pub list: ListFn,
    /// See [`CreateFn`].
    pub create: CreateFn,
    /// See [`RunFn`].
    pub run: RunFn,
    /// Drops a pass made by `create`.
    pub drop_pass: DropFn,
    /// Drops the registry made by `init`.
    pub drop_registry: DropFn,
}

impl PluginDecl {
    /// The declaration `export_plugin!` makes: the given stamp (normally [`ABI_STAMP`]),
    /// the plugin's name, its `init` shim, and the generic shims of [`guest`].
    pub const fn new(stamp: AbiStamp, name: &'static str, init: InitFn) -> PluginDecl {
        PluginDecl {
            stamp,
            name: RawStr::new(name),
            init,
            list: guest::list,
            create: guest::create,
            run: guest::run,
            drop_pass: guest::drop_pass,
            drop_registry: guest::drop_registry,
        }
    }
}

/// Exports a plugin's passes from a `cdylib` crate.
///
/// ```ignore
/// fn register(reg: &mut sparseqc::pass::Registry) -> sparseqc::Result<()> {
///     reg.register(info, Box::new(|opts| Ok(Box::new(MyPass::new(opts)?))))
/// }
/// sparseqc::export_plugin!(name: "my-plugin", register: register);
/// ```
///
/// `register` has the type `fn(&mut Registry) -> Result<()>`; it registers passes exactly
/// as the built-in passes are registered. The `origin` of each [`PassInfo`] is filled in
/// by the host (the library's path). Use the macro once per library.
///
/// The form `export_plugin!(@with_stamp STAMP, name: ..., register: ...)` exports another
/// stamp than this sparseqc's; it exists only to test that hosts refuse such plugins.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, register: $register:path $(,)?) => {
        $crate::export_plugin!(@with_stamp $crate::plugin::ABI_STAMP, name: $name, register: $register);
    };
    (@with_stamp $stamp:expr, name: $name:expr, register: $register:path $(,)?) => {
        /// The sparseqc plugin entry point (made by `sparseqc::export_plugin!`).
        #[no_mangle]
        pub extern "C" fn sparseqc_plugin_v1() -> *const $crate::plugin::PluginDecl {
            #[allow(unused_unsafe)]
            unsafe extern "C" fn __sparseqc_plugin_init(out: *mut ::std::ffi::c_void) -> u32 {
                // SAFETY: the host passes the out slot the protocol specifies.
                unsafe { $crate::plugin::guest::init($register, out) }
            }
            static DECL: $crate::plugin::PluginDecl =
                $crate::plugin::PluginDecl::new($stamp, $name, __sparseqc_plugin_init);
            &DECL
        }
    };
}

/// The plugin side of the protocol: the shims `export_plugin!` puts into [`PluginDecl`].
/// Each one runs the plugin's code under `catch_unwind` and writes the outcome into the
/// host's out slot. Not for direct use.
#[doc(hidden)]
pub mod guest {
    use super::status;
    use crate::error::{Error, Result};
    use crate::ir::Model;
    use crate::pass::{Pass, PassContext, PipelineEntry, Registry};
    use std::ffi::c_void;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The type of a plugin's registration function.
    pub type RegisterFn = fn(&mut Registry) -> Result<()>;

    fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = p.downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = p.downcast_ref::<String>() {
            s.clone()
        } else {
            "(a panic without a message)".to_string()
        }
    }

    /// Runs `f`, catching panics, and writes its outcome to `out`.
    ///
    /// # Safety
    /// `out` must point at a writable `Option<Result<T>>`.
    unsafe fn guard<T>(out: *mut c_void, f: impl FnOnce() -> Result<T>) -> u32 {
        let out = out as *mut Option<Result<T>>;
        let (res, code) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => {
                let c = if r.is_ok() { status::OK } else { status::ERROR };
                (r, c)
            }
            Err(payload) => {
                let msg = panic_message(&*payload);
                // A payload whose destructor panics again must not escape either.
                if catch_unwind(AssertUnwindSafe(move || drop(payload))).is_err() {
                    // nothing more can be done safely; the payload leaks
                }
                (Err(Error::internal(msg)), status::PANICKED)
            }
        };
        // SAFETY: the caller guarantees `out` is a valid, writable slot.
        unsafe { out.write(Some(res)) };
        code
    }

    /// `init` for `export_plugin!`: builds the plugin's registry with `register`.
    ///
    /// # Safety
    /// `out` must point at a writable `Option<Result<*mut c_void>>`.
    pub unsafe fn init(register: RegisterFn, out: *mut c_void) -> u32 {
        // SAFETY: forwarded.
        unsafe {
            guard(out, || {
                let mut reg = Registry::new();
                register(&mut reg)?;
                Ok(Box::into_raw(Box::new(reg)) as *mut c_void)
            })
        }
    }

    pub(super) unsafe extern "C" fn list(reg: *const c_void, out: *mut c_void) -> u32 {
        // SAFETY: `reg` came from `init`; `out` is the host's slot.
        unsafe {
            guard(out, || {
                let reg = &*(reg as *const Registry);
                Ok(reg.list().cloned().collect::<Vec<_>>())
            })
        }
    }

    pub(super) unsafe extern "C" fn create(reg: *const c_void, entry: *const c_void, out: *mut c_void) -> u32 {
        // SAFETY: `reg` came from `init`, `entry` is the host's PipelineEntry.
        unsafe {
            guard(out, || {
                let reg = &*(reg as *const Registry);
                let entry = &*(entry as *const PipelineEntry);
                let pass: Box<dyn Pass> = reg.create(entry)?;
                Ok(Box::into_raw(Box::new(pass)) as *mut c_void)
            })
        }
    }

    pub(super) unsafe extern "C" fn run(pass: *mut c_void, model: *mut c_void, ctx: *mut c_void, out: *mut c_void) -> u32 {
        // SAFETY: `pass` came from `create`; `model` and `ctx` are the host's, exclusively lent.
        unsafe {
            guard(out, || {
                let pass = &mut *(pass as *mut Box<dyn Pass>);
                let model = &mut *(model as *mut Model);
                let ctx = &mut *(ctx as *mut PassContext);
                pass.run(model, ctx)
            })
        }
    }

    pub(super) unsafe extern "C" fn drop_pass(pass: *mut c_void, out: *mut c_void) -> u32 {
        // SAFETY: `pass` came from `create` and is dropped once.
        unsafe {
            guard(out, || {
                drop(Box::from_raw(pass as *mut Box<dyn Pass>));
                Ok(())
            })
        }
    }

    pub(super) unsafe extern "C" fn drop_registry(reg: *mut c_void, out: *mut c_void) -> u32 {
        // SAFETY: `reg` came from `init` and is dropped once.
        unsafe {
            guard(out, || {
                drop(Box::from_raw(reg as *mut Registry));
                Ok(())
            })
        }
    }
}

// ---------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------

/// A loaded plugin library. Kept alive (by `Arc`) by every factory and pass it made.
struct Library {
    path: PathBuf,
    name: String,
    decl: *const PluginDecl,
    /// The plugin's registry (from `init`), dropped in `Drop`.
    registry: *mut c_void,
    /// Never unloaded: see the module documentation.
    _lib: ManuallyDrop<libloading::Library>,
}

// SAFETY: `decl` points at immutable static data of a library that is never unloaded;
// `registry` is a plugin-side `Registry`, which is `Send + Sync` (its factories are), and
// the host only reads it (`list`, `create`) until `Drop`.
unsafe impl Send for Library {}
// SAFETY: as above.
unsafe impl Sync for Library {}

impl Library {
    fn decl(&self) -> &PluginDecl {
        // SAFETY: checked non-null at load; static data of a never-unloaded library.
        unsafe { &*self.decl }
    }
    fn what(&self) -> String {
        format!("plugin '{}' ({})", self.name, self.path.display())
    }
    /// Turns a shim's status and out slot into a Result, with context naming the plugin;
    /// `doing` (may be empty) says what the plugin was asked to do.
    fn outcome<T>(&self, code: u32, slot: Option<Result<T>>, doing: &str) -> Result<T> {
        outcome(&self.what(), code, slot, doing)
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        let mut slot: Option<Result<()>> = None;
        // SAFETY: `registry` came from this plugin's `init` and is dropped once, here.
        let _ = unsafe { (self.decl().drop_registry)(self.registry, &mut slot as *mut _ as *mut c_void) };
    }
}

fn outcome<T>(what: &str, code: u32, slot: Option<Result<T>>, doing: &str) -> Result<T> {
    let while_ = if doing.is_empty() { String::new() } else { format!(" while {doing}") };
    match (code, slot) {
        (status::OK, Some(Ok(v))) => Ok(v),
        (status::ERROR, Some(Err(e))) => {
            Err(if doing.is_empty() { e.context(what.to_string()) } else { e.context(format!("{what}: {doing}")) })
        }
        (status::PANICKED, Some(Err(e))) => {
            Err(Error::internal(format!("{what} panicked{while_}: {} (a bug in the plugin)", e.message)))
        }
        (c, _) => Err(Error::internal(format!("{what} broke the plugin protocol{while_} (status {c})"))),
    }
}

/// A pass living in a plugin, as the host's pass manager sees it.
struct PluginPass {
    lib: Arc<Library>,
    name: String,
    /// A `Box<Box<dyn Pass>>` made by the plugin's `create`.
    obj: *mut c_void,
}

// SAFETY: `obj` is a plugin-side `Box<dyn Pass>`, and `Pass: Send`.
unsafe impl Send for PluginPass {}

impl Pass for PluginPass {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&mut self, model: &mut Model, ctx: &mut PassContext) -> Result<PassReport> {
        let mut slot: Option<Result<PassReport>> = None;
        // SAFETY: the stamp matched, so both sides agree on Model, PassContext and
        // Result<PassReport>; the pointers are exclusive borrows valid for the call.
        let code = unsafe {
            (self.lib.decl().run)(
                self.obj,
                model as *mut Model as *mut c_void,
                ctx as *mut PassContext as *mut c_void,
                &mut slot as *mut _ as *mut c_void,
            )
        };
        let mut report = self.lib.outcome(code, slot, "")?;
        if report.pass.is_empty() {
            report.pass = self.name.clone();
        }
        Ok(report)
    }
}

impl Drop for PluginPass {
    fn drop(&mut self) {
        let mut slot: Option<Result<()>> = None;
        // SAFETY: `obj` came from `create` and is dropped once, here.
        let _ = unsafe { (self.lib.decl().drop_pass)(self.obj, &mut slot as *mut _ as *mut c_void) };
    }
}

/// What [`load_into`] registered.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The plugin's name (from `export_plugin!`).
    pub name: String,
    /// The library file.
    pub path: PathBuf,
    /// The passes it registered.
    pub passes: Vec<String>,
}

/// Reads the stamp of a plugin library without calling any of its code beyond the entry
/// point (which only returns a pointer to static data).
pub fn read_stamp(path: &Path) -> Result<StampInfo> {
    let (lib, decl) = open(path)?;
    // SAFETY: `decl` is non-null; the first fields are read only after the magic matched.
    let stamp = unsafe { read_checked_stamp(decl, path) };
    // never unloaded (see the module documentation)
    std::mem::forget(lib);
    stamp
}

fn open(path: &Path) -> Result<(libloading::Library, *const PluginDecl)> {
    if !path.exists() {
        return Err(Error::user(format!("plugin {} does not exist", path.display())));
    }
    // A path without a slash would make the dynamic loader search the system's library
    // folders; make it explicit.
    let path_abs = if path.is_absolute() { path.to_path_buf() } else { std::path::Path::new(".").join(path) };
    // SAFETY: loading a library runs its initialisers; the user asked for this library.
    let lib = unsafe { libloading::Library::new(&path_abs) }
        .map_err(|e| Error::user(format!("cannot load plugin {}: {e}", path.display())))?;
    let entry: libloading::Symbol<unsafe extern "C" fn() -> *const PluginDecl> =
        // SAFETY: the symbol's type is the one the protocol defines; a library exporting
        // this name with another type is not a sparseqc plugin and is caught by the magic.
        unsafe { lib.get(ENTRY_SYMBOL.as_bytes()) }.map_err(|_| {
            Error::user(format!(
                "cannot load plugin {}: it is not a sparseqc plugin (no '{ENTRY_SYMBOL}' symbol; \
                 plugins are cdylib crates that call sparseqc::export_plugin!)",
                path.display()
            ))
        })?;
    // SAFETY: the entry point takes nothing and returns a pointer to static data.
    let decl = unsafe { entry() };
    if decl.is_null() {
        return Err(Error::user(format!("cannot load plugin {}: its entry point returned nothing", path.display())));
    }
    Ok((lib, decl))
}

/// # Safety
/// `decl` must be non-null and point at least at a readable `u64`.
unsafe fn read_checked_stamp(decl: *const PluginDecl, path: &Path) -> Result<StampInfo> {
    // Read the magic alone first: only a sparseqc stamp has the rest.
    // SAFETY: the caller guarantees a readable u64 at `decl` (the stamp's first field).
    let magic = unsafe { std::ptr::read_unaligned(decl as *const u64) };
    if magic != MAGIC {
        return Err(Error::user(format!(
            "cannot load plugin {}: it is not a sparseqc plugin (its entry point has the wrong magic number)",
            path.display()
        )));
    }
    // SAFETY: the magic matched, so the stamp was made by some sparseqc; its layout is
    // frozen across versions.
    Ok(unsafe { StampInfo::read(&(*decl).stamp) })
}

/// Loads the plugin library at `path`, checks its stamp against this sparseqc's, and
/// registers its passes in `reg` (with `origin` set to the library's path). The library
/// stays loaded for the rest of the process.
pub fn load_into(reg: &mut Registry, path: &Path) -> Result<LoadedPlugin> {
    let (lib, decl) = open(path)?;
    // SAFETY: `decl` is non-null (checked in `open`).
    let stamp = unsafe { read_checked_stamp(decl, path)? };
    stamp.check(&StampInfo::host(), path)?;
    // From here on both sides are the same sparseqc built by the same compiler.
    // SAFETY: the stamp matched, so `decl` is a `PluginDecl` of this very layout.
    let name = unsafe { (*decl).name.read() };
    let mut slot: Option<Result<*mut c_void>> = None;
    // SAFETY: as above; `slot` is the out slot `init` expects.
    let code = unsafe { ((*decl).init)(&mut slot as *mut _ as *mut c_void) };
    let what = format!("plugin '{name}' ({})", path.display());
    let registry = outcome(&what, code, slot, "registering its passes")?;
    if registry.is_null() {
        return Err(Error::internal(format!("{what} broke the plugin protocol while registering its passes (no registry)")));
    }
    let lib = Arc::new(Library { path: path.to_path_buf(), name, decl, registry, _lib: ManuallyDrop::new(lib) });

    let mut slot: Option<Result<Vec<PassInfo>>> = None;
    // SAFETY: `registry` came from `init`; `slot` is the out slot `list` expects.
    let code = unsafe { (lib.decl().list)(lib.registry, &mut slot as *mut _ as *mut c_void) };
    let infos = lib.outcome(code, slot, "listing its passes")?;
    if infos.is_empty() {
        return Err(Error::user(format!("{} registers no pass", lib.what())));
    }
    let mut names = Vec::new();
    for mut info in infos {
        info.origin = path.display().to_string();
        let pass_name = info.name.clone();
        let l = lib.clone();
        let factory = move |opts: &PassOptions| -> Result<Box<dyn Pass>> {
            let entry = PipelineEntry { name: pass_name.clone(), options: opts.clone() };
            let mut slot: Option<Result<*mut c_void>> = None;
            // SAFETY: `registry` came from `init`; `entry` and `slot` are what `create`
            // expects and live for the call.
            let code = unsafe {
                (l.decl().create)(
                    l.registry,
                    &entry as *const PipelineEntry as *const c_void,
                    &mut slot as *mut _ as *mut c_void,
                )
            };
            let obj = l.outcome(code, slot, "creating the pass")?;
            if obj.is_null() {
                return Err(Error::internal(format!("{}: creating pass '{pass_name}' returned nothing", l.what())));
            }
            Ok(Box::new(PluginPass { lib: l.clone(), name: pass_name.clone(), obj }))
        };
        names.push(info.name.clone());
        reg.register(info, Box::new(factory))?;
    }
    Ok(LoadedPlugin { name: lib.name.clone(), path: path.to_path_buf(), passes: names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_stamp_is_complete() {
        let h = StampInfo::host();
        assert_eq!(h.magic, MAGIC);
        assert_eq!(h.abi_version, ABI_VERSION);
        assert_eq!(h.crate_version, env!("CARGO_PKG_VERSION"));
        assert!(h.rustc_version.starts_with("rustc "), "{}", h.rustc_version);
        assert!(!h.target.is_empty());
        assert_ne!(h.source_hash, 0);
        assert!(h.differences(&h).is_empty());
    }

    #[test]
    fn every_difference_is_named() {
        let h = StampInfo::host();
        let mut p = h.clone();
        p.abi_version += 1;
        p.crate_version = "9.9.9".into();
        p.rustc_version = "rustc 1.0.0".into();
        p.flags = 0;
        let d = p.differences(&h).join("\n");
        assert!(d.contains(&format!("plugin ABI version {}", ABI_VERSION + 1)), "{d}");
        assert!(d.contains("built against sparseqc 9.9.9"), "{d}");
        assert!(d.contains("compiled by rustc 1.0.0"), "{d}");
        assert!(d.contains("panic = \"abort\""), "{d}");
        let e = p.check(&h, Path::new("libx.so")).unwrap_err().to_string();
        assert!(e.starts_with("refusing to load plugin libx.so"), "{e}");
        assert!(e.contains("Rebuild the plugin"), "{e}");

        let mut q = h.clone();
        q.source_hash ^= 1;
        assert!(q.differences(&h)[0].contains("other sparseqc sources"));
        let mut r = h.clone();
        r.layout_hash ^= 1;
        assert!(r.differences(&h)[0].contains("other layouts"));
        let mut m = h.clone();
        m.magic = 0;
        assert_eq!(m.differences(&h).len(), 1);
        assert!(m.check(&h, Path::new("x")).unwrap_err().to_string().contains("not a sparseqc plugin"));
    }

    #[test]
    fn missing_and_foreign_libraries_are_refused() {
        let mut reg = Registry::new();
        let e = load_into(&mut reg, Path::new("/nonexistent/libnothing.so")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        // a file that is not a shared library at all
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("libfake.so");
        std::fs::write(&f, b"not an ELF file").unwrap();
        let e = load_into(&mut reg, &f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot load plugin {}", f.display())), "{e}");
    }

    #[test]
    fn hex_parse() {
        assert_eq!(parse_hex_u64("00ff"), 255);
        assert_eq!(parse_hex_u64("DEADbeef"), 0xdead_beef);
    }
}

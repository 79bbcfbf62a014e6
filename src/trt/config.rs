//! Builder configuration: target TensorRT version, builder flags (with the headers' real
//! numeric values), network-creation flags, workspace limit and optimization profiles.
//!
//! # Version differences
//! * TensorRT 11: networks are always strongly typed (`kSTRONGLY_TYPED` = 0 is deprecated and
//!   implied); `BuilderFlag::kINT8`/`kFP16` no longer exist, so INT8 reaches TensorRT only
//!   through the Q/DQ scales in the network.
//! * TensorRT 10: `kSTRONGLY_TYPED` = 1 is optional. Without it, an explicitly quantized
//!   network needs `BuilderFlag::kINT8` (deprecated in 10.12). The builder-flag numbering
//!   differs from 11.x (11 removed kFP16=0, kINT8=1 and renumbered several flags).
//!
//! # Optimization-profile syntax
//! One input's shapes: `NAME:MIN[,OPT,MAX]`, each shape `DxDxD...` (positive integers).
//! With one shape, min = opt = max. The input name may itself contain `:` (the last `:`
//! separates the shapes). Several inputs of one profile are separated by `;`:
//! `images:1x3x224x224,8x3x224x224,32x3x224x224;mask:1x224x224,8x224x224,32x224x224`.

use std::fmt;

use super::network::{fmt_dims, Network};
use crate::error::{Error, Result};

/// The TensorRT release the network is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrtVersion {
    /// Major version: 10 or 11.
    pub major: u32,
    /// Minor version (e.g. 12 for 10.12).
    pub minor: u32,
}

impl TrtVersion {
    /// TensorRT 10.x (10.0 and later).
    pub const V10: TrtVersion = TrtVersion {
        major: 10,
        minor: 0,
    };
    /// TensorRT 11.x.
    pub const V11: TrtVersion = TrtVersion {
        major: 11,
        minor: 0,
    };

    /// Parses `10`, `10.12`, `11`, `11.4.0` (patch ignored). Only majors 10 and 11 are supported.
    pub fn parse(s: &str) -> Result<TrtVersion> {
        let mut it = s.trim().split('.');
        let bad = || {
            Error::usage(format!(
                "invalid TensorRT version '{s}': expected 10, 10.x, 11 or 11.x"
            ))
        };
        let major: u32 = it.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
        let minor: u32 = match it.next() {
            Some(m) => m.parse().map_err(|_| bad())?,
            None => 0,
        };
        if let Some(p) = it.next() {
            p.parse::<u32>().map_err(|_| bad())?;
        }
        if it.next().is_some() || !(10..=11).contains(&major) {
            return Err(bad());
        }
        Ok(TrtVersion { major, minor })
    }

    /// From the header's `NV_TENSORRT_VERSION` (major*10000 + minor*100 + patch).
    pub fn from_header_version(v: i32) -> TrtVersion {
        let v = v.max(0) as u32;
        TrtVersion {
            major: v / 10000,
            minor: (v / 100) % 100,
        }
    }

    /// Whether every network is strongly typed (TensorRT >= 11).
    pub fn always_strongly_typed(self) -> bool {
        self.major >= 11
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `nvinfer1::BuilderFlag`. The numeric value depends on the major version:
/// see [`BuilderFlag::value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum BuilderFlag {
    /// `kFP16` (10.x only; deprecated in 10.12, gone in 11).
    kFP16,
    /// `kINT8` (10.x only; deprecated in 10.12, gone in 11).
    kINT8,
    /// `kDEBUG`: synchronize after every layer.
    kDEBUG,
    /// `kGPU_FALLBACK`.
    kGPU_FALLBACK,
    /// `kREFIT`.
    kREFIT,
    /// `kDISABLE_TIMING_CACHE`.
    kDISABLE_TIMING_CACHE,
    /// `kTF32` (enabled by default by TensorRT).
    kTF32,
    /// `kSPARSE_WEIGHTS` = 7: let the builder use 2:4 sparse kernels where weights allow.
    kSPARSE_WEIGHTS,
    /// `kOBEY_PRECISION_CONSTRAINTS` (10.x only).
    kOBEY_PRECISION_CONSTRAINTS,
    /// `kPREFER_PRECISION_CONSTRAINTS` (10.x only).
    kPREFER_PRECISION_CONSTRAINTS,
    /// `kVERSION_COMPATIBLE`.
    kVERSION_COMPATIBLE,
    /// `kEXCLUDE_LEAN_RUNTIME`.
    kEXCLUDE_LEAN_RUNTIME,
    /// `kSTRIP_PLAN`.
    kSTRIP_PLAN,
    /// `kREFIT_IDENTICAL`.
    kREFIT_IDENTICAL,
    /// `kSTRICT_NANS`: with kSPARSE_WEIGHTS, only sparsity that keeps NaN propagation.
    kSTRICT_NANS,
}

impl BuilderFlag {
    /// All flags.
    pub const ALL: [BuilderFlag; 15] = [
        BuilderFlag::kFP16,
        BuilderFlag::kINT8,
        BuilderFlag::kDEBUG,
        BuilderFlag::kGPU_FALLBACK,
        BuilderFlag::kREFIT,
        BuilderFlag::kDISABLE_TIMING_CACHE,
        BuilderFlag::kTF32,
        BuilderFlag::kSPARSE_WEIGHTS,
        BuilderFlag::kOBEY_PRECISION_CONSTRAINTS,
        BuilderFlag::kPREFER_PRECISION_CONSTRAINTS,
        BuilderFlag::kVERSION_COMPATIBLE,
        BuilderFlag::kEXCLUDE_LEAN_RUNTIME,
        BuilderFlag::kSTRIP_PLAN,
        BuilderFlag::kREFIT_IDENTICAL,
        BuilderFlag::kSTRICT_NANS,
    ];

    /// The enumerator's numeric value in the `NvInfer.h` of `version`'s major release
    /// (10.x values from 10.x headers, 11.x values from the 11.4 header), or `None` if the
    /// flag does not exist there.
    pub fn value(self, version: TrtVersion) -> Option<i32> {
        use BuilderFlag::*;
        if version.major >= 11 {
            Some(match self {
                kFP16 | kINT8 | kOBEY_PRECISION_CONSTRAINTS | kPREFER_PRECISION_CONSTRAINTS => {
                    return None
                }
                kDEBUG => 2,
                kGPU_FALLBACK => 3,
                kREFIT => 4,
                kDISABLE_TIMING_CACHE => 5,
                kTF32 => 6,
                kSPARSE_WEIGHTS => 7,
                kVERSION_COMPATIBLE => 12,
                kEXCLUDE_LEAN_RUNTIME => 13,
                kSTRIP_PLAN => 18,
                kREFIT_IDENTICAL => 19,
                kSTRICT_NANS => 23,
            })
        } else {
            Some(match self {
                kFP16 => 0,
                kINT8 => 1,
                kDEBUG => 2,
                kGPU_FALLBACK => 3,
                kREFIT => 4,
                kDISABLE_TIMING_CACHE => 5,
                kTF32 => 6,
                kSPARSE_WEIGHTS => 7,
                kOBEY_PRECISION_CONSTRAINTS => 9,
                kPREFER_PRECISION_CONSTRAINTS => 10,
                kVERSION_COMPATIBLE => 13,
                kEXCLUDE_LEAN_RUNTIME => 14,
                kSTRIP_PLAN => 19,
                kREFIT_IDENTICAL => 20,
                kSTRICT_NANS => 24,
            })
        }
    }

    /// The enumerator name, e.g. `kSPARSE_WEIGHTS`.
    pub fn name(self) -> &'static str {
        use BuilderFlag::*;
        match self {
            kFP16 => "kFP16",
            kINT8 => "kINT8",
            kDEBUG => "kDEBUG",
            kGPU_FALLBACK => "kGPU_FALLBACK",
            kREFIT => "kREFIT",
            kDISABLE_TIMING_CACHE => "kDISABLE_TIMING_CACHE",
            kTF32 => "kTF32",
            kSPARSE_WEIGHTS => "kSPARSE_WEIGHTS",
            kOBEY_PRECISION_CONSTRAINTS => "kOBEY_PRECISION_CONSTRAINTS",
            kPREFER_PRECISION_CONSTRAINTS => "kPREFER_PRECISION_CONSTRAINTS",
            kVERSION_COMPATIBLE => "kVERSION_COMPATIBLE",
            kEXCLUDE_LEAN_RUNTIME => "kEXCLUDE_LEAN_RUNTIME",
            kSTRIP_PLAN => "kSTRIP_PLAN",
            kREFIT_IDENTICAL => "kREFIT_IDENTICAL",
            kSTRICT_NANS => "kSTRICT_NANS",
        }
    }

    /// Parses [`BuilderFlag::name`] (with or without the `k`, case-insensitive).
    pub fn from_name(s: &str) -> Option<BuilderFlag> {
        let u = s.to_ascii_uppercase();
        BuilderFlag::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(&u) || f.name()[1..].eq_ignore_ascii_case(&u))
    }
}

/// `nvinfer1::NetworkDefinitionCreationFlag` (only the one that matters here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum NetworkCreationFlag {
    /// `kSTRONGLY_TYPED`: 1 in 10.x; 0 and deprecated (always on) in 11.x.
    kSTRONGLY_TYPED,
}

impl NetworkCreationFlag {
    /// The enumerator's value in the `version` header.
    pub fn value(self, version: TrtVersion) -> i32 {
        match self {
            NetworkCreationFlag::kSTRONGLY_TYPED => {
                if version.major >= 11 {
                    0
                } else {
                    1
                }
            }
        }
    }
}

/// `nvinfer1::MemoryPoolType::kWORKSPACE` (value 0 in 10.x and 11.x).
pub const MEMORY_POOL_WORKSPACE: i32 = 0;

/// `nvinfer1::OptProfileSelector` values: kMIN = 0, kOPT = 1, kMAX = 2.
pub const OPT_PROFILE_SELECTORS: [(&str, i32); 3] = [("kMIN", 0), ("kOPT", 1), ("kMAX", 2)];

/// Shapes of one input within an optimization profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileShapes {
    /// Network input name.
    pub input: String,
    /// `kMIN` shape.
    pub min: Vec<i64>,
    /// `kOPT` shape.
    pub opt: Vec<i64>,
    /// `kMAX` shape.
    pub max: Vec<i64>,
}

impl ProfileShapes {
    /// Parses `NAME:MIN[,OPT,MAX]` (see the module docs).
    pub fn parse(spec: &str) -> Result<ProfileShapes> {
        let spec = spec.trim();
        let (name, shapes) = spec.rsplit_once(':').ok_or_else(|| {
            Error::usage(format!(
                "invalid input shape '{spec}': expected NAME:MIN[,OPT,MAX], e.g. input:1x3x224x224,8x3x224x224,32x3x224x224"
            ))
        })?;
        if name.is_empty() {
            return Err(Error::usage(format!(
                "invalid input shape '{spec}': missing input name"
            )));
        }
        let parse_shape = |s: &str| -> Result<Vec<i64>> {
            s.trim()
                .split(['x', 'X'])
                .map(|d| match d.trim().parse::<i64>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => Err(Error::usage(format!(
                        "invalid input shape '{spec}': '{s}' is not a shape like 1x3x224x224 of positive integers"
                    ))),
                })
                .collect()
        };
        let list: Vec<Vec<i64>> = shapes.split(',').map(parse_shape).collect::<Result<_>>()?;
        let (min, opt, max) = match list.as_slice() {
            [one] => (one.clone(), one.clone(), one.clone()),
            [a, b, c] => (a.clone(), b.clone(), c.clone()),
            _ => {
                return Err(Error::usage(format!(
                    "invalid input shape '{spec}': give one shape or three (min,opt,max), not {}",
                    list.len()
                )))
            }
        };
        let p = ProfileShapes {
            input: name.to_string(),
            min,
            opt,
            max,
        };
        p.check().map_err(|e| Error::usage(e.message))?;
        Ok(p)
    }

    fn check(&self) -> Result<()> {
        let n = self.min.len();
        if n == 0 || n > 8 || self.opt.len() != n || self.max.len() != n {
            return Err(Error::user(format!(
                "profile for '{}': min/opt/max must have the same rank (1 to 8)",
                self.input
            )));
        }
        for i in 0..n {
            if !(self.min[i] <= self.opt[i] && self.opt[i] <= self.max[i]) || self.min[i] <= 0 {
                return Err(Error::user(format!(
                    "profile for '{}': need 0 < min <= opt <= max in every dimension, got {} {} {}",
                    self.input,
                    fmt_dims(&self.min),
                    fmt_dims(&self.opt),
                    fmt_dims(&self.max)
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for ProfileShapes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: &[i64]| {
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        if self.min == self.opt && self.opt == self.max {
            write!(f, "{}:{}", self.input, s(&self.min))
        } else {
            write!(
                f,
                "{}:{},{},{}",
                self.input,
                s(&self.min),
                s(&self.opt),
                s(&self.max)
            )
        }
    }
}

/// One optimization profile (`IOptimizationProfile`): shapes for some inputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptimizationProfile {
    /// Per-input shapes.
    pub inputs: Vec<ProfileShapes>,
}

impl OptimizationProfile {
    /// Parses `SPEC[;SPEC...]`, each `SPEC` as in [`ProfileShapes::parse`].
    pub fn parse(s: &str) -> Result<OptimizationProfile> {
        let inputs = s
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .map(ProfileShapes::parse)
            .collect::<Result<Vec<_>>>()?;
        if inputs.is_empty() {
            return Err(Error::usage("empty optimization profile"));
        }
        for (i, a) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|b| b.input == a.input) {
                return Err(Error::usage(format!(
                    "input '{}' appears twice in one profile",
                    a.input
                )));
            }
        }
        Ok(OptimizationProfile { inputs })
    }
}

impl fmt::Display for OptimizationProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.inputs.iter().map(|p| p.to_string()).collect();
        f.write_str(&parts.join(";"))
    }
}

/// Everything `IBuilderConfig` (and `createNetworkV2`) needs besides the network.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    /// Target TensorRT release.
    pub target: TrtVersion,
    /// Create the network strongly typed. Always true for TensorRT 11; for 10.x, false
    /// means `kINT8` is added to the builder flags (see [`BuildConfig::effective_flags`]).
    pub strongly_typed: bool,
    /// Builder flags requested (kSPARSE_WEIGHTS by default).
    pub flags: Vec<BuilderFlag>,
    /// `setMemoryPoolLimit(kWORKSPACE, bytes)`; `None` leaves TensorRT's default (all device memory).
    pub workspace_bytes: Option<u64>,
    /// Optimization profiles; required when an input has a dynamic (-1) dimension.
    pub profiles: Vec<OptimizationProfile>,
}

impl BuildConfig {
    /// Defaults for `target`: kSPARSE_WEIGHTS on; strongly typed on 11.x; on 10.x not
    /// strongly typed (so kINT8 is set, which every 10.x release accepts).
    pub fn new(target: TrtVersion) -> BuildConfig {
        BuildConfig {
            target,
            strongly_typed: target.always_strongly_typed(),
            flags: vec![BuilderFlag::kSPARSE_WEIGHTS],
            workspace_bytes: None,
            profiles: Vec::new(),
        }
    }

    /// The flags to set, in order, for `self.target`: the requested ones, plus kINT8 for
    /// TensorRT <= 10 without strong typing. Fails on a flag the target does not have, or
    /// on kINT8/kFP16 with a strongly typed network.
    pub fn effective_flags(&self) -> Result<Vec<(BuilderFlag, i32)>> {
        let mut flags = self.flags.clone();
        if !self.is_strongly_typed() && !flags.contains(&BuilderFlag::kINT8) {
            flags.push(BuilderFlag::kINT8);
        }
        let mut out = Vec::new();
        for f in flags {
            if out.iter().any(|(g, _)| *g == f) {
                continue;
            }
            if self.is_strongly_typed() && matches!(f, BuilderFlag::kINT8 | BuilderFlag::kFP16) {
                return Err(Error::user(format!(
                    "builder flag {} cannot be used with a strongly typed network (TensorRT {})",
                    f.name(),
                    self.target
                )));
            }
            let v = f.value(self.target).ok_or_else(|| {
                Error::user(format!(
                    "builder flag {} does not exist in TensorRT {}",
                    f.name(),
                    self.target.major
                ))
            })?;
            out.push((f, v));
        }
        Ok(out)
    }

    /// Whether the network is created strongly typed (always on TensorRT 11).
    pub fn is_strongly_typed(&self) -> bool {
        self.strongly_typed || self.target.always_strongly_typed()
    }

    /// `createNetworkV2` flags for the target: `1 << kSTRONGLY_TYPED` on 10.x when strongly
    /// typed, nothing on 11.x (strong typing is implied and the flag is deprecated).
    pub fn creation_flags(&self) -> Vec<(NetworkCreationFlag, i32)> {
        if self.is_strongly_typed() && !self.target.always_strongly_typed() {
            vec![(
                NetworkCreationFlag::kSTRONGLY_TYPED,
                NetworkCreationFlag::kSTRONGLY_TYPED.value(self.target),
            )]
        } else {
            Vec::new()
        }
    }

    /// Checks the profiles against the network: every input with a dynamic dimension is
    /// covered by every profile, shapes agree with the fixed dimensions, names exist.
    pub fn validate(&self, net: &Network) -> Result<()> {
        self.effective_flags()?;
        let inputs: Vec<_> = net
            .inputs()
            .iter()
            .filter_map(|&t| net.tensor(t).ok())
            .collect();
        let dynamic: Vec<_> = inputs
            .iter()
            .filter(|t| t.dims.as_ref().is_some_and(|d| d.contains(&-1)))
            .collect();
        if !dynamic.is_empty() && self.profiles.is_empty() {
            return Err(Error::user(format!(
                "input '{}' has dynamic dimensions {}: give its shapes, e.g. --shapes {}:1x...,8x...,32x...",
                dynamic[0].name,
                fmt_dims(dynamic[0].dims.as_deref().unwrap_or(&[])),
                dynamic[0].name
            )));
        }
        for (pi, p) in self.profiles.iter().enumerate() {
            for s in &p.inputs {
                s.check()?;
                let t = inputs.iter().find(|t| t.name == s.input).ok_or_else(|| {
                    Error::user(format!(
                        "profile {pi}: '{}' is not a network input",
                        s.input
                    ))
                })?;
                let dims = t.dims.as_deref().unwrap_or(&[]);
                if dims.len() != s.min.len() {
                    return Err(Error::user(format!(
                        "profile {pi}: input '{}' has rank {}, the shapes have rank {}",
                        s.input,
                        dims.len(),
                        s.min.len()
                    )));
                }
                for (i, &d) in dims.iter().enumerate() {
                    if d != -1 && (s.min[i] != d || s.opt[i] != d || s.max[i] != d) {
                        return Err(Error::user(format!(
                            "profile {pi}: input '{}' dimension {i} is fixed at {d}, the shapes say {}/{}/{}",
                            s.input, s.min[i], s.opt[i], s.max[i]
                        )));
                    }
                }
            }
            for t in &dynamic {
                if !p.inputs.iter().any(|s| s.input == t.name) {
                    return Err(Error::user(format!(
                        "profile {pi} gives no shapes for dynamic input '{}'",
                        t.name
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig::new(TrtVersion::V11)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trt::network::DataType;

    #[test]
    fn flag_values_match_headers() {
        // 11.4 header values
        assert_eq!(BuilderFlag::kSPARSE_WEIGHTS.value(TrtVersion::V11), Some(7));
        assert_eq!(BuilderFlag::kINT8.value(TrtVersion::V11), None);
        assert_eq!(BuilderFlag::kSTRICT_NANS.value(TrtVersion::V11), Some(23));
        // 10.x header values
        assert_eq!(BuilderFlag::kINT8.value(TrtVersion::V10), Some(1));
        assert_eq!(BuilderFlag::kSPARSE_WEIGHTS.value(TrtVersion::V10), Some(7));
        assert_eq!(
            BuilderFlag::kVERSION_COMPATIBLE.value(TrtVersion::V10),
            Some(13)
        );
        assert_eq!(
            BuilderFlag::from_name("sparse_weights"),
            Some(BuilderFlag::kSPARSE_WEIGHTS)
        );
        assert_eq!(BuilderFlag::from_name("kINT8"), Some(BuilderFlag::kINT8));
        assert_eq!(
            NetworkCreationFlag::kSTRONGLY_TYPED.value(TrtVersion::V10),
            1
        );
    }

    #[test]
    fn version_specific_flags() {
        let c11 = BuildConfig::new(TrtVersion::V11);
        assert_eq!(
            c11.effective_flags().unwrap(),
            vec![(BuilderFlag::kSPARSE_WEIGHTS, 7)]
        );
        assert!(c11.creation_flags().is_empty());
        let c10 = BuildConfig::new(TrtVersion::parse("10.8").unwrap());
        assert_eq!(
            c10.effective_flags().unwrap(),
            vec![(BuilderFlag::kSPARSE_WEIGHTS, 7), (BuilderFlag::kINT8, 1)]
        );
        let mut c10s = c10.clone();
        c10s.strongly_typed = true;
        assert_eq!(
            c10s.effective_flags().unwrap(),
            vec![(BuilderFlag::kSPARSE_WEIGHTS, 7)]
        );
        assert_eq!(
            c10s.creation_flags(),
            vec![(NetworkCreationFlag::kSTRONGLY_TYPED, 1)]
        );
        let mut bad = c11.clone();
        bad.flags.push(BuilderFlag::kINT8);
        assert!(bad.effective_flags().is_err());
        assert!(TrtVersion::parse("9").is_err());
        assert!(TrtVersion::parse("11.x").is_err());
        assert_eq!(
            TrtVersion::parse("11.4.0").unwrap(),
            TrtVersion {
                major: 11,
                minor: 4
            }
        );
        assert_eq!(
            TrtVersion::from_header_version(110400),
            TrtVersion {
                major: 11,
                minor: 4
            }
        );
    }

    #[test]
    fn profile_syntax() {
        let p = ProfileShapes::parse("input:1x3x224x224").unwrap();
        assert_eq!(p.min, vec![1, 3, 224, 224]);
        assert_eq!(p.min, p.max);
        let p = ProfileShapes::parse("in:put:1x3x4x4,8x3x4x4,32x3x4x4").unwrap();
        assert_eq!(p.input, "in:put");
        assert_eq!((p.min[0], p.opt[0], p.max[0]), (1, 8, 32));
        assert_eq!(p.to_string(), "in:put:1x3x4x4,8x3x4x4,32x3x4x4");
        for bad in [
            "input",
            ":1x3",
            "x:1x3,2x3",
            "x:8x3,1x3,2x3",
            "x:0x3",
            "x:1x3,1x3x1,1x3",
            "x:1xa",
        ] {
            assert!(ProfileShapes::parse(bad).is_err(), "{bad}");
        }
        let prof = OptimizationProfile::parse("a:1x2;b:3x4,5x4,6x4").unwrap();
        assert_eq!(prof.inputs.len(), 2);
        assert!(OptimizationProfile::parse("a:1x2;a:1x2").is_err());
    }

    #[test]
    fn profiles_checked_against_network() {
        let mut n = Network::new("n");
        n.add_input("x", DataType::Float, &[-1, 3, 8, 8]).unwrap();
        let mut c = BuildConfig::default();
        assert!(c.validate(&n).unwrap_err().to_string().contains("dynamic"));
        c.profiles
            .push(OptimizationProfile::parse("x:1x3x8x8,4x3x8x8,8x3x8x8").unwrap());
        c.validate(&n).unwrap();
        c.profiles
            .push(OptimizationProfile::parse("x:1x3x9x8").unwrap());
        assert!(c
            .validate(&n)
            .unwrap_err()
            .to_string()
            .contains("fixed at 8"));
        c.profiles.pop();
        c.profiles
            .push(OptimizationProfile::parse("y:1x3x8x8").unwrap());
        assert!(c.validate(&n).is_err());
    }
}

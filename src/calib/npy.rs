//! A small reader (and writer, for f32) of NumPy `.npy` arrays and `.npz` archives.
//!
//! Supported: format versions 1.0, 2.0 and 3.0; C order; little-endian (or byte-order free)
//! `f4`, `f8`, `i8`, `i4`, `u1`. Everything is converted to `f32` on reading.
//!
//! Arrays are not loaded whole: an [`NpyArray`] knows where its data lies in a file and reads
//! one row (one index of the first axis) at a time. Entries of an `.npz` stored without
//! compression (`np.savez`) are read in place; compressed ones (`np.savez_compressed`) are
//! inflated once into an anonymous temporary file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result, ResultExt};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `<i8`
    I64,
    /// `<i4`
    I32,
    /// `|u1`
    U8,
    /// `|b1` (masks)
    Bool,
    /// `<f2`
    F16,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::U8 | Dtype::Bool => 1,
            Dtype::F16 => 2,
        }
    }

    /// NumPy's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::F16 => "float16",
        }
    }

    fn from_descr(d: &str) -> Result<Dtype> {
        let (order, kind) = if d.len() >= 2 && matches!(d.as_bytes()[0], b'<' | b'>' | b'|' | b'=')
        {
            (d.as_bytes()[0], &d[1..])
        } else {
            (b'|', d)
        };
        let t = match kind {
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            "i8" => Dtype::I64,
            "i4" => Dtype::I32,
            "u1" => Dtype::U8,
            "b1" => Dtype::Bool,
            "f2" => Dtype::F16,
            _ => {
                return Err(Error::user(format!(
                    "unsupported dtype '{d}' (supported: float32, float64, float16, int64, int32, uint8, bool)"
                )))
            }
        };
        if order == b'>' && t.size() > 1 {
            return Err(Error::user(format!(
                "big-endian dtype '{d}' is not supported; save with arr.astype('<{kind}')"
            )));
        }
        if order == b'=' && cfg!(target_endian = "big") {
            return Err(Error::user(format!(
                "native-order dtype '{d}' on a big-endian host"
            )));
        }
        Ok(t)
    }

    /// Converts little-endian bytes to f32 values, appending to `out`.
    fn convert(self, bytes: &[u8], out: &mut Vec<f32>) {
        out.reserve(bytes.len() / self.size());
        match self {
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Dtype::F64 => out.extend(bytes.chunks_exact(8).map(|b| {
                // Unwrap: chunks_exact(8) yields 8-byte slices.
                f64::from_le_bytes(b.try_into().unwrap()) as f32
            })),
            Dtype::I64 => out.extend(bytes.chunks_exact(8).map(|b| {
                // Unwrap: chunks_exact(8) yields 8-byte slices.
                i64::from_le_bytes(b.try_into().unwrap()) as f32
            })),
            Dtype::I32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
            ),
            Dtype::U8 => out.extend(bytes.iter().map(|&b| b as f32)),
            Dtype::Bool => out.extend(bytes.iter().map(|&b| (b != 0) as u8 as f32)),
            Dtype::F16 => out.extend(bytes.chunks_exact(2).map(|b| crate::ir::tensor::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
        }
    }

    /// Integers of this type beyond 2^24 in magnitude: f32, which carries calibration
    /// samples, holds every integer up to there exactly and not all beyond.
    fn first_inexact(self, bytes: &[u8]) -> Option<i64> {
        const EXACT: i64 = 1 << 24;
        match self {
            // unsigned_abs: i64::MIN has no positive counterpart
            Dtype::I64 => bytes.chunks_exact(8).map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).find(|v| v.unsigned_abs() > EXACT as u64),
            Dtype::I32 => bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).find(|v| v.unsigned_abs() > EXACT as u64),
            _ => None,
        }
    }
}

/// The parsed header of an `.npy` stream.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (C order).
    pub shape: Vec<usize>,
    /// Bytes from the start of the stream to the first data byte.
    pub header_len: u64,
}

impl NpyHeader {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of data bytes.
    pub fn data_len(&self) -> u64 {
        self.numel() as u64 * self.dtype.size() as u64
    }
}

/// Reads the header from the start of an `.npy` stream, leaving the reader at the data.
pub fn read_header<R: Read>(r: &mut R) -> Result<NpyHeader> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| Error::user("not a .npy file (too short)"))?;
    if &pre[..6] != MAGIC {
        return Err(Error::user("not a .npy file (bad magic bytes)"));
    }
    let major = pre[6];
    let (len, pre_len) = match major {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| Error::user("truncated .npy header"))?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| Error::user("truncated .npy header"))?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => return Err(Error::user(format!("unsupported .npy format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(Error::user(format!(
            ".npy header of {len} bytes is implausibly long"
        )));
    }
    let mut h = vec![0u8; len];
    r.read_exact(&mut h)
        .map_err(|_| Error::user("truncated .npy header"))?;
    let text = String::from_utf8(h).map_err(|_| Error::user(".npy header is not text"))?;
    let (dtype, fortran, shape) = parse_dict(&text)?;
    if fortran {
        return Err(Error::user(
            "Fortran-order arrays are not supported; save np.ascontiguousarray(arr) instead",
        ));
    }
    // the data size must be representable: a header may declare any shape
    let bytes = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&b| b <= isize::MAX as u64);
    if bytes.is_none() {
        return Err(Error::user(format!(
            "shape {shape:?} of {} declares more data than can exist",
            dtype.name()
        )));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        header_len: (pre_len + len) as u64,
    })
}

/// The most bytes one compressed `.npz` member may inflate to (it is inflated into a temporary
/// file). Members stored without compression (`np.savez`) are read in place and have no cap.
pub const MAX_INFLATED_BYTES: u64 = 8 << 30;

/// Parses the header dict `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> Result<(Dtype, bool, Vec<usize>)> {
    let bad = |what: &str| Error::user(format!("malformed .npy header ({what}): {}", text.trim()));
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    if !p.eat(b'{') {
        return Err(bad("expected '{'"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.ws();
        if !p.eat(b':') {
            return Err(bad("expected ':'"));
        }
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string().ok_or_else(|| bad("descr must be a string"))?),
            "fortran_order" => {
                fortran = Some(if p.word("True") {
                    true
                } else if p.word("False") {
                    false
                } else {
                    return Err(bad("fortran_order must be True or False"));
                })
            }
            "shape" => {
                shape = Some(
                    p.tuple()
                        .ok_or_else(|| bad("shape must be a tuple of integers"))?,
                )
            }
            _ => return Err(bad(&format!("unexpected key '{key}'"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            return Err(bad("expected ',' or '}'"));
        }
    }
    let descr = descr.ok_or_else(|| bad("no 'descr'"))?;
    let dtype = Dtype::from_descr(&descr)?;
    Ok((
        dtype,
        fortran.unwrap_or(false),
        shape.ok_or_else(|| bad("no 'shape'"))?,
    ))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self, w: &str) -> bool {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Option<String> {
        let q = *self.s.get(self.i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let end = start + self.s[start..].iter().position(|&c| c == q)?;
        self.i = end + 1;
        String::from_utf8(self.s[start..end].to_vec()).ok()
    }
    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Some(v);
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            let n: usize = std::str::from_utf8(&self.s[start..self.i])
                .ok()?
                .parse()
                .ok()?;
            v.push(n);
            self.eat(b'L');
            self.ws();
            if !self.eat(b',') {
                self.ws();
                return if self.eat(b')') { Some(v) } else { None };
            }
        }
    }
}

/// An array whose data lies in a file, read one row (first-axis index) at a time.
#[derive(Debug)]
pub struct NpyArray {
    /// Element type in the file.
    pub dtype: Dtype,
    /// Full shape; `shape[0]` counts the rows.
    pub shape: Vec<usize>,
    file: Mutex<File>,
    data_offset: u64,
}

impl NpyArray {
    /// Opens an `.npy` file.
    pub fn open(path: &Path) -> Result<NpyArray> {
        let name = path.display().to_string();
        let mut f = File::open(path).ctx(name.clone())?;
        let h = read_header(&mut f).ctx(name.clone())?;
        let len = f.metadata().ctx(name.clone())?.len();
        if len < h.header_len + h.data_len() {
            return Err(Error::user(format!(
                "truncated: shape {:?} {} needs {} data bytes, the file has {}",
                h.shape,
                h.dtype.name(),
                h.data_len(),
                len.saturating_sub(h.header_len)
            ))
            .context(name));
        }
        Ok(NpyArray {
            dtype: h.dtype,
            shape: h.shape,
            file: Mutex::new(f),
            data_offset: h.header_len,
        })
    }

    /// Opens every `.npy` member of an `.npz` archive, named by the member path without `.npy`,
    /// in archive order.
    pub fn open_npz(path: &Path) -> Result<Vec<(String, NpyArray)>> {
        let name = path.display().to_string();
        let zerr = |e: zip::result::ZipError| {
            Error::user(format!("not a readable .npz (zip) archive: {e}"))
        };
        let f = File::open(path).ctx(name.clone())?;
        let mut zip = zip::ZipArchive::new(f).map_err(zerr).ctx(name.clone())?;
        let mut out = Vec::new();
        for idx in 0..zip.len() {
            let mut entry = zip.by_index(idx).map_err(zerr).ctx(name.clone())?;
            let member = entry.name().to_string();
            let Some(array_name) = member.strip_suffix(".npy") else {
                continue;
            };
            let array_name = array_name.to_string();
            let ctx = format!("{name}: member '{member}'");
            if entry.encrypted() {
                return Err(Error::user("encrypted members are not supported").context(ctx));
            }
            let stored = entry.compression() == zip::CompressionMethod::Stored;
            let data_start = entry.data_start();
            let h = read_header(&mut entry).ctx(ctx.clone())?;
            // a decompression bomb: the declared size is refused before inflating, and the
            // inflation below never reads past the declared size
            if !stored && h.data_len().max(entry.size()) > MAX_INFLATED_BYTES {
                return Err(Error::user(format!(
                    "compressed member declares {} bytes of data (shape {:?} {}), over the cap of {} bytes for \
                     inflating; store large arrays uncompressed (np.savez), which is read in place",
                    h.data_len().max(entry.size()),
                    h.shape,
                    h.dtype.name(),
                    MAX_INFLATED_BYTES
                ))
                .context(ctx));
            }
            if entry.size() < h.header_len + h.data_len() {
                return Err(Error::user(format!(
                    "truncated: shape {:?} {} needs {} data bytes, the member has {}",
                    h.shape,
                    h.dtype.name(),
                    h.data_len(),
                    entry.size().saturating_sub(h.header_len)
                ))
                .context(ctx));
            }
            let (file, data_offset) = if stored {
                (
                    File::open(path).ctx(name.clone())?,
                    data_start + h.header_len,
                )
            } else {
                let mut tmp = tempfile::tempfile().ctx("creating a temporary file")?;
                let copied = std::io::copy(&mut (&mut entry).take(h.data_len()), &mut tmp)
                    .map_err(|e| Error::user(format!("cannot inflate: {e}")))
                    .ctx(ctx.clone())?;
                if copied != h.data_len() {
                    return Err(Error::user("truncated compressed data").context(ctx));
                }
                (tmp, 0)
            };
            out.push((
                array_name,
                NpyArray {
                    dtype: h.dtype,
                    shape: h.shape,
                    file: Mutex::new(file),
                    data_offset,
                },
            ));
        }
        Ok(out)
    }

    /// Number of rows (`shape[0]`), 0 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Elements in one row.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// Reads rows `start..start + count` as f32.
    pub fn read_rows(&self, start: usize, count: usize) -> Result<Vec<f32>> {
        if start + count > self.rows() {
            return Err(Error::internal(format!(
                "rows {start}..{} out of range (array has {})",
                start + count,
                self.rows()
            )));
        }
        let row_bytes = self.row_len() * self.dtype.size();
        let mut buf = vec![0u8; row_bytes * count];
        {
            // A poisoned lock only means another reader panicked; the file handle is still fine.
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            f.seek(SeekFrom::Start(
                self.data_offset + (start * row_bytes) as u64,
            ))?;
            f.read_exact(&mut buf)?;
        }
        if let Some(v) = self.dtype.first_inexact(&buf) {
            return Err(Error::user(format!(
                "{} array holds {v}: integer samples are carried exactly up to 16777216 (2^24) in magnitude",
                self.dtype.name()
            )));
        }
        let mut out = Vec::with_capacity(self.row_len() * count);
        self.dtype.convert(&buf, &mut out);
        Ok(out)
    }

    /// Reads the whole array as f32.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        self.read_rows(0, self.rows())
    }
}

/// Writes a little-endian f32 C-order `.npy` file (format 1.0).
pub fn write_npy_f32<W: Write>(w: &mut W, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::internal(format!(
            "shape {shape:?} holds {n} values, got {}",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad so that the data starts at a multiple of 64 bytes; the header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let mut bytes = Vec::with_capacity(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/calib-mini")
            .join(name)
    }

    #[test]
    fn header_dicts() {
        let (d, f, s) =
            parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }").unwrap();
        assert_eq!((d, f, s), (Dtype::F32, false, vec![3, 4]));
        let (_, _, s) =
            parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (7,), }").unwrap();
        assert_eq!(s, vec![7]);
        let (_, _, s) =
            parse_dict("{\"shape\": (), \"descr\": \"<f8\", \"fortran_order\": True}").unwrap();
        assert!(s.is_empty());
        assert!(parse_dict("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }").is_err());
        assert!(parse_dict("{'descr': '<f4', 'shape': (1,2 }").is_err());
        assert!(parse_dict("{'descr': '<f4', 'extra': 1, 'shape': (1,)}").is_err());
        assert!(parse_dict("descr").is_err());
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy_f32(&mut File::create(&p).unwrap(), &[2, 3, 4], &data).unwrap();
        let a = NpyArray::open(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.read_all().unwrap(), data);
        assert_eq!(a.read_rows(1, 1).unwrap(), data[12..].to_vec());
        assert!(a.read_rows(1, 2).is_err());
        // Data is 64-byte aligned like numpy's writer does it.
        assert_eq!(std::fs::metadata(&p).unwrap().len() % 64, (24 * 4) % 64);
    }

    #[test]
    fn numpy_written_files() {
        let a = NpyArray::open(&fixture("f64.npy")).unwrap();
        assert_eq!(a.dtype, Dtype::F64);
        assert_eq!(a.read_all().unwrap(), vec![-1.0, -0.6, -0.2, 0.2, 0.6, 1.0]);
        let a = NpyArray::open(&fixture("u8.npy")).unwrap();
        assert_eq!(a.read_rows(2, 1).unwrap(), vec![160.0, 180.0, 200.0, 220.0]);
        let a = NpyArray::open(&fixture("i64.npy")).unwrap();
        assert_eq!(a.read_all().unwrap(), vec![1.0, -2.0, 3.0, -4.0]);
        let e = NpyArray::open(&fixture("fortran.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fortran.npy") && e.contains("Fortran"), "{e}");
        let e = NpyArray::open(&fixture("be.npy")).unwrap_err().to_string();
        assert!(e.contains("big-endian"), "{e}");
        let e = NpyArray::open(&fixture("make.py")).unwrap_err().to_string();
        assert!(e.contains("make.py") && e.contains("not a .npy"), "{e}");
    }

    #[test]
    fn npz_stored_and_compressed() {
        for f in ["arrays.npz", "arrays_z.npz"] {
            let arrays = NpyArray::open_npz(&fixture(f)).unwrap();
            let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["x", "y"], "{f}");
            let x = &arrays[0].1;
            assert_eq!(x.shape, vec![5, 3, 4, 4]);
            let row = x.read_rows(3, 1).unwrap();
            let expect: Vec<f32> = (0..48).map(|i| (3 * 48 + i) as f32 / 7.0 - 3.0).collect();
            assert_eq!(row, expect, "{f}");
            assert_eq!(
                arrays[1].1.read_all().unwrap(),
                vec![-4.0, -1.0, 2.0, 5.0, 8.0]
            );
        }
        let e = NpyArray::open_npz(&fixture("u8.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zip"), "{e}");
    }

    #[test]
    fn truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        let mut buf = Vec::new();
        write_npy_f32(&mut buf, &[4, 4], &[1.0; 16]).unwrap();
        std::fs::write(&p, &buf[..buf.len() - 5]).unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
    }
}

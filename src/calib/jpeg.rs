//! JPEG decoding that gives the same pixels as Pillow.
//!
//! Pillow decodes JPEG with libjpeg-turbo. This module uses the same decoder: the libjpeg API
//! of MozJPEG (a libjpeg-turbo fork whose decoder is libjpeg-turbo's), compiled from the C
//! sources vendored in the `mozjpeg-sys` crate by its build script with the `cc` crate, without
//! SIMD (so no `nasm` is needed). Pillow's libjpeg-turbo runs its SIMD routines; their results
//! equal the C code's for the methods used here (measured: bit-identical pixels on about 2,900
//! files, see [`crate::calib::data`]). It is configured as Pillow's `Image.open(path)` leaves it:
//! accurate integer IDCT (`JDCT_ISLOW`), "fancy" (triangle-filter) chroma upsampling, block
//! smoothing on (it only matters for incomplete progressive files), full size, colour
//! conversion by libjpeg to RGB (3 components), grey (1) or CMYK (4). Then, as Pillow's
//! `convert("RGB")`:
//!
//! * grey is replicated to the three channels;
//! * CMYK is read with Adobe's inverted polarity (Pillow's rawmode `CMYK;I`, which it assumes
//!   for every 4-component JPEG) and converted with Pillow's formula: with `K = 255 - k` etc.
//!   for the stored samples, `R = (255 - K) - round(C * (255 - K) / 255)` (rounded as
//!   `(t + (t >> 8)) >> 8` with `t = C * (255 - K) + 128`), likewise G from M and B from Y.
//!
//! Like Pillow, corrupt-data warnings are ignored, and a file that ends before its end-of-image
//! marker is an error (Pillow: "image file is truncated"). Images over Pillow's
//! decompression-bomb limit (2 x 89,478,485 pixels) are refused. Bit depths other than 8 and
//! component counts other than 1, 3 and 4 are errors, as in Pillow. Arithmetic-coded files
//! decode (as with libjpeg-turbo).
//!
//! libjpeg reports fatal errors through a callback that must not return; here it unwinds
//! (`std::panic::resume_unwind`, which runs no panic hook and prints nothing) through the C
//! frames, which `mozjpeg-sys` compiles with `-fexceptions` for that purpose, back to a
//! `catch_unwind` that turns it into an [`Error`]. This needs `panic = "unwind"`, Rust's
//! default (with `panic = "abort"` a corrupt file would abort the process).

use std::any::Any;
use std::os::raw::{c_int, c_ulong, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg_sys as ffi;

use crate::error::{Error, Result};

/// Pillow's `Image.MAX_IMAGE_PIXELS * 2`: above this Pillow raises `DecompressionBombError`.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// True when `bytes` start like a JPEG file (SOI marker followed by another marker), the test
/// Pillow uses to pick its JPEG plugin.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// A decoded image: `height` rows of `width` RGB pixels, 8 bits per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, row-major, R G B.
    pub data: Vec<u8>,
}

/// Reads the header only: `(width, height)`. Errors as [`decode_rgb`] would for a bad header.
pub fn read_size(bytes: &[u8]) -> Result<(usize, usize)> {
    with_decompressor(bytes, |cinfo| {
        Ok((cinfo.image_width as usize, cinfo.image_height as usize))
    })
}

/// Decodes a JPEG file held in memory to 8-bit RGB exactly as Pillow's
/// `Image.open(f).convert("RGB")` does (see the module docs).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage> {
    with_decompressor(bytes, |cinfo| {
        let (width, height) = (cinfo.image_width as usize, cinfo.image_height as usize);
        if (width as u64) * (height as u64) > MAX_PIXELS {
            return Err(Error::user(format!(
                "image of {width}x{height} pixels exceeds the limit of {MAX_PIXELS} pixels (Pillow's decompression-bomb limit)"
            )));
        }
        let (out_space, comps) = match cinfo.num_components {
            1 => (ffi::J_COLOR_SPACE::JCS_GRAYSCALE, 1),
            3 => (ffi::J_COLOR_SPACE::JCS_RGB, 3),
            4 => (ffi::J_COLOR_SPACE::JCS_CMYK, 4),
            n => {
                return Err(Error::user(format!(
                    "cannot handle JPEG with {n} components"
                )))
            }
        };
        cinfo.out_color_space = out_space;
        cinfo.dct_method = ffi::J_DCT_METHOD::JDCT_ISLOW;
        cinfo.do_fancy_upsampling = 1;
        cinfo.do_block_smoothing = 1;
        cinfo.scale_num = 1;
        cinfo.scale_denom = 1;
        cinfo.raw_data_out = 0;
        cinfo.buffered_image = 0;
        cinfo.quantize_colors = 0;
        // SAFETY: the header was read and the output parameters set.
        unsafe { ffi::jpeg_start_decompress(cinfo) };
        if cinfo.output_width as usize != width
            || cinfo.output_height as usize != height
            || cinfo.output_components != comps
        {
            return Err(Error::internal(format!(
                "libjpeg output {}x{}x{} for a {width}x{height} image with {comps} components",
                cinfo.output_width, cinfo.output_height, cinfo.output_components
            )));
        }
        let stride = width * comps as usize;
        let mut raw = Vec::new();
        raw.try_reserve_exact(stride * height)
            .map_err(|_| Error::user(format!("out of memory for a {width}x{height} image")))?;
        raw.resize(stride * height, 0u8);
        let mut rows: Vec<*mut u8> = raw
            .chunks_exact_mut(stride)
            .map(|r| r.as_mut_ptr())
            .collect();
        while (cinfo.output_scanline as usize) < height {
            let at = cinfo.output_scanline as usize;
            // SAFETY: `rows[at..]` point to `height - at` rows of `stride` bytes each.
            let n = unsafe {
                ffi::jpeg_read_scanlines(
                    cinfo,
                    rows[at..].as_mut_ptr(),
                    (height - at) as ffi::JDIMENSION,
                )
            };
            if n == 0 {
                // Only a suspending data source returns no rows; the memory source never does.
                return Err(Error::internal("libjpeg returned no scanline"));
            }
        }
        // SAFETY: all scanlines were read.
        unsafe { ffi::jpeg_finish_decompress(cinfo) };
        if client_state(cinfo).premature_end {
            // The data ended before the end-of-image marker (libjpeg then pretends to see one,
            // filling missing rows with grey); Pillow refuses such files.
            return Err(Error::user("image file is truncated"));
        }
        let data = match comps {
            3 => raw,
            1 => raw.iter().flat_map(|&v| [v, v, v]).collect(),
            _ => raw
                .chunks_exact(4)
                .flat_map(|p| cmyk_to_rgb([p[0], p[1], p[2], p[3]]))
                .collect(),
        };
        Ok(RgbImage {
            width,
            height,
            data,
        })
    })
}

/// Pillow's CMYK → RGB for samples as libjpeg returns them from an Adobe (inverted) file.
fn cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    // Pillow's rawmode "CMYK;I" inverts every sample; then R = nk - C * nk / 255 (rounded)
    // with nk = 255 - K, which is the stored k.
    let nk = stored[3] as u32;
    let one = |s: u8| {
        let c = 255 - s as u32;
        let t = c * nk + 128;
        let prod = ((t >> 8) + t) >> 8;
        (nk - prod) as u8
    };
    [one(stored[0]), one(stored[1]), one(stored[2])]
}

/// Per-decoder state reachable from libjpeg's callbacks through `client_data`.
#[derive(Default)]
struct ClientState {
    /// libjpeg warned that the data ended early (`JWRN_JPEG_EOF`).
    premature_end: bool,
}

fn client_state(cinfo: &ffi::jpeg_decompress_struct) -> &ClientState {
    // SAFETY: `with_decompressor` sets `client_data` to a `ClientState` that outlives `cinfo`.
    unsafe { &*(cinfo.common.client_data as *const ClientState) }
}

/// The payload unwound from [`error_exit`]: libjpeg's message.
struct JpegFailure(String);

fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    let mut buf = [0u8; 80];
    // The binding declares the output buffer as `&[u8; 80]`; calling through that type would
    // let the compiler assume the buffer is not written. Call through a raw-pointer signature.
    type FormatRaw = unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8);
    // SAFETY: `err` is the error manager set up by `with_decompressor`. Both signatures pass
    // two pointers, and `format_message` writes a NUL-terminated string of at most 80 bytes
    // (JMSG_LENGTH) into the buffer.
    unsafe {
        if let Some(format) = (*cinfo.err).format_message {
            let format: FormatRaw = std::mem::transmute(format);
            format(cinfo, buf.as_mut_ptr());
        }
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let msg = message(cinfo);
    resume_unwind(Box::new(JpegFailure(msg)));
}

unsafe extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    // Trace messages (level >= 0) are dropped; warnings (-1) are counted and, except for the
    // premature end of data, ignored as Pillow ignores them.
    if level < 0 {
        let err = &mut *cinfo.err;
        err.num_warnings += 1;
        if err.msg_code == ffi::JWRN_JPEG_EOF as c_int {
            let state = cinfo.client_data as *mut ClientState;
            (*state).premature_end = true;
        }
    }
}

unsafe extern "C-unwind" fn output_message(_cinfo: &mut ffi::jpeg_common_struct) {}

/// Sets up a decompressor over `bytes`, reads the header and runs `body`; turns libjpeg's
/// fatal errors into [`Error`]s and always destroys the decompressor.
fn with_decompressor<T>(
    bytes: &[u8],
    body: impl FnOnce(&mut ffi::jpeg_decompress_struct) -> Result<T>,
) -> Result<T> {
    let Ok(len) = c_ulong::try_from(bytes.len()) else {
        return Err(Error::user("JPEG file too large"));
    };
    let mut state = ClientState::default();
    // SAFETY: all-zero is the documented initial state of both structs (they are plain C
    // structs of integers, pointers and nullable function pointers).
    let mut err: Box<ffi::jpeg_error_mgr> = Box::new(unsafe { std::mem::zeroed() });
    let mut cinfo: Box<ffi::jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
    let mut created = false;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<T> {
        // SAFETY: standard libjpeg setup; `err`, `state` and `bytes` outlive `cinfo`'s use
        // (the decompressor is destroyed below before they are dropped).
        unsafe {
            cinfo.common.err = ffi::jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            err.emit_message = Some(emit_message);
            err.output_message = Some(output_message);
            cinfo.common.client_data = &mut state as *mut ClientState as *mut c_void;
            ffi::jpeg_create_decompress(&mut *cinfo);
            created = true;
            ffi::jpeg_mem_src(&mut cinfo, bytes.as_ptr(), len);
            let r = ffi::jpeg_read_header(&mut cinfo, 1);
            if r != 1 {
                return Err(Error::user("no image in JPEG data"));
            }
        }
        body(&mut cinfo)
    }));
    if created {
        // SAFETY: valid after `jpeg_create_decompress`, also after an error. Destroying frees
        // libjpeg's memory pools and cannot fail.
        unsafe { ffi::jpeg_destroy_decompress(&mut cinfo) };
    }
    match outcome {
        Ok(r) => r,
        Err(payload) => Err(Error::user(format!(
            "invalid JPEG data: {}",
            failure_text(payload)
        ))),
    }
}

fn failure_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<JpegFailure>() {
        Ok(f) => f.0,
        // A real panic (a bug), not a libjpeg error: let it continue.
        Err(other) => resume_unwind(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::npy::NpyArray;
    use std::path::{Path, PathBuf};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/calib-mini")
            .join(name)
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(fixture(name)).unwrap()
    }

    /// Every JPEG variant of the fixtures (4:4:4, 4:2:2 and 4:2:0, baseline and progressive,
    /// grey, CMYK; odd sizes) decodes to Pillow's pixels exactly.
    #[test]
    fn pixels_match_pillow_exactly() {
        let refs = NpyArray::open_npz(&fixture("ref_jpeg.npz")).unwrap();
        assert_eq!(refs.len(), 6);
        for (name, r) in refs {
            let img = decode_rgb(&read(&format!("jpeg/{name}.jpg"))).unwrap();
            assert_eq!(r.shape, vec![img.height, img.width, 3], "{name}");
            let want: Vec<u8> = r.read_all().unwrap().iter().map(|&v| v as u8).collect();
            let differing = img.data.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing,
                0,
                "{name}: {differing} of {} values differ from Pillow",
                want.len()
            );
            assert_eq!(
                read_size(&read(&format!("jpeg/{name}.jpg"))).unwrap(),
                (img.width, img.height)
            );
        }
    }

    #[test]
    fn sniffing() {
        assert!(is_jpeg(&read("img/a.jpg")));
        assert!(!is_jpeg(&read("img/d.png")));
        assert!(!is_jpeg(b"\xff\xd8"));
    }

    #[test]
    fn bad_data_gives_errors() {
        for (bytes, want) in [
            (&b""[..], "Empty input file"),
            (
                &b"\xff\xd8\xff\xe0 definitely not a jpeg"[..],
                "invalid JPEG data",
            ),
            (&b"GIF89a"[..], "Not a JPEG file"),
        ] {
            let e = decode_rgb(bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(read_size(bytes).is_err());
        }
        // Cut anywhere, baseline or progressive: always an error (Pillow: "image file is
        // truncated"), never a panic or grey-filled pixels.
        for name in ["jpeg/s444.jpg", "jpeg/s420p.jpg"] {
            let full = read(name);
            for cut in (0..full.len())
                .step_by(7)
                .chain([full.len() - 2, full.len() - 1])
            {
                assert!(decode_rgb(&full[..cut]).is_err(), "{name} cut at {cut}");
            }
            let cut = full.len() / 2;
            let e = decode_rgb(&full[..cut]).unwrap_err().to_string();
            assert!(
                e.contains("truncated") || e.contains("invalid JPEG data"),
                "{e}"
            );
            // Bytes after the end marker are ignored, as by Pillow.
            let mut padded = full.clone();
            padded.extend_from_slice(b"trailing junk");
            assert_eq!(decode_rgb(&padded).unwrap(), decode_rgb(&full).unwrap());
        }
        // Damaged bytes anywhere: an error or some pixels, never a panic.
        let full = read("jpeg/s422p.jpg");
        for at in 0..full.len() {
            for v in [0x00, 0xFF, full[at] ^ 0x5A] {
                let mut b = full.clone();
                b[at] = v;
                if let Ok(img) = decode_rgb(&b) {
                    assert_eq!(img.data.len(), img.width * img.height * 3);
                }
            }
        }
    }

    #[test]
    fn size_limit() {
        // Patch the frame header (SOF0) of a fixture to 60000 x 60000 pixels.
        let mut b = read("jpeg/s444.jpg");
        let sof = b.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        b[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        assert_eq!(read_size(&b).unwrap(), (60000, 60000));
        let e = decode_rgb(&b).unwrap_err().to_string();
        assert!(e.contains("exceeds the limit"), "{e}");
    }
}

//! A reader for MATLAB level-5 MAT files, enough for the SVHN cropped-digit release
//! (`train_32x32.mat`, `test_32x32.mat`): numeric arrays, compressed (miCOMPRESSED) or not, in
//! either byte order.

use std::io::Read;
use std::path::Path;

use super::DataError;
use super::cifar::RawSplit;
use super::error::read_file;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// One numeric MATLAB variable: its name, dimensions (column-major) and real part, kept in its
/// storage type.
#[derive(Debug)]
pub struct MatArray {
    pub name: String,
    pub dims: Vec<usize>,
    pub class: u8,
    pub data_type: u32,
    pub data: Vec<u8>,
    pub little_endian: bool,
}

impl MatArray {
    fn elem_size(&self) -> usize {
        elem_size(self.data_type).unwrap_or(1)
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.elem_size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f64, whatever the storage type.
    pub fn get_f64(&self, i: usize) -> f64 {
        let s = self.elem_size();
        let b = &self.data[i * s..(i + 1) * s];
        let le = self.little_endian;
        macro_rules! num {
            ($t:ty) => {{
                let a = b.try_into().unwrap();
                (if le {
                    <$t>::from_le_bytes(a)
                } else {
                    <$t>::from_be_bytes(a)
                }) as f64
            }};
        }
        match self.data_type {
            MI_INT8 => b[0] as i8 as f64,
            MI_UINT8 => b[0] as f64,
            MI_INT16 => num!(i16),
            MI_UINT16 => num!(u16),
            MI_INT32 => num!(i32),
            MI_UINT32 => num!(u32),
            MI_SINGLE => num!(f32),
            MI_DOUBLE => num!(f64),
            MI_INT64 => num!(i64),
            MI_UINT64 => num!(u64),
            _ => f64::NAN,
        }
    }
}

fn elem_size(t: u32) -> Option<usize> {
    Some(match t {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    le: bool,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::format(self.path, format!("MAT file (byte {}): {msg}", self.pos))
    }

    fn u32(&mut self) -> Result<u32, DataError> {
        let b = self.take(4)?;
        let a = b.try_into().unwrap();
        Ok(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DataError> {
        let data: &'a [u8] = self.data;
        if n > data.len() - self.pos {
            return Err(self.err(format!(
                "truncated: element needs {n} bytes, {} left",
                data.len() - self.pos
            )));
        }
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Reads one data element: (type, payload). Handles the small-element format and the
    /// 8-byte alignment of normal elements (compressed elements are not padded).
    fn element(&mut self) -> Result<(u32, &'a [u8]), DataError> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            let (t, n) = (first & 0xFFFF, (first >> 16) as usize);
            if n > 4 {
                return Err(self.err(format!("small data element of {n} bytes")));
            }
            let b = self.take(4)?;
            return Ok((t, &b[..n]));
        }
        let n = self.u32()? as usize;
        let payload = self.take(n)?;
        if first != MI_COMPRESSED {
            let pad = (8 - n % 8) % 8;
            self.pos = (self.pos + pad).min(self.data.len());
        }
        Ok((first, payload))
    }
}

fn parse_matrix(path: &Path, payload: &[u8], le: bool) -> Result<MatArray, DataError> {
    let mut c = Cursor {
        path,
        data: payload,
        pos: 0,
        le,
    };
    let (t, flags) = c.element()?;
    if t != MI_UINT32 || flags.len() < 8 {
        return Err(c.err("array flags sub-element missing"));
    }
    let w = flags[..4].try_into().unwrap();
    let flags0 = if le {
        u32::from_le_bytes(w)
    } else {
        u32::from_be_bytes(w)
    };
    let class = (flags0 & 0xFF) as u8;
    let complex = flags0 & 0x0800 != 0;
    let (t, dims_b) = c.element()?;
    if t != MI_INT32 || !dims_b.len().is_multiple_of(4) {
        return Err(c.err("dimensions sub-element missing"));
    }
    let dims = dims_b
        .chunks_exact(4)
        .map(|d| {
            let a = d.try_into().unwrap();
            let v = if le {
                i32::from_le_bytes(a)
            } else {
                i32::from_be_bytes(a)
            };
            usize::try_from(v).map_err(|_| c.err(format!("negative dimension {v}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (t, name_b) = c.element()?;
    if t != MI_INT8 && t != MI_UINT8 {
        return Err(c.err("array name sub-element missing"));
    }
    let name = String::from_utf8_lossy(name_b).into_owned();
    if !(6..=15).contains(&class) {
        // Not a numeric array (cell, struct, char, sparse, ...): keep only the name.
        return Ok(MatArray {
            name,
            dims,
            class,
            data_type: 0,
            data: Vec::new(),
            little_endian: le,
        });
    }
    if complex {
        return Err(c.err(format!("variable '{name}' is complex")));
    }
    let (t, data) = c.element()?;
    let size = elem_size(t)
        .ok_or_else(|| c.err(format!("variable '{name}': unsupported data type {t}")))?;
    // Dimensions come from the file: a product that overflows cannot match the data.
    let expected = dims
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n == data.len());
    if expected.is_none() {
        return Err(c.err(format!(
            "variable '{name}' of dims {dims:?} holds {} bytes of {size}-byte elements, \
             which does not match its dimensions",
            data.len(),
        )));
    }
    Ok(MatArray {
        name,
        dims,
        class,
        data_type: t,
        data: data.to_vec(),
        little_endian: le,
    })
}

/// All numeric variables of a level-5 MAT file.
pub fn read_mat(path: &Path) -> Result<Vec<MatArray>, DataError> {
    let bytes = read_file(path)?;
    if bytes.len() < 128 {
        return Err(DataError::format(
            path,
            format!("{} bytes is too short for a MAT file header", bytes.len()),
        ));
    }
    let le = match &bytes[126..128] {
        b"IM" => true,
        b"MI" => false,
        _ => {
            return Err(DataError::format(
                path,
                "not a MATLAB level-5 MAT file (no endian indicator at byte 126)",
            ));
        }
    };
    let version = if le {
        u16::from_le_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_be_bytes([bytes[124], bytes[125]])
    };
    if version != 0x0100 {
        return Err(DataError::format(
            path,
            format!(
                "MAT version 0x{version:04x} is not supported (v7.3/HDF5 files are not read; \
                 save with -v7)"
            ),
        ));
    }
    let mut c = Cursor {
        path,
        data: &bytes,
        pos: 128,
        le,
    };
    let mut out = Vec::new();
    while !c.at_end() {
        let (t, payload) = c.element()?;
        match t {
            MI_MATRIX => out.push(parse_matrix(path, payload, le)?),
            MI_COMPRESSED => {
                let corrupt = |e: std::io::Error| c.err(format!("corrupt compressed element: {e}"));
                let mut z = flate2::read::ZlibDecoder::new(payload);
                let mut head = [0u8; 8];
                z.read_exact(&mut head).map_err(corrupt)?;
                let word = |b: &[u8]| {
                    let a = b.try_into().unwrap();
                    if le {
                        u32::from_le_bytes(a)
                    } else {
                        u32::from_be_bytes(a)
                    }
                };
                // One element per compressed block: inflate no more than its header states,
                // so a decompression bomb stops there instead of at the end of the stream.
                let stated = if word(&head[..4]) >> 16 != 0 {
                    0
                } else {
                    word(&head[4..])
                };
                let mut inflated = head.to_vec();
                z.take(u64::from(stated))
                    .read_to_end(&mut inflated)
                    .map_err(corrupt)?;
                let mut inner = Cursor {
                    path,
                    data: &inflated,
                    pos: 0,
                    le,
                };
                let (it, ip) = inner.element()?;
                if it == MI_MATRIX {
                    out.push(parse_matrix(path, ip, le)?);
                }
            }
            _ => {} // other top-level elements are ignored
        }
    }
    Ok(out)
}

/// Reads an SVHN cropped-digits file: `X` uint8 32×32×3×N, `y` N×1 with labels 1..=10
/// (10 meaning digit 0). Returns CHW images and labels 0..=9.
pub fn read_svhn(path: &Path, out: &mut RawSplit) -> Result<(), DataError> {
    let vars = read_mat(path)?;
    let get = |name: &str| {
        let v = vars
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| DataError::format(path, format!("MAT file has no variable '{name}'")))?;
        // Cells, structs, chars etc. are listed by `read_mat` without their data.
        if v.data_type == 0 {
            return Err(DataError::format(
                path,
                format!(
                    "variable '{name}' is not a numeric array (MATLAB class {})",
                    v.class
                ),
            ));
        }
        Ok(v)
    };
    let x = get("X")?;
    let y = get("y")?;
    if x.dims.len() != 4 || x.dims[0] != 32 || x.dims[1] != 32 || x.dims[2] != 3 {
        return Err(DataError::format(
            path,
            format!("variable 'X' has dims {:?}, expected 32×32×3×N", x.dims),
        ));
    }
    let n = x.dims[3];
    if y.dims.iter().product::<usize>() != n || y.dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(DataError::format(
            path,
            format!(
                "variable 'y' has dims {:?}, expected {n}×1 to match X",
                y.dims
            ),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.get_f64(i);
        if v.fract() != 0.0 || !(0.0..=10.0).contains(&v) {
            return Err(DataError::record(
                path,
                i,
                format!("label {v} is not an integer in 0..=10"),
            ));
        }
        labels.push(v as usize % 10);
    }
    let plane = 32 * 32;
    out.images.reserve(n * 3 * plane);
    let uint8 = x.data_type == MI_UINT8;
    for i in 0..n {
        let base = i * 3 * plane;
        for ch in 0..3 {
            for r in 0..32 {
                for col in 0..32 {
                    // Column-major X(r, col, ch, i).
                    let k = base + ch * plane + col * 32 + r;
                    let v = if uint8 {
                        x.data[k]
                    } else {
                        let f = x.get_f64(k);
                        if f.fract() != 0.0 || !(0.0..=255.0).contains(&f) {
                            return Err(DataError::record(
                                path,
                                i,
                                format!("pixel value {f} is not a byte"),
                            ));
                        }
                        f as u8
                    };
                    out.images.push(v);
                }
            }
        }
        // The pushes above are in (ch, r, col) order: CHW.
    }
    out.labels.extend(labels);
    out.files.push(path.to_path_buf());
    Ok(())
}

//! A minimal, safe reader for the Python pickles of the CIFAR "python version" releases.
//!
//! It runs the pickle virtual machine for the opcodes of protocols 2–4 that these files use
//! (dicts, lists, tuples, ints, floats, byte/unicode strings, memo) and rebuilds numpy arrays
//! pickled through `numpy.core.multiarray._reconstruct` + `ndarray.__setstate__`. The only
//! callables it knows are `_codecs.encode` (Python 3's protocol-2 encoding of `bytes`),
//! `numpy.(_)core.multiarray._reconstruct`, `numpy.ndarray` and `numpy.dtype`; any other global
//! or opcode is rejected with an error naming it. Nothing is ever executed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::DataError;

/// A numpy array as pickled by numpy (uint8 only: that is all the CIFAR files hold).
#[derive(Debug, Default)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub fortran_order: bool,
    pub data: Rc<Vec<u8>>,
    pub built: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    CodecsEncode,
    Reconstruct,
    NdArrayType,
    DtypeType,
}

/// A pickled value.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Rc<Vec<u8>>),
    Str(Rc<String>),
    List(Rc<RefCell<Vec<Value>>>),
    Tuple(Rc<Vec<Value>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Dtype(Rc<String>),
    Array(Rc<RefCell<NdArray>>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "numpy.dtype",
            Value::Array(_) => "numpy.ndarray",
        }
    }

    /// The text of a `str` or (latin-1) `bytes` value.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.to_string()),
            Value::Bytes(b) => Some(b.iter().map(|&c| c as char).collect()),
            _ => None,
        }
    }

    /// Looks `key` up in a dict whose keys are `str` or `bytes`.
    pub fn dict_get(&self, key: &str) -> Option<Value> {
        let Value::Dict(d) = self else { return None };
        d.borrow()
            .iter()
            .find(|(k, _)| k.as_text().as_deref() == Some(key))
            .map(|(_, v)| v.clone())
    }

    /// The elements of a list or tuple.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::List(l) => Some(l.borrow().clone()),
            Value::Tuple(t) => Some(t.as_ref().clone()),
            _ => None,
        }
    }
}

type R<T> = Result<T, DataError>;

/// The most dicts, lists and tuples one pickle may build. The CIFAR files build about ten; the
/// cap bounds how deeply values can nest, and so the recursion that dropping them takes, however
/// the opcodes are arranged (a nest of 100k one-element tuples costs 100k bytes of file).
const MAX_CONTAINERS: usize = 1000;

struct Machine<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    containers: usize,
}

/// Parses one pickle from `data`; `path` is used in error messages.
pub fn load(data: &[u8], path: &Path) -> Result<Value, DataError> {
    let mut m = Machine {
        path,
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        containers: 0,
    };
    m.run()
}

impl<'a> Machine<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> DataError {
        DataError::format(self.path, format!("pickle (byte {}): {msg}", self.pos))
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let data: &'a [u8] = self.data;
        if n > data.len() - self.pos {
            return Err(self.err(format!(
                "truncated: needs {n} more bytes, {} left",
                data.len() - self.pos
            )));
        }
        let s = &data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len64(&mut self) -> R<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err("length too large"))
    }

    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&c| c == b'\n') else {
            return Err(self.err("truncated: unterminated line"));
        };
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    /// Counts one new dict, list or tuple against [`MAX_CONTAINERS`].
    fn container(&mut self) -> R<()> {
        self.containers += 1;
        if self.containers > MAX_CONTAINERS {
            return Err(self.err(format!(
                "more than {MAX_CONTAINERS} dicts, lists and tuples: not a CIFAR pickle"
            )));
        }
        Ok(())
    }

    fn pop(&mut self) -> R<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("stack underflow (pop past a mark)"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> R<&Value> {
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("MARK expected on the stack"))?;
        Ok(self.stack.split_off(m))
    }

    fn utf8(&self, b: &[u8]) -> R<Value> {
        String::from_utf8(b.to_vec())
            .map(|s| Value::Str(Rc::new(s)))
            .map_err(|_| self.err("invalid UTF-8 in a unicode string"))
    }

    fn global(&self, module: &str, name: &str) -> R<Value> {
        let g = match (module, name) {
            ("_codecs", "encode") => Global::CodecsEncode,
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy", "ndarray") => Global::NdArrayType,
            ("numpy", "dtype") => Global::DtypeType,
            _ => {
                return Err(self.err(format!(
                    "refusing unsupported global {module}.{name} \
                     (only numpy arrays, dicts, lists, strings and numbers are read)"
                )));
            }
        };
        Ok(Value::Global(g))
    }

    fn reduce(&self, func: Value, args: Value) -> R<Value> {
        let Value::Global(g) = func else {
            return Err(self.err(format!("REDUCE on a {}, not a known callable", func.kind())));
        };
        let Value::Tuple(args) = args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        match g {
            Global::CodecsEncode => {
                let (Some(Value::Str(s)), enc) = (args.first(), args.get(1)) else {
                    return Err(self.err("_codecs.encode expects (str, encoding)"));
                };
                let enc = enc.and_then(|e| e.as_text()).unwrap_or_default();
                if !matches!(enc.as_str(), "latin1" | "latin-1" | "iso-8859-1") {
                    return Err(self.err(format!("_codecs.encode: unsupported encoding {enc:?}")));
                }
                let mut out = Vec::with_capacity(s.len());
                for c in s.chars() {
                    let c = u32::from(c);
                    if c > 0xFF {
                        return Err(self.err("_codecs.encode: character outside latin-1"));
                    }
                    out.push(c as u8);
                }
                Ok(Value::Bytes(Rc::new(out)))
            }
            Global::Reconstruct => {
                if !matches!(args.first(), Some(Value::Global(Global::NdArrayType))) {
                    return Err(self.err("_reconstruct of something other than numpy.ndarray"));
                }
                Ok(Value::Array(Rc::new(RefCell::new(NdArray::default()))))
            }
            Global::DtypeType => match args.first().and_then(|v| v.as_text()) {
                Some(s) => Ok(Value::Dtype(Rc::new(s))),
                None => Err(self.err("numpy.dtype expects a type string")),
            },
            Global::NdArrayType => Err(self.err("calling numpy.ndarray directly is not supported")),
        }
    }

    fn build(&mut self) -> R<()> {
        let state = self.pop()?;
        let obj = self.top()?.clone();
        match obj {
            // The dtype state (version, byte order, ...) does not matter for uint8.
            Value::Dtype(_) => Ok(()),
            Value::Array(arr) => {
                let items = state
                    .items()
                    .ok_or_else(|| self.err("ndarray state is not a tuple"))?;
                // (version, shape, dtype, is_fortran, rawdata); very old numpy omits version.
                let items = match items.len() {
                    5 => &items[1..],
                    4 => &items[..],
                    n => return Err(self.err(format!("ndarray state has {n} fields, not 4 or 5"))),
                };
                let shape = items[0]
                    .items()
                    .ok_or_else(|| self.err("ndarray shape is not a tuple"))?
                    .iter()
                    .map(|v| match v {
                        Value::Int(i) if *i >= 0 => Ok(*i as usize),
                        _ => Err(self.err("ndarray shape holds a non-integer")),
                    })
                    .collect::<R<Vec<usize>>>()?;
                let Value::Dtype(dtype) = &items[1] else {
                    return Err(self.err("ndarray dtype is not a numpy.dtype"));
                };
                let fortran = match &items[2] {
                    Value::Bool(b) => *b,
                    Value::Int(i) => *i != 0,
                    _ => return Err(self.err("ndarray fortran flag is not a bool")),
                };
                let data = match &items[3] {
                    Value::Bytes(b) => b.clone(),
                    Value::Str(s) => {
                        // Python 2 pickles read as unicode: latin-1 code points.
                        let mut out = Vec::with_capacity(s.len());
                        for c in s.chars() {
                            out.push(u8::try_from(u32::from(c)).map_err(|_| {
                                self.err("ndarray data string has non-latin-1 characters")
                            })?);
                        }
                        Rc::new(out)
                    }
                    v => {
                        return Err(self.err(format!(
                            "ndarray data is a {} (object arrays are not supported)",
                            v.kind()
                        )));
                    }
                };
                let mut a = arr.borrow_mut();
                a.shape = shape;
                a.dtype = dtype.to_string();
                a.fortran_order = fortran;
                a.data = data;
                a.built = true;
                Ok(())
            }
            other => Err(self.err(format!("BUILD on a {} is not supported", other.kind()))),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> R<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of items"));
        }
        let Value::Dict(d) = self.top()? else {
            return Err(self.err("SETITEM(S) on something that is not a dict"));
        };
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> R<()> {
        let Value::List(l) = self.top()? else {
            return Err(self.err("APPEND(S) on something that is not a list"));
        };
        l.borrow_mut().extend(items);
        Ok(())
    }

    fn memo_get(&self, key: u64) -> R<Value> {
        self.memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {key} is not defined")))
    }

    fn memo_put(&mut self, key: u64) -> R<()> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn run(&mut self) -> R<Value> {
        loop {
            let op_pos = self.pos;
            let op = self.u8()?;
            if matches!(op, b'}' | b']' | b')' | b'd' | b'l' | b't' | 0x85..=0x87) {
                self.container()?;
            }
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 4 {
                        return Err(self.err(format!("pickle protocol {proto} is not supported")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: size hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'}' => self.stack.push(Value::Dict(Default::default())),
                b']' => self.stack.push(Value::List(Default::default())),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Default::default()));
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.i32()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.err(format!("LONG1 of {n} bytes is too large")));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'G' => {
                    let b = self.take(8)?;
                    self.stack
                        .push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = self.utf8(b)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.utf8(b)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    let v = self.utf8(b)?;
                    self.stack.push(v);
                }
                // Python 2 `str` (SHORT_BINSTRING, BINSTRING) and Python 3 `bytes`.
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(b.to_vec())));
                }
                b'T' => {
                    let n = self.i32()?;
                    let n =
                        usize::try_from(n).map_err(|_| self.err("negative BINSTRING length"))?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(b.to_vec())));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(b.to_vec())));
                }
                0x8e => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::new(b.to_vec())));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (module.as_text(), name.as_text()) else {
                        return Err(self.err("STACK_GLOBAL expects two strings"));
                    };
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                b'b' => self.build()?,
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                _ => {
                    self.pos = op_pos;
                    let shown = if op.is_ascii_graphic() {
                        format!(" ({:?})", op as char)
                    } else {
                        String::new()
                    };
                    return Err(self.err(format!("unsupported pickle opcode 0x{op:02x}{shown}")));
                }
            }
        }
    }
}

/// The uint8 array under `key` of a CIFAR batch dict, checked to be `rows × cols`, as C-order
/// bytes.
pub fn u8_matrix(
    dict: &Value,
    key: &str,
    cols: usize,
    path: &Path,
) -> Result<(usize, Rc<Vec<u8>>), DataError> {
    let v = dict
        .dict_get(key)
        .ok_or_else(|| DataError::format(path, format!("pickle has no '{key}' entry")))?;
    let Value::Array(arr) = v else {
        return Err(DataError::format(
            path,
            format!("'{key}' is a {}, not a numpy array", v.kind()),
        ));
    };
    let a = arr.borrow();
    if !a.built {
        return Err(DataError::format(
            path,
            format!("'{key}' array has no state"),
        ));
    }
    if !matches!(a.dtype.as_str(), "u1" | "uint8" | "|u1") {
        return Err(DataError::format(
            path,
            format!("'{key}' has dtype {:?}, expected uint8", a.dtype),
        ));
    }
    if a.shape.len() != 2 || a.shape[1] != cols {
        return Err(DataError::format(
            path,
            format!("'{key}' has shape {:?}, expected (N, {cols})", a.shape),
        ));
    }
    let rows = a.shape[0];
    // The shape comes from the file: an overflowing product cannot match the data.
    if rows.checked_mul(cols) != Some(a.data.len()) {
        return Err(DataError::format(
            path,
            format!(
                "'{key}' holds {} bytes, which does not match its shape {:?}",
                a.data.len(),
                a.shape
            ),
        ));
    }
    if !a.fortran_order {
        return Ok((rows, a.data.clone()));
    }
    let mut c = vec![0u8; rows * cols];
    for r in 0..rows {
        for k in 0..cols {
            c[r * cols + k] = a.data[k * rows + r];
        }
    }
    Ok((rows, Rc::new(c)))
}

/// The list of non-negative ints under `key`.
pub fn int_list(dict: &Value, key: &str, path: &Path) -> Result<Vec<usize>, DataError> {
    let v = dict
        .dict_get(key)
        .ok_or_else(|| DataError::format(path, format!("pickle has no '{key}' entry")))?;
    let items = v
        .items()
        .ok_or_else(|| DataError::format(path, format!("'{key}' is a {}, not a list", v.kind())))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::Int(n) if *n >= 0 => Ok(*n as usize),
            // Not `{x:?}`: a list can hold itself (through the memo), and printing it would
            // recurse without end.
            Value::Int(n) => Err(DataError::record(
                path,
                i,
                format!("'{key}' entry is {n}, not a non-negative int"),
            )),
            _ => Err(DataError::record(
                path,
                i,
                format!("'{key}' entry is a {}, not a non-negative int", x.kind()),
            )),
        })
        .collect()
}

/// The list of strings under `key`.
pub fn text_list(dict: &Value, key: &str, path: &Path) -> Result<Vec<String>, DataError> {
    let v = dict
        .dict_get(key)
        .ok_or_else(|| DataError::format(path, format!("pickle has no '{key}' entry")))?;
    let items = v
        .items()
        .ok_or_else(|| DataError::format(path, format!("'{key}' is a {}, not a list", v.kind())))?;
    items
        .iter()
        .map(|x| {
            x.as_text()
                .ok_or_else(|| DataError::format(path, format!("'{key}' holds a {}", x.kind())))
        })
        .collect()
}

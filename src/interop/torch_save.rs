//! A `torch.save` writer for state dicts: the zip layout PyTorch ≥ 1.6 writes
//! (`archive/data.pkl`, `archive/byteorder`, `archive/data/<n>`, `archive/version`; stored
//! uncompressed, each tensor's bytes 64-byte aligned as PyTorch aligns them), holding an
//! `OrderedDict` of tensors rebuilt by `torch._utils._rebuild_tensor_v2` from typed storages.
//! Only globals on `torch.load(weights_only=True)`'s allow-list are used, so the file loads
//! under PyTorch's safe default.

use super::state::{StateTensor, TorchDtype};
use crate::error::{Error, Result};

const ARCHIVE: &str = "archive";
const ALIGN: usize = 64;

/// The file's bytes.
pub fn encode(tensors: &[StateTensor]) -> Result<Vec<u8>> {
    for t in tensors {
        t.check_len()?;
    }
    let mut zip = ZipWriter::default();
    zip.add(&format!("{ARCHIVE}/data.pkl"), &pickle(tensors));
    zip.add(&format!("{ARCHIVE}/byteorder"), b"little");
    for (i, t) in tensors.iter().enumerate() {
        zip.add(&format!("{ARCHIVE}/data/{i}"), &t.bytes);
    }
    zip.add(&format!("{ARCHIVE}/version"), b"3\n");
    zip.finish()
}

/// Pickle (protocol 2) of `OrderedDict((key, tensor), ...)`.
fn pickle(tensors: &[StateTensor]) -> Vec<u8> {
    let mut p = Pickler::default();
    p.op(&[0x80, 2]); // PROTO 2
    p.global("collections", "OrderedDict");
    p.op(b")R"); // EMPTY_TUPLE, REDUCE
    p.op(b"("); // MARK
    for (i, t) in tensors.iter().enumerate() {
        p.unicode(&t.key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b"("); // MARK: the arguments
        // Persistent id: ('storage', torch.<Type>Storage, key, 'cpu', numel).
        p.op(b"(");
        p.unicode("storage");
        let storage = match t.dtype {
            TorchDtype::F32 => "FloatStorage",
            TorchDtype::I64 => "LongStorage",
        };
        p.global("torch", storage);
        p.unicode(&i.to_string());
        p.unicode("cpu");
        p.int(t.shape.iter().product::<usize>() as i64);
        p.op(b"tQ"); // TUPLE, BINPERSID
        p.int(0); // storage offset
        p.tuple_of_ints(&t.shape);
        p.tuple_of_ints(&contiguous_strides(&t.shape));
        p.op(&[0x89]); // NEWFALSE: requires_grad
        p.global("collections", "OrderedDict"); // backward hooks
        p.op(b")R");
        p.op(b"tR"); // TUPLE, REDUCE
    }
    p.op(b"u."); // SETITEMS, STOP
    p.out
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(b'X'); // BINUNICODE
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            self.out.push(b'J'); // BININT
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            self.out.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn tuple_of_ints(&mut self, values: &[usize]) {
        self.op(b"(");
        for &v in values {
            self.int(v as i64);
        }
        self.op(b"t");
    }
}

/// An uncompressed zip archive; each entry's data starts on a multiple of [`ALIGN`].
#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) {
        let offset = self.out.len();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        // Pad with an extra field (id "FB", as PyTorch's writer) so the data is aligned.
        let unpadded = offset + 30 + name.len();
        let mut extra_len = (ALIGN - unpadded % ALIGN) % ALIGN;
        if extra_len != 0 && extra_len < 4 {
            extra_len += ALIGN;
        }
        let mut extra = Vec::new();
        if extra_len >= 4 {
            extra.extend_from_slice(b"FB");
            extra.extend_from_slice(&((extra_len - 4) as u16).to_le_bytes());
            extra.resize(extra_len, b'Z');
        }
        let size = data.len() as u32;
        let w = &mut self.out;
        w.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        w.extend_from_slice(&20u16.to_le_bytes()); // version needed
        w.extend_from_slice(&0u16.to_le_bytes()); // flags
        w.extend_from_slice(&0u16.to_le_bytes()); // stored
        w.extend_from_slice(&0u16.to_le_bytes()); // time
        w.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        w.extend_from_slice(&crc.to_le_bytes());
        w.extend_from_slice(&size.to_le_bytes());
        w.extend_from_slice(&size.to_le_bytes());
        w.extend_from_slice(&(name.len() as u16).to_le_bytes());
        w.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        w.extend_from_slice(name.as_bytes());
        w.extend_from_slice(&extra);
        w.extend_from_slice(data);

        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes()); // version made by
        c.extend_from_slice(&20u16.to_le_bytes()); // version needed
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0x21u16.to_le_bytes());
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // extra
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        c.extend_from_slice(&(offset as u32).to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.entries += 1;
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        let cd_offset = self.out.len();
        if cd_offset + self.central.len() > u32::MAX as usize || self.entries == u16::MAX {
            return Err(Error::Other(
                "model too large for a zip without zip64 (4 GiB or 65535 tensors)".into(),
            ));
        }
        let cd_len = self.central.len();
        self.out.extend_from_slice(&self.central);
        let w = &mut self.out;
        w.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        w.extend_from_slice(&0u16.to_le_bytes());
        w.extend_from_slice(&0u16.to_le_bytes());
        w.extend_from_slice(&self.entries.to_le_bytes());
        w.extend_from_slice(&self.entries.to_le_bytes());
        w.extend_from_slice(&(cd_len as u32).to_le_bytes());
        w.extend_from_slice(&(cd_offset as u32).to_le_bytes());
        w.extend_from_slice(&0u16.to_le_bytes());
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_and_alignment() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        let t = StateTensor {
            key: "w".into(),
            dtype: TorchDtype::F32,
            shape: vec![3],
            bytes: [1f32, 2.0, 3.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        let bytes = encode(&[t]).unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        // The tensor's bytes sit on a 64-byte boundary.
        let pos = bytes
            .windows(12)
            .position(|w| w == [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40])
            .unwrap();
        assert_eq!(pos % ALIGN, 0);
    }
}

//! The input layout the `parse` and `libvirt` targets share:
//! `[flags] [sizes; flags & 7] [bytes...]`. Each size byte gives a chunk of
//! `byte + 1` bytes, used in turn, cycling; none means 1-byte chunks.

/// An input split into its flags, chunk sizes and bytes.
pub struct Plan<'a> {
    /// The first byte: `& 7` is how many size bytes follow; the rest are
    /// the target's own switches.
    pub flags: u8,
    sizes: &'a [u8],
    /// The bytes to feed.
    pub data: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Splits `input`.
    pub fn new(input: &'a [u8]) -> Self {
        let Some((&flags, rest)) = input.split_first() else {
            return Plan {
                flags: 0,
                sizes: &[],
                data: &[],
            };
        };
        let n = usize::from(flags & 7).min(rest.len());
        let (sizes, data) = rest.split_at(n);
        Plan { flags, sizes, data }
    }

    /// The bytes in the chunks the sizes give.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.data;
        let mut k = 0;
        while !rest.is_empty() {
            let size = match self.sizes {
                [] => 1,
                sizes => usize::from(sizes[k % sizes.len()]) + 1,
            };
            k += 1;
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
        out
    }
}

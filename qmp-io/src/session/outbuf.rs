//! Bytes taken from the core to write, with the file descriptors that must
//! go with the first byte of their command.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

/// Outgoing bytes taken from the core, with the fds to attach at given offsets.
#[derive(Default)]
pub(crate) struct OutBuf {
    pub(super) bytes: Vec<u8>,
    pos: usize,
    pub(super) marks: VecDeque<(usize, Vec<OwnedFd>)>,
    /// Bytes written since the connection started.
    written: u64,
}

impl OutBuf {
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The next bytes to write, and the fds that must go with their first byte.
    /// A chunk with fds ends where the next command with fds starts, so
    /// every command's fds go with its own first byte.
    pub(crate) fn chunk(&self) -> (&[u8], Option<&[OwnedFd]>) {
        let mut marks = self.marks.iter();
        match marks.next() {
            Some((at, fds)) if *at == self.pos => {
                let end = marks.next().map_or(self.bytes.len(), |(next, _)| *next);
                (self.bytes.get(self.pos..end).unwrap_or_default(), Some(fds))
            }
            Some((at, _)) => (self.bytes.get(self.pos..*at).unwrap_or_default(), None),
            None => (self.bytes.get(self.pos..).unwrap_or_default(), None),
        }
    }

    /// Bytes written since the connection started.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// `n` bytes of the last chunk were written (with its fds, if any).
    pub(crate) fn consume(&mut self, n: usize) {
        if n > 0 && self.marks.front().is_some_and(|(at, _)| *at == self.pos) {
            // The kernel took the fds with the first byte; our copies close.
            self.marks.pop_front();
        }
        self.pos = self.pos.saturating_add(n);
        self.written = self.written.saturating_add(n as u64);
        if self.pos == self.bytes.len() {
            self.bytes.clear();
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OutBuf;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};

    fn fd() -> OwnedFd {
        rustix::pipe::pipe().expect("a pipe").0
    }

    type Chunk = (Vec<u8>, Option<Vec<RawFd>>);

    /// Writes `out` out in writes of at most `most` bytes.
    fn write_out(out: &mut OutBuf, most: usize) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        while !out.is_empty() {
            let (bytes, fds) = out.chunk();
            let n = bytes.len().min(most);
            let fds = fds.map(|f| f.iter().map(AsRawFd::as_raw_fd).collect());
            chunks.push((bytes[..n].to_vec(), fds));
            out.consume(n);
        }
        chunks
    }

    /// Three commands, the last two with fds, back to back.
    fn queued() -> (OutBuf, RawFd, RawFd) {
        let (a, b) = (fd(), fd());
        let raw = (a.as_raw_fd(), b.as_raw_fd());
        let mut out = OutBuf::default();
        out.bytes.extend_from_slice(b"AAAABBBBCCCC");
        out.marks.push_back((4, vec![a]));
        out.marks.push_back((8, vec![b]));
        (out, raw.0, raw.1)
    }

    #[test]
    fn fds_go_with_their_own_command_in_whole_writes() {
        let (mut out, a, b) = queued();
        let chunks = write_out(&mut out, usize::MAX);
        let want: Vec<Chunk> = vec![
            (b"AAAA".to_vec(), None),
            (b"BBBB".to_vec(), Some(vec![a])),
            (b"CCCC".to_vec(), Some(vec![b])),
        ];
        assert_eq!(chunks, want);
        assert!(out.marks.is_empty(), "a mark outlived its bytes");
        assert_eq!(out.written(), 12);
    }

    #[test]
    fn fds_go_with_the_first_byte_of_a_split_write() {
        let (mut out, a, b) = queued();
        let chunks = write_out(&mut out, 3);
        let want: Vec<Chunk> = vec![
            (b"AAA".to_vec(), None),
            (b"A".to_vec(), None),
            (b"BBB".to_vec(), Some(vec![a])),
            (b"B".to_vec(), None),
            (b"CCC".to_vec(), Some(vec![b])),
            (b"C".to_vec(), None),
        ];
        assert_eq!(chunks, want);
        assert!(out.marks.is_empty());
    }
}

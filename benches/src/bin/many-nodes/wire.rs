//! The few wire pieces the load client needs: HTTP/1.1 chunked decoding
//! (a stream's body is chunked, and a chunk boundary may fall anywhere in
//! an event) and a clock every process on the machine shares.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch: comparable across processes.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Done,
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// A chunk-size line or chunk end not yet complete.
    pending: Vec<u8>,
}

impl ChunkedDecoder {
    /// Appends the body bytes in `wire` to `out`.
    pub(crate) fn decode(&mut self, wire: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut at = 0;
        while at < wire.len() {
            match self.state {
                State::Size | State::DataEnd => {
                    let Some(newline) = wire[at..].iter().position(|&b| b == b'\n') else {
                        self.pending.extend_from_slice(&wire[at..]);
                        if self.pending.len() > 1024 {
                            return Err("chunk-size line too long".into());
                        }
                        return Ok(());
                    };
                    self.pending.extend_from_slice(&wire[at..at + newline]);
                    at += newline + 1;
                    let line = std::mem::take(&mut self.pending);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if matches!(self.state, State::DataEnd) {
                        if !line.is_empty() {
                            return Err("chunk data not followed by CRLF".into());
                        }
                        self.state = State::Size;
                        continue;
                    }
                    let size = std::str::from_utf8(line)
                        .ok()
                        .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                        .ok_or_else(|| {
                            format!("bad chunk size {:?}", String::from_utf8_lossy(line))
                        })?;
                    self.state = if size == 0 {
                        State::Done
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let take = left.min(wire.len() - at);
                    out.extend_from_slice(&wire[at..at + take]);
                    at += take;
                    self.state = if take == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take)
                    };
                }
                State::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether the last chunk came.
    pub(crate) fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_chunks_split_anywhere() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut out = Vec::new();
            decoder.decode(&wire[..split], &mut out).unwrap();
            decoder.decode(&wire[split..], &mut out).unwrap();
            assert_eq!(out, b"hello, world");
            assert!(decoder.done());
        }
        assert!(
            ChunkedDecoder::default()
                .decode(b"zz\r\n", &mut Vec::new())
                .is_err()
        );
    }
}

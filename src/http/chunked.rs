//! The chunked transfer coding, read incrementally.
//!
//! Sans-IO: [`Decoder::step`] is given whatever bytes have arrived and tells how many of
//! them form the next piece of the message: payload ([`Piece::Data`]), framing (size lines,
//! extensions, CRLFs, trailers: [`Piece::Framing`]), or the last bytes of the message
//! ([`Piece::End`]). The caller forwards pieces as they are (pass-through, extensions and
//! trailers included) or only the data (decoding for an HTTP/1.0 client). Bytes after the
//! end belong to the next message and are never consumed.
//!
//! Strict, since the bytes are forwarded as received and a server must read the same
//! message boundaries as the proxy: lines end with CRLF only; a size is 1 to 16 hex digits
//! (no sign, no `0x`); an extension may follow after optional whitespace and `;`; no
//! control characters in extensions or trailers. Anything else is an error (400 on a
//! request, a broken response otherwise).

/// Longest size line or trailer line accepted.
pub const MAX_LINE: usize = 4096;

/// Most trailer bytes accepted in all.
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// This many payload bytes.
    Data(usize),
    /// This many framing bytes.
    Framing(usize),
    /// The message ends after these many framing bytes.
    End(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a size.
    Size {
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// Inside a chunk extension, until CR.
    Extension,
    /// After the CR of a size line.
    SizeLf,
    /// Inside a chunk's payload.
    Data,
    /// After the payload: expecting CR.
    DataCr,
    /// After the payload's CR: expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    Done,
}

/// Incremental reader of one chunked body.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// Size of the chunk being read, then payload bytes left in it.
    remaining: u64,
    line: usize,
    trailers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            line: 0,
            trailers: 0,
        }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next piece from `input`. Returns `Ok(None)` when `input` is empty or the
    /// body is already complete.
    pub fn step(&mut self, input: &[u8]) -> Result<Option<Piece>, ChunkError> {
        if input.is_empty() || self.state == State::Done {
            return Ok(None);
        }
        if self.state == State::Data {
            let n = (self.remaining.min(input.len() as u64)) as usize;
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.state = State::DataCr;
            }
            return Ok(Some(Piece::Data(n)));
        }
        // Framing: consume byte by byte until the payload starts, the body ends, or the
        // input runs out.
        let mut used = 0;
        while used < input.len() {
            let b = input[used];
            used += 1;
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(ChunkError("chunk line too long"));
            }
            match self.state {
                State::Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits == 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.remaining = self.remaining << 4 | d;
                        self.state = State::Size { digits: digits + 1 };
                    }
                    _ if digits == 0 => return Err(ChunkError("invalid chunk size")),
                    b' ' | b'\t' => self.state = State::SizeSpace,
                    b';' => self.state = State::Extension,
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkError("invalid chunk size")),
                },
                State::SizeSpace => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = State::Extension,
                    b'\r' => self.state = State::SizeLf,
                    _ => return Err(ChunkError("invalid chunk size line")),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(ChunkError("invalid chunk extension")),
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk size line without CRLF"));
                    }
                    self.line = 0;
                    if self.remaining == 0 {
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                        return Ok(Some(Piece::Framing(used)));
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    self.line = 0;
                    self.remaining = 0;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\t' | b' ' => return Err(ChunkError("folded trailer line")),
                    b'!'..=b'~' | 0x80..=0xff => self.state = State::Trailer,
                    _ => return Err(ChunkError("invalid trailer")),
                },
                State::Trailer => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => {}
                    _ => return Err(ChunkError("invalid trailer")),
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError("trailer line without CRLF"));
                    }
                    self.trailers += self.line;
                    if self.trailers > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    self.line = 0;
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError("last chunk without final CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(Some(Piece::End(used)));
                }
                State::Data | State::Done => unreachable!("handled above"),
            }
        }
        Ok(Some(Piece::Framing(used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole: (payload, bytes consumed) or the error.
    pub fn decode(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = Decoder::default();
        let mut pos = 0;
        let mut data = Vec::new();
        while let Some(p) = d.step(&input[pos..])? {
            match p {
                Piece::Data(n) => {
                    data.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                }
                Piece::Framing(n) => pos += n,
                Piece::End(n) => {
                    pos += n;
                    break;
                }
            }
        }
        Ok((data, pos, d.is_done()))
    }

    #[test]
    fn decodes_with_extensions_and_trailers() {
        let body = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (data, used, done) = decode(body).unwrap();
        assert_eq!(data, b"hello world");
        assert!(done);
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let body = b"A\r\n0123456789\r\n1 ; x\r\n!\r\n0\r\n\r\n";
        let mut d = Decoder::default();
        let mut data = Vec::new();
        for (i, b) in body.iter().enumerate() {
            match d.step(std::slice::from_ref(b)).unwrap() {
                Some(Piece::Data(1)) => data.push(*b),
                Some(Piece::Framing(1)) => {}
                Some(Piece::End(1)) => assert_eq!(i, body.len() - 1),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(d.is_done());
        assert_eq!(data, b"0123456789!");
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\n folded\r\n\r\n",
            b"0\r\n\n",
            b"5;a\x00b\r\nhello\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}

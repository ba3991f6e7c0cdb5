//! A zero-copy streaming `multipart/form-data` reader.
//!
//! Part bodies are handed out as slices of the request body's own chunks: nothing is copied
//! except the part headers and at most one delimiter's length of bytes held back where a
//! chunk ends in what could be the start of the next delimiter. The reader pulls one chunk
//! at a time and only when the previous one is used up, so it buffers nothing on its own.
//!
//! Written by hand, instead of using multer, because it halves the memory an upload holds
//! and more than halves the user CPU per GiB (see BENCHMARKS.md): multer copies every byte
//! into its own buffer, and the write batches then pin slices of it. It reads what browsers
//! and RFC 7578 send: `Content-Disposition` with `name` and `filename` (quoted, with
//! backslash escapes, or bare), `Content-Type`, at most [`MAX_PART_HEADERS`] headers per
//! part, no folded header lines (RFC 7578 has no use for them), transport padding after a
//! delimiter.

use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::stream::BodyError;

mod headers;

use headers::PartHeaders;
pub(crate) use headers::{boundary, BoundaryError};

/// The most header lines one part may have (as multer and httparse allow).
pub(crate) const MAX_PART_HEADERS: usize = 32;

/// Why the multipart body could not be read.
#[derive(Debug)]
pub(crate) enum Error {
    Stream(BodyError),
    Parse(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(error) => error.fmt(f),
            Self::Parse(message) => f.write_str(message),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Just past a delimiter: `--` ends the body, CRLF starts a part.
    AfterDelimiter,
    /// In a part's body.
    Body,
    Done,
}

pub(crate) struct Multipart<S> {
    stream: Pin<Box<S>>,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    /// The unread rest of the current chunk.
    input: Bytes,
    /// Bytes held back because they may begin a delimiter (shorter than one).
    carry: BytesMut,
    state: State,
}

/// One part; its body is read with [`Field::chunk`].
pub(crate) struct Field<'a, S> {
    multipart: &'a mut Multipart<S>,
    name: Option<String>,
    file_name: Option<String>,
    content_type: Option<String>,
    /// The size of the part's header block, in bytes.
    header_len: usize,
}

impl<S> Multipart<S>
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    pub(crate) fn new(stream: S, boundary: impl AsRef<str>) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_ref().as_bytes());
        Self {
            stream: Box::pin(stream),
            delimiter,
            input: Bytes::new(),
            carry: BytesMut::new(),
            state: State::Preamble,
        }
    }

    /// Pulls the next chunk into `input`; false at the end of the body.
    async fn pull(&mut self) -> Result<bool, Error> {
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.input = chunk;
                Ok(true)
            }
            Some(Err(error)) => Err(Error::Stream(error)),
            None => Ok(false),
        }
    }

    fn unexpected_end() -> Error {
        Error::Parse("incomplete multipart body: the stream ended early".to_owned())
    }

    /// The next part, after reading what is left of the current one.
    pub(crate) async fn next_field(&mut self) -> Result<Option<Field<'_, S>>, Error> {
        while self.state == State::Body {
            self.body_chunk().await?;
        }
        if self.state == State::Preamble {
            self.skip_preamble().await?;
        }
        if self.state == State::Done {
            return Ok(None);
        }
        // After a delimiter: `--` (the end) or optional padding then CRLF (a part).
        let mut line = BytesMut::new();
        let headers_at;
        loop {
            line.extend_from_slice(&self.input);
            self.input.clear();
            if line.starts_with(b"--") {
                self.state = State::Done;
                return Ok(None);
            }
            let padding = line
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            if line.len() >= padding + 2 {
                if &line[padding..padding + 2] != b"\r\n" {
                    return Err(Error::Parse(
                        "a boundary line is not followed by CRLF".into(),
                    ));
                }
                headers_at = padding + 2;
                break;
            }
            if !self.pull().await? {
                return Err(Self::unexpected_end());
            }
        }
        // Part headers, up to the empty line (their size is bounded by the body stream).
        let mut search_from = headers_at;
        let end = loop {
            if let Some(at) = memchr::memmem::find(&line[search_from..], b"\r\n\r\n") {
                break search_from + at;
            }
            search_from = line.len().saturating_sub(3).max(headers_at);
            if !self.pull().await? {
                return Err(Self::unexpected_end());
            }
            line.extend_from_slice(&self.input);
            self.input.clear();
        };
        let rest = line.split_off(end + 4);
        let headers = std::str::from_utf8(&line[headers_at..end])
            .map_err(|_| Error::Parse("part headers are not UTF-8".into()))?;
        let mut field = Field {
            name: None,
            file_name: None,
            content_type: None,
            header_len: end - headers_at,
            multipart: self,
        };
        let parsed = PartHeaders::parse(headers).map_err(Error::Parse)?;
        field.name = parsed.name;
        field.file_name = parsed.file_name;
        field.content_type = parsed.content_type;
        // What followed the headers in the same chunk (copied once per part).
        field.multipart.input = rest.freeze();
        field.multipart.state = State::Body;
        Ok(Some(field))
    }

    async fn skip_preamble(&mut self) -> Result<(), Error> {
        // The first delimiter may come without its leading CRLF.
        let first = self.delimiter[2..].to_vec();
        let mut seen = BytesMut::new();
        loop {
            seen.extend_from_slice(&self.input);
            self.input.clear();
            let found = if seen.starts_with(&first) {
                Some(first.len())
            } else {
                memchr::memmem::find(&seen, &self.delimiter).map(|at| at + self.delimiter.len())
            };
            if let Some(after) = found {
                self.input = seen.split_off(after).freeze();
                self.state = State::AfterDelimiter;
                return Ok(());
            }
            if !self.pull().await? {
                return Err(Self::unexpected_end());
            }
        }
    }

    /// The next piece of the current part's body; `None` (and state `AfterDelimiter`) at its
    /// end.
    async fn body_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let dlen = self.delimiter.len();
        loop {
            if self.input.is_empty() && !self.pull().await? {
                return Err(Self::unexpected_end());
            }
            if !self.carry.is_empty() {
                // Does a delimiter start in the held-back bytes?
                let take = self.input.len().min(dlen);
                let mut window = BytesMut::with_capacity(self.carry.len() + take);
                window.extend_from_slice(&self.carry);
                window.extend_from_slice(&self.input[..take]);
                let carried = self.carry.len();
                self.carry.clear();
                if let Some(at) = memchr::memmem::find(&window, &self.delimiter) {
                    self.input.advance(at + dlen - carried);
                    self.state = State::AfterDelimiter;
                    return Ok((at > 0).then(|| window.split_to(at).freeze()));
                }
                if take < dlen {
                    // Too little input to decide: hold back what may still begin one.
                    self.input.clear();
                    let keep = partial_delimiter(&window, &self.delimiter);
                    self.carry = window.split_off(window.len() - keep);
                    if window.is_empty() {
                        continue;
                    }
                    return Ok(Some(window.freeze()));
                }
                return Ok(Some(window.split_to(carried).freeze()));
            }
            if let Some(at) = memchr::memmem::find(&self.input, &self.delimiter) {
                let data = self.input.split_to(at);
                self.input.advance(dlen);
                self.state = State::AfterDelimiter;
                return Ok((!data.is_empty()).then_some(data));
            }
            let keep = partial_delimiter(&self.input, &self.delimiter);
            let data = self.input.split_to(self.input.len() - keep);
            self.carry.extend_from_slice(&self.input);
            self.input.clear();
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
}

impl<S> Field<'_, S>
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// The part's declared `Content-Type`, as sent.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The size of the part's header block, in bytes.
    pub(crate) fn header_len(&self) -> usize {
        self.header_len
    }

    /// The next piece of the body, a slice of the request's own bytes; `None` at the end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.multipart.state != State::Body {
            return Ok(None);
        }
        self.multipart.body_chunk().await
    }
}

/// How many bytes at the end of `data` could begin `delimiter` (fewer than its length).
fn partial_delimiter(data: &[u8], delimiter: &[u8]) -> usize {
    let longest = data.len().min(delimiter.len() - 1);
    let tail = &data[data.len() - longest..];
    // The delimiter starts with CR: only a CR in the tail can start one.
    let Some(first_cr) = memchr::memchr(b'\r', tail) else {
        return 0;
    };
    (1..=longest - first_cr)
        .rev()
        .find(|&k| data.ends_with(&delimiter[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(chunks: Vec<&'static [u8]>) -> Vec<(Option<String>, Option<String>, Vec<u8>)> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, BodyError>(Bytes::from_static(chunk))),
        );
        let mut multipart = Multipart::new(stream, "XyZ");
        let mut parts = Vec::new();
        while let Some(mut field) = multipart.next_field().await.unwrap() {
            let (name, file) = (
                field.name().map(str::to_owned),
                field.file_name().map(str::to_owned),
            );
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.unwrap() {
                data.extend_from_slice(&chunk);
            }
            parts.push((name, file, data));
        }
        parts
    }

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--X\r\n\r\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x \\\"q\\\".bin\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--XyZ--\r\n";

    #[tokio::test]
    async fn parses_whole_and_byte_by_byte() {
        let expected = vec![
            (Some("a".to_owned()), None, b"1\r\n--X\r\n\r".to_vec()),
            (
                Some("f".to_owned()),
                Some("x \"q\".bin".to_owned()),
                b"hello".to_vec(),
            ),
        ];
        assert_eq!(parse(vec![BODY]).await, expected);
        for split in 1..BODY.len() {
            assert_eq!(
                parse(vec![&BODY[..split], &BODY[split..]]).await,
                expected,
                "{split}"
            );
        }
        let bytes: Vec<&'static [u8]> = BODY.chunks(1).collect();
        assert_eq!(parse(bytes).await, expected);
        let threes: Vec<&'static [u8]> = BODY.chunks(3).collect();
        assert_eq!(parse(threes).await, expected);
    }
}

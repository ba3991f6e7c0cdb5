//! A zero-copy streaming `multipart/form-data` reader.
//!
//! Part bodies are handed out as slices of the request body's own chunks: nothing is copied
//! except the part headers that span two chunks and at most one delimiter's length of bytes
//! held back where a chunk ends in what could be the start of the next delimiter. A header
//! block that lies in one chunk is a slice of it too. The reader pulls one chunk at a time
//! and only when the previous one is used up, so it buffers nothing on its own; the preamble
//! is searched once, holding back less than a delimiter of it.
//!
//! Written by hand, instead of using multer, because it halves the memory an upload holds
//! and more than halves the user CPU per GiB (see BENCHMARKS.md): multer copies every byte
//! into its own buffer, and the write batches then pin slices of it. It reads what browsers
//! and RFC 7578 send (RFC 2046's grammar, `body-part := MIME-part-headers [CRLF *OCTET]`):
//! a part whose headers run into the next delimiter is empty, transport padding may follow a
//! delimiter, and the first delimiter may come without its CRLF. The header grammar (token
//! names, folded lines, `Content-Disposition` parameters, at most [`MAX_PART_HEADERS`]
//! headers) is in [`headers`]; a bare CR or LF in the headers is refused, since parsers
//! that disagree on line ends can be played against each other.

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
    /// The request body failed (read error, idle timeout, a limit of the body stream).
    Stream(BodyError),
    /// The body is not well-formed multipart; the message says why.
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
    /// Past a delimiter line that announced a part: its headers come next.
    PartFollows,
    /// In a part's body.
    Body,
    Done,
}

/// A `multipart/form-data` body read part by part from a stream of chunks.
pub(crate) struct Multipart<S> {
    stream: Pin<Box<S>>,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    /// The unread rest of the current chunk.
    input: Bytes,
    /// Bytes held back because they may begin a delimiter (shorter than one).
    carry: BytesMut,
    state: State,
    /// Bytes copied out of the request's chunks so far.
    #[cfg(test)]
    copied: usize,
    /// Bytes searched for a delimiter in the preamble so far.
    #[cfg(test)]
    scanned: usize,
}

/// One part; its body is read with [`Field::chunk`].
pub(crate) struct Field<'a, S> {
    multipart: &'a mut Multipart<S>,
    name: Option<String>,
    file_name: Option<String>,
    content_type: Option<String>,
    digest: Option<String>,
    /// The size of the part's header block, in bytes.
    header_len: usize,
}

impl<S> Multipart<S>
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    /// A reader of `stream` whose parts are delimited by `boundary` (as [`boundary`] gives
    /// it, without the leading `--`).
    pub(crate) fn new(stream: S, boundary: impl AsRef<str>) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_ref().as_bytes());
        Self {
            stream: Box::pin(stream),
            delimiter,
            input: Bytes::new(),
            carry: BytesMut::new(),
            state: State::Preamble,
            #[cfg(test)]
            copied: 0,
            #[cfg(test)]
            scanned: 0,
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
        if self.state == State::AfterDelimiter {
            self.confirm_delimiter().await?;
        }
        if self.state == State::Done {
            return Ok(None);
        }
        let (block, after) = self.header_block().await?;
        let headers = std::str::from_utf8(&block)
            .map_err(|_| Error::Parse("part headers are not UTF-8".into()))?;
        let parsed = PartHeaders::parse(headers).map_err(Error::Parse)?;
        self.state = match after {
            BlockEnd::EmptyLine => State::Body,
            // The CRLF after the headers began the next delimiter: an empty part.
            BlockEnd::Delimiter => State::AfterDelimiter,
        };
        Ok(Some(Field {
            name: parsed.name,
            file_name: parsed.file_name,
            content_type: parsed.content_type,
            digest: parsed.digest,
            header_len: block.len(),
            multipart: self,
        }))
    }

    /// Reads the rest of a delimiter line: a part follows, or the body ends.
    ///
    /// A part's body ends only once this succeeded: `\r\n--boundaryX` after a file's data
    /// is no delimiter (RFC 2046: one is followed by `--` or padding and CRLF), so the file
    /// is not complete and the reader says so instead of ending it.
    async fn confirm_delimiter(&mut self) -> Result<(), Error> {
        self.state = if self.boundary_line_end().await? {
            State::PartFollows
        } else {
            State::Done
        };
        Ok(())
    }

    /// Reads what follows a delimiter: true for transport padding then CRLF (a part
    /// follows), false for `--` (the end of the body). Nothing is copied.
    async fn boundary_line_end(&mut self) -> Result<bool, Error> {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Seen {
            Nothing,
            Dash,
            Padding,
            Cr,
        }
        let mut seen = Seen::Nothing;
        loop {
            while let Some(&byte) = self.input.first() {
                self.input.advance(1);
                seen = match (seen, byte) {
                    (Seen::Nothing, b'-') => Seen::Dash,
                    (Seen::Dash, b'-') => return Ok(false),
                    (Seen::Nothing | Seen::Padding, b' ' | b'\t') => Seen::Padding,
                    (Seen::Nothing | Seen::Padding, b'\r') => Seen::Cr,
                    (Seen::Cr, b'\n') => return Ok(true),
                    _ => {
                        return Err(Error::Parse(
                            "a boundary line is not followed by CRLF".into(),
                        ))
                    }
                };
            }
            if !self.pull().await? {
                return Err(Self::unexpected_end());
            }
        }
    }

    /// A part's header block, without the CRLF that ends its last line, and what ends it.
    ///
    /// When the block lies in one chunk it is a slice of it; only a block that spans chunks
    /// is copied, and then only its own bytes (plus at most a delimiter's length and 2 of
    /// look-ahead, dropped again).
    async fn header_block(&mut self) -> Result<(Bytes, BlockEnd), Error> {
        // The block so far, when it spans chunks; `resume` is where scanning goes on in it.
        let mut head = BytesMut::new();
        let mut resume = 0;
        loop {
            let mut from = resume;
            if !head.is_empty() {
                // Settle what the end of `head` left open with the start of the new chunk.
                let base = head.len();
                let take = self.input.len().min(self.delimiter.len() + 2);
                head.extend_from_slice(&self.input[..take]);
                self.note_copied(take);
                match scan_headers(&head, resume, true, &self.delimiter)? {
                    Scan::Found { end, after, next } => {
                        if next < base {
                            // The body starts in bytes held for look-ahead (fewer than a
                            // delimiter): they are its first bytes.
                            self.carry.extend_from_slice(&head[next..base]);
                        } else {
                            self.input.advance(next - base);
                        }
                        head.truncate(end);
                        return Ok((head.freeze(), after));
                    }
                    Scan::More(at) if take == self.input.len() => {
                        self.input.clear();
                        resume = at;
                        if !self.pull().await? {
                            return Err(Self::unexpected_end());
                        }
                        continue;
                    }
                    Scan::More(at) => {
                        // Settled: scan the rest of the chunk where it lies.
                        head.truncate(base);
                        from = at - base;
                    }
                }
            }
            match scan_headers(&self.input, from, head.is_empty(), &self.delimiter)? {
                Scan::Found { end, after, next } => {
                    let block = if head.is_empty() {
                        self.input.slice(..end)
                    } else {
                        head.extend_from_slice(&self.input[..end]);
                        self.note_copied(end);
                        head.split().freeze()
                    };
                    self.input.advance(next);
                    return Ok((block, after));
                }
                Scan::More(at) => {
                    resume = head.len() + at;
                    head.extend_from_slice(&self.input);
                    self.note_copied(self.input.len());
                    self.input.clear();
                    if !self.pull().await? {
                        return Err(Self::unexpected_end());
                    }
                }
            }
        }
    }

    /// Skips the preamble up to and past the first delimiter, holding back no more than a
    /// delimiter's length of it between chunks: each byte is searched about once.
    async fn skip_preamble(&mut self) -> Result<(), Error> {
        let dlen = self.delimiter.len();
        // The first delimiter may come without its leading CRLF: read as if one came first.
        let mut carry = BytesMut::from(&b"\r\n"[..]);
        loop {
            if !carry.is_empty() {
                // A delimiter that starts in the held-back bytes ends in the first
                // `dlen - 1` bytes of the chunk.
                let take = self.input.len().min(dlen - 1);
                let carried = carry.len();
                carry.extend_from_slice(&self.input[..take]);
                self.note_copied(take);
                self.note_scanned(carry.len());
                if let Some(at) = memchr::memmem::find(&carry, &self.delimiter) {
                    self.input.advance(at + dlen - carried);
                    self.state = State::AfterDelimiter;
                    return Ok(());
                }
                if take == self.input.len() {
                    self.input.clear();
                    let keep = partial_delimiter(&carry, &self.delimiter);
                    carry = carry.split_off(carry.len() - keep);
                    if !self.pull().await? {
                        return Err(Self::unexpected_end());
                    }
                    continue;
                }
                carry.clear();
            }
            self.note_scanned(self.input.len());
            if let Some(at) = memchr::memmem::find(&self.input, &self.delimiter) {
                self.input.advance(at + dlen);
                self.state = State::AfterDelimiter;
                return Ok(());
            }
            let keep = partial_delimiter(&self.input, &self.delimiter);
            carry.extend_from_slice(&self.input[self.input.len() - keep..]);
            self.note_copied(keep);
            self.input.clear();
            if !self.pull().await? {
                return Err(Self::unexpected_end());
            }
        }
    }

    /// Counts bytes copied out of the request's chunks (tests prove the reader linear).
    #[inline]
    fn note_copied(&mut self, _bytes: usize) {
        #[cfg(test)]
        {
            self.copied += _bytes;
        }
    }

    /// Counts bytes searched for a delimiter in the preamble.
    #[inline]
    fn note_scanned(&mut self, _bytes: usize) {
        #[cfg(test)]
        {
            self.scanned += _bytes;
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
    /// `Content-Disposition`'s `name`, the form field's name.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The client's file name, as sent (`filename*` decoded, or RFC 2231 continuations
    /// joined, or `filename`); `None` for a part that is not a file.
    pub(crate) fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// The part's declared `Content-Type`, as sent.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The part's `Content-Digest` (or `Repr-Digest`) header, as sent.
    pub(crate) fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The size of the part's header block, in bytes.
    pub(crate) fn header_len(&self) -> usize {
        self.header_len
    }

    /// The next piece of the body, a slice of the request's own bytes; `None` at the end,
    /// once the delimiter line that ends the part is read whole.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if self.multipart.state == State::Body {
            if let Some(data) = self.multipart.body_chunk().await? {
                return Ok(Some(data));
            }
        }
        if self.multipart.state == State::AfterDelimiter {
            self.multipart.confirm_delimiter().await?;
        }
        Ok(None)
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

/// What ends a part's header block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockEnd {
    /// The empty line: the body follows.
    EmptyLine,
    /// The next delimiter, right after the CRLF that ends the last header line: the part is
    /// empty.
    Delimiter,
}

/// How far [`scan_headers`] got.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The block is `data[..end]`; what follows the block's end starts at `next`.
    Found {
        end: usize,
        after: BlockEnd,
        next: usize,
    },
    /// More bytes are needed; scanning resumes at this index (where a line end is still
    /// open, less than a delimiter's length plus 2 before the end of `data`).
    More(usize),
}

/// Looks for the end of a part's header block in `data`, from `from`: a line's CRLF followed
/// by another CRLF, which begins either the body or, at once, the next delimiter. `starts_block` says whether `data[0]` is the block's
/// first byte. Every CR and LF on the way is checked: a bare CR or LF, which some parsers
/// take for a line break and others do not, is refused.
fn scan_headers(
    data: &[u8],
    from: usize,
    starts_block: bool,
    delimiter: &[u8],
) -> Result<Scan, Error> {
    let bare = || Error::Parse("a part header has a bare CR or LF".into());
    let mut at = from;
    while let Some(found) = memchr::memchr2(b'\r', b'\n', &data[at..]) {
        let cr = at + found;
        if data[cr] == b'\n' {
            return Err(bare());
        }
        let Some(&next) = data.get(cr + 1) else {
            return Ok(Scan::More(cr));
        };
        if next != b'\n' {
            return Err(bare());
        }
        if cr == 0 && starts_block {
            return Err(Error::Parse("a part has no headers".into()));
        }
        // After a line's CRLF: another line, or a CRLF. That CRLF is the empty line before
        // the body, or the CRLF of a delimiter that follows at once (RFC 2046:
        // `body-part := MIME-part-headers [CRLF *OCTET]`): an empty part.
        let rest = &data[cr + 2..];
        if rest.starts_with(b"\r\n") {
            if rest.starts_with(delimiter) {
                return Ok(Scan::Found {
                    end: cr,
                    after: BlockEnd::Delimiter,
                    next: cr + 2 + delimiter.len(),
                });
            }
            if rest.len() >= delimiter.len() || !delimiter.starts_with(rest) {
                return Ok(Scan::Found {
                    end: cr,
                    after: BlockEnd::EmptyLine,
                    next: cr + 4,
                });
            }
            return Ok(Scan::More(cr));
        }
        if rest.is_empty() || rest == b"\r" {
            return Ok(Scan::More(cr));
        }
        at = cr + 2;
    }
    Ok(Scan::More(data.len()))
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

    /// A file's data followed by `\r\n--XyZX`: no delimiter, so the part never ends well
    /// (this failed before: the part ended at `\r\n--XyZ` and only the next part failed).
    #[tokio::test]
    async fn a_part_ends_only_at_a_whole_delimiter_line() {
        const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\ndata\r\n--XyZX\r\n--XyZ--\r\n";
        for split in 1..BODY.len() {
            let stream = futures_util::stream::iter(
                [&BODY[..split], &BODY[split..]]
                    .into_iter()
                    .map(|chunk| Ok::<_, BodyError>(Bytes::from_static(chunk))),
            );
            let mut multipart = Multipart::new(stream, "XyZ");
            let mut field = multipart.next_field().await.unwrap().unwrap();
            let mut data = Vec::new();
            let end = loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => data.extend_from_slice(&chunk),
                    other => break other,
                }
            };
            assert!(
                matches!(&end, Err(Error::Parse(message)) if message.contains("CRLF")),
                "{split}: {end:?}"
            );
            assert!(data.starts_with(b"data"), "{split}");
        }
        // Padding and CRLF, or `--`: the part ends and the body reads on.
        for good in [&b"  \t\r\n"[..], b"--"] {
            let mut body =
                b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--XyZ".to_vec();
            body.extend_from_slice(good);
            if good != b"--" {
                body.extend_from_slice(
                    b"Content-Disposition: form-data; name=\"g\"\r\n\r\nw\r\n--XyZ--",
                );
            }
            let stream = futures_util::stream::iter([Ok::<_, BodyError>(Bytes::from(body))]);
            let mut multipart = Multipart::new(stream, "XyZ");
            let mut field = multipart.next_field().await.unwrap().unwrap();
            assert_eq!(field.chunk().await.unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(field.chunk().await.unwrap(), None);
        }
    }

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

    /// One part as the tests see it: name, file name, content type, body.
    type Part = (Option<String>, Option<String>, Option<String>, Vec<u8>);

    /// Reads a whole body given as `chunks`; the first error as its message.
    async fn read_all(chunks: Vec<Bytes>) -> Result<Vec<Part>, String> {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, BodyError>));
        let mut multipart = Multipart::new(stream, "XyZ");
        let mut parts = Vec::new();
        while let Some(mut field) = multipart.next_field().await.map_err(|e| e.to_string())? {
            let (name, file, content_type) = (
                field.name().map(str::to_owned),
                field.file_name().map(str::to_owned),
                field.content_type().map(str::to_owned),
            );
            let mut data = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
                data.extend_from_slice(&chunk);
            }
            parts.push((name, file, content_type, data));
        }
        Ok(parts)
    }

    /// Reads `body` whole, cut in two at every point, and byte by byte; all must agree.
    async fn read_every_way(body: &[u8]) -> Result<Vec<Part>, String> {
        let whole = read_all(vec![Bytes::copy_from_slice(body)]).await;
        for split in 1..body.len() {
            let pieces = vec![
                Bytes::copy_from_slice(&body[..split]),
                Bytes::copy_from_slice(&body[split..]),
            ];
            assert_eq!(read_all(pieces).await, whole, "split at {split}");
        }
        let bytes = body.chunks(1).map(Bytes::copy_from_slice).collect();
        assert_eq!(read_all(bytes).await, whole, "byte by byte");
        whole
    }

    /// A body of one part with `headers` (lines joined by CRLF) and `data`.
    fn one_part(headers: &str, data: &str) -> Vec<u8> {
        format!("--XyZ\r\n{headers}\r\n\r\n{data}\r\n--XyZ--\r\n").into_bytes()
    }

    fn part(name: &str, file: Option<&str>, data: &[u8]) -> Part {
        (
            Some(name.to_owned()),
            file.map(str::to_owned),
            None,
            data.to_vec(),
        )
    }

    #[tokio::test]
    async fn headers_followed_by_the_next_delimiter_make_an_empty_part() {
        // RFC 2046: body-part := MIME-part-headers [CRLF *OCTET]; after the last header's
        // CRLF comes the delimiter's CRLF, not an empty line: the file is empty and the text
        // field is the next part (the old reader stored the field's bytes as the file).
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"e.txt\"\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\ntext\r\n--XyZ--\r\n";
        assert_eq!(
            read_every_way(body).await.unwrap(),
            [part("f", Some("e.txt"), b""), part("t", None, b"text")]
        );
        // The last part, and padding after its delimiter.
        let last = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--XyZ \t\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n--XyZ--";
        assert_eq!(
            read_every_way(last).await.unwrap(),
            [part("a", None, b""), part("b", None, b"")]
        );
        // With an empty line as well, the body is empty too.
        let blank = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"e.txt\"\r\n\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\ntext\r\n--XyZ--\r\n";
        assert_eq!(
            read_every_way(blank).await.unwrap(),
            [part("f", Some("e.txt"), b""), part("t", None, b"text")]
        );
        // A body that merely starts like a delimiter is data.
        let near = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--XyX\r\n--XyZ--";
        assert_eq!(
            read_every_way(near).await.unwrap(),
            [part("a", None, b"--XyX")]
        );
        // Without the second CRLF the delimiter line is one more header line: refused.
        let short = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n--XyZ--\r\n";
        assert!(read_every_way(short).await.is_err());
        let short = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nx\r\n--XyZ--";
        let error = read_every_way(short).await.unwrap_err();
        assert!(error.contains("malformed part header"), "{error}");
    }

    #[tokio::test]
    async fn a_part_without_headers_is_refused() {
        for body in [
            &b"--XyZ\r\n\r\nbody\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n"[..],
            b"--XyZ\r\n\r\n--XyZ--\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\n\r\n2\r\n--XyZ--\r\n",
        ] {
            let error = read_every_way(body).await.unwrap_err();
            assert!(error.contains("no headers"), "{error}");
        }
    }

    #[tokio::test]
    async fn bare_cr_and_lf_in_part_headers_are_refused() {
        for headers in [
            "Content-Disposition: form-data; name=\"a\"\nX-Evil: 1",
            "Content-Disposition: form-data; name=\"a\"\rX-Evil: 1",
            "X-Evil: 1\n\nContent-Disposition: form-data; name=\"a\"",
            "Content-Disposition: form-data; name=\"a\r\"",
            "Content-Disposition: form-data; name=\"a\"; filename=\"x\n.txt\"",
            "Content-Disposition: form-data; name=\"a\"\n",
        ] {
            let error = read_every_way(&one_part(headers, "x")).await.unwrap_err();
            assert!(error.contains("bare CR or LF"), "{headers:?}: {error}");
        }
        // The empty line itself may not be a bare LF either.
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\n\nx\r\n--XyZ--\r\n";
        assert!(read_every_way(body).await.is_err());
    }

    #[tokio::test]
    async fn header_names_must_be_tokens() {
        for headers in [
            "Content Disposition: form-data; name=\"a\"",
            "Content-Disposition : form-data; name=\"a\"",
            "Content-Disposition: form-data; name=\"a\"\r\nX(y): z",
            "Content-Disposition: form-data; name=\"a\"\r\nX\u{e9}: z",
            "Content-Disposition: form-data; name=\"a\"\r\n: no name",
            "Content-Disposition: form-data; name=\"a\"\r\nX\0: z",
        ] {
            let error = read_every_way(&one_part(headers, "x")).await.unwrap_err();
            assert!(error.contains("header name"), "{headers:?}: {error}");
        }
        let ok = "content-disposition: form-data; name=\"a\"\r\nX-Odd!#$%&'*+.^_`|~1: v";
        assert_eq!(
            read_every_way(&one_part(ok, "x")).await.unwrap(),
            [part("a", None, b"x")]
        );
    }

    #[tokio::test]
    async fn only_form_data_dispositions_are_read() {
        for disposition in ["attachment; name=\"a\"", "inline", "; name=\"a\"", ""] {
            let headers = format!("Content-Disposition: {disposition}");
            let error = read_every_way(&one_part(&headers, "x")).await.unwrap_err();
            assert!(error.contains("form-data"), "{disposition:?}: {error}");
        }
        let upper = one_part("Content-Disposition: FORM-DATA ; name=\"a\"", "x");
        assert_eq!(
            read_every_way(&upper).await.unwrap(),
            [part("a", None, b"x")]
        );
    }

    #[tokio::test]
    async fn folded_header_lines_are_unfolded() {
        let headers = "Content-Disposition: form-data;\r\n name=\"f\";\r\n\t \tfilename=\"a b.txt\"\r\nContent-Type: text/plain;\r\n charset=utf-8";
        let parts = read_every_way(&one_part(headers, "x")).await.unwrap();
        assert_eq!(
            parts,
            [(
                Some("f".to_owned()),
                Some("a b.txt".to_owned()),
                Some("text/plain; charset=utf-8".to_owned()),
                b"x".to_vec()
            )]
        );
        // A fold with nothing before it to continue.
        let error = read_every_way(&one_part(
            " Content-Disposition: form-data; name=\"a\"",
            "x",
        ))
        .await
        .unwrap_err();
        assert!(error.contains("fold"), "{error}");
    }

    #[tokio::test]
    async fn encoded_transfer_encodings_are_refused() {
        for encoding in ["base64", "quoted-printable", "x-uuencode"] {
            let headers = format!(
                "Content-Disposition: form-data; name=\"f\"; filename=\"a\"\r\nContent-Transfer-Encoding: {encoding}"
            );
            let error = read_every_way(&one_part(&headers, "aGk="))
                .await
                .unwrap_err();
            assert_eq!(
                error,
                format!("Content-Transfer-Encoding {encoding} is not supported")
            );
        }
        for encoding in ["7bit", "8BIT", "Binary", " binary "] {
            let headers = format!(
                "Content-Disposition: form-data; name=\"f\"\r\nContent-Transfer-Encoding:{encoding}"
            );
            assert_eq!(
                read_every_way(&one_part(&headers, "x")).await.unwrap(),
                [part("f", None, b"x")],
                "{encoding:?}"
            );
        }
    }

    #[tokio::test]
    async fn disposition_parameters_are_read_through_the_reader() {
        let headers = "Content-Disposition: form-data; name = \"f\" ; foo; filename = \"a;b.txt\"";
        assert_eq!(
            read_every_way(&one_part(headers, "x")).await.unwrap(),
            [part("f", Some("a;b.txt"), b"x")]
        );
        let headers = "Content-Disposition: form-data; name=\"f\"; filename=\"euro.txt\"; filename*=UTF-8''%e2%82%ac.txt";
        assert_eq!(
            read_every_way(&one_part(headers, "x")).await.unwrap(),
            [part("f", Some("\u{20ac}.txt"), b"x")]
        );
    }

    #[tokio::test]
    async fn at_most_32_headers_per_part() {
        let mut lines: Vec<String> = (1..MAX_PART_HEADERS).map(|i| format!("X-{i}: v")).collect();
        lines.push("Content-Disposition: form-data; name=\"a\"".to_owned());
        let at_limit = one_part(&lines.join("\r\n"), "x");
        assert_eq!(read_all(vec![at_limit.into()]).await.unwrap().len(), 1);
        lines.push("X-Last: v".to_owned());
        let over = one_part(&lines.join("\r\n"), "x");
        let error = read_all(vec![over.into()]).await.unwrap_err();
        assert!(error.contains("more than 32 headers"), "{error}");
    }

    /// Reads every part of `chunks`; the reader's counters and (parts, body bytes).
    async fn counted(chunks: Vec<Bytes>) -> (usize, usize, usize, usize) {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, BodyError>));
        let mut multipart = Multipart::new(stream, "XyZ");
        let (mut parts, mut bytes) = (0, 0);
        while let Some(mut field) = multipart.next_field().await.unwrap() {
            parts += 1;
            while let Some(chunk) = field.chunk().await.unwrap() {
                bytes += chunk.len();
            }
        }
        (multipart.scanned, multipart.copied, parts, bytes)
    }

    #[tokio::test]
    async fn the_preamble_is_searched_once_however_it_is_cut() {
        // Near-misses of the delimiter everywhere, delivered a byte at a time: the old reader
        // searched everything seen so far on every pull (n^2 / 2 bytes: 2 * 10^10 here).
        let preamble = b"\r\n--Xy\r\r\n-".repeat(20_000);
        let body = [
            &preamble[..],
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--",
        ]
        .concat();
        let delimiter = "\r\n--XyZ".len();
        let chunks: Vec<Bytes> = body.chunks(1).map(Bytes::copy_from_slice).collect();
        let (scanned, copied, parts, bytes) = counted(chunks).await;
        assert_eq!((parts, bytes), (1, 1));
        assert!(
            scanned <= delimiter * body.len(),
            "{scanned} bytes searched"
        );
        assert!(copied <= delimiter * body.len(), "{copied} bytes copied");
        // In one chunk it is one search.
        let (scanned, copied, ..) = counted(vec![Bytes::from(body.clone())]).await;
        assert!(scanned <= body.len() + 2 * delimiter, "{scanned}");
        assert!(copied <= delimiter, "{copied}");
    }

    #[tokio::test]
    async fn parts_in_one_chunk_are_read_without_copies() {
        // 100k parts in one 10 MB chunk, as an in-process body or a large proxy frame gives
        // them: the old reader copied the rest of the chunk for every part (~5 * 10^11 bytes).
        let one = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"b\"\r\n\r\n01234567890123456789\r\n";
        let count = 100_000;
        let mut body = one.repeat(count);
        body.extend_from_slice(b"--XyZ--\r\n");
        let (_, copied, parts, bytes) = counted(vec![Bytes::from(body.clone())]).await;
        assert_eq!((parts, bytes), (count, 20 * count));
        // Only the look-ahead at the start, for a first delimiter without its CRLF.
        assert!(copied < "\r\n--XyZ".len(), "{copied} bytes copied");
        // Cut into 64 KiB chunks, only the header blocks that span two chunks are copied,
        // with at most a delimiter's length of look-ahead each.
        let chunks: Vec<Bytes> = body.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
        let spanning = chunks.len();
        let (_, copied, parts, bytes) = counted(chunks).await;
        assert_eq!((parts, bytes), (count, 20 * count));
        assert!(copied <= spanning * one.len(), "{copied} bytes copied");
    }
}

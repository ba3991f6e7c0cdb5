//! The upload client: one multipart request over a plain TCP connection, its file part sent
//! straight from a file (`std::io::copy` from a `File` to a `TcpStream` is `sendfile` on
//! Linux), so that the client neither buffers the body nor spends much CPU.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The multipart boundary of every benchmark request.
const BOUNDARY: &str = "----tower-upload-bench-7MA4YWxkTrZu0gW";

/// A file of pseudo-random bytes that uploads are sent from.
pub(crate) struct Source {
    _dir: tempfile::TempDir,
    path: PathBuf,
    len: u64,
}

impl Source {
    /// Makes a `len`-byte file in `dir` (default: `/dev/shm` when there is one, so that the
    /// client's reads cost no disk I/O and leave no dirty pages behind, else the temp folder).
    pub(crate) fn create(dir: Option<&Path>, len: u64) -> io::Result<Self> {
        let shm = Path::new("/dev/shm");
        let parent = match dir {
            Some(dir) => dir.to_owned(),
            None if shm.is_dir() => shm.to_owned(),
            None => std::env::temp_dir(),
        };
        let dir = tempfile::Builder::new()
            .prefix("tower-upload-bench-src-")
            .tempdir_in(parent)?;
        let path = dir.path().join("source.bin");
        let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        // xorshift64*: the data must not contain the boundary, nothing more.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 1 << 20];
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let mut left = len;
        let mut n = 0u64;
        while left > 0 {
            // Each MiB differs from the others in its first bytes.
            block[..8].copy_from_slice(&n.to_le_bytes());
            let take = left.min(block.len() as u64) as usize;
            file.write_all(&block[..take])?;
            left -= take as u64;
            n += 1;
        }
        file.flush()?;
        Ok(Self {
            _dir: dir,
            path,
            len,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// How one upload went, as the client saw it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: u16,
    /// From connecting to the end of the answer.
    pub(crate) elapsed: Duration,
    pub(crate) answer: String,
}

/// `POST /upload?key={key}` with one file part named `file_name`: the first `len` bytes of
/// `source`, streamed from the file. The key also goes in `X-Progress-ID`, where nginx's
/// upload progress module looks for it.
pub(crate) fn upload(
    addr: SocketAddr,
    key: &str,
    file_name: &str,
    source: &Path,
    len: u64,
) -> io::Result<Outcome> {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let body_len = head.len() as u64 + len + tail.len() as u64;
    let request = format!(
        "POST /upload?key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {body_len}\r\nX-Progress-ID: {key}\r\nConnection: close\r\n\r\n{head}"
    );
    let mut file = std::fs::File::open(source)?;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let sent = (|| {
        stream.write_all(request.as_bytes())?;
        let copied = io::copy(&mut (&mut file).take(len), &mut stream)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "the source file is shorter than {len} bytes"
            )));
        }
        stream.write_all(tail.as_bytes())
    })();
    // A server may answer early (and close) on an error: read its answer either way.
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    let elapsed = started.elapsed();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    let Some(status) = status else {
        sent?;
        read?;
        return Err(io::Error::other(format!("no HTTP answer: {response:?}")));
    };
    let answer = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok(Outcome {
        status,
        elapsed,
        answer,
    })
}

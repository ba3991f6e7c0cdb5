//! A bounded request loop over loopback: a few keep-alive hyper HTTP/1.1 client connections
//! asking the same `GET` again and again for a fixed time.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The first answer to `GET path`, to check that the server answers what we think it does.
pub(crate) async fn get_once(addr: SocketAddr, path: &str) -> io::Result<(u16, Bytes)> {
    let (mut sender, connection) = connect(addr).await?;
    let response = sender
        .send_request(request(path)?)
        .await
        .map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    drop(sender);
    connection.abort();
    Ok((status, body))
}

/// Sends `GET path` on `connections` connections for `duration`; returns how many 200
/// answers came back (each read to its end).
pub(crate) async fn hammer(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> io::Result<u64> {
    let deadline = Instant::now() + duration;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let path = path.to_owned();
        workers.push(tokio::spawn(async move {
            let (mut sender, connection) = connect(addr).await?;
            let mut answers = 0u64;
            while Instant::now() < deadline {
                sender.ready().await.map_err(io::Error::other)?;
                let response = sender
                    .send_request(request(&path)?)
                    .await
                    .map_err(io::Error::other)?;
                if response.status() != 200 {
                    return Err(io::Error::other(format!("{path}: {}", response.status())));
                }
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(io::Error::other)?;
                answers += 1;
            }
            drop(sender);
            connection.abort();
            Ok::<_, io::Error>(answers)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await.map_err(io::Error::other)??;
    }
    Ok(total)
}

type Connection = tokio::task::JoinHandle<()>;

async fn connect(addr: SocketAddr) -> io::Result<(http1::SendRequest<Empty<Bytes>>, Connection)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, connection))
}

fn request(path: &str) -> io::Result<Request<Empty<Bytes>>> {
    Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Empty::new())
        .map_err(io::Error::other)
}

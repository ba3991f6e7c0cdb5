//! The `nginx` baseline: nginx (Debian's 1.22 with `libnginx-mod-http-uploadprogress`)
//! configured as a site that wants upload progress would configure it: the request body
//! written to a temp file (`client_body_in_file_only clean`), tracked by `track_uploads`, then
//! proxied to a second `server` block with the body off. It runs as a child of the
//! benchmark, with two workers, in a temp folder of its own that its workers can write to.
//!
//! `BENCH_NGINX` names the binary (default `nginx` on the `PATH`), `BENCH_NGINX_MODULE` the
//! module (default Debian's path). `scripts/bench` installs both with apt when missing.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_uploadprogress_module.so";

/// The nginx binary to run.
pub(crate) fn binary() -> String {
    std::env::var("BENCH_NGINX").unwrap_or_else(|_| "nginx".to_owned())
}

fn module() -> PathBuf {
    std::env::var_os("BENCH_NGINX_MODULE").map_or_else(|| DEFAULT_MODULE.into(), PathBuf::from)
}

/// Whether nginx and the upload progress module are there (checked once per run).
pub(crate) fn available() -> Result<(), String> {
    if !module().is_file() {
        return Err(format!(
            "no upload progress module at {} (apt-get install libnginx-mod-http-uploadprogress)",
            module().display()
        ));
    }
    match Command::new(binary())
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!("cannot run {:?} (apt-get install nginx)", binary())),
    }
}

/// A port nobody listens on right now (nginx needs it in its configuration).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config(dir: &Path, port: u16, backend: u16) -> String {
    let d = dir.display();
    let module = module();
    let module = module.display();
    format!(
        "load_module {module};
daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upload_progress uploads 1m;
    server {{
        listen 127.0.0.1:{port};
        location = /upload {{
            client_max_body_size 0;
            client_body_in_file_only clean;
            proxy_pass http://127.0.0.1:{backend}/done;
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            track_uploads uploads 30s;
        }}
        location = /progress {{
            report_uploads uploads;
        }}
    }}
    server {{
        listen 127.0.0.1:{backend};
        location / {{
            return 200 \"stored\\n\";
        }}
    }}
}}
"
    )
}

/// Starts nginx (its master process is the returned child) on a fresh port, its files in
/// `dir`; returns once it accepts connections.
pub(crate) fn start(dir: &Path) -> io::Result<(Child, SocketAddr)> {
    // The workers run as nginx's unprivileged user: they must be able to write here.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
    let port = free_port()?;
    let backend = free_port()?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, config(dir, port, backend))?;
    let mut child = Command::new(binary())
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            return Err(io::Error::other(format!("nginx exited ({status}): {log}")));
        }
        if TcpStream::connect(addr).is_ok() && TcpStream::connect(("127.0.0.1", backend)).is_ok() {
            return Ok((child, addr));
        }
        if Instant::now() > deadline {
            stop(&mut child);
            return Err(io::Error::other("nginx did not start listening"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops nginx: `SIGTERM` to its master, which ends its workers (a graceful `SIGQUIT` would
/// wait for `track_uploads`' 30 s timers); `SIGKILL` to all of them if it lingers.
pub(crate) fn stop(child: &mut Child) {
    let workers = workers(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in workers {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The worker processes of the master `pid` (its children).
pub(crate) fn workers(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            // Field 4 (ppid) is index 1 after the name.
            after_name
                .split_whitespace()
                .nth(1)
                .and_then(|ppid| ppid.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

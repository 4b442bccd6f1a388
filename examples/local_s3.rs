//! A local S3-compatible server, so spillway's redirects and `offload` can be tried with no AWS
//! account: s3s-fs (the server the test suite uses), which checks SigV4 signatures and upload
//! checksums, serving the bucket of the shipped `proxy.yaml` with its demo keys.
//!
//! ```sh
//! cargo run --release --example local_s3                      # 127.0.0.1:9000, ./target/local-s3
//! cargo run --release --example local_s3 -- --port 9100 --root /tmp/s3 --bucket media
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

const USAGE: &str = "usage: local_s3 [--port 9000] [--root target/local-s3] [--bucket example-media] [--access-key minioadmin] [--secret-key minioadmin]";

struct Args {
    port: u16,
    root: PathBuf,
    bucket: String,
    access_key: String,
    secret_key: String,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        port: 9000,
        root: PathBuf::from("target/local-s3"),
        bucket: "example-media".to_owned(),
        access_key: "minioadmin".to_owned(),
        secret_key: "minioadmin".to_owned(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(|e| format!("--port {value}: {e}"))?,
            "--root" => args.root = PathBuf::from(value),
            "--bucket" => args.bucket = value,
            "--access-key" => args.access_key = value,
            "--secret-key" => args.secret_key = value,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let bucket = args.root.join(&args.bucket);
    std::fs::create_dir_all(&bucket)
        .map_err(|e| format!("cannot create {}: {e}", bucket.display()))?;
    let fs = s3s_fs::FileSystem::new(&args.root)
        .map_err(|e| format!("cannot serve {}: {e:?}", args.root.display()))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        args.access_key.as_str(),
        args.secret_key.as_str(),
    ));
    let service = builder.build();
    let address = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!(
        "local S3 on http://{address}, bucket {} in {}",
        args.bucket,
        args.root.display()
    );
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        // Responses are small and written in pieces: without this, Nagle's algorithm meets the
        // client's delayed ACK and requests stall for up to 40 ms.
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(socket);
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service)
                .await;
        });
    }
}

//! The floor under any TCP proxy on this machine: a bare tokio relay that
//! copies bytes both ways and does nothing else (no parsing, no login, no
//! recording), on the same runtime taskgate uses. `bench/pgbench-matrix.sh`
//! runs it beside pgbouncer and taskgate with `FLOOR=1`, so the part of
//! taskgate's cost that is relaying, not recording, is measured in one run.
//!
//!   relay-floor LISTEN UPSTREAM     e.g. relay-floor 127.0.0.1:7000 127.0.0.1:5432
//!
//! Prints `relay listening on ADDR` once bound.

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: relay-floor LISTEN UPSTREAM");
    };
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (mut client, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let relay = async {
                client.set_nodelay(true)?;
                let mut server = TcpStream::connect(&upstream).await?;
                server.set_nodelay(true)?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await
            };
            if let Err(e) = relay.await {
                eprintln!("relay: {e}");
            }
        });
    }
}

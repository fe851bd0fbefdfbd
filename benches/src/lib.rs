//! Shared bits of the benchmark binaries: argument parsing, the descriptor
//! limit, the servers' runtime; the WebSocket client (`ws`) and the
//! measuring helpers (`measure`) of the load generators.

use std::collections::HashMap;

/// Raise the soft RLIMIT_NOFILE to the hard limit (10k idle connections
/// need more than the usual 1024). Returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        let cur = lim.rlim_cur as u64;
        cur
    }
}

/// `--key value` arguments (and bare words, as positional arguments).
pub struct Args {
    pub positional: Vec<String>,
    named: HashMap<String, String>,
}

impl Args {
    pub fn parse() -> Args {
        let mut positional = Vec::new();
        let mut named = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let value = it
                    .next()
                    .unwrap_or_else(|| die(&format!("--{key} takes a value")));
                named.insert(key.to_string(), value);
            } else {
                positional.push(a);
            }
        }
        Args { positional, named }
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.named.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{key}: cannot parse {v:?}"))),
        }
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.named.get(key).map(String::as_str)
    }
}

pub fn die(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

/// The servers' runtime: multi-threaded with `workers` worker threads
/// (0: one per core), as polysocket's `Server` builds it.
pub fn server_runtime(workers: usize) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().expect("tokio runtime")
}

/// Runs a peer echo server: parses `--host/--port/--workers`, binds, and
/// runs the accept loop as a task on the server's workers (as polysocket's
/// `Server` does, so no extra thread works), handing every accepted socket
/// (TCP_NODELAY set) to `handle` in its own task.
pub fn serve<F, Fut>(name: &str, default_port: u16, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let args = Args::parse();
    let host: String = args.get("host", "127.0.0.1".to_string());
    let port: u16 = args.get("port", default_port);
    let workers: usize = args.get("workers", 0);
    raise_nofile();
    let rt = server_runtime(workers);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((host.as_str(), port)))
        .unwrap_or_else(|e| die(&format!("{name}: cannot bind {host}:{port}: {e}")));
    println!(
        "{name} on ws://{}",
        listener.local_addr().expect("bound address")
    );
    let accept = rt.spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(stream));
        }
    });
    let _ = rt.block_on(accept);
}

pub mod measure;
pub mod ws;

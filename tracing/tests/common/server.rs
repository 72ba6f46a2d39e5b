//! A tiny HTTP/1.1 server on a real TCP socket, standing in for the gateway's native routes:
//! it records each request (path, authorization, body) and answers what a script says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tarn_tracing::Route;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn route(&self) -> Route {
        match self.path.as_str() {
            "/ingestion/insert_process" => Route::Process,
            "/ingestion/insert_stream" => Route::Stream,
            "/ingestion/insert_block" => Route::Block,
            other => panic!("unexpected path {other}"),
        }
    }
}

/// Status and `Retry-After` to answer for the request numbered `n` (from 0).
pub type Script = Arc<dyn Fn(usize) -> (u16, Option<&'static str>) + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (`127.0.0.1:0` for any port).
    pub fn start(addr: &str, script: Script, received: Arc<Mutex<Vec<Received>>>) -> Server {
        let listener = TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            std::thread::spawn(move || {
                let mut handlers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (stop, received, script, counter) = (
                                Arc::clone(&stop),
                                Arc::clone(&received),
                                Arc::clone(&script),
                                Arc::clone(&counter),
                            );
                            handlers.push(std::thread::spawn(move || {
                                serve(conn, &stop, &received, &*script, &counter);
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                for h in handlers {
                    let _joined = h.join();
                }
            })
        };
        Server {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and closes every connection.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _joined = t.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    stop: &AtomicBool,
    received: &Mutex<Vec<Received>>,
    script: &(dyn Fn(usize) -> (u16, Option<&'static str>) + Send + Sync),
    counter: &AtomicUsize,
) {
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut writer = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        // Request line and headers.
        let mut line = String::new();
        let mut head = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line == "\r\n" {
                        break;
                    }
                    head.push(std::mem::take(&mut line));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(_) => return,
            }
        }
        let path = head
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_owned();
        let header = |name: &str| {
            head.iter().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        let mut read = 0;
        while read < len {
            match reader.read(&mut body[read..]) {
                Ok(0) => return,
                Ok(n) => read += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let (status, retry_after) = script(n);
        if (200..300).contains(&status) {
            received.lock().expect("lock").push(Received {
                path,
                authorization: header("authorization"),
                body,
            });
        }
        let retry = retry_after
            .map(|r| format!("Retry-After: {r}\r\n"))
            .unwrap_or_default();
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{retry}Connection: keep-alive\r\n\r\n"
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

pub fn requests(received: &Mutex<Vec<Received>>) -> Vec<(Route, Vec<u8>)> {
    received
        .lock()
        .expect("lock")
        .iter()
        .map(|r| (r.route(), r.body.clone()))
        .collect()
}

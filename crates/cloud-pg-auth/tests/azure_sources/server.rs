//! A canned-response HTTP/1.1 server on 127.0.0.1, on its own thread and runtime (so it
//! outlives the runtimes of the tests). Keeps connections alive, counts requests and
//! connections, and answers each request with the next canned response (the last repeats).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug)]
pub(crate) struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
    /// No `content-length`: the body runs until the server closes the connection.
    close_delimited: bool,
}

pub(crate) fn reply(status: u16, body: impl Into<String>) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.into(),
        delay: Duration::ZERO,
        close_delimited: false,
    }
}

impl Canned {
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn close_delimited(mut self) -> Self {
        self.close_delimited = true;
        self
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

impl Recorded {
    pub(crate) fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub(crate) fn start(responses: Vec<Canned>) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (reqs, conns) = (Arc::clone(&requests), Arc::clone(&connections));
        let responses = Arc::new(responses);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            conns.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(stream, Arc::clone(&reqs), Arc::clone(&responses)));
                        }
                    }
                }
            });
        });
        Self {
            addr,
            requests,
            connections,
            stop: Some(stop),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    requests: Arc<Mutex<Vec<Recorded>>>,
    responses: Arc<Vec<Canned>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        buf.drain(..head_end + length);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let recorded = Recorded {
            method,
            path: path.to_string(),
            query: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            body,
        };
        let canned = {
            let mut all = requests.lock().unwrap();
            all.push(recorded);
            responses[(all.len() - 1).min(responses.len() - 1)].clone()
        };
        tokio::time::sleep(canned.delay).await;
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\n",
            canned.status
        );
        if canned.close_delimited {
            out.push_str("connection: close\r\n");
        } else {
            out.push_str(&format!("content-length: {}\r\n", canned.body.len()));
        }
        for (k, v) in &canned.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&canned.body);
        if stream.write_all(out.as_bytes()).await.is_err() || canned.close_delimited {
            return;
        }
    }
}

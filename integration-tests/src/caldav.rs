//! A real CalDAV server for tests: Radicale (from PyPI, installed into the
//! tools venv by `scripts/install-test-tools`) on 127.0.0.1 with a free port,
//! htpasswd `plain` users, `owner_only` rights and its own storage directory;
//! stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tools venv's Python: `JUY_PYTHON` (set by `cargo xtask test`) or the default venv.
pub fn python() -> PathBuf {
    let python = std::env::var_os("JUY_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/juy-calendar/venv/bin/python")
    });
    assert!(
        python.exists(),
        "{} is missing: run `scripts/install-test-tools` or `cargo xtask test`",
        python.display()
    );
    python
}

/// A running Radicale.
pub struct Radicale {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Radicale {
    /// Starts Radicale with these `(user, password)` pairs and waits until it answers.
    pub fn start(users: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("radicale dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let htpasswd = dir.path().join("users");
        let lines: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
        std::fs::write(&htpasswd, lines).expect("htpasswd");
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n\n[auth]\ntype = htpasswd\nhtpasswd_filename = {}\nhtpasswd_encryption = plain\n\n[rights]\ntype = owner_only\n\n[storage]\nfilesystem_folder = {}\n\n[logging]\nlevel = warning\n",
                htpasswd.display(),
                dir.path().join("collections").display()
            ),
        )
        .expect("radicale config");
        let child = Command::new(python())
            .args(["-m", "radicale", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start radicale");
        let server = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "radicale did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the front shares with its handler.
#[derive(Clone)]
struct FrontState {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<(String, String)>>>,
    late_put: Arc<Mutex<Option<u64>>>,
}

/// A front for Radicale that logs each request's method and path, so tests
/// can count CalDAV requests, and can hold back the answer of the next `PUT`
/// (carried out by Radicale, answered late: a client timing out meanwhile
/// never learns that its write was made).
pub struct CalDavFront {
    /// `http://127.0.0.1:PORT`, to use in place of Radicale's URL.
    pub base_url: String,
    log: Arc<Mutex<Vec<(String, String)>>>,
    late_put: Arc<Mutex<Option<u64>>>,
}

#[allow(clippy::unwrap_used)] // test harness: a broken front should fail the test loudly
async fn forward(
    axum::extract::State(front): axum::extract::State<FrontState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    front
        .log
        .lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_owned()));
    let hold = if method == axum::http::Method::PUT {
        front.late_put.lock().unwrap().take()
    } else {
        None
    };
    let target = format!("{}{}", front.upstream, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = front
        .http
        .request(reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(), target);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = request.body(body).send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut out = axum::http::HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out.insert(
                axum::http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
    }
    let body = answer.bytes().await.unwrap();
    if let Some(ms) = hold {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    (status, out, body).into_response()
}

impl CalDavFront {
    /// Starts a front for the server at `upstream` on a free port.
    pub async fn start(upstream: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let late_put = Arc::new(Mutex::new(None));
        let state = FrontState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            log: Arc::clone(&log),
            late_put: Arc::clone(&late_put),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}"),
            log,
            late_put,
        }
    }

    /// The port it listens on (for the URL allow-list).
    pub fn port(&self) -> u16 {
        self.base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Every request so far: (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }

    /// Holds the answer of the next `PUT` back for `ms` milliseconds.
    pub fn answer_next_put_late(&self, ms: u64) {
        if let Ok(mut late) = self.late_put.lock() {
            *late = Some(ms);
        }
    }
}

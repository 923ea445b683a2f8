//! A real CalDAV server for tests: Radicale (from PyPI, installed into the
//! tools venv by `scripts/install-test-tools`) on 127.0.0.1 with a free port,
//! htpasswd `plain` users, `owner_only` rights and its own storage directory;
//! stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

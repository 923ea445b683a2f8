//! Developer commands, so a fresh machine needs exactly two:
//! `cargo xtask dev` (the service with its database and a dev token) and
//! `cargo xtask test` (the whole test suite against real servers); plus
//! `cargo xtask bench` (the sync pipeline's and availability's benchmarks, BENCHMARKS.md).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the service locally: a private PostgreSQL (unless DATABASE_URL is set), migrations, a seeded dev user, tokens.
    Dev,
    /// Run the whole test suite against real PostgreSQL, a real gRPC client and real HTTP.
    Test {
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Benchmark the sync pipeline (sandbox/Radicale over HTTP → client → normaliser → encryption → PostgreSQL) and free/busy and slot finding, release build.
    Bench {
        /// `sync` or `availability` (one target), scenario name filters, and options for the bench binaries (`--list`, `--phases`, `--all`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    // Ctrl-C reaches the child too; xtask stays alive to stop its database afterwards.
    let _ = ctrlc::set_handler(|| {});
    match Cli::parse().command {
        Task::Dev => dev(),
        Task::Test { args } => test(&args),
        Task::Bench { args } => bench(&args),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> anyhow::Result<PathBuf> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

fn check(status: ExitStatus, what: &str) -> anyhow::Result<()> {
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A private PostgreSQL cluster from the local binaries, stopped on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    url: String,
    as_postgres: bool,
}

fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().context(
        "PostgreSQL server binaries are missing: run `scripts/install-test-tools` (or `sudo apt-get install -y postgresql`), or set DATABASE_URL",
    )
}

fn pg_command(cluster_bin: &Path, as_postgres: bool, program: &str) -> Command {
    let program = cluster_bin.join(program);
    if as_postgres {
        // initdb and postgres refuse to run as root.
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How a private cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// No fsync, asynchronous commits: for tests, which throw their data away.
    Off,
    /// PostgreSQL's defaults (fsync, synchronous commits), as in production: for benchmarks.
    Default,
}

impl Cluster {
    fn start(name: &str) -> anyhow::Result<Self> {
        Self::start_with(name, Durability::Off)
    }

    fn start_with(name: &str, durability: Durability) -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let as_postgres = is_root();
        // Root's home is closed to the postgres user, so its clusters live in the temp dir.
        let dir = if as_postgres {
            std::env::temp_dir().join(format!("juy-calendar-{name}-{}", std::process::id()))
        } else {
            target_dir()?.join(name)
        };
        if !dir.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&dir)?;
            if as_postgres {
                check(
                    Command::new("chown")
                        .args(["-R", "postgres:postgres"])
                        .arg(&dir)
                        .status()?,
                    "chown",
                )?;
            }
            let status = pg_command(&bin, as_postgres, "initdb")
                .args([
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .status()
                .context("running initdb")?;
            check(status, "initdb")?;
        }
        let port = free_port()?;
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            dir.display()
        );
        if durability == Durability::Off {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let status = pg_command(&bin, as_postgres, "pg_ctl")
            .arg("-D")
            .arg(&dir)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running pg_ctl start")?;
        check(status, "starting the private PostgreSQL")?;
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        eprintln!("xtask: private PostgreSQL at {url} (data in {})", dir.display());
        Ok(Self {
            bin,
            dir,
            url,
            as_postgres,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, self.as_postgres, "pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        if self.as_postgres {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn database_url_with_name(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => url.to_owned(),
    }
}

fn create_database(cluster: &Cluster, name: &str) -> anyhow::Result<()> {
    let exists = Command::new(cluster.bin.join("psql"))
        .args([
            &cluster.url,
            "-tAc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ])
        .output()?;
    if !String::from_utf8_lossy(&exists.stdout).contains('1') {
        check(
            Command::new(cluster.bin.join("psql"))
                .args([&cluster.url, "-qc", &format!("CREATE DATABASE {name}")])
                .status()?,
            "creating the dev database",
        )?;
    }
    Ok(())
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn install_tools() -> anyhow::Result<()> {
    let root = workspace_root();
    check(
        Command::new(root.join("scripts/install-test-tools"))
            .current_dir(&root)
            .status()?,
        "scripts/install-test-tools",
    )
}

fn dev() -> anyhow::Result<()> {
    install_tools()?;
    let (url, _cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let cluster = Cluster::start("dev-postgres")?;
            create_database(&cluster, "juy_dev")?;
            (database_url_with_name(&cluster.url, "juy_dev"), Some(cluster))
        }
    };
    let state_dir = target_dir()?.join("dev");
    let caldav = Radicale::start(&state_dir)?;
    let status = cargo()
        .args(["run", "--quiet", "-p", "juy-calendar", "--", "dev", "--state-dir"])
        .arg(&state_dir)
        .env("DATABASE_URL", url)
        // Linking a CalDAV account with no server URL reaches the local Radicale.
        .env("JUY_CALDAV__DEFAULT_SERVER_URL", &caldav.url)
        .env("JUY_CALDAV__ALLOW_LIST", format!("[\"127.0.0.1:{}\"]", caldav.port))
        .env("JUY_DEV_CALDAV_USER", Radicale::USER)
        .env("JUY_DEV_CALDAV_PASSWORD", Radicale::PASSWORD)
        .status()?;
    check(status, "juy-calendar dev")
}

/// A local CalDAV server (Radicale from the tools venv) for the dev run,
/// with one user and a "Personal" calendar; stopped on drop.
struct Radicale {
    child: std::process::Child,
    url: String,
    port: u16,
}

impl Radicale {
    const USER: &str = "dev-user";
    const PASSWORD: &str = "dev-app-password";

    fn start(state_dir: &std::path::Path) -> anyhow::Result<Self> {
        let dir = state_dir.join("radicale");
        let calendar = dir
            .join("collections/collection-root")
            .join(Self::USER)
            .join("personal");
        std::fs::create_dir_all(&calendar)?;
        let props = calendar.join(".Radicale.props");
        if !props.exists() {
            std::fs::write(
                &props,
                r##"{"C:supported-calendar-component-set": "VEVENT", "D:displayname": "Personal", "ICAL:calendar-color": "#8e8e93ff", "tag": "VCALENDAR"}"##,
            )?;
        }
        std::fs::write(dir.join("users"), format!("{}:{}\n", Self::USER, Self::PASSWORD))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.join("config");
        std::fs::write(
            &config,
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n\n[auth]\ntype = htpasswd\nhtpasswd_filename = {}\n\
                 htpasswd_encryption = plain\n\n[rights]\ntype = owner_only\n\n[storage]\nfilesystem_folder = {}\n\n\
                 [logging]\nlevel = warning\n",
                dir.join("users").display(),
                dir.join("collections").display()
            ),
        )?;
        let child = Command::new(tools_dir().join("venv/bin/python"))
            .args(["-m", "radicale", "--config"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting Radicale (scripts/install-test-tools installs it): {e}"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "Radicale did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_dir() -> PathBuf {
    std::env::var_os("JUY_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/juy-calendar")))
        .unwrap_or_else(|| PathBuf::from("/tmp/juy-calendar-tools"))
}

fn test(args: &[String]) -> anyhow::Result<()> {
    let root = workspace_root();
    install_tools()?;
    let (url, _cluster) = match std::env::var("JUY_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")) {
        Ok(url) => (url, None),
        Err(_) => {
            let cluster = Cluster::start("test-postgres")?;
            (cluster.url.clone(), Some(cluster))
        }
    };
    check(
        cargo().args(["build", "-p", "juy-calendar"]).status()?,
        "building juy-calendar",
    )?;
    let bin = target_dir()?.join("debug/juy-calendar");
    let python = tools_dir().join("venv/bin/python");
    let nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = cargo();
    if nextest {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    let status = command
        .args(args)
        .env("JUY_TEST_DATABASE_URL", &url)
        .env("JUY_CALENDAR_BIN", &bin)
        .env("JUY_PYTHON", &python)
        .env("JUY_PROTO_DIR", root.join("proto"))
        .status()?;
    check(status, "the test suite")
}

/// The benchmark targets of `integration-tests/benches/`, in the order they run.
const BENCHES: &[&str] = &["sync", "availability"];

/// `cargo bench` of the benchmarks (`integration-tests/benches/*.rs`)
/// against `JUY_TEST_DATABASE_URL` / `DATABASE_URL`, or else a private
/// cluster with PostgreSQL's default durability, so commits cost what they
/// cost in production.
///
/// A word naming a bench target (`sync`, `availability`) selects that
/// target; other words select scenarios by name across every target (a
/// target runs when one of its scenarios matches); options go to every
/// target run (each ignores what it does not know).
fn bench(args: &[String]) -> anyhow::Result<()> {
    let (targets, rest): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| BENCHES.contains(&a.as_str()));
    let filters: Vec<&str> = rest
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.as_str())
        .collect();
    let candidates: Vec<&str> = if targets.is_empty() {
        BENCHES.to_vec()
    } else {
        BENCHES
            .iter()
            .copied()
            .filter(|b| targets.iter().any(|t| t == b))
            .collect()
    };
    let bench_command = |target: &str| {
        let mut command = cargo();
        command.args(["bench", "-p", "juy-integration-tests", "--bench", target, "--"]);
        command
    };
    if rest.iter().any(|a| *a == "--list") {
        for target in candidates {
            println!("{target}:");
            check(bench_command(target).arg("--list").status()?, "listing the benchmarks")?;
        }
        return Ok(());
    }
    let mut selected = Vec::new();
    for target in candidates {
        if filters.is_empty() {
            selected.push(target);
            continue;
        }
        let output = bench_command(target)
            .arg("--list")
            .stderr(std::process::Stdio::inherit())
            .output()?;
        check(output.status, "listing the benchmarks")?;
        let names = String::from_utf8_lossy(&output.stdout);
        let matches = names
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .any(|name| filters.iter().any(|f| name.contains(f)));
        if matches {
            selected.push(target);
        }
    }
    if selected.is_empty() {
        bail!("no scenario matches {filters:?}; `cargo xtask bench --list` names them");
    }

    install_tools()?;
    let (url, _cluster) = match std::env::var("JUY_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")) {
        Ok(url) => (url, None),
        Err(_) => {
            let cluster = Cluster::start_with("bench-postgres", Durability::Default)?;
            (cluster.url.clone(), Some(cluster))
        }
    };
    for target in selected {
        let status = bench_command(target)
            .args(&rest)
            .env("JUY_TEST_DATABASE_URL", &url)
            .env("JUY_PYTHON", tools_dir().join("venv/bin/python"))
            .status()?;
        check(status, &format!("the {target} benchmarks"))?;
    }
    Ok(())
}

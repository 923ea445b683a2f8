//! What the benchmarks (`benches/*.rs`, `harness = false`) share: each
//! scenario runs in a process of its own (so one scenario's memory never
//! shows in another's peak RSS), which prints one result line the parent
//! collects; and readings of the machine and of processes' CPU from `/proc`.

use std::process::{Command, Stdio};

use serde_json::Value;

/// The prefix of a scenario process's result line (JSON follows).
pub const RESULT: &str = "JUY-BENCH-RESULT ";

/// Runs this executable once per scenario name, with `--scenario NAME` and
/// `extra_args`, and returns each one's result, in order. A scenario that
/// fails (or prints no result) stops the benchmark with its output.
pub fn run_in_processes(names: &[&str], extra_args: &[&str]) -> Vec<Value> {
    let exe = std::env::current_exe().expect("own path");
    names
        .iter()
        .map(|name| {
            let output = Command::new(&exe)
                .args(["--scenario", name])
                .args(extra_args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .output()
                .expect("run the scenario process");
            let stdout = String::from_utf8_lossy(&output.stdout);
            match (
                output.status.success(),
                stdout.lines().find_map(|l| l.strip_prefix(RESULT)),
            ) {
                (true, Some(line)) => serde_json::from_str::<Value>(line).expect("a result line"),
                _ => {
                    eprint!("{stdout}");
                    panic!("scenario {name} failed ({})", output.status);
                }
            }
        })
        .collect()
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// On-CPU nanoseconds of every thread of process `pid` (`schedstat`).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// Pids of processes whose command line contains `needle` (PostgreSQL backends show their database).
pub fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
        })
        .collect()
}

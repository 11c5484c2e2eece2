//! What the end-to-end tests share: a real `gridledger devnet` process on loopback and the
//! lines it prints.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_gridledger");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Devnet {
    child: Child,
    pub url: String,
    /// The admin listener's URL and the file holding its token.
    pub admin: String,
    pub admin_token: PathBuf,
    /// What it printed before its URL (the accounts and their keys).
    pub banner: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Devnet {
    /// Starts `gridledger devnet` on a free port with `genesis/<genesis>`, the built contracts
    /// and plugins, and `extra` arguments; returns once it printed its URL.
    pub fn start(genesis: &str, data_dir: &Path, extra: &[&str]) -> Devnet {
        let mut child = Command::new(BIN)
            .args(["devnet", "--port", "0", "--admin-port", "0", "--data-dir"])
            .arg(data_dir)
            .arg("--genesis")
            .arg(repo().join("genesis").join(genesis))
            .arg("--contracts-dir")
            .arg(repo().join("target/contracts"))
            .arg("--plugins-dir")
            .arg(repo().join("target/device-plugins"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start devnet");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let url = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(120))
                .expect("devnet printed its URL");
            if let Some(i) = line.find("http://127.0.0.1:") {
                break line[i..].trim().to_string();
            }
            banner.push(line);
        };
        // Printed next: "admin: http://127.0.0.1:PORT (token in FILE)".
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("devnet printed its admin line");
        let rest = line.strip_prefix("admin: ").expect("the admin line");
        let (admin, token) = rest
            .split_once(" (token in ")
            .expect("admin URL and token file");
        Devnet {
            child,
            url,
            admin: admin.to_string(),
            admin_token: PathBuf::from(token.trim_end_matches(')')),
            banner,
            lines,
        }
    }

    /// The address the devnet listed for account `name`.
    pub fn account(&self, name: &str) -> Option<String> {
        self.banner.iter().find_map(|l| {
            l.trim()
                .strip_prefix(&format!("account {name} "))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        })
    }

    /// The names of the process's threads (Linux: `/proc/PID/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap();
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect()
    }

    /// The next line starting with `prefix`, waiting up to `within`.
    pub fn wait_for(&self, prefix: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting {prefix:?} within {within:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns what it printed last.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "devnet must exit cleanly on SIGTERM, got {exit}"
        );
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs the CLI against the node at `url`: (success, stdout, stderr).
pub fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("GRIDLEDGER_NODE", url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn get(url: &str) -> serde_json::Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

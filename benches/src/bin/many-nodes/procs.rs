//! The processes a run drives: example-server nodes and load clients, and
//! what `/proc` says of their CPU and memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sse_benches::cpu_seconds;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How every node of a run is started.
pub(crate) struct NodeConfig {
    pub(crate) server: PathBuf,
    pub(crate) store: String,
    pub(crate) hub: String,
    /// Each node's own hub URL (through its proxy, in a fault run); `hub`
    /// for a node without one.
    pub(crate) hubs: Vec<String>,
    pub(crate) hub_prefix: String,
    pub(crate) admin_token: String,
    pub(crate) log_dir: PathBuf,
}

/// One example-server process, always on the same address.
pub(crate) struct Node {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
    child: Option<Child>,
}

impl Node {
    pub(crate) fn new(index: usize, addr: SocketAddr) -> Self {
        Self {
            index,
            addr,
            child: None,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the node and waits until it listens.
    pub(crate) async fn start(&mut self, config: &NodeConfig) -> Result<(), String> {
        let log_path = config.log_dir.join(format!("node-{}.log", self.index));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut child = Command::new(&config.server)
            .args([
                "--addr",
                &self.addr.to_string(),
                "--store",
                &config.store,
                "--hub",
                config.hubs.get(self.index).unwrap_or(&config.hub),
                "--hub-prefix",
                &config.hub_prefix,
                "--admin-token",
                &config.admin_token,
                "--max-connections",
                "19500",
                "--request-timeout-secs",
                "30",
                // Every user logs in from the load clients' one address.
                "--login-rate",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", config.server.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on") {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !listening {
            let _ = child.kill().await;
            return Err(format!(
                "node {} did not start; its log: {}",
                self.index,
                log_path.display()
            ));
        }
        // Keep reading: a closed pipe would fail the node's next print.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, as a deployment stops a node: it ends its streams with a
    /// retry hint and exits. Killed if it has not exited in 20 s.
    pub(crate) async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// SIGKILL: the node vanishes mid-stream.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// One load-client process and its command pipe.
pub(crate) struct ClientProc {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl ClientProc {
    pub(crate) fn spawn(args: &[String]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a load client: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Self {
            _child: child,
            stdin,
            stdout,
        })
    }

    /// Sends one command and reads its one-line JSON answer.
    pub(crate) async fn ask(&mut self, command: &str) -> Result<serde_json::Value, String> {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("load client gone: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        let answer = self
            .stdout
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("load client exited")?;
        serde_json::from_str(&answer).map_err(|e| format!("bad answer {answer:?}: {e}"))
    }
}

/// The pids of every process named `name` (`/proc/PID/comm`).
pub(crate) fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// CPU seconds used so far by every process named `name`.
pub(crate) fn cpu_of_named(name: &str) -> f64 {
    pids_named(name).into_iter().map(cpu_seconds).sum()
}

//! A running `epiflow watch --json`: its lines as they come, Ctrl-C, and a
//! kill if the test fails before interrupting it.
#![allow(dead_code)]

use serde_json::Value;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running `epiflow watch --json -q`: one JSON object per line of stdout.
pub struct Watch {
    child: std::process::Child,
    /// Its lines, parsed.
    pub lines: Receiver<Value>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    /// Starts `watch --json -q` with `args`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Watch {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_epiflow"))
            .args(["watch", "--json", "-q"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if tx.send(serde_json::from_str::<Value>(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line, within 5 minutes.
    pub fn next(&self) -> Value {
        self.lines.recv_timeout(Duration::from_secs(300)).expect("a line within 5 min")
    }

    /// Sends SIGINT, as Ctrl-C does; returns the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "watch stops within a minute of Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

//! How many workers, in how many processes: a thin layer over timely's own
//! cluster configuration (`-w/-n/-p/-h` in timely's examples).

use std::path::PathBuf;

/// Worker threads per process, and the process layout for cluster runs.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Worker threads in this process.
    pub workers: usize,
    /// Processes in the cluster (1: a single process).
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process: usize,
    /// File with one `host:port` per process; default `localhost:2101+i`.
    pub hostfile: Option<PathBuf>,
}

impl Cluster {
    /// One process with `workers` threads.
    pub fn local(workers: usize) -> Cluster {
        Cluster { workers: workers.max(1), processes: 1, process: 0, hostfile: None }
    }

    /// Whether this process hosts worker 0, which reads inputs and writes outputs.
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// Rejects a process index outside the cluster.
    pub fn check(&self) -> Result<(), String> {
        if self.processes == 0 || self.process >= self.processes {
            return Err(format!("--process {} must be below --processes {}", self.process, self.processes));
        }
        Ok(())
    }

    /// The timely configuration for this layout.
    pub fn timely_config(&self) -> Result<timely::Config, String> {
        use timely::CommunicationConfig as C;
        self.check()?;
        let communication = if self.processes > 1 {
            let addresses = match &self.hostfile {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read host file {}: {e}", path.display()))?;
                    let hosts: Vec<String> =
                        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
                    if hosts.len() < self.processes {
                        return Err(format!(
                            "host file {} lists {} addresses for {} processes",
                            path.display(),
                            hosts.len(),
                            self.processes
                        ));
                    }
                    hosts
                }
                None => (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
            };
            C::Cluster { threads: self.workers, process: self.process, addresses, report: false, zerocopy: false }
        } else if self.workers > 1 {
            C::Process(self.workers)
        } else {
            C::Thread
        };
        Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
    }
}

//! `epiflow explain`: the operator graph as a run with this configuration
//! would build it — each stage's version, configuration, inputs, fingerprint
//! and output — and the change's impact before paying for it
//! (`Job::explain`). Like DataFusion's `EXPLAIN`, it runs nothing.

use super::{config, job, print_json};
use crate::cli::{ClusterArgs, Global, WindowArgs};
use epiflow_engine::explain::Explained;
use epiflow_engine::{Logs, Result};
use std::process::ExitCode;

pub fn run(g: &Global, window: WindowArgs) -> Result<ExitCode> {
    let job = job(g, config(g, window)?, &ClusterArgs::local())?;
    let explained = job.explain(&Logs)?;
    if g.json {
        print_json(&explained)?;
    } else {
        print!("{}", render(&explained));
    }
    Ok(ExitCode::SUCCESS)
}

/// The graph, then the impact, as a person reads them.
fn render(e: &Explained) -> String {
    let mut s =
        format!("{:<9} {:<8} {:<8} {:<33} {:<20} config\n", "stage", "version", "inputs", "fingerprint", "publishes");
    for st in e.stages.iter().map(|i| &i.stage) {
        let inputs = if st.inputs.is_empty() { "archive".to_string() } else { st.inputs.join(",") };
        s += &format!(
            "{:<9} v{:<7} {:<8} {:<33} {:<20} {}\n",
            st.name,
            st.version,
            inputs,
            st.fingerprint,
            st.publishes.unwrap_or("-"),
            st.config
        );
    }
    let ep = &e.episodes;
    s += &match e.last_run {
        true => format!(
            "\nagainst the last run: {} episodes indexed, {} new, {} removed ({} readable, {} usable before)\n",
            ep.indexed, ep.new, ep.removed, ep.readable, ep.usable
        ),
        false => format!("\nno earlier run in this output folder: {} episodes indexed, all new\n", ep.indexed),
    };
    s += &format!("{:<9} {:<11} {:>9}\n", "stage", "fingerprint", "recompute");
    for st in &e.stages {
        let state = match &st.last_fingerprint {
            Some(last) if *last == st.stage.fingerprint.hex() => "unchanged",
            _ if st.cached => "cached",
            Some(_) => "changed",
            None => "new",
        };
        s += &format!("{:<9} {:<11} {:>9}\n", st.stage.name, state, st.recompute);
    }
    s
}

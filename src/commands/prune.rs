//! `epiflow prune`: list, archive or delete the episodes classified as fake.

use super::{observer, print_json, workers};
use crate::cli::{Global, PruneArgs};
use epiflow_engine::config::Config;
use epiflow_engine::prune::{self, Action, Paths, Pruned, Request};
use epiflow_engine::{Error, Result};
use epiflow_pipelines::stages::Registry;
use std::process::ExitCode;

pub fn run(g: &Global, args: &PruneArgs) -> Result<ExitCode> {
    let action = match (args.archive, args.delete) {
        (true, true) => return Err(Error::Usage("--archive and --delete exclude each other".into())),
        (true, false) => Action::Archive,
        (false, true) => Action::Delete,
        _ => Action::DryRun,
    };
    prune::check_reasons(&args.reasons)?;
    let request = Request { paths: paths(g, args)?, action, reasons: args.reasons.clone(), host: args.host.clone() };
    let config = Config::load(g.config.as_deref())?;
    let pruned = prune::run(&request, &config, &Registry::standard(), workers(g), observer(g))?;
    if g.json {
        print_json(&pruned)?;
    } else {
        print!("{}", table(&pruned));
    }
    Ok(if pruned.flagged == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn paths(g: &Global, args: &PruneArgs) -> Result<Paths> {
    match (&g.store, &args.episodes_root, &args.index) {
        (Some(store), None, None) => Ok(Paths {
            episodes_root: store.join("episodes"),
            index: store.join("index.jsonl"),
            archive_root: Some(args.archive_root.clone().unwrap_or_else(|| store.join("archive"))),
        }),
        (None, Some(root), Some(index)) => {
            Ok(Paths { episodes_root: root.clone(), index: index.clone(), archive_root: args.archive_root.clone() })
        }
        _ => Err(Error::Usage("prune takes --store STORE, or --episodes-root DIR --index FILE".into())),
    }
}

/// The flagged episodes as a table a person reads, and a closing count.
fn table(pruned: &Pruned) -> String {
    let flagged: Vec<_> = pruned.episodes.iter().filter(|e| e.flagged).collect();
    let mut s = String::new();
    if !flagged.is_empty() {
        s += &format!("{:<18} {:<28} {:<16} reasons\n", "host_id", "episode_id", "sample");
        for e in &flagged {
            let sample = e.sample_name.as_deref().unwrap_or("-");
            s += &format!("{:<18} {:<28} {:<16} {}\n", e.host_id, e.episode_id, sample, e.reasons.join(", "));
        }
        s.push('\n');
    }
    let what = match pruned.action {
        Action::DryRun => "dry run: nothing changed; --archive or --delete acts on them",
        Action::Archive => "archived",
        Action::Delete => "deleted",
    };
    s += &format!("{} of {} episodes flagged ({what})\n", flagged.len(), pruned.episodes.len());
    s
}

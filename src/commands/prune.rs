//! `epiflow prune`: list, archive or delete the episodes classified as fake.

use super::validate::{corpus_job, run_corpus, warn_index_problems};
use super::{print_json, workers};
use crate::cli::{Global, PruneArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::prune::{execute, lock_for_action, recover, snapshot, Action, Examined, Paths};
use epiflow_operators::classify::{Classify, QualityRecord, REASONS};
use epiflow_operators::model::EpisodeKey;
use epiflow_operators::Operator;
use epiflow_pipelines::Cluster;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;

pub fn run(g: &Global, args: &PruneArgs) -> Result<ExitCode> {
    let action = match (args.archive, args.delete) {
        (true, true) => return Err(Error::Usage("--archive and --delete exclude each other".into())),
        (true, false) => Action::Archive,
        (false, true) => Action::Delete,
        _ => Action::DryRun,
    };
    for r in &args.reasons {
        if !REASONS.contains(&r.as_str()) {
            return Err(Error::Usage(format!("unknown --reason {r:?}; known: {}", REASONS.join(", "))));
        }
    }
    let paths = paths(g, args)?;
    if action == Action::Archive && paths.archive_root.is_none() {
        return Err(Error::Usage("--archive needs --archive-root DIR (or --store)".into()));
    }
    let config = Config::load(g.config.as_deref())?;
    // An acting prune is alone on the store from its first read to its last write.
    let _exclusive = match action {
        Action::DryRun => None,
        _ => Some(lock_for_action(&paths).map_err(|e| Error::io("cannot lock", &paths.log(), e))?),
    };
    let snap = snapshot(&paths.index).map_err(|e| Error::io("cannot read index", &paths.index, e))?;
    warn_index_problems(&snap.problems);
    if action != Action::DryRun {
        let indexed: HashSet<EpisodeKey> = snap.entries.iter().map(|e| e.key.clone()).collect();
        let n = recover(&paths, &indexed)
            .map_err(|e| Error::io("cannot finish an earlier prune in", &paths.episodes_root, e))?;
        if n > 0 {
            tracing::warn!("finished {n} actions an interrupted prune left undone");
        }
    }
    let entries: Vec<_> =
        snap.entries.iter().filter(|e| args.host.as_ref().is_none_or(|h| *h == e.key.host_id)).cloned().collect();
    let keys: Vec<EpisodeKey> = entries.iter().map(|e| e.key.clone()).collect();
    let job = corpus_job(&paths.episodes_root, &config, config.stages()?);
    let output = run_corpus(job, entries, &Cluster::local(workers(g)), g.quiet || g.json)?
        .ok_or_else(|| Error::Dataflow("no result from worker 0".into()))?;
    let quality: BTreeMap<EpisodeKey, Cow<QualityRecord>> = output
        .table(Classify::NAME)
        .into_iter()
        .filter_map(|(key, held)| {
            Some((EpisodeKey { host_id: key.0.clone(), episode_id: key.1.clone() }, held.typed()?))
        })
        .collect();
    let examined: Vec<Examined> = keys
        .iter()
        .map(|k| match quality.get(k) {
            Some(q) => Examined::from_quality(q, &args.reasons),
            None => Examined::unclassified(k),
        })
        .collect();
    let flagged: Vec<&Examined> = examined.iter().filter(|e| e.flagged).collect();
    execute(&paths, snap.len, &flagged, action).map_err(|e| Error::io("prune failed in", &paths.episodes_root, e))?;
    if g.json {
        print_json(&serde_json::json!({"episodes": examined, "flagged": flagged.len(), "action": action}))?;
    } else {
        print!("{}", table(&examined, &flagged, action));
    }
    Ok(if flagged.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
fn table(examined: &[Examined], flagged: &[&Examined], action: Action) -> String {
    let mut s = String::new();
    if !flagged.is_empty() {
        s += &format!("{:<18} {:<28} {:<16} reasons\n", "host_id", "episode_id", "sample");
        for e in flagged {
            let sample = e.sample_name.as_deref().unwrap_or("-");
            s += &format!("{:<18} {:<28} {:<16} {}\n", e.host_id, e.episode_id, sample, e.reasons.join(", "));
        }
        s.push('\n');
    }
    let what = match action {
        Action::DryRun => "dry run: nothing changed; --archive or --delete acts on them",
        Action::Archive => "archived",
        Action::Delete => "deleted",
    };
    s += &format!("{} of {} episodes flagged ({what})\n", flagged.len(), examined.len());
    s
}

//! Splits as a differential collection: the split operator runs over every
//! training candidate (a `reduce` on one key), and its result leaves as
//! [`SplitFact`]s — one per placed episode, plus each recipe's test host,
//! untested profiles or error. An arriving or departing episode then changes
//! only the facts it moves, and the leader keeps the splits up to date from
//! those diffs ([`SplitState`]).

use epiflow_operators::split::{Assignment, Candidate, Recipe, Split, SplitConfig, SplitError, SplitOp};
use epiflow_operators::Operator;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

/// One fact of one recipe's split.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SplitFact {
    /// An episode's side.
    Assigned(Recipe, Assignment),
    /// A candidate the recipe cannot place: (host, episode).
    Unplaced(Recipe, String, String),
    /// The `host` recipe's test host.
    TestHost(Recipe, String),
    /// A profile trained on and never tested.
    Untested(Recipe, String),
    /// Why the recipe has no split.
    Failed(Recipe, String),
}

/// Every recipe's split of `candidates`, as facts.
pub fn split_facts(config: &SplitConfig, candidates: Vec<Candidate>) -> Vec<SplitFact> {
    let mut facts = Vec::new();
    for recipe in Recipe::ALL {
        match (SplitOp { recipe, config: config.clone() }).apply(&candidates) {
            Err(e) => facts.push(SplitFact::Failed(recipe, e.to_string())),
            Ok(split) => {
                facts.extend(split.test_host.map(|h| SplitFact::TestHost(recipe, h)));
                facts.extend(split.untested_profiles.into_iter().map(|p| SplitFact::Untested(recipe, p)));
                facts.extend(split.unplaced.into_iter().map(|(h, e)| SplitFact::Unplaced(recipe, h, e)));
                facts.extend(split.assignments.into_iter().map(|a| SplitFact::Assigned(recipe, a)));
            }
        }
    }
    facts
}

/// The leader's copy of the split facts, kept by their diffs.
#[derive(Default)]
pub struct SplitState {
    facts: BTreeMap<SplitFact, isize>,
}

impl SplitState {
    /// Applies one fact's diff.
    pub fn update(&mut self, fact: SplitFact, diff: isize) {
        match self.facts.entry(fact) {
            Entry::Occupied(mut count) => {
                *count.get_mut() += diff;
                if *count.get() == 0 {
                    count.remove();
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(diff);
            }
        }
    }

    /// Every recipe's split as the facts now stand; with no fact at all (no
    /// episode may train) each recipe says so.
    pub fn splits(&self) -> BTreeMap<Recipe, Result<Split, String>> {
        if self.facts.is_empty() {
            return Recipe::ALL.map(|r| (r, Err(SplitError::NoCandidates.to_string()))).into();
        }
        let mut out: BTreeMap<Recipe, Result<Split, String>> = BTreeMap::new();
        let empty = |recipe| Split {
            recipe,
            test_host: None,
            assignments: Vec::new(),
            unplaced: Vec::new(),
            untested_profiles: Vec::new(),
        };
        for fact in self.facts.keys() {
            let recipe = match fact {
                SplitFact::Assigned(r, _)
                | SplitFact::Unplaced(r, ..)
                | SplitFact::TestHost(r, _)
                | SplitFact::Untested(r, _)
                | SplitFact::Failed(r, _) => *r,
            };
            if let SplitFact::Failed(_, e) = fact {
                out.insert(recipe, Err(e.clone()));
                continue;
            }
            let Ok(split) = out.entry(recipe).or_insert_with(|| Ok(empty(recipe))) else { continue };
            match fact {
                SplitFact::Assigned(_, a) => split.assignments.push(a.clone()),
                SplitFact::Unplaced(_, h, e) => split.unplaced.push((h.clone(), e.clone())),
                SplitFact::TestHost(_, h) => split.test_host = Some(h.clone()),
                SplitFact::Untested(_, p) => split.untested_profiles.push(p.clone()),
                SplitFact::Failed(..) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                host_id: format!("h{}", i % 3),
                episode_id: format!("e{i:03}"),
                profile: ["a", "b"][i % 2].into(),
                sample_name: Some(format!("s{}", i % 7)),
                t0_wall_ns: Some(i as i64),
            })
            .collect()
    }

    #[test]
    fn facts_applied_as_diffs_give_the_operator_s_splits() {
        let config = SplitConfig::default();
        let (before, after) = (candidates(40), candidates(41));
        let mut state = SplitState::default();
        for fact in split_facts(&config, before) {
            state.update(fact, 1);
        }
        // One arrival: retract the old facts, insert the new ones — what the
        // reduce's output diffs amount to.
        for fact in split_facts(&config, candidates(40)) {
            state.update(fact, -1);
        }
        for fact in split_facts(&config, after.clone()) {
            state.update(fact, 1);
        }
        for recipe in Recipe::ALL {
            let direct = SplitOp { recipe, config: config.clone() }.apply(&after).map_err(|e| e.to_string());
            assert_eq!(state.splits()[&recipe], direct, "{recipe}");
        }
    }

    #[test]
    fn a_failed_recipe_is_an_error_and_the_others_still_split() {
        // Host h0 holds the only profile-c episode, so testing on h0 leaves c untrained.
        let mut all = candidates(30);
        all.push(Candidate { profile: "c".into(), ..all[0].clone() });
        all.last_mut().unwrap().episode_id = "c-only".into();
        let config = SplitConfig { test_host: Some("h0".into()), ..Default::default() };
        let mut state = SplitState::default();
        for fact in split_facts(&config, all) {
            state.update(fact, 1);
        }
        let splits = state.splits();
        assert!(splits[&Recipe::Host].as_ref().unwrap_err().contains("profile c"));
        assert!(splits[&Recipe::Time].is_ok());
    }
}

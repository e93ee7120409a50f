//! What a stage sees of the stages before it: exactly the records its
//! [`Stage::INPUTS`] name. A record it reads without declaring it would not
//! be chained into its fingerprint, so its cached results would outlive a
//! change of that stage; the view answers such a read with nothing and
//! remembers it, and the engine fails the run naming both stages.

use super::{Held, Results, Stage};
use std::borrow::Cow;
use std::cell::Cell;

/// The records of the stages a stage declared as its inputs, for one
/// episode.
pub struct Inputs<'a> {
    declared: &'static [&'static str],
    results: &'a Results,
    undeclared: Cell<Option<&'static str>>,
}

impl<'a> Inputs<'a> {
    /// The view of `results` that a stage declaring `declared` gets.
    pub fn new(declared: &'static [&'static str], results: &'a Results) -> Inputs<'a> {
        Inputs { declared, results, undeclared: Cell::new(None) }
    }

    /// The record of stage `S`, typed, when `S` is declared and has one for
    /// this episode. Reading an undeclared stage gives `None` and is
    /// remembered ([`Inputs::undeclared`]).
    pub fn get<S: Stage>(&self) -> Option<Cow<'a, S::Output>> {
        self.held(S::NAME)?.typed::<S::Output>()
    }

    /// The result of stage `name`, when it is declared.
    pub fn held(&self, name: &'static str) -> Option<&'a Held> {
        if !self.declared.contains(&name) {
            self.undeclared.set(self.undeclared.get().or(Some(name)));
            return None;
        }
        Some(self.results.held(name))
    }

    /// The first stage read that is not declared, if any.
    pub fn undeclared(&self) -> Option<&'static str> {
        self.undeclared.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::classify::{Classify, QualityRecord, Verdict};
    use epiflow_operators::validate::Validate;
    use epiflow_operators::Operator;

    fn results() -> Results {
        let quality = QualityRecord {
            host_id: "h".into(),
            episode_id: "e".into(),
            reasons: Vec::new(),
            fake: false,
            sample_name: None,
            module_name: None,
            sources: [Verdict::Flat; 4],
        };
        let mut results = Results::default();
        results.set(Classify::NAME, Held::value(quality));
        results
    }

    #[test]
    fn a_declared_input_is_read_and_an_undeclared_one_is_remembered() {
        let results = results();
        let declared = Inputs::new(&["align", "validate", "classify"], &results);
        assert!(declared.get::<Classify>().is_some());
        assert!(declared.get::<Validate>().is_none(), "validate is declared but has no record here");
        assert_eq!(declared.undeclared(), None, "both reads were declared");

        let undeclared = Inputs::new(&["align"], &results);
        assert!(undeclared.get::<Classify>().is_none(), "the record exists but is not declared");
        assert_eq!(undeclared.undeclared(), Some("classify"));
        let fresh = Inputs::new(&["align"], &results);
        assert_eq!(fresh.undeclared(), None, "nothing read, nothing remembered");
    }
}

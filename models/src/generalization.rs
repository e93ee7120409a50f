//! The generalization gap at a glance: per model, its validation macro F1
//! (in distribution) beside its test macro F1 with interval on each split
//! recipe — a new host, new samples, a later time — in one table and one
//! chart, with the recipes that could not be evaluated and why.

use crate::arch::Arch;
use crate::bootstrap::Interval;
use crate::charts;
use crate::checkpoint::model_name;
use crate::report::Report;
use epiflow_operators::channels::ChannelSet;
use epiflow_operators::split::Recipe;
use epiflow_pipelines::output::write_atomically;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// The files written beside the split reports (`OUT/eval/`).
pub const MARKDOWN: &str = "generalization.md";
/// The table as JSON.
pub const JSON: &str = "generalization.json";
/// The table as a chart.
pub const PNG: &str = "generalization.png";

/// One model on one recipe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// Validation macro F1: the split's own hosts, samples and times.
    pub val: f64,
    /// Test macro F1 and its interval: what the recipe holds out.
    pub test: f64,
    /// The test interval, when resampled.
    pub ci: Option<Interval>,
}

/// One model across the recipes, in [`Recipe::ALL`] order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// `<arch>-<channels>`.
    pub model: String,
    /// Per recipe, when the model was scored on it.
    pub recipes: [Option<Cell>; 3],
}

/// What one recipe's column says, in two figures a reader checks first:
/// whether models lose on what the recipe holds out, and whether the
/// host-side channels help.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecipeSummary {
    /// The recipe.
    pub recipe: Recipe,
    /// Models scored on this recipe.
    pub models: usize,
    /// Models whose validation macro F1 is above their test macro F1 ...
    pub val_above_test: usize,
    /// ... and of those, how many lie above the test interval's upper end.
    pub val_above_interval: usize,
    /// Mean test macro F1 per channel set, in [`ChannelSet::ALL`] order
    /// (`None` when the set has no model here).
    pub mean_test: [Option<f64>; 2],
}

impl RecipeSummary {
    fn of(recipe: Recipe, cells: &[(ChannelSet, Cell)]) -> RecipeSummary {
        let mean_test = ChannelSet::ALL.map(|set| {
            let tests: Vec<f64> = cells.iter().filter(|(s, _)| *s == set).map(|(_, c)| c.test).collect();
            (!tests.is_empty()).then(|| tests.iter().sum::<f64>() / tests.len() as f64)
        });
        RecipeSummary {
            recipe,
            models: cells.len(),
            val_above_test: cells.iter().filter(|(_, c)| c.val > c.test).count(),
            val_above_interval: cells.iter().filter(|(_, c)| c.ci.is_some_and(|ci| c.val > ci.high)).count(),
            mean_test,
        }
    }

    /// One line: "host: validation above test for 12 of 12 models (12
    /// above the test interval); mean test macro F1 realistic 0.780, oracle 0.818".
    pub fn line(&self) -> String {
        let means: Vec<String> = ChannelSet::ALL
            .iter()
            .zip(self.mean_test)
            .filter_map(|(set, mean)| Some(format!("{} {:.3}", set.name(), mean?)))
            .collect();
        format!(
            "{}: validation above test for {} of {} models ({} above the test interval); mean test macro F1 {}",
            self.recipe,
            self.val_above_test,
            self.models,
            self.val_above_interval,
            means.join(", ")
        )
    }
}

/// The table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generalization {
    /// The recipes evaluated.
    pub recipes: Vec<Recipe>,
    /// Every model any of them scored, architecture then channel set.
    pub rows: Vec<Row>,
    /// Per evaluated recipe, the gap and the channel sets in two figures.
    pub summary: Vec<RecipeSummary>,
    /// The recipes asked for that could not be evaluated, and why.
    pub missing: Vec<(Recipe, String)>,
}

impl Generalization {
    /// From each asked recipe's report, or why there is none.
    pub fn of(evaluated: &[(Recipe, Result<&Report, String>)]) -> Generalization {
        let reports: Vec<&Report> = evaluated.iter().filter_map(|(_, r)| r.as_ref().ok().copied()).collect();
        let rows: Vec<(ChannelSet, Row)> = Arch::ALL
            .into_iter()
            .flat_map(|arch| ChannelSet::ALL.map(|set| (set, model_name(arch, set))))
            .filter_map(|(set, model)| {
                let recipes = Recipe::ALL.map(|recipe| {
                    let report = reports.iter().find(|r| r.recipe == recipe)?;
                    let m = report.models.iter().find(|m| m.model == model)?;
                    Some(Cell { val: m.val_macro_f1, test: m.macro_f1, ci: m.ci })
                });
                recipes.iter().any(Option::is_some).then_some((set, Row { model, recipes }))
            })
            .collect();
        let recipes: Vec<Recipe> = Recipe::ALL.into_iter().filter(|r| reports.iter().any(|p| p.recipe == *r)).collect();
        let summary = recipes
            .iter()
            .map(|recipe| {
                let cells: Vec<(ChannelSet, Cell)> =
                    rows.iter().filter_map(|(set, row)| Some((*set, row.recipes[index(*recipe)]?))).collect();
                RecipeSummary::of(*recipe, &cells)
            })
            .collect();
        Generalization {
            recipes,
            rows: rows.into_iter().map(|(_, row)| row).collect(),
            summary,
            missing: evaluated.iter().filter_map(|(r, e)| Some((*r, e.as_ref().err()?.clone()))).collect(),
        }
    }

    /// The table as a terminal shows it.
    pub fn table(&self) -> String {
        let mut s =
            String::from("generalization: validation macro F1 (in distribution) → test macro F1 [95% interval]\n");
        let _ = write!(s, "{:<22}", "model");
        for recipe in &self.recipes {
            let _ = write!(s, " {:>30}", format!("{recipe}: val → test"));
        }
        s.push('\n');
        for row in &self.rows {
            let _ = write!(s, "{:<22}", row.model);
            for recipe in &self.recipes {
                let _ = write!(s, " {:>30}", cell(row.recipes[index(*recipe)]));
            }
            s.push('\n');
        }
        for summary in &self.summary {
            let _ = writeln!(s, "{}", summary.line());
        }
        for (recipe, why) in &self.missing {
            let _ = writeln!(s, "no {recipe} column: {why}");
        }
        s
    }

    /// Writes the table (Markdown and JSON) and its chart into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let bars: Vec<charts::GapBars> = self
            .rows
            .iter()
            .map(|r| charts::GapBars { label: &r.model, recipes: r.recipes.map(|c| c.map(|c| (c.val, c.test, c.ci))) })
            .collect();
        charts::generalization(&dir.join(PNG), "validation (tick) against test macro F1 per split recipe", &bars)?;
        write_atomically(&dir.join(MARKDOWN), |w| w.write_all(self.markdown().as_bytes()))?;
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomically(&dir.join(JSON), |w| w.write_all(&json))
    }

    fn markdown(&self) -> String {
        let mut md = String::from("# Generalization\n\n");
        md += "Per model, macro F1 on the validation side (in distribution: the hosts, samples and times it \
               trained on) beside macro F1 on the test side that each recipe holds out — a new host, new \
               samples, a later time — with its 95% bootstrap interval over test episodes. The gap between \
               the two is what the model would lose in the lab.\n\n";
        md += "| model |";
        for recipe in &self.recipes {
            let _ = write!(md, " {recipe}: val | {recipe}: test |");
        }
        md += "\n|---|";
        md += &"---|---|".repeat(self.recipes.len());
        md.push('\n');
        for row in &self.rows {
            let _ = write!(md, "| {} |", row.model);
            for recipe in &self.recipes {
                match row.recipes[index(*recipe)] {
                    Some(c) => {
                        let _ = write!(md, " {:.3} | {} |", c.val, test(c));
                    }
                    None => md += " – | – |",
                }
            }
            md.push('\n');
        }
        md.push('\n');
        for summary in &self.summary {
            let _ = writeln!(md, "- {}", summary.line());
        }
        for (recipe, why) in &self.missing {
            let _ = writeln!(md, "\nNo `{recipe}` column: {why}");
        }
        let _ = writeln!(md, "\n![validation against test macro F1]({PNG})");
        md
    }
}

fn index(recipe: Recipe) -> usize {
    Recipe::ALL.iter().position(|r| *r == recipe).unwrap_or(0)
}

fn test(c: Cell) -> String {
    match c.ci {
        Some(ci) => format!("{:.3} [{:.3}, {:.3}]", c.test, ci.low, ci.high),
        None => format!("{:.3}", c.test),
    }
}

fn cell(c: Option<Cell>) -> String {
    c.map_or("–".to_string(), |c| format!("{:.3} → {}", c.val, test(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(val: f64, test: f64, high: f64) -> Cell {
        Cell { val, test, ci: Some(Interval { low: test - 0.01, high }) }
    }

    #[test]
    fn a_recipes_summary_counts_the_gaps_and_averages_each_channel_set() {
        let cells = [
            (ChannelSet::Realistic, cell(0.9, 0.7, 0.8)),   // above, beyond the interval
            (ChannelSet::Realistic, cell(0.9, 0.85, 0.95)), // above, inside it
            (ChannelSet::Oracle, cell(0.8, 0.9, 0.95)),     // below
            (ChannelSet::Oracle, cell(0.95, 0.8, 0.9)),     // above, beyond
        ];
        let summary = RecipeSummary::of(Recipe::Host, &cells);
        assert_eq!((summary.models, summary.val_above_test, summary.val_above_interval), (4, 3, 2));
        let [realistic, oracle] = summary.mean_test.map(Option::unwrap);
        assert!((realistic - 0.775).abs() < 1e-12 && (oracle - 0.85).abs() < 1e-12);
        assert_eq!(
            summary.line(),
            "host: validation above test for 3 of 4 models (2 above the test interval); \
             mean test macro F1 realistic 0.775, oracle 0.850"
        );
        let realistic_only = RecipeSummary::of(Recipe::Time, &cells[..2]);
        assert_eq!(realistic_only.mean_test[1], None);
        assert!(realistic_only.line().ends_with("mean test macro F1 realistic 0.775"));
    }
}

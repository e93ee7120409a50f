//! The generalization gap at a glance: per model, its validation macro F1
//! (in distribution) beside its test macro F1 with interval on each split
//! recipe — a new host, new samples, a later time — in one table and one
//! chart, with the recipes that could not be evaluated and why.

use crate::arch::Arch;
use crate::bootstrap::Interval;
use crate::charts;
use crate::checkpoint::model_name;
use crate::eval::Report;
use epiflow_operators::registry::ChannelSet;
use epiflow_operators::split::Recipe;
use epiflow_pipelines::output::write_atomically;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// The files written beside the split reports (`OUT/eval/`).
pub const MARKDOWN: &str = "generalization.md";
pub const JSON: &str = "generalization.json";
pub const PNG: &str = "generalization.png";

/// One model on one recipe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// Validation macro F1: the split's own hosts, samples and times.
    pub val: f64,
    /// Test macro F1 and its interval: what the recipe holds out.
    pub test: f64,
    pub ci: Option<Interval>,
}

/// One model across the recipes, in [`Recipe::ALL`] order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub model: String,
    pub recipes: [Option<Cell>; 3],
}

/// The table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Generalization {
    /// The recipes evaluated.
    pub recipes: Vec<Recipe>,
    /// Every model any of them scored, architecture then channel set.
    pub rows: Vec<Row>,
    /// The recipes asked for that could not be evaluated, and why.
    pub missing: Vec<(Recipe, String)>,
}

impl Generalization {
    /// From each asked recipe's report, or why there is none.
    pub fn of(evaluated: &[(Recipe, Result<&Report, String>)]) -> Generalization {
        let reports: Vec<&Report> = evaluated.iter().filter_map(|(_, r)| r.as_ref().ok().copied()).collect();
        let rows = Arch::ALL
            .into_iter()
            .flat_map(|arch| ChannelSet::ALL.map(|set| model_name(arch, set)))
            .filter_map(|model| {
                let recipes = Recipe::ALL.map(|recipe| {
                    let report = reports.iter().find(|r| r.recipe == recipe)?;
                    let m = report.models.iter().find(|m| m.model == model)?;
                    Some(Cell { val: m.val_macro_f1, test: m.macro_f1, ci: m.ci })
                });
                recipes.iter().any(Option::is_some).then_some(Row { model, recipes })
            })
            .collect();
        Generalization {
            recipes: Recipe::ALL.into_iter().filter(|r| reports.iter().any(|p| p.recipe == *r)).collect(),
            rows,
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

//! The `profiles` producer: per profile, the corpus's outcomes, its fake
//! episodes by reason, its feature windows and each model's macro F1 on its
//! test episodes.

use super::events::{Event, ProfileStats, Profiles};
use epiflow_models::report::Report;
use epiflow_operators::classify::QualityRecord;
use epiflow_operators::validate::ValidationRecord;
use std::collections::{BTreeMap, HashMap};

/// The profile an episode without one is counted under.
pub const NO_PROFILE: &str = "(none)";

/// The `profiles` event of the corpus: its validation and quality records,
/// the windows published per episode (`host_id/episode_id` → windows) and
/// the evaluation reports.
pub fn of(
    records: &[ValidationRecord],
    quality: &[QualityRecord],
    windows: &BTreeMap<String, usize>,
    reports: &[&Report],
) -> Event {
    let mut profiles: BTreeMap<String, ProfileStats> = BTreeMap::new();
    let mut profile_of: HashMap<(&str, &str), &str> = HashMap::new();
    for r in records {
        let profile = r.profile.as_deref().unwrap_or(NO_PROFILE);
        profile_of.insert((&r.host_id, &r.episode_id), profile);
        let stats = profiles.entry(profile.to_string()).or_default();
        *stats.outcomes.entry(r.outcome.name().to_string()).or_default() += 1;
        let key = format!("{}/{}", r.host_id, r.episode_id);
        stats.windows += windows.get(&key).copied().unwrap_or(0) as u64;
    }
    for q in quality.iter().filter(|q| q.fake) {
        let profile = profile_of.get(&(q.host_id.as_str(), q.episode_id.as_str())).copied().unwrap_or(NO_PROFILE);
        let stats = profiles.entry(profile.to_string()).or_default();
        for reason in &q.reasons {
            *stats.fake.entry(reason.clone()).or_default() += 1;
        }
    }
    for report in reports {
        for model in &report.models {
            for (profile, breakdown) in &model.per_profile {
                let name = format!("{}/{}", report.recipe.name(), model.model);
                profiles.entry(profile.clone()).or_default().macro_f1.insert(name, breakdown.macro_f1);
            }
        }
    }
    Event::Profiles(Profiles { profiles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use epiflow_operators::classify::Verdict;
    use epiflow_operators::validate::Outcome;

    fn record(host: &str, id: &str, profile: Option<&str>, outcome: Outcome) -> ValidationRecord {
        ValidationRecord {
            host_id: host.into(),
            episode_id: id.into(),
            sha256: None,
            archive_bytes: None,
            outcome,
            reasons: Vec::new(),
            profile: profile.map(str::to_string),
            sample_name: None,
            duration_s: None,
            rows: [None; 4],
            bad_rows: None,
            t0_wall_ns: None,
            detail: None,
        }
    }

    fn fake(host: &str, id: &str, reasons: &[&str]) -> QualityRecord {
        QualityRecord {
            host_id: host.into(),
            episode_id: id.into(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            fake: true,
            sample_name: None,
            module_name: None,
            sources: [Verdict::Flat; 4],
        }
    }

    #[test]
    fn each_profile_counts_its_outcomes_fakes_and_windows() {
        let records = [
            record("h", "a", Some("io-walk"), Outcome::Accepted),
            record("h", "b", Some("io-walk"), Outcome::Rejected),
            record("h", "c", Some("scan"), Outcome::Accepted),
            record("h", "d", None, Outcome::Errored),
        ];
        let quality = [fake("h", "b", &["no_activity", "flat_guest"]), fake("h", "c", &["no_activity"])];
        let windows: BTreeMap<String, usize> = [("h/a".to_string(), 35), ("h/c".to_string(), 20)].into();
        let Event::Profiles(p) = of(&records, &quality, &windows, &[]) else { panic!("not profiles") };
        let io = &p.profiles["io-walk"];
        assert_eq!(io.outcomes, [("accepted".to_string(), 1), ("rejected".to_string(), 1)].into());
        assert_eq!(io.fake, [("flat_guest".to_string(), 1), ("no_activity".to_string(), 1)].into());
        assert_eq!((io.windows, p.profiles["scan"].windows), (35, 20));
        assert_eq!(p.profiles[NO_PROFILE].outcomes["errored"], 1);
        assert!(io.macro_f1.is_empty(), "no report, no F1");
        let report = crate::dashboard::report_metrics::tests::report();
        let Event::Profiles(p) = of(&records, &quality, &windows, &[&report]) else { panic!("not profiles") };
        assert_eq!(p.profiles["io-walk"].macro_f1, [("host/gbt-realistic".to_string(), 0.8)].into());
        assert!(p.profiles["scan"].macro_f1.is_empty(), "a profile the test side lacks has no F1");
    }
}

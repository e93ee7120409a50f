//! epiflow's dataflows: the operators of `epiflow-operators` wired into timely /
//! differential-dataflow graphs, and the sinks that publish their results.
//!
//! Per-episode work moves through timely operators as one message per episode
//! (a columnar batch), placed on workers by the leader (see [`balance`]).
//! Corpus-level state (the index, counts per outcome and reason, the splits) lives in
//! differential collections, so arrivals and removals flow as diffs.

pub mod balance;
pub mod cache_codec;
pub mod cluster;
pub mod corpus;
pub mod episode_map;
pub mod feature_reader;
pub mod index_feed;
pub mod index_watch;
pub mod lineage;
pub mod normalise;
pub mod output;
pub mod parallel;
pub mod record_codec;
pub mod results;
pub mod sinks;
pub mod splits;
pub mod stages;
pub mod steps;
pub mod work;

pub use cluster::Cluster;

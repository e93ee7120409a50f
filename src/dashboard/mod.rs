//! The dashboard's side of epiflow (SPEC section 15): the six event types,
//! the hub that numbers them and hands them to every client, and the
//! producers that turn pipeline facts into events. Each producer is a small
//! module of plain functions from what the pipeline already knows (run
//! statistics, records, evaluation reports) to an [`events::Event`]; the
//! server (`epiflow serve`) calls them and publishes what they return.

pub mod api;
pub mod corpus;
pub mod events;
pub mod hub;
pub mod live;
pub mod perf;
pub mod profiles;
pub mod replay;
pub mod report_metrics;
pub mod server;

//! The event hub: numbers every event, keeps the last [`BUFFER`] for clients
//! that reconnect with `Last-Event-ID`, keeps the current state (the latest
//! `perf`, `profiles` and `metrics` per recipe) for clients that connect, and
//! hands each event to every client through a `tokio` broadcast channel.
//!
//! Publishing never waits for a client: the broadcast channel holds the last
//! [`LAG`] events for all of them, and a receiver that falls further behind
//! is told it lagged. The server moves each client's events on into a queue
//! of its own, as long again, and drops a client that lets it fill; the
//! client reconnects with its `Last-Event-ID` (SPEC section 15: no client
//! ever slows the pipeline).

use super::events::{Event, Stamped};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Events kept for clients that reconnect (the SPEC asks for at least 1,000).
pub const BUFFER: usize = 1024;

/// Events a client may fall behind before it is dropped: as many as a
/// client can get back with `Last-Event-ID` (it holds only pointers to the
/// events every client shares).
pub const LAG: usize = BUFFER;

/// What a client receives on (re)connecting, then live.
pub struct Subscription {
    /// Sent first: the events it missed, or the current state.
    pub backlog: Vec<Arc<Stamped>>,
    /// Every event published after the backlog.
    pub live: broadcast::Receiver<Arc<Stamped>>,
}

/// The hub.
pub struct Hub {
    state: Mutex<State>,
    sender: broadcast::Sender<Arc<Stamped>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    recent: VecDeque<Arc<Stamped>>,
    current: BTreeMap<String, Arc<Stamped>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { state: Mutex::new(State { next_id: 1, ..State::default() }), sender: broadcast::channel(LAG).0 }
    }
}

impl Hub {
    /// Numbers, stamps and sends `event`; returns it as sent.
    pub fn publish(&self, event: Event) -> Arc<Stamped> {
        let mut state = self.lock();
        let stamped = Arc::new(Stamped { id: state.next_id, time_ns: now_ns(), event });
        state.next_id += 1;
        if state.recent.len() == BUFFER {
            state.recent.pop_front();
        }
        state.recent.push_back(Arc::clone(&stamped));
        if let Some(key) = stamped.event.state_key() {
            state.current.insert(key, Arc::clone(&stamped));
        }
        // Sent under the lock, so a subscriber's backlog and live events
        // neither overlap nor leave a gap. No client: nothing to do.
        let _ = self.sender.send(Arc::clone(&stamped));
        stamped
    }

    /// A new client: the events after `last_event_id` when the buffer still
    /// holds all of them, else (or without one) the current state.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Subscription {
        let state = self.lock();
        let live = self.sender.subscribe();
        let oldest = state.recent.front().map_or(state.next_id, |e| e.id);
        let backlog = match last_event_id {
            Some(last) if last + 1 >= oldest && last < state.next_id => {
                state.recent.iter().filter(|e| e.id > last).cloned().collect()
            }
            _ => {
                let mut current: Vec<Arc<Stamped>> = state.current.values().cloned().collect();
                current.sort_by_key(|e| e.id);
                current
            }
        };
        Subscription { backlog, live }
    }

    /// Clients listening now.
    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::events::{Metrics, Profiles, Telemetry};
    use tokio::sync::broadcast::error::TryRecvError;

    fn telemetry(t_s: f64) -> Event {
        Event::Telemetry(Telemetry { replay: 1, t_s, values: BTreeMap::new(), truth: None })
    }

    fn metrics(recipe: &str) -> Event {
        Event::Metrics(Metrics { recipe: recipe.into(), models: BTreeMap::new() })
    }

    fn ids(events: &[Arc<Stamped>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn a_new_client_gets_the_current_state_then_every_event_in_order() {
        let hub = Hub::default();
        hub.publish(metrics("host"));
        hub.publish(telemetry(0.0));
        hub.publish(Event::Profiles(Profiles::default()));
        hub.publish(metrics("sample"));
        hub.publish(metrics("host"));
        let mut client = hub.subscribe(None);
        let names: Vec<String> = client.backlog.iter().map(|e| e.event.state_key().unwrap()).collect();
        assert_eq!(names, ["profiles", "metrics/sample", "metrics/host"], "latest per state, in id order");
        assert_eq!(ids(&client.backlog), [3, 4, 5]);
        hub.publish(telemetry(0.5));
        assert_eq!(client.live.try_recv().unwrap().id, 6);
        assert!(matches!(client.live.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(hub.clients(), 1);
    }

    #[test]
    fn a_client_that_reconnects_gets_exactly_what_it_missed_or_the_state_when_too_old() {
        let hub = Hub::default();
        hub.publish(metrics("host"));
        for i in 0..10 {
            hub.publish(telemetry(i as f64));
        }
        assert_eq!(ids(&hub.subscribe(Some(8)).backlog), [9, 10, 11]);
        assert!(hub.subscribe(Some(11)).backlog.is_empty(), "nothing missed");
        for i in 0..BUFFER {
            hub.publish(telemetry(i as f64));
        }
        let too_old = hub.subscribe(Some(3));
        assert_eq!(ids(&too_old.backlog), [1], "the buffer lost event 4: the current state instead");
        let last = (BUFFER + 11) as u64;
        assert_eq!(ids(&hub.subscribe(Some(last - 2)).backlog), [last - 1, last]);
        assert_eq!(ids(&hub.subscribe(Some(last + 50)).backlog), [1], "an id from another server: the state");
    }

    #[test]
    fn a_client_that_stops_reading_never_holds_up_publishing_and_learns_it_lagged() {
        let hub = Hub::default();
        let mut slow = hub.subscribe(None);
        let start = std::time::Instant::now();
        for i in 0..(LAG * 10) {
            hub.publish(telemetry(i as f64));
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let mut fast = hub.subscribe(Some((LAG * 10 - 1) as u64));
        assert_eq!(ids(&fast.backlog), [(LAG * 10) as u64]);
        assert!(matches!(slow.live.try_recv(), Err(TryRecvError::Lagged(_))), "the slow client is told to go");
        hub.publish(telemetry(0.0));
        assert_eq!(fast.live.try_recv().unwrap().id, (LAG * 10 + 1) as u64);
    }
}

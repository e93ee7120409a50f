//! A timely operator that applies a function to each episode, for a short
//! time per activation. Yielding every few milliseconds lets downstream
//! operators consume those batches before more are decoded, so memory stays
//! flat however many episodes a worker is handed at once; episodes that cost
//! microseconds (every result reused) still go through in batches of
//! hundreds, not one scheduling round each.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// Time spent per activation before yielding (at least one episode is
/// processed): long enough to amortise scheduling over cheap episodes, short
/// enough that a worker holds only a few episodes that took real work.
const BUDGET: Duration = Duration::from_millis(2);

/// Applies `logic` to every `(data, time, diff)` update of `stream`, keeping time
/// and diff, for about [`BUDGET`] per activation.
pub fn episode_map<'scope, D, D2, F>(
    stream: Stream<'scope, u64, Vec<(D, u64, isize)>>,
    name: &str,
    mut logic: F,
) -> Stream<'scope, u64, Vec<(D2, u64, isize)>>
where
    D: Clone + 'static,
    D2: Clone + 'static,
    F: FnMut(D) -> D2 + 'static,
{
    let scope = stream.scope();
    stream.unary(Pipeline, name, move |_capability, info| {
        let activator = scope.activator_for(info.address);
        let mut stash: VecDeque<(Capability<u64>, (D, u64, isize))> = VecDeque::new();
        move |input, output| {
            input.for_each_stamp(|cap, batches| {
                if let Some(cap) = cap.retain_least(output.output_index()) {
                    for batch in batches {
                        stash.extend(batch.drain(..).map(|update| (cap.clone(), update)));
                    }
                }
            });
            let start = Instant::now();
            while let Some((cap, (data, time, diff))) = stash.pop_front() {
                output.session(&cap).give((logic(data), time, diff));
                if start.elapsed() >= BUDGET {
                    break;
                }
            }
            if !stash.is_empty() {
                activator.activate();
            }
        }
    })
}

//! A timely operator that applies a function to each episode, a few per
//! activation. Yielding every few episodes lets downstream operators consume
//! those batches before more are decoded, so memory stays flat however many
//! episodes a worker is handed at once.

use std::collections::VecDeque;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// Episodes processed per activation before yielding: enough to amortise
/// scheduling, few enough that a worker holds only a handful of episodes.
const FUEL: usize = 4;

/// Applies `logic` to every `(data, time, diff)` update of `stream`, keeping time
/// and diff, processing at most `FUEL` episodes per activation.
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
            for _ in 0..FUEL {
                let Some((cap, (data, time, diff))) = stash.pop_front() else {
                    break;
                };
                output.session(&cap).give((logic(data), time, diff));
            }
            if !stash.is_empty() {
                activator.activate();
            }
        }
    })
}

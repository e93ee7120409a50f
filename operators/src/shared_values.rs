//! [`SharedValues`]: a run of `f64`s that an aligned source and the channel
//! points taken from it hold together.
//!
//! Most channels' points are their source's rows: a gauge with a value on
//! every row is its column as it stands, and the times of a counter's rates
//! are its source's times less the first. Copying them gave every channel
//! its own vectors, 46 per episode where the sources hold 4 time axes, and
//! the copies (allocating, faulting the pages in, copying, freeing) were a
//! tenth of a window change's CPU (BENCHMARKS.md). A shared run is the
//! vector once and a range of it; cloning one counts a reference.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A range of a shared vector of `f64`s, read as a slice (see the module).
#[derive(Clone, Default)]
pub struct SharedValues {
    all: Arc<Vec<f64>>,
    range: Range<usize>,
}

impl SharedValues {
    /// The values at `range` of these (indices relative to this run), the
    /// vector still shared. Panics when `range` is out of bounds, as slicing
    /// does.
    pub fn slice(&self, range: Range<usize>) -> SharedValues {
        let _ = &self[range.clone()];
        SharedValues { all: Arc::clone(&self.all), range: self.range.start + range.start..self.range.start + range.end }
    }

    /// The values to change in place: copied first when another run shares
    /// the vector or this run is part of it (copy on write, as `Cow`).
    pub fn to_mut(&mut self) -> &mut [f64] {
        if self.range != (0..self.all.len()) {
            *self = SharedValues::from(self.to_vec());
        }
        let range = self.range.clone();
        &mut Arc::make_mut(&mut self.all)[range]
    }
}

impl Deref for SharedValues {
    type Target = [f64];

    fn deref(&self) -> &[f64] {
        &self.all[self.range.clone()]
    }
}

impl<'a> IntoIterator for &'a SharedValues {
    type Item = &'a f64;
    type IntoIter = std::slice::Iter<'a, f64>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Vec<f64>> for SharedValues {
    fn from(values: Vec<f64>) -> SharedValues {
        SharedValues { range: 0..values.len(), all: Arc::new(values) }
    }
}

impl FromIterator<f64> for SharedValues {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> SharedValues {
        SharedValues::from(values.into_iter().collect::<Vec<f64>>())
    }
}

/// Equal when the values are, as slices compare (NaN equals nothing).
impl PartialEq for SharedValues {
    fn eq(&self, other: &SharedValues) -> bool {
        self[..] == other[..]
    }
}

impl PartialEq<Vec<f64>> for SharedValues {
    fn eq(&self, other: &Vec<f64>) -> bool {
        self[..] == other[..]
    }
}

impl fmt::Debug for SharedValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self[..].fmt(f)
    }
}

/// A sequence of numbers, as a `Vec<f64>` is.
impl Serialize for SharedValues {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self[..].serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedValues, D::Error> {
        Vec::<f64>::deserialize(deserializer).map(SharedValues::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_reads_its_range_of_the_same_vector() {
        let all = SharedValues::from(vec![1.0, 2.0, 3.0, 4.0]);
        let tail = all.slice(1..4);
        assert_eq!(tail, vec![2.0, 3.0, 4.0]);
        assert_eq!(tail.slice(1..2), vec![3.0]);
        assert!(Arc::ptr_eq(&all.all, &tail.all), "a slice shares the vector");
        assert_eq!(SharedValues::default().len(), 0);
    }

    #[test]
    fn changing_values_leaves_the_runs_sharing_them_as_they_were() {
        let all = SharedValues::from(vec![1.0, 2.0, 3.0]);
        let mut tail = all.slice(1..3);
        tail.to_mut()[0] = 20.0;
        let mut whole = all.clone();
        whole.to_mut()[2] = 30.0;
        assert_eq!(
            (all, tail, whole),
            (vec![1.0, 2.0, 3.0].into(), vec![20.0, 3.0].into(), vec![1.0, 2.0, 30.0].into())
        );
    }

    #[test]
    fn serialises_as_the_sequence_of_its_values() {
        let run = SharedValues::from(vec![0.5, 1.5, 2.5]).slice(1..3);
        let json = serde_json::to_string(&run).unwrap();
        assert_eq!(json, "[1.5,2.5]");
        assert_eq!(serde_json::from_str::<SharedValues>(&json).unwrap(), run);
    }
}

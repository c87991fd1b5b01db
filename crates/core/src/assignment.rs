//! Which worker replica should own which partition.

/// The partitions `member` should own when `members` (every live replica, in any order)
/// share `partitions` partitions: partition `p` goes to the `p mod N`-th member in
/// sorted order, so every replica computes the same assignment from the same view and
/// each owns ⌊P/N⌋ or ⌈P/N⌉ partitions. Empty when `member` is not among `members`.
pub fn assigned_partitions(members: &[String], member: &str, partitions: u32) -> Vec<u32> {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let Some(rank) = sorted.iter().position(|m| *m == member) else {
        return Vec::new();
    };
    let n = sorted.len();
    (0..partitions)
        .filter(|p| usize::try_from(*p).is_ok_and(|p| p % n == rank))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("worker-{i}")).collect()
    }

    #[test]
    fn every_partition_has_exactly_one_owner_and_shares_are_even() {
        for n in 1..=7 {
            let members = names(n);
            let mut owners = vec![0; 12];
            for member in &members {
                let mine = assigned_partitions(&members, member, 12);
                assert!(mine.len() == 12 / n || mine.len() == 12usize.div_ceil(n));
                for p in mine {
                    owners[p as usize] += 1;
                }
            }
            assert!(owners.iter().all(|&c| c == 1), "n={n}: {owners:?}");
        }
    }

    #[test]
    fn order_of_the_view_does_not_matter_and_strangers_get_nothing() {
        let mut members = names(3);
        let before = assigned_partitions(&members, "worker-1", 12);
        members.reverse();
        assert_eq!(assigned_partitions(&members, "worker-1", 12), before);
        assert!(assigned_partitions(&members, "worker-9", 12).is_empty());
    }
}

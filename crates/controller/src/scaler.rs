//! Placement as a pure function: an app's scaler and the live hosts in, each host's share of
//! the app's instances out (and why part of it could not be placed).

use std::collections::BTreeMap;

use weft_manifest::{Scaler, ScalerKind, SpreadRule};

/// A live host as placement sees it.
#[derive(Debug, Clone)]
pub struct HostView {
    pub id: String,
    pub labels: BTreeMap<String, String>,
}

/// Where an app goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// Host → its share of the app's instances (hosts with none are left out).
    pub hosts: BTreeMap<String, u32>,
    /// Why some of the app could not be placed, naming the requirement no host meets.
    pub waiting: Option<String>,
}

/// Splits `total` over `weights` in proportion, by largest remainder (ties to the earlier).
fn split(total: u32, weights: &[u32]) -> Vec<u32> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u32, u64)> = weights
        .iter()
        .map(|&w| {
            let scaled = u64::from(total) * u64::from(w);
            ((scaled / sum) as u32, scaled % sum)
        })
        .collect();
    let mut shares: Vec<u32> = exact.iter().map(|(q, _)| *q).collect();
    let mut left = total - shares.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

fn unmatched(rule: &SpreadRule, hosts: &[HostView]) -> String {
    format!(
        "spread `{}` needs a host with {}; none of the {} live host(s) has it",
        rule.name,
        rule.describe(),
        hosts.len()
    )
}

/// Places an app with `scaler` on `hosts` (sorted by id, so the same inputs give the same
/// placement on every leader).
pub fn place(scaler: &Scaler, hosts: &[HostView]) -> Placed {
    let mut hosts: Vec<HostView> = hosts.to_vec();
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    if hosts.is_empty() {
        return Placed {
            hosts: BTreeMap::new(),
            waiting: Some("no host has joined the lattice".into()),
        };
    }
    let everywhere = [SpreadRule {
        name: "default".into(),
        requirements: BTreeMap::new(),
        weight: 1,
    }];
    let rules: &[SpreadRule] = if scaler.spread.is_empty() {
        &everywhere
    } else {
        &scaler.spread
    };
    let mut placed = Placed::default();
    let mut waiting = Vec::new();
    match scaler.kind {
        ScalerKind::Daemon => {
            for host in &hosts {
                if rules.iter().any(|r| r.matches(&host.labels)) {
                    placed.hosts.insert(host.id.clone(), scaler.instances);
                }
            }
            if placed.hosts.is_empty() {
                waiting.extend(rules.iter().map(|r| unmatched(r, &hosts)));
            }
        }
        ScalerKind::Spread => {
            let weights: Vec<u32> = rules.iter().map(|r| r.weight).collect();
            for (rule, share) in rules.iter().zip(split(scaler.instances, &weights)) {
                if share == 0 {
                    continue;
                }
                let matching: Vec<&HostView> =
                    hosts.iter().filter(|h| rule.matches(&h.labels)).collect();
                if matching.is_empty() {
                    waiting.push(unmatched(rule, &hosts));
                    continue;
                }
                let per_host = split(share, &vec![1; matching.len()]);
                for (host, n) in matching.into_iter().zip(per_host) {
                    if n > 0 {
                        *placed.hosts.entry(host.id.clone()).or_default() += n;
                    }
                }
            }
        }
    }
    if !waiting.is_empty() {
        placed.waiting = Some(waiting.join("; "));
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, zone: &str) -> HostView {
        HostView {
            id: id.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
        }
    }

    fn rule(name: &str, zone: &str, weight: u32) -> SpreadRule {
        SpreadRule {
            name: name.into(),
            requirements: [("zone".to_string(), zone.to_string())].into(),
            weight,
        }
    }

    fn spread(instances: u32, spread: Vec<SpreadRule>) -> Scaler {
        Scaler {
            kind: ScalerKind::Spread,
            instances,
            spread,
        }
    }

    #[test]
    fn weights_two_to_one_split_instances_two_to_one() {
        let hosts = [host("h1", "a"), host("h2", "b"), host("h3", "b")];
        let placed = place(
            &spread(3, vec![rule("a", "a", 2), rule("b", "b", 1)]),
            &hosts,
        );
        assert_eq!(placed.hosts, [("h1".into(), 2), ("h2".into(), 1)].into());
        assert_eq!(placed.waiting, None);
        let placed = place(
            &spread(6, vec![rule("a", "a", 2), rule("b", "b", 1)]),
            &hosts,
        );
        assert_eq!(
            placed.hosts,
            [("h1".into(), 4), ("h2".into(), 1), ("h3".into(), 1)].into()
        );
    }

    #[test]
    fn a_rule_no_host_meets_is_named_and_the_rest_is_placed() {
        let hosts = [host("h1", "a")];
        let placed = place(
            &spread(3, vec![rule("a", "a", 2), rule("gpu", "gpu", 1)]),
            &hosts,
        );
        assert_eq!(placed.hosts, [("h1".into(), 2)].into());
        let waiting = placed.waiting.unwrap();
        assert!(
            waiting.contains("spread `gpu` needs a host with zone=gpu"),
            "{waiting}"
        );
        let nothing = place(&spread(3, vec![]), &[]);
        assert!(nothing.hosts.is_empty());
        assert!(nothing.waiting.is_some());
    }

    #[test]
    fn no_rules_spread_evenly_and_a_daemon_runs_on_every_matching_host() {
        let hosts = [host("h2", "b"), host("h1", "a"), host("h3", "b")];
        let placed = place(&spread(4, vec![]), &hosts);
        assert_eq!(
            placed.hosts,
            [("h1".into(), 2), ("h2".into(), 1), ("h3".into(), 1)].into()
        );
        let daemon = Scaler {
            kind: ScalerKind::Daemon,
            instances: 5,
            spread: vec![rule("b", "b", 1)],
        };
        assert_eq!(
            place(&daemon, &hosts).hosts,
            [("h2".into(), 5), ("h3".into(), 5)].into()
        );
    }

    #[test]
    fn split_is_exact_and_proportional() {
        assert_eq!(split(3, &[2, 1]), vec![2, 1]);
        assert_eq!(split(1, &[1, 1, 1]), vec![1, 0, 0]);
        assert_eq!(split(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split(0, &[1]), vec![0]);
    }
}

//! How an app asks to be placed across a lattice, from its components' scaler traits.

use std::collections::BTreeSet;

use crate::model::{App, Component, Manifest, Scaler, ScalerKind, DEFAULT_MAX_INSTANCES};

/// Components of one app that ask for different placements.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "components `{first}` and `{other}` ask for different placements; an app is placed as one \
     unit in a lattice, so give them the same scaler kind and spread rules"
)]
pub struct ScalerConflict {
    pub first: String,
    pub other: String,
}

impl App {
    /// How the app is placed in a lattice; see [`scaler_of`].
    pub fn scaler(&self) -> Result<Scaler, ScalerConflict> {
        scaler_of(&self.components)
    }

    /// The apps whose components this app uses by reference.
    pub fn uses(&self) -> BTreeSet<String> {
        self.components
            .iter()
            .filter_map(|c| c.shared.as_ref().map(|s| s.app.clone()))
            .collect()
    }
}

impl Manifest {
    /// How the app is placed in a lattice; see [`scaler_of`].
    pub fn scaler(&self) -> Result<Scaler, ScalerConflict> {
        scaler_of(&self.components)
    }
}

/// How an app of `components` is placed in a lattice. An app is placed as one unit (its links
/// stay in-process calls), so its components' scalers must agree on kind and spread rules; the
/// app's instances are the largest any of them asks for. No scaler: spread evenly over every
/// host.
pub fn scaler_of(components: &[Component]) -> Result<Scaler, ScalerConflict> {
    let mut scalers = components
        .iter()
        .filter_map(|c| c.scaler.as_ref().map(|s| (c.name.as_str(), s)));
    let Some((first_name, first)) = scalers.next() else {
        return Ok(Scaler {
            kind: ScalerKind::Spread,
            instances: components
                .iter()
                .map(|c| c.limits.max_instances)
                .max()
                .unwrap_or(DEFAULT_MAX_INSTANCES),
            spread: Vec::new(),
        });
    };
    let mut scaler = first.clone();
    for (name, other) in scalers {
        if other.kind != first.kind || other.spread != first.spread {
            return Err(ScalerConflict {
                first: first_name.to_string(),
                other: name.to_string(),
            });
        }
        scaler.instances = scaler.instances.max(other.instances);
    }
    Ok(scaler)
}

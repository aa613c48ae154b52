//! The host-wide ceilings on what a manifest may ask of one component: the operator's bound on
//! any one app, checked before a deploy compiles anything.

use std::time::Duration;

use weft_manifest::{App, INSTANCES_CEILING, MEMORY_CEILING, TIMEOUT_CEILING};

/// The most any component may ask for on this host (`weft up --max-memory`, `--max-timeout`,
/// `--max-instances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceilings {
    pub max_memory: u64,
    pub max_timeout: Duration,
    pub max_instances: u32,
}

impl Default for Ceilings {
    /// The most the runtime can honour at all.
    fn default() -> Self {
        Ceilings {
            max_memory: MEMORY_CEILING,
            max_timeout: TIMEOUT_CEILING,
            max_instances: INSTANCES_CEILING,
        }
    }
}

/// A component asks for more than the host allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "component `{component}`: {field} {asked} is above this host's ceiling of {ceiling} \
     (`weft up {flag}`); ask for less in the manifest, or have the operator raise the ceiling"
)]
pub struct AboveCeiling {
    pub component: String,
    pub field: &'static str,
    pub asked: String,
    pub ceiling: String,
    pub flag: &'static str,
}

impl Ceilings {
    /// Lowers the limits `app` leaves to their defaults to these ceilings, and refuses the
    /// first component whose stated limits go past one.
    pub fn fit(&self, app: &mut App) -> Result<(), AboveCeiling> {
        for component in app.components.iter_mut().filter(|c| c.shared.is_none()) {
            let name = &component.name;
            let limits = &mut component.limits;
            let stated = limits.stated;
            fit_one(
                name,
                "limits.memory",
                "--max-memory",
                &mut limits.max_memory,
                self.max_memory,
                stated.memory,
                size,
            )?;
            fit_one(
                name,
                "limits.timeout",
                "--max-timeout",
                &mut limits.timeout,
                self.max_timeout,
                stated.timeout,
                |t| format!("{t:?}"),
            )?;
            fit_one(
                name,
                "instances",
                "--max-instances",
                &mut limits.max_instances,
                self.max_instances,
                stated.instances,
                |n| n.to_string(),
            )?;
        }
        Ok(())
    }
}

/// Holds one limit to its ceiling: a stated value above it is refused, a default lowered.
fn fit_one<T: PartialOrd + Copy>(
    component: &str,
    field: &'static str,
    flag: &'static str,
    value: &mut T,
    ceiling: T,
    stated: bool,
    show: impl Fn(T) -> String,
) -> Result<(), AboveCeiling> {
    if *value <= ceiling {
        return Ok(());
    }
    if stated {
        return Err(AboveCeiling {
            component: component.to_string(),
            field,
            asked: show(*value),
            ceiling: show(ceiling),
            flag,
        });
    }
    *value = ceiling;
    Ok(())
}

/// Bytes as the manifest writes them, in the largest binary unit that divides them.
pub fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(limits: &str, instances: u32) -> App {
        let yaml = format!(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {{ name: a }}\n\
             spec:\n  components:\n    - name: c\n      type: component\n      properties:\n\
             \x20       image: c.wasm\n        {limits}\n      traits:\n\
             \x20       - type: spreadscaler\n          properties: {{ instances: {instances} }}\n"
        );
        weft_manifest::parse_app(&yaml, "test.yaml", weft_capabilities::catalog()).unwrap()
    }

    const LOW: Ceilings = Ceilings {
        max_memory: 64 << 20,
        max_timeout: Duration::from_secs(5),
        max_instances: 10,
    };

    #[test]
    fn stated_limits_past_a_ceiling_are_refused_naming_it() {
        let e = LOW
            .fit(&mut app("limits: { memory: 128MiB }", 1))
            .unwrap_err();
        assert_eq!(
            (e.field, e.ceiling.as_str(), e.flag),
            ("limits.memory", "64MiB", "--max-memory")
        );
        let e = LOW.fit(&mut app("limits: { timeout: 6s }", 1)).unwrap_err();
        assert_eq!((e.field, e.flag), ("limits.timeout", "--max-timeout"));
        let e = LOW.fit(&mut app("limits: {}", 11)).unwrap_err();
        assert_eq!(
            (e.field, e.asked.as_str(), e.flag),
            ("instances", "11", "--max-instances")
        );
    }

    #[test]
    fn defaults_are_lowered_to_the_ceilings_and_stated_limits_within_them_kept() {
        let mut lowered = app("limits: {}", 10);
        LOW.fit(&mut lowered).unwrap();
        let limits = lowered.components[0].limits;
        assert_eq!(
            (limits.max_memory, limits.timeout),
            (64 << 20, Duration::from_secs(5))
        );
        let mut kept = app("limits: { memory: 32MiB, timeout: 2s }", 3);
        LOW.fit(&mut kept).unwrap();
        let limits = kept.components[0].limits;
        assert_eq!(
            (limits.max_memory, limits.timeout, limits.max_instances),
            (32 << 20, Duration::from_secs(2), 3)
        );
    }

    #[test]
    fn sizes_read_as_written() {
        assert_eq!(size(1 << 30), "1GiB");
        assert_eq!(size(256 << 20), "256MiB");
        assert_eq!(size(1536 << 10), "1536KiB");
        assert_eq!(size(1000), "1000B");
    }
}

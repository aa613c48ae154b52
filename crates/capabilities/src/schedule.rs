//! Schedules: a link from a `weft:schedule` node to a component calls its
//! `weft:schedule/handler` export at each tick, `every` a fixed interval or at the times a
//! `cron` expression matches (UTC). Ticks fall on times every host computes alike (multiples of
//! the interval since the Unix epoch; cron times), so hosts of a lattice agree on which tick is
//! due and exactly one of them handles it (`weft-host` claims it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use croner::parser::{CronParser, Seconds};
use serde::Deserialize;
use weft_manifest::{
    merge, CapabilityLink, CapabilitySpec, Delivered, Granted, Schedule, SpecError, When,
};

use crate::catalog::{check_delivery, Capability};
use crate::settings::typed;

/// The schedule capability.
pub struct ScheduleCapability;

/// The one instance in [`crate::CAPABILITIES`].
pub static SCHEDULE: ScheduleCapability = ScheduleCapability;

/// The shortest interval a schedule may tick at.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A schedule link's config, on the schedule's end.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleConfig {
    every: Option<String>,
    cron: Option<String>,
}

impl CapabilitySpec for ScheduleCapability {
    fn name(&self) -> &'static str {
        "schedule"
    }

    fn images(&self) -> Vec<(&'static str, &'static str)> {
        vec![("schedule", "clock")]
    }

    fn grant(&self, _link: &CapabilityLink<'_>) -> Result<Granted, SpecError> {
        Err(SpecError::new(
            "a schedule calls components: put the link on the schedule, targeting the component",
        ))
    }

    fn deliver(&self, link: &CapabilityLink<'_>) -> Result<Delivered, SpecError> {
        check_delivery(
            link,
            ("weft", "schedule", &["handler"]),
            "a schedule's ticks go to components",
            "a schedule link calls",
        )?;
        let config: ScheduleConfig = typed(&merge(link.link.source_config.iter()))
            .map_err(|e| SpecError::at("properties.source.config", e.0))?;
        let when = match (config.every, config.cron) {
            (Some(every), None) => When::Every(interval(&every)?),
            (None, Some(cron)) => {
                parse_cron(&cron)?;
                When::Cron(cron.trim().to_string())
            }
            _ => {
                return Err(SpecError::at(
                    "properties.source.config",
                    "say when the schedule ticks with one of `every: 30s` or \
                     `cron: \"*/5 * * * *\"`",
                ))
            }
        };
        Ok(Delivered::Schedule(Schedule {
            component: link.component.to_string(),
            capability: link.node.name.clone(),
            when,
        }))
    }
}

impl Capability for ScheduleCapability {}

fn interval(text: &str) -> Result<Duration, SpecError> {
    let at = "properties.source.config every";
    let every =
        weft_manifest::parse_duration(text).map_err(|e| SpecError::at(at, e.to_string()))?;
    if every < MIN_INTERVAL {
        return Err(SpecError::at(
            at,
            format!("`{text}` is shorter than the shortest interval, {MIN_INTERVAL:?}"),
        ));
    }
    Ok(every)
}

fn parse_cron(text: &str) -> Result<croner::Cron, SpecError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(text.trim())
        .map_err(|e| {
            SpecError::at(
                "properties.source.config cron",
                format!(
                    "`{text}` is not a cron expression ({e}); write five fields (minute hour \
                     day-of-month month day-of-week) or six with seconds first, e.g. \
                     \"0 */5 * * * *\""
                ),
            )
        })
}

/// The first tick of `when` strictly after `after`; None when there is none (a cron expression
/// that never matches again).
pub fn next_due(when: &When, after: SystemTime) -> Option<SystemTime> {
    match when {
        When::Every(every) => {
            let since = after.duration_since(UNIX_EPOCH).ok()?.as_millis();
            let step = every.as_millis().max(1);
            let next = (since / step + 1) * step;
            Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(next).ok()?))
        }
        When::Cron(text) => {
            let cron = parse_cron(text).ok()?;
            let after: chrono::DateTime<chrono::Utc> = after.into();
            let next = cron.find_next_occurrence(&after, false).ok()?;
            Some(next.into())
        }
    }
}

/// Milliseconds since the Unix epoch of `at`.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn intervals_tick_on_multiples_of_themselves() {
        let every = When::Every(Duration::from_secs(10));
        assert_eq!(next_due(&every, at(0)), Some(at(10_000)));
        assert_eq!(next_due(&every, at(9_999)), Some(at(10_000)));
        assert_eq!(next_due(&every, at(10_000)), Some(at(20_000)));
    }

    #[test]
    fn cron_takes_five_fields_or_six_with_seconds() {
        let five = When::Cron("*/5 * * * *".into());
        assert_eq!(next_due(&five, at(1_000)), Some(at(300_000)));
        let six = When::Cron("*/2 * * * * *".into());
        assert_eq!(next_due(&six, at(1_000)), Some(at(2_000)));
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every minute").is_err());
        assert!(parse_cron("@hourly").is_ok());
    }

    #[test]
    fn intervals_below_a_second_are_refused() {
        assert!(interval("500ms").is_err());
        assert!(interval("1s").is_ok());
        assert!(interval("soon").is_err());
    }
}

//! IANA time zones, from the time-zone database that jiff bundles.
//!
//! The database is compiled into the binary (`tzdb-bundle-always`), so a
//! zone means the same on every machine, whatever `/usr/share/zoneinfo`
//! holds. jiff answers any instant, but the calendar asks "when does this
//! local wall-clock time happen" for every trading day it looks at; so each
//! zone is turned once into a table of its offset changes between 1900 and
//! 2200, and a lookup is a binary search over a few hundred entries (none
//! for a fixed-offset zone).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// 1900-01-01T00:00:00Z and 2200-01-01T00:00:00Z: the span the tables
/// cover. Outside it the nearest edge's offset applies.
const TABLE_START_S: i64 = -2_208_988_800;
const TABLE_END_S: i64 = 7_258_118_400;

/// A time zone: a name and its offsets from UTC over time. Cheap to clone.
#[derive(Clone)]
pub struct Tz(Arc<Rules>);

struct Rules {
    name: String,
    /// Offset (seconds east of UTC) before the first change.
    initial: i64,
    /// Ascending by instant.
    changes: Vec<Change>,
}

/// One change of a zone's offset.
struct Change {
    /// The UTC second it takes effect.
    at: i64,
    /// Offset from then on, and before it.
    offset: i64,
    before: i64,
    /// The local times that happen twice (clocks go back) or never (clocks
    /// go forward) around it: `[at + min(offsets), at + max(offsets))`.
    local_lo: i64,
    local_hi: i64,
}

impl fmt::Debug for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tz({})", self.0.name)
    }
}

impl PartialEq for Tz {
    fn eq(&self, other: &Tz) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Tz {}

impl Tz {
    /// The zone named `name` (`America/Chicago`, `Asia/Kolkata`, `UTC`...),
    /// or None for a name the database does not know. Tables are built once
    /// per name and shared.
    pub fn parse(name: &str) -> Option<Tz> {
        static ZONES: OnceLock<Mutex<HashMap<String, Tz>>> = OnceLock::new();
        let zones = ZONES.get_or_init(Default::default);
        if let Some(tz) = zones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Some(tz.clone());
        }
        let zone = TimeZone::get(name).ok()?;
        let tz = Tz(Arc::new(Rules::of(name, &zone)));
        zones
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), tz.clone());
        Some(tz)
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Offset from UTC, in seconds, in effect at the UTC second `utc_s`.
    pub fn offset_at_utc(&self, utc_s: i64) -> i64 {
        let rules = &self.0;
        match rules.changes.partition_point(|c| c.at <= utc_s) {
            0 => rules.initial,
            i => rules.changes[i - 1].offset,
        }
    }

    /// The UTC second of a local wall-clock second (seconds since
    /// 1970-01-01 00:00 local).
    ///
    /// A local time that happens twice (when clocks go back) takes the
    /// earlier instant; one that never happens (when clocks go forward)
    /// maps to the instant of the change. The mapping is therefore monotone:
    /// a session that starts before it ends locally never ends before it
    /// starts in UTC.
    pub fn local_to_utc(&self, local_s: i64) -> i64 {
        let rules = &self.0;
        // Changes are months apart and offsets differ by hours, so the
        // ambiguous stretches of local time never overlap: `local_s` is in
        // at most one, the last that starts at or before it.
        let i = rules.changes.partition_point(|c| c.local_lo <= local_s);
        let Some(change) = i.checked_sub(1).map(|i| &rules.changes[i]) else {
            return local_s - rules.initial;
        };
        if local_s >= change.local_hi {
            local_s - change.offset
        } else if change.offset < change.before {
            // Clocks went back: the earlier instant, on the old offset.
            local_s - change.before
        } else {
            // Clocks went forward: this local time never happens.
            change.at
        }
    }
}

impl Rules {
    fn of(name: &str, zone: &TimeZone) -> Rules {
        let start = Timestamp::from_second(TABLE_START_S).expect("1900 is a valid instant");
        let initial = i64::from(zone.to_offset(start).seconds());
        let mut changes = Vec::new();
        let mut before = initial;
        for transition in zone.following(start) {
            let at = transition.timestamp().as_second();
            if at >= TABLE_END_S {
                break;
            }
            let offset = i64::from(transition.offset().seconds());
            // Abbreviation-only changes (same offset) are not changes here.
            if offset != before {
                changes.push(Change {
                    at,
                    offset,
                    before,
                    local_lo: at + offset.min(before),
                    local_hi: at + offset.max(before),
                });
                before = offset;
            }
        }
        Rules {
            name: name.to_string(),
            initial,
            changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn offsets_follow_the_database() {
        let ny = Tz::parse("America/New_York").unwrap();
        assert_eq!(ny.offset_at_utc(utc("2019-03-10T06:59:59Z")), -5 * 3600);
        assert_eq!(ny.offset_at_utc(utc("2019-03-10T07:00:00Z")), -4 * 3600);
        let kolkata = Tz::parse("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.offset_at_utc(utc("2024-06-01T00:00:00Z")), 19_800);
        let sydney = Tz::parse("Australia/Sydney").unwrap();
        // Southern hemisphere: daylight time in January, standard in July.
        assert_eq!(sydney.offset_at_utc(utc("2024-01-15T00:00:00Z")), 11 * 3600);
        assert_eq!(sydney.offset_at_utc(utc("2024-07-15T00:00:00Z")), 10 * 3600);
        assert!(Tz::parse("Mars/Olympus_Mons").is_none());
        assert_eq!(Tz::parse("UTC").unwrap().offset_at_utc(0), 0);
    }

    #[test]
    fn local_times_in_gaps_and_folds() {
        let berlin = Tz::parse("Europe/Berlin").unwrap();
        let local = |s: &str| {
            s.parse::<jiff::civil::DateTime>()
                .unwrap()
                .to_zoned_datetime(TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second()
        };
        // 2024-03-31 02:30 does not exist: the change at 01:00 UTC.
        assert_eq!(
            berlin.local_to_utc(local("2024-03-31T02:30")),
            utc("2024-03-31T01:00:00Z")
        );
        // 2024-10-27 02:30 happens twice: the earlier (summer time) instant.
        assert_eq!(
            berlin.local_to_utc(local("2024-10-27T02:30")),
            utc("2024-10-27T00:30:00Z")
        );
        assert_eq!(
            berlin.local_to_utc(local("2024-07-01T12:00")),
            utc("2024-07-01T10:00:00Z")
        );
    }

    #[test]
    fn local_to_utc_is_monotone_and_inverts_the_offset() {
        for name in [
            "America/Chicago",
            "Europe/London",
            "Australia/Sydney",
            "Asia/Tokyo",
        ] {
            let tz = Tz::parse(name).unwrap();
            let mut prev = i64::MIN;
            let start = utc("2019-01-01T00:00:00Z");
            for local in (start..start + 2 * 366 * 86_400).step_by(7 * 60) {
                let u = tz.local_to_utc(local);
                assert!(u >= prev, "{name} not monotone at {local}");
                prev = u;
                if u + tz.offset_at_utc(u) != local {
                    // Only inside a gap, which maps to the change itself.
                    assert_ne!(
                        tz.offset_at_utc(u - 1),
                        tz.offset_at_utc(u),
                        "{name} at {local}"
                    );
                }
            }
        }
    }
}

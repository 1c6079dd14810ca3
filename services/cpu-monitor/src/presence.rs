//! Things that come and go at run time (mount points, interfaces, sensors): a warning once
//! when one goes missing, a note when it is back, nothing in between.

use std::collections::BTreeSet;

/// What changed for one name at this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing new to say.
    Same,
    /// It was missing and is back (logged at info).
    Back,
    /// It just went missing (logged once, as a warning unless quiet).
    Lost,
}

/// The names of one kind (`mount point`, `interface`, `sensor`) seen so far, and which are missing.
#[derive(Debug)]
pub(crate) struct Presence {
    kind: &'static str,
    seen: BTreeSet<String>,
    missing: BTreeSet<String>,
}

impl Presence {
    /// Track names of this kind.
    pub(crate) fn new(kind: &'static str) -> Self {
        Presence {
            kind,
            seen: BTreeSet::new(),
            missing: BTreeSet::new(),
        }
    }

    /// `name` was found and read.
    pub(crate) fn present(&mut self, name: &str) -> Change {
        if !self.seen.contains(name) {
            self.seen.insert(name.to_string());
        }
        if self.missing.remove(name) {
            tracing::info!("{} {name} is back; its metrics are published again", self.kind);
            Change::Back
        } else {
            Change::Same
        }
    }

    /// `name` is expected but missing (or unreadable) because of `why`. Logged the first time
    /// only: as a warning, or at debug level when `quiet` (an optional mount point). `why` is
    /// formatted only then (`format_args!`), not at every poll that finds it still missing.
    pub(crate) fn absent(&mut self, name: &str, why: impl std::fmt::Display, quiet: bool) -> Change {
        if self.missing.contains(name) {
            return Change::Same;
        }
        self.missing.insert(name.to_string());
        if quiet {
            tracing::debug!("{} {name}: {why}; its metrics are skipped", self.kind);
        } else {
            tracing::warn!("{} {name}: {why}; its metrics are skipped until it is back", self.kind);
        }
        Change::Lost
    }

    /// Names seen before that are not in `now`: each is reported [`Presence::absent`] ("is gone").
    pub(crate) fn gone_except(&mut self, now: &BTreeSet<&str>) -> Vec<String> {
        let gone: Vec<String> = self
            .seen
            .iter()
            .filter(|n| !now.contains(n.as_str()) && !self.missing.contains(*n))
            .cloned()
            .collect();
        for n in &gone {
            self.absent(n, "is gone", false);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_reported_once_and_back_once() {
        let mut p = Presence::new("interface");
        assert_eq!(p.present("eth0"), Change::Same);
        assert_eq!(p.absent("eth0", "is gone", false), Change::Lost);
        assert_eq!(p.absent("eth0", "is gone", false), Change::Same);
        assert_eq!(p.present("eth0"), Change::Back);
        assert_eq!(p.present("eth0"), Change::Same);
        assert_eq!(
            p.absent("eth0", "is gone", false),
            Change::Lost,
            "a second loss is reported again"
        );
    }

    #[test]
    fn gone_names_are_the_seen_ones_not_present_now() {
        let mut p = Presence::new("interface");
        p.present("eth0");
        p.present("wlan0");
        let now: BTreeSet<&str> = ["eth0"].into();
        assert_eq!(p.gone_except(&now), ["wlan0"]);
        assert!(p.gone_except(&now).is_empty(), "reported once");
        assert_eq!(p.present("wlan0"), Change::Back);
    }
}

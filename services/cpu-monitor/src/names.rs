//! The name-mapping rule: how a kernel name (interface, sensor) becomes part of a metric name.
//!
//! SenML names (RFC 8428) allow only `A-Z a-z 0-9 - : . / _`. A metric name is
//! `<group>:<label>:<field>`, so a label must not contain `:` either, and this service also
//! keeps `/` out of labels (it reads as a path). The rule:
//!
//! 1. every character that is not `A-Z a-z 0-9 _ . -` becomes `_` (one `_` per character;
//!    a non-ASCII character counts as one);
//! 2. an empty name becomes `unnamed`;
//! 3. when two different kernel names map to the same label, the second (in the kernel's
//!    order) gets `_2`, the third `_3`, and so on.
//!
//! `wlan 0` -> `wlan_0`, `coretemp:Core 0` -> `coretemp_Core_0`, `ñ0` -> `_0`.

use std::collections::HashSet;

/// Is `c` kept as it is in a label?
pub fn label_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Is `label` usable as it is (a configured disk label, say)? Non-empty, at most 64
/// characters, only `A-Z a-z 0-9 _ . -`.
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= 64 && label.chars().all(label_char_ok)
}

/// Rules 1 and 2: map one kernel name to a label.
pub fn sanitize(name: &str) -> String {
    if name.is_empty() {
        return "unnamed".to_string();
    }
    name.chars().map(|c| if label_char_ok(c) { c } else { '_' }).collect()
}

/// Rule 3: labels already handed out in one listing, so that collisions get a suffix.
#[derive(Debug, Default)]
pub struct Labeler {
    used: HashSet<String>,
}

impl Labeler {
    /// A fresh listing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The label for `name`: [`sanitize`]d, with `_2`, `_3`... when already taken.
    pub fn label(&mut self, name: &str) -> String {
        let base = sanitize(name);
        let mut label = base.clone();
        let mut n = 2;
        while self.used.contains(&label) {
            label = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(label.clone());
        label
    }
}

/// A selection pattern from the configuration: an exact name, or a prefix ending in `*`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Include/exclude selection: `include` empty means everything; `exclude` wins.
pub fn selected(include: &[String], exclude: &[String], name: &str) -> bool {
    (include.is_empty() || include.iter().any(|p| pattern_matches(p, name)))
        && !exclude.iter().any(|p| pattern_matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_characters_are_kept() {
        assert_eq!(sanitize("eth0"), "eth0");
        assert_eq!(sanitize("br-lan.10_x"), "br-lan.10_x");
    }

    #[test]
    fn every_disallowed_character_becomes_one_underscore() {
        assert_eq!(sanitize("wlan 0"), "wlan_0");
        assert_eq!(sanitize("coretemp:Core 0"), "coretemp_Core_0");
        assert_eq!(sanitize("a/b"), "a_b");
        assert_eq!(sanitize("veth+x@y"), "veth_x_y");
        // One non-ASCII character (two UTF-8 bytes) is one underscore.
        assert_eq!(sanitize("\u{f1}0"), "_0");
        assert_eq!(sanitize(""), "unnamed");
    }

    #[test]
    fn sanitized_labels_make_valid_senml_names() {
        for raw in ["wlan 0", "\u{f1}", "a:b", "#", " ", "x\ty"] {
            let name = format!("net:{}:rx_bytes", sanitize(raw));
            assert!(tolomeo_proto::senml::is_valid_name(&name), "{name}");
        }
    }

    #[test]
    fn collisions_get_a_numbered_suffix() {
        let mut l = Labeler::new();
        assert_eq!(l.label("eth 0"), "eth_0");
        assert_eq!(l.label("eth_0"), "eth_0_2");
        assert_eq!(l.label("eth:0"), "eth_0_3");
        assert_eq!(l.label("eth1"), "eth1");
    }

    #[test]
    fn configured_labels_are_checked() {
        assert!(is_valid_label("root"));
        assert!(is_valid_label("data-1.x_y"));
        for bad in ["", "has space", "a:b", "a/b", &"x".repeat(65)] {
            assert!(!is_valid_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn selection_patterns() {
        let none: Vec<String> = Vec::new();
        let lo = vec!["lo".to_string()];
        assert!(selected(&none, &lo, "eth0"));
        assert!(!selected(&none, &lo, "lo"));
        assert!(selected(&none, &lo, "lo2"), "no prefix match without *");
        let veth = vec!["veth*".to_string()];
        assert!(!selected(&none, &veth, "veth12ab"));
        assert!(selected(&["eth*".to_string()], &none, "eth1"));
        assert!(!selected(&["eth*".to_string()], &none, "wlan0"));
        assert!(!selected(&["eth*".to_string()], &["eth1".to_string()], "eth1"));
    }
}

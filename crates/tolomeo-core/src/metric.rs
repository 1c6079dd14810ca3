//! Metric declarations: what a plugin promises to publish.
//!
//! A [`Metric`] is the Rust reading of py-tolomeo's `Metric`: a name, a unit, a kind
//! (TEMPORAL sample or INCREMENTAL counter) and a data type (NUMBER, STRING, BOOLEAN).
//! A plugin declares its metrics once; the service checks them when they are registered
//! ([`Registry::new`]) and refuses a name that would make an invalid SenML name, so no
//! record with a bad name can ever be built.
//!
//! Names follow the platform convention `<group>:<field>`. A plugin may declare a bare
//! field name (`temperature`): the registry qualifies it with the plugin id
//! (`temp:temperature`), as py-tolomeo keys its data queue `<plugin_id>:<metric>`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::senml;

/// TEMPORAL metrics are samples; INCREMENTAL metrics are monotonically increasing counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricKind {
    /// A sample of a quantity at a time (temperature, CPU load). Wire code 0.
    #[default]
    Temporal,
    /// A counter that only goes up (bytes sent, frames seen). Wire code 1.
    Incremental,
}

/// The SenML value field a metric's records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataType {
    /// `vs`. Wire code 0.
    String,
    /// `v`. Wire code 1.
    #[default]
    Number,
    /// `vb`. Wire code 2.
    Boolean,
}

impl DataType {
    /// Does this value fit this data type?
    pub fn accepts(self, value: &senml::Value) -> bool {
        matches!(
            (self, value),
            (DataType::Number, senml::Value::Number(_))
                | (DataType::String, senml::Value::String(_))
                | (DataType::Boolean, senml::Value::Bool(_))
        )
    }
}

/// A declared metric. Build it with [`Metric::number`], [`Metric::string`] or
/// [`Metric::boolean`] and the builder methods.
///
/// ```
/// use tolomeo_core::Metric;
/// let m = Metric::number("temperature").unit("Cel").display_name("Boiler temperature");
/// let c = Metric::number("frames").unit("count").incremental();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    name: String,
    display_name: Option<String>,
    unit: Option<String>,
    kind: MetricKind,
    data_type: DataType,
    min_granularity: Option<String>,
    label: Option<String>,
}

impl Metric {
    /// A metric of data type NUMBER (`v`).
    pub fn number(name: impl Into<String>) -> Self {
        Self::new(name, DataType::Number)
    }
    /// A metric of data type STRING (`vs`).
    pub fn string(name: impl Into<String>) -> Self {
        Self::new(name, DataType::String)
    }
    /// A metric of data type BOOLEAN (`vb`).
    pub fn boolean(name: impl Into<String>) -> Self {
        Self::new(name, DataType::Boolean)
    }
    /// A metric of the given data type.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Metric {
            name: name.into(),
            display_name: None,
            unit: None,
            kind: MetricKind::Temporal,
            data_type,
            min_granularity: None,
            label: None,
        }
    }
    /// The unit symbol (`%`, `B`, `Cel`, `rpm`...). Without one, records carry no `u`.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        let unit = unit.into();
        self.unit = (!unit.is_empty()).then_some(unit);
        self
    }
    /// The human label announced as `name` on `events.params` (defaults to the metric id).
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
    /// Mark the metric INCREMENTAL (a monotonically increasing counter).
    pub fn incremental(mut self) -> Self {
        self.kind = MetricKind::Incremental;
        self
    }
    /// Set the kind explicitly.
    pub fn kind(mut self, kind: MetricKind) -> Self {
        self.kind = kind;
        self
    }
    /// The minimum granularity announced to the platform: `<integer><s|m|h|d|w|M|y>`, e.g. `10s`.
    pub fn min_granularity(mut self, granularity: impl Into<String>) -> Self {
        self.min_granularity = Some(granularity.into());
        self
    }
    /// An optional free-text label announced with the metric.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The name as declared (possibly bare, before qualification with the plugin id).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The unit, if any.
    pub fn unit_str(&self) -> Option<&str> {
        self.unit.as_deref()
    }
    /// TEMPORAL or INCREMENTAL.
    pub fn metric_kind(&self) -> MetricKind {
        self.kind
    }
    /// NUMBER, STRING or BOOLEAN.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    fn check(&self, qualified: &str, base_name: &str) -> Result<(), MetricError> {
        let err = |reason: String| MetricError {
            metric: qualified.to_string(),
            reason,
        };
        senml::check_name(qualified).map_err(|e| err(format!("not a valid SenML name: {e}")))?;
        senml::check_name(&format!("{base_name}{qualified}"))
            .map_err(|e| err(format!("base name + metric name is not a valid SenML name: {e}")))?;
        if let Some(u) = &self.unit
            && u.chars().any(|c| c.is_control() || c == '"')
        {
            return Err(err(format!("unit {u:?} contains a control character or a quote")));
        }
        if let Some(g) = &self.min_granularity
            && !is_granularity(g)
        {
            return Err(err(format!(
                "minGranularity {g:?} is not <integer><s|m|h|d|w|M|y> (e.g. \"10s\")"
            )));
        }
        Ok(())
    }
}

fn is_granularity(g: &str) -> bool {
    let Some(unit) = g.chars().last() else {
        return false;
    };
    let digits = &g[..g.len() - unit.len_utf8()];
    "smhdwMy".contains(unit) && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A metric refused at registration: which one and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("metric `{metric}`: {reason}")]
pub struct MetricError {
    /// The (qualified) metric name.
    pub metric: String,
    /// What is wrong.
    pub reason: String,
}

/// One entry of the `events.params` announcement (PROTOCOL.md section 2).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    /// The metric name as used in `n`.
    pub id: String,
    /// Human label.
    pub name: String,
    /// Unit symbol ("" when none).
    pub unit: String,
    /// 0 = TEMPORAL, 1 = INCREMENTAL.
    #[serde(rename = "type")]
    pub kind: u8,
    /// 0 = STRING, 1 = NUMBER, 2 = BOOLEAN.
    pub data_type: u8,
    /// `<integer><s|m|h|d|w|M|y>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_granularity: Option<String>,
    /// Optional label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A registered metric: qualified name plus its declaration.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    /// `<group>:<field>`, as published in `n`.
    pub id: Arc<str>,
    /// The unit as published in `u`.
    pub unit: Option<Arc<str>>,
    /// The declaration.
    pub metric: Metric,
}

/// The set of metrics a service publishes, checked and indexed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    metrics: Vec<Registered>,
    index: HashMap<String, usize>,
}

impl Registry {
    /// Check and index `metrics` declared by plugin `plugin_id`, for a device whose base name is
    /// `base_name`. Bare names are qualified as `<plugin_id>:<name>`; both forms are accepted
    /// in readings. Refuses invalid names, units and granularities, and duplicates.
    pub(crate) fn new(plugin_id: &str, base_name: &str, metrics: Vec<Metric>) -> Result<Self, MetricError> {
        let mut reg = Registry::default();
        for metric in metrics {
            let id = if metric.name.contains(':') || plugin_id.is_empty() {
                metric.name.clone()
            } else {
                format!("{plugin_id}:{}", metric.name)
            };
            metric.check(&id, base_name)?;
            let slot = reg.metrics.len();
            if reg.index.insert(id.clone(), slot).is_some() {
                return Err(MetricError {
                    metric: id,
                    reason: "declared twice".into(),
                });
            }
            if id != metric.name {
                reg.index.insert(metric.name.clone(), slot);
            }
            reg.metrics.push(Registered {
                id: Arc::from(id),
                unit: metric.unit.as_deref().map(Arc::from),
                metric,
            });
        }
        Ok(reg)
    }

    /// Look a reading's key up: a qualified name or a bare name of this plugin.
    pub(crate) fn get(&self, key: &str) -> Option<&Registered> {
        self.index.get(key).and_then(|&i| self.metrics.get(i))
    }

    /// The `events.params` entries, in declaration order.
    pub(crate) fn announcements(&self) -> Vec<Announcement> {
        self.metrics
            .iter()
            .map(|r| Announcement {
                id: r.id.to_string(),
                name: r.metric.display_name.clone().unwrap_or_else(|| r.id.to_string()),
                unit: r.metric.unit.clone().unwrap_or_default(),
                kind: match r.metric.kind {
                    MetricKind::Temporal => 0,
                    MetricKind::Incremental => 1,
                },
                data_type: match r.metric.data_type {
                    DataType::String => 0,
                    DataType::Number => 1,
                    DataType::Boolean => 2,
                },
                min_granularity: r.metric.min_granularity.clone(),
                label: r.metric.label.clone(),
            })
            .collect()
    }
}

impl fmt::Display for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BN: &str = "urn:cpt:device:sn:SN1:";

    #[test]
    fn bare_names_are_qualified_with_the_plugin_id() {
        let reg = Registry::new("temp", BN, vec![Metric::number("temperature").unit("Cel")]).unwrap();
        assert_eq!(&*reg.get("temperature").unwrap().id, "temp:temperature");
        assert_eq!(&*reg.get("temp:temperature").unwrap().id, "temp:temperature");
        assert!(reg.get("temp:other").is_none());
    }

    #[test]
    fn qualified_names_are_kept() {
        let reg = Registry::new("sys", BN, vec![Metric::number("cpu:total"), Metric::number("mem:used")]).unwrap();
        let ids: Vec<_> = reg.metrics.iter().map(|r| &*r.id).collect();
        assert_eq!(ids, ["cpu:total", "mem:used"]);
    }

    #[test]
    fn invalid_names_are_refused_at_registration() {
        for bad in ["has space", "-lead", "a#b", "caf\u{e9}", ""] {
            let err = Registry::new("", BN, vec![Metric::number(bad)]).unwrap_err();
            assert_eq!(err.metric, bad, "{err}");
        }
        let err = Registry::new("p", BN, vec![Metric::number("x"), Metric::number("p:x")]).unwrap_err();
        assert!(err.reason.contains("twice"), "{err}");
        let err = Registry::new("p", BN, vec![Metric::number("x").min_granularity("10q")]).unwrap_err();
        assert!(err.reason.contains("minGranularity"), "{err}");
    }

    #[test]
    fn announcement_matches_the_protocol_example() {
        // PROTOCOL.md section 2:
        // [{"id":"cpu:total","name":"CPU total","unit":"%","type":0,"dataType":1}]
        let reg = Registry::new(
            "",
            BN,
            vec![Metric::number("cpu:total").unit("%").display_name("CPU total")],
        )
        .unwrap();
        let json = serde_json::to_string(&reg.announcements()).unwrap();
        assert_eq!(
            json,
            r#"[{"id":"cpu:total","name":"CPU total","unit":"%","type":0,"dataType":1}]"#
        );
        let reg = Registry::new(
            "can",
            BN,
            vec![
                Metric::number("frames")
                    .unit("count")
                    .incremental()
                    .min_granularity("1m")
                    .label("bus"),
            ],
        )
        .unwrap();
        let json = serde_json::to_string(&reg.announcements()).unwrap();
        assert_eq!(
            json,
            r#"[{"id":"can:frames","name":"can:frames","unit":"count","type":1,"dataType":1,"minGranularity":"1m","label":"bus"}]"#
        );
    }

    #[test]
    fn data_types_accept_only_their_value() {
        assert!(DataType::Number.accepts(&senml::Value::Number(1.0)));
        assert!(!DataType::Number.accepts(&senml::Value::Bool(true)));
        assert!(DataType::String.accepts(&senml::Value::String("x".into())));
        assert!(DataType::Boolean.accepts(&senml::Value::Bool(false)));
    }
}

//! The stack file as written: serde types that mirror the YAML. No meaning is checked here
//! beyond shape; `validate` turns these into the model.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    pub name: Option<String>,
    #[serde(default)]
    pub env_file: Option<OneOrMany>,
    pub services: Option<IndexMap<String, RawService>>,
    pub test: Option<RawTest>,
    pub k8s: Option<super::k8s::RawStackK8s>,
    /// Compose's file version and named-volume declarations (as in a `render compose` file):
    /// accepted and ignored; devstack creates the named volumes its services use.
    pub version: Option<serde::de::IgnoredAny>,
    pub volumes: Option<IndexMap<String, serde::de::IgnoredAny>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    #[serde(default)]
    pub environment: Environment,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub image: Option<String>,
    pub command: Option<RawCommand>,
    pub working_dir: Option<String>,
    #[serde(default)]
    pub environment: Environment,
    pub env_file: Option<OneOrMany>,
    #[serde(default)]
    pub ports: Vec<Scalar>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub depends_on: DependsOn,
    pub ready: Option<RawReady>,
    pub watch: Option<RawWatch>,
    pub restart: Option<RawRestart>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<Scalar>,
    pub k8s: Option<super::k8s::RawServiceK8s>,
}

/// `restart:`; `no` is the string here, YAML 1.2 reads it as such.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum RawRestart {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "on-failure")]
    OnFailure,
    #[serde(rename = "always")]
    Always,
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
}

/// A string, or a list of strings (`env_file`).
#[derive(Debug, Clone)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a string (shell words) or a list (argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawCommand::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Scalar>()? {
                    out.push(s.0);
                }
                Ok(RawCommand::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar written as a string, number or boolean, kept as its text (`5432`, `"5432:5432"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// `environment:` as a map (`KEY: value`) or a list (`- KEY=value`). A value of `null` (or a
/// list entry without `=`) means "pass through from devstack's own environment".
#[derive(Debug, Clone, Default)]
pub struct Environment(pub IndexMap<String, Option<String>>);

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Environment;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of variables or a list of `KEY=value`")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Environment::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value::<Option<Scalar>>()?;
                    out.insert(k, v.map(|s| s.0));
                }
                Ok(Environment(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = IndexMap::new();
                while let Some(item) = seq.next_element::<String>()? {
                    match item.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                        None => out.insert(item, None),
                    };
                }
                Ok(Environment(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on:` as a list of names or a map of name to condition (`ready`, or Compose's
/// `{condition: service_healthy}`).
#[derive(Debug, Clone, Default)]
pub struct DependsOn(pub Vec<RawDependency>, pub DependsForm);

/// One `depends_on` entry: the dependency, its condition, and Compose's `restart: true` (restart
/// this service when the dependency restarts).
#[derive(Debug, Clone)]
pub struct RawDependency {
    pub name: String,
    pub condition: Option<RawCondition>,
    pub restart: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DependsForm {
    #[default]
    List,
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawCondition {
    #[serde(rename = "ready", alias = "service_healthy")]
    Ready,
    #[serde(rename = "started", alias = "service_started")]
    Started,
    #[serde(rename = "completed", alias = "service_completed_successfully")]
    Completed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongCondition {
    condition: RawCondition,
    #[serde(default)]
    restart: bool,
}

enum ConditionForm {
    Short(RawCondition),
    Long(LongCondition),
    Null,
}

impl<'de> Deserialize<'de> for ConditionForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConditionForm;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a condition (`ready`, `started` or `completed`)")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ConditionForm::Null)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                RawCondition::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(ConditionForm::Short)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                LongCondition::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ConditionForm::Long)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of service names or a map of service name to condition")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DependsOn::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push(RawDependency {
                        name,
                        condition: None,
                        restart: false,
                    });
                }
                Ok(DependsOn(out, DependsForm::List))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let (condition, restart) = match map.next_value::<ConditionForm>()? {
                        ConditionForm::Short(c) => (Some(c), false),
                        ConditionForm::Long(l) => (Some(l.condition), l.restart),
                        ConditionForm::Null => (None, false),
                    };
                    out.push(RawDependency {
                        name,
                        condition,
                        restart,
                    });
                }
                Ok(DependsOn(out, DependsForm::Map))
            }
        }
        d.deserialize_any(V)
    }
}

/// `ready:` — exactly one probe kind plus `timeout` / `interval`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub tcp: Option<Scalar>,
    pub http: Option<String>,
    pub exec: Option<RawCommand>,
    pub log: Option<String>,
    pub healthcheck: Option<bool>,
    #[serde(default, deserialize_with = "preset")]
    pub postgres: Option<RawPostgresProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub redis: Option<RawRedisProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub kafka: Option<RawPortProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub zookeeper: Option<RawPortProbe>,
    #[serde(default, deserialize_with = "preset")]
    pub qdrant: Option<RawPortProbe>,
    pub timeout: Option<Scalar>,
    pub interval: Option<Scalar>,
}

/// A preset written as `redis: {}` or bare `redis:` (null) both mean "with defaults".
fn preset<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresProbe {
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisProbe {
    pub password: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPortProbe {
    pub port: Option<u16>,
}

/// `watch:` — `false`, `true`, or `{paths, ignore, debounce}`.
#[derive(Debug, Clone)]
pub enum RawWatch {
    Enabled(bool),
    Spec(RawWatchSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatchSpec {
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub ignore: Vec<String>,
    pub debounce: Option<Scalar>,
}

impl<'de> Deserialize<'de> for RawWatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawWatch;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`true`, `false` or a map with `paths`, `ignore`, `debounce`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawWatch::Enabled(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawWatchSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawWatch::Spec)
            }
        }
        d.deserialize_any(V)
    }
}

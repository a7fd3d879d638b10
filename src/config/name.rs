//! `ServiceName`: the name of a service as it crosses the seams (kernel inputs and effects, the
//! units' events, `StackEvent`, the control protocol). It is a plain string on the wire
//! (`#[serde(transparent)]`) and reads like one in code (`Deref<Target = str>`, `Borrow<str>`,
//! comparisons with `&str`), so a map keyed by it is looked up with a `&str`.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Names as given on a command line or in a tool's arguments.
    pub fn list<S: AsRef<str>>(names: &[S]) -> Vec<ServiceName> {
        names
            .iter()
            .map(|n| ServiceName::from(n.as_ref()))
            .collect()
    }
}

impl Deref for ServiceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ServiceName {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_ref()
    }
}

impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ServiceName {
    fn from(s: String) -> Self {
        ServiceName(s)
    }
}

impl From<&str> for ServiceName {
    fn from(s: &str) -> Self {
        ServiceName(s.to_string())
    }
}

impl From<&String> for ServiceName {
    fn from(s: &String) -> Self {
        ServiceName(s.clone())
    }
}

impl From<&ServiceName> for ServiceName {
    fn from(s: &ServiceName) -> Self {
        s.clone()
    }
}

impl From<ServiceName> for String {
    fn from(s: ServiceName) -> Self {
        s.0
    }
}

impl PartialEq<str> for ServiceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ServiceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ServiceName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<ServiceName> for str {
    fn eq(&self, other: &ServiceName) -> bool {
        self == other.0
    }
}

impl PartialEq<ServiceName> for &str {
    fn eq(&self, other: &ServiceName) -> bool {
        *self == other.0
    }
}

impl PartialEq<ServiceName> for String {
    fn eq(&self, other: &ServiceName) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_and_travels_as_a_plain_string() {
        let name = ServiceName::from("api");
        assert_eq!(name, "api");
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""api""#);
        let back: ServiceName = serde_json::from_str(r#""worker""#).unwrap();
        assert_eq!(back.as_str(), "worker");
        let map: HashMap<ServiceName, u8> = [(name.clone(), 1)].into();
        assert_eq!(map.get("api"), Some(&1));
        assert_eq!(format!("{name}"), "api");
    }
}

//! `render`: the same stack as other tools' files — Kubernetes manifests, a Compose file. Pure:
//! the loaded `Stack` in, documents or text out; the command writes them.

pub mod compose;
pub mod k8s;

use serde_json::Value;

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub struct Object {
    /// The stack service it comes from; `None` for the Namespace and Ingresses.
    pub service: Option<String>,
    pub kind: &'static str,
    pub name: String,
    pub value: Value,
}

impl Object {
    /// The file `render k8s -o DIR` writes it to: one per kind and service. The namespace file
    /// sorts first, so `kubectl apply -f DIR` creates it before what lives in it.
    pub fn file_name(&self) -> String {
        match (&self.service, self.kind) {
            (_, "Namespace") => "00-namespace.yaml".to_string(),
            (Some(s), kind) => format!("{s}-{}.yaml", kind.to_ascii_lowercase()),
            (None, kind) => format!("{}-{}.yaml", self.name, kind.to_ascii_lowercase()),
        }
    }
}

/// Values as YAML documents separated by `---`.
pub fn yaml_documents<'a>(values: impl IntoIterator<Item = &'a Value>) -> Result<String, String> {
    let mut out = String::new();
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(v).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The objects grouped by [`Object::file_name`], in order of first appearance.
pub fn files(objects: &[Object]) -> Result<Vec<(String, String)>, String> {
    let mut groups: indexmap::IndexMap<String, Vec<&Value>> = indexmap::IndexMap::new();
    for o in objects {
        groups.entry(o.file_name()).or_default().push(&o.value);
    }
    groups
        .into_iter()
        .map(|(name, values)| Ok((name, yaml_documents(values)?)))
        .collect()
}

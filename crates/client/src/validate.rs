//! `weft app validate`: everything a deploy checks that needs no host, done offline.

use std::path::Path;

use weft_capabilities::provides::Provider;
use weft_manifest::ImageSource;

use crate::ClientError;

/// What validating a manifest found: problems that would refuse the deploy, and notes.
#[derive(Debug, Default, serde::Serialize)]
pub struct Validation {
    pub app: String,
    pub components: usize,
    /// Each would refuse the deploy.
    pub errors: Vec<String>,
    /// What a deploy would warn about, or what could not be checked offline.
    pub warnings: Vec<String>,
}

/// Validates the manifest at `path` as a deploy would, plus each local component's imports
/// against what it is linked to.
pub fn validate(path: &Path) -> Result<Validation, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Local {
        path: path.to_path_buf(),
        source,
    })?;
    let app = weft_manifest::parse_app(
        &text,
        &path.display().to_string(),
        weft_capabilities::catalog(),
    )?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found = Validation {
        app: app.name.clone(),
        components: app.components.len(),
        warnings: app.warnings.clone(),
        ..Validation::default()
    };
    for component in &app.components {
        if component.shared.is_some() {
            continue;
        }
        let file = match weft_manifest::image_source(&component.image, base) {
            ImageSource::File(file) => file,
            ImageSource::Oci(image) => {
                found.warnings.push(format!(
                    "component `{}`: {image} is pulled at deploy; its imports are checked then",
                    component.name
                ));
                continue;
            }
        };
        let Ok(bytes) = std::fs::read(&file) else {
            found.warnings.push(format!(
                "component `{}`: {} is not built yet; `weft build` it (or deploy with --build) \
                 to check its imports",
                component.name,
                file.display()
            ));
            continue;
        };
        let inspection = match weft_inspect::inspect(&file.display().to_string(), &bytes) {
            Ok(inspection) => inspection,
            Err(e) => {
                found
                    .errors
                    .push(format!("component `{}`: {e}", component.name));
                continue;
            }
        };
        for import in &inspection.imports {
            match &import.provider {
                Provider::Link { capability } => {
                    // A delivery hands the component its capability's types (a watched bucket,
                    // a message) with no link; the host allows those imports then.
                    let delivered = app
                        .subscriptions
                        .iter()
                        .any(|s| s.component == component.name && s.kind == *capability)
                        || (*capability == "keyvalue"
                            && app.watches.iter().any(|w| w.component == component.name));
                    if !delivered && !component.grants.iter().any(|g| g.kind == *capability) {
                        found.errors.push(format!(
                            "component `{}` imports `{}` but has no link to a {capability} \
                             capability; add one under its traits",
                            component.name, import.name
                        ));
                    }
                }
                Provider::Nothing { reason } if component.component_links.is_empty() => {
                    found.errors.push(format!(
                        "component `{}` imports `{}`, which nothing satisfies: {reason}",
                        component.name, import.name
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

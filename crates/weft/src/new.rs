//! `weft new`: project templates, embedded in the binary, each a project `weft dev` serves with
//! no edit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// One template: its name, what it makes, and its files (`{{name}}` replaced by the project's).
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    files: &'static [(&'static str, &'static str)],
}

macro_rules! file {
    ($template:literal, $path:literal) => {
        (
            $path,
            include_str!(concat!("../templates/", $template, "/", $path)),
        )
    };
}

const KEYVALUE_WIT: &[(&str, &str)] = &[
    (
        "wit/deps/keyvalue/world.wit",
        include_str!("../../capabilities/wit/deps/keyvalue/world.wit"),
    ),
    (
        "wit/deps/keyvalue/store.wit",
        include_str!("../../capabilities/wit/deps/keyvalue/store.wit"),
    ),
    (
        "wit/deps/keyvalue/atomic.wit",
        include_str!("../../capabilities/wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "wit/deps/keyvalue/batch.wit",
        include_str!("../../capabilities/wit/deps/keyvalue/batch.wit"),
    ),
    (
        "wit/deps/keyvalue/watch.wit",
        include_str!("../../capabilities/wit/deps/keyvalue/watch.wit"),
    ),
];

/// Every template, the default first.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "rust-http",
        about: "a Rust HTTP handler (wasi:http)",
        files: &[
            file!("rust-http", "Cargo.toml"),
            file!("rust-http", "src/lib.rs"),
            file!("rust-http", "app.yaml"),
            (
                ".gitignore",
                include_str!("../templates/rust-http/gitignore"),
            ),
        ],
    },
    Template {
        name: "rust-keyvalue",
        about: "a Rust HTTP handler counting in key-value (wasi:keyvalue, a file store)",
        files: &[
            file!("rust-keyvalue", "Cargo.toml"),
            file!("rust-keyvalue", "src/lib.rs"),
            file!("rust-keyvalue", "wit/world.wit"),
            file!("rust-keyvalue", "app.yaml"),
            (
                ".gitignore",
                include_str!("../templates/rust-keyvalue/gitignore"),
            ),
        ],
    },
    Template {
        name: "rust-harness",
        about: "an app behind a platform harness, both in Rust (the harness passes requests on \
                through its `inner` link)",
        files: &[
            file!("rust-harness", "harness/Cargo.toml"),
            file!("rust-harness", "harness/src/lib.rs"),
            file!("rust-harness", "app/Cargo.toml"),
            file!("rust-harness", "app/src/lib.rs"),
            file!("rust-harness", "app.yaml"),
            (
                ".gitignore",
                include_str!("../templates/rust-harness/gitignore"),
            ),
        ],
    },
    Template {
        name: "js-http",
        about: "a JavaScript HTTP handler (componentize-js, fetch events)",
        files: &[
            file!("js-http", "package.json"),
            file!("js-http", "app.js"),
            file!("js-http", "app.yaml"),
            (".gitignore", include_str!("../templates/js-http/gitignore")),
        ],
    },
    Template {
        name: "go-http",
        about: "a Go HTTP handler (Go's wasip1 target, wit-bindgen go)",
        files: &[
            file!("go-http", "go.mod"),
            file!("go-http", "wit/world.wit"),
            file!("go-http", "export_wasi_http_incoming_handler/handler.go"),
            file!("go-http", "app.yaml"),
            (".gitignore", include_str!("../templates/go-http/gitignore")),
        ],
    },
    Template {
        name: "python-http",
        about: "a Python HTTP handler (componentize-py)",
        files: &[
            file!("python-http", "app.py"),
            file!("python-http", "app.yaml"),
            (
                ".gitignore",
                include_str!("../templates/python-http/gitignore"),
            ),
        ],
    },
];

/// The template named `name`.
pub fn template(name: &str) -> Result<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name).with_context(|| {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        format!(
            "no template `{name}`; the templates are {} (`weft new --list`)",
            names.join(", ")
        )
    })
}

/// Whether `name` works as a project, crate, app and route name at once.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}` cannot name a project: it names the crate, the app and its route, so use \
             lowercase letters, digits and `-`, starting with a letter (e.g. my-app)"
        );
    }
    Ok(())
}

/// Writes `template` as project `name` into `dir` (which must not exist or be empty).
pub fn create(template: &Template, name: &str, dir: &Path) -> Result<PathBuf> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; pick another name or --dir",
            dir.display()
        );
    }
    let extra: &[(&str, &str)] = if template.name == "rust-keyvalue" {
        KEYVALUE_WIT
    } else {
        &[]
    };
    for (path, text) in template.files.iter().chain(extra) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text.replace("{{name}}", name))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_writes_a_manifest_naming_the_project() {
        for template in TEMPLATES {
            let dir = tempfile::tempdir().unwrap();
            let project = create(template, "my-app", &dir.path().join("my-app")).unwrap();
            let manifest = std::fs::read_to_string(project.join("app.yaml")).unwrap();
            let app = weft_manifest::parse(&manifest, "app.yaml").unwrap();
            assert_eq!(app.name, "my-app", "{}", template.name);
            assert!(!manifest.contains("{{"), "{}", template.name);
        }
    }

    #[test]
    fn a_name_that_cannot_be_a_crate_or_route_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["My_App", "1app", "app/x", "", "app-"] {
            let error = create(&TEMPLATES[0], bad, &dir.path().join("x")).unwrap_err();
            assert!(error.to_string().contains("lowercase"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_non_empty_directory_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let error = create(&TEMPLATES[0], "app", dir.path()).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}

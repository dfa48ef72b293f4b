//! Embeds `schemas/` into the binary: writes `$OUT_DIR/embedded_schemas.rs`,
//! a table of `include_str!` over `schemas/manifest.toml` and every `.avsc`
//! below it, so galley needs no schema files at run time and a new schema
//! file is picked up without editing any Rust table.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

fn main() -> io::Result<()> {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let schemas = root.join("schemas");
    // A directory makes cargo rescan every file below it, so edits, new
    // files and deletions all rebuild the table.
    println!("cargo:rerun-if-changed=schemas");
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    collect_avsc(&schemas, &schemas, &mut files)?;
    // Sorted so that the generated file, and therefore the build, is
    // reproducible whatever order the file system lists entries in.
    files.sort();

    let mut out = String::new();
    let manifest = schemas.join("manifest.toml");
    writeln!(
        out,
        "pub(crate) static MANIFEST: &str = include_str!({:?});",
        manifest.display().to_string()
    )
    .map_err(io::Error::other)?;
    out.push_str("pub(crate) static FILES: &[(&str, &str)] = &[\n");
    for (relative, absolute) in &files {
        writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            absolute.display().to_string()
        )
        .map_err(io::Error::other)?;
    }
    out.push_str("];\n");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let target = out_dir.join("embedded_schemas.rs");
    // Rewriting an unchanged file would still bump its mtime and recompile
    // the crate for nothing.
    if fs::read_to_string(&target).ok().as_deref() != Some(out.as_str()) {
        fs::write(target, out)?;
    }
    Ok(())
}

/// Every `*.avsc` below `dir`, as (path relative to `base` with `/`
/// separators, absolute path).
fn collect_avsc(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_avsc(base, &path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "avsc") {
            let relative = path
                .strip_prefix(base)
                .map_err(io::Error::other)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((relative, path));
        }
    }
    Ok(())
}

//! Fingerprints the migrations so `testing::TestDatabase` can name the
//! template database after exactly the schema it holds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    // A canonical path: cargo did not notice new migrations under a `..` path.
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(&dir, &mut files);
    files.sort();
    for file in &files {
        println!("cargo::rerun-if-changed={}", file.display());
    }
    let mut hasher = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(&dir).unwrap_or(file);
        let contents = std::fs::read(file).unwrap_or_default();
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update((contents.len() as u64).to_be_bytes());
        hasher.update(&contents);
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo::rustc-env=JUY_MIGRATIONS_HASH={hex}");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

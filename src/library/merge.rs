//! `library merge`: joins libraries built as parts of one build in separate directories
//! (`--shard i/N`, `--layers` on machines without a shared disk) into one library. The parts
//! must come from the same parent, search space and settings; every item is taken from the
//! part that took it furthest, and an item trained in two parts must be identical.

use std::path::Path;

use super::interchange::write_block_library;
use super::manifest::{ItemState, Manifest};
use super::{Library, LibraryError, Origin, Stage};
use crate::train::state::first_difference;

/// Merges the libraries in `parts` into `out` (which must not exist or be empty).
pub fn merge_libraries(parts: &[&Path], out: &Path) -> Result<Library, LibraryError> {
    let Some((first, rest)) = parts.split_first() else {
        return Err(LibraryError::Settings("merge needs at least one library".into()));
    };
    if out.exists() && std::fs::read_dir(out).map_err(LibraryError::io(out))?.next().is_some() {
        return Err(LibraryError::Format {
            path: out.to_path_buf(),
            problem: "the output directory is not empty".into(),
        });
    }
    let libraries = parts.iter().map(|p| Library::open(p)).collect::<Result<Vec<_>, _>>()?;
    let shared = |m: &Manifest| serde_json::json!({ "parent": m.parent.fingerprint, "space": m.space.layers, "fused_runs": m.space.fused_runs, "settings": m.settings });
    for (path, library) in rest.iter().zip(&libraries[1..]) {
        if let Some((key, there, here)) =
            first_difference(&shared(&libraries[0].manifest), &shared(&library.manifest), "")
        {
            return Err(LibraryError::Mismatch {
                path: path.to_path_buf(),
                key,
                there: format!("{there} (in {})", first.display()),
                here: here.to_string(),
            });
        }
    }
    let mut manifest = libraries[0].manifest.clone();
    manifest.items.clear();
    for stage in [Stage::Init, Stage::Trained] {
        let path = out.join(stage.folder());
        std::fs::create_dir_all(&path).map_err(LibraryError::io(&path))?;
    }
    let merged = Library {
        dir: out.to_path_buf(),
        manifest: manifest.clone(),
    };
    for library in &libraries {
        for (key, record) in &library.manifest.items {
            let kept = manifest.items.get(key);
            let trains = record.origin == Origin::Trained;
            if let Some(kept) = kept
                && trains
                && kept.state == ItemState::Trained
                && record.state == ItemState::Trained
            {
                let read = |lib: &Library| {
                    let path = lib.item_path(&record.item, Stage::Trained);
                    std::fs::read(&path).map_err(LibraryError::io(&path))
                };
                if read(&merged)? != read(library)? {
                    return Err(LibraryError::Format {
                        path: library.dir.clone(),
                        problem: format!("`{key}` was trained in two parts with different results"),
                    });
                }
                continue;
            }
            if kept.is_some_and(|k| k.state >= record.state) {
                continue;
            }
            if trains {
                for stage in [Stage::Init, Stage::Trained] {
                    let from = library.item_path(&record.item, stage);
                    if from.is_file() {
                        let to = merged.item_path(&record.item, stage);
                        std::fs::copy(&from, &to).map_err(LibraryError::io(&to))?;
                    }
                }
            }
            manifest.items.insert(key.clone(), record.clone());
        }
    }
    manifest.write(out)?;
    let merged = Library {
        dir: out.to_path_buf(),
        manifest,
    };
    write_block_library(&merged)?;
    Ok(merged)
}

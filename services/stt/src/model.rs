//! Which model file to load: a name (`tiny.en`) resolved in the models
//! folder, downloaded there on first use, or a path to a file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

/// What `WHISPER_MODEL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A model name, kept as `<models_dir>/ggml-<name>.bin`.
    Named { name: String, path: PathBuf },
    /// A model file given by path.
    File(PathBuf),
}

impl ModelRef {
    pub fn path(&self) -> &Path {
        match self {
            ModelRef::Named { path, .. } | ModelRef::File(path) => path,
        }
    }
}

/// Resolves `model`: anything that looks like a path (a `/`, a leading `~`,
/// or a `.bin` ending) is a file; otherwise it is a name such as `tiny.en` or
/// `base.en-q5_1`, made of letters, digits, `.`, `-` and `_`.
pub fn resolve(model: &str, models_dir: &Path) -> Result<ModelRef, String> {
    let model = model.trim();
    if model.is_empty() {
        return Err("model (WHISPER_MODEL) is empty: give a name like `tiny.en` or a path to a ggml model file".into());
    }
    if model.contains('/') || model.starts_with('~') || model.ends_with(".bin") {
        return Ok(ModelRef::File(expand_home(Path::new(model))));
    }
    let ok = model
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok || model.starts_with('.') {
        return Err(format!(
            "model (WHISPER_MODEL) {model:?} is neither a model name like `tiny.en` nor a path to a file"
        ));
    }
    Ok(ModelRef::Named {
        name: model.to_string(),
        path: expand_home(models_dir).join(format!("ggml-{model}.bin")),
    })
}

/// `~/x` → `$HOME/x`; anything else unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The default models folder: `$XDG_DATA_HOME/cinema-chat/models`, else
/// `~/.local/share/cinema-chat/models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("cinema-chat/models")
}

/// Where a named model is downloaded from.
pub fn download_url(base: &str, name: &str) -> String {
    format!("{}/ggml-{name}.bin", base.trim_end_matches('/'))
}

/// The model file, downloading a named model that is not there yet.
pub async fn ensure(model: &ModelRef, base_url: &str) -> Result<PathBuf, crate::Error> {
    match model {
        ModelRef::File(path) => {
            if path.is_file() {
                Ok(path.clone())
            } else {
                Err(crate::Error::MissingModel { path: path.clone() })
            }
        }
        ModelRef::Named { name, path } => {
            if path.is_file() {
                return Ok(path.clone());
            }
            let url = download_url(base_url, name);
            tracing::info!(%url, path = %path.display(), "The Whisper model is not there yet; downloading it.");
            let started = Instant::now();
            match download(&url, path).await {
                Ok(bytes) => {
                    tracing::info!(
                        path = %path.display(),
                        mib = bytes / (1024 * 1024),
                        seconds = started.elapsed().as_secs(),
                        "Downloaded the Whisper model."
                    );
                    Ok(path.clone())
                }
                Err(reason) => Err(crate::Error::Download {
                    path: path.clone(),
                    url,
                    reason,
                }),
            }
        }
    }
}

/// Streams `url` into `<path>.part`, then renames it to `path`. Returns the
/// size in bytes.
async fn download(url: &str, path: &Path) -> Result<u64, String> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let part = path.with_extension("bin.part");
    let result = fetch_to(url, &part).await;
    match result {
        Ok(bytes) => {
            tokio::fs::rename(&part, path)
                .await
                .map_err(|e| format!("cannot rename {}: {e}", part.display()))?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(e)
        }
    }
}

async fn fetch_to(url: &str, part: &Path) -> Result<u64, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = http.get(url).send().await.map_err(|e| error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let mut file = tokio::fs::File::create(part)
        .await
        .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        bytes += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    file.sync_all().await.map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("the server sent an empty file".into());
    }
    Ok(bytes)
}

/// An error with its sources, on one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        let dir = Path::new("/models");
        let named = |name: &str, file: &str| ModelRef::Named {
            name: name.into(),
            path: PathBuf::from("/models").join(file),
        };
        assert_eq!(
            resolve("tiny.en", dir),
            Ok(named("tiny.en", "ggml-tiny.en.bin"))
        );
        assert_eq!(
            resolve(" base.en-q5_1 ", dir),
            Ok(named("base.en-q5_1", "ggml-base.en-q5_1.bin"))
        );
        assert_eq!(
            resolve("large-v3", dir),
            Ok(named("large-v3", "ggml-large-v3.bin"))
        );
        assert_eq!(
            resolve("../shared/models/ggml-tiny.en.bin", dir),
            Ok(ModelRef::File("../shared/models/ggml-tiny.en.bin".into()))
        );
        assert_eq!(
            resolve("my-model.bin", dir),
            Ok(ModelRef::File("my-model.bin".into()))
        );
        assert_eq!(
            resolve("/opt/m/ggml-base.bin", dir),
            Ok(ModelRef::File("/opt/m/ggml-base.bin".into()))
        );
        for bad in ["", "  ", "tiny en", "..", ".hidden", "tiny?x=1"] {
            let e = resolve(bad, dir).unwrap_err();
            assert!(e.contains("WHISPER_MODEL"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn home_is_expanded() {
        let Some(home) = std::env::var_os("HOME") else {
            return;
        };
        let home = PathBuf::from(home);
        assert_eq!(expand_home(Path::new("~/m")), home.join("m"));
        assert_eq!(expand_home(Path::new("/a/~/b")), PathBuf::from("/a/~/b"));
        assert_eq!(
            resolve("tiny.en", Path::new("~/models")).unwrap().path(),
            home.join("models/ggml-tiny.en.bin")
        );
        assert_eq!(
            resolve("~/x/ggml-tiny.bin", Path::new("/m"))
                .unwrap()
                .path(),
            home.join("x/ggml-tiny.bin")
        );
    }

    #[test]
    fn download_urls() {
        let base = "https://huggingface.co/ggerganov/whisper.cpp/resolve/main";
        assert_eq!(
            download_url(base, "tiny.en"),
            "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-tiny.en.bin"
        );
        assert_eq!(download_url("http://h/m/", "x"), "http://h/m/ggml-x.bin");
    }

    #[tokio::test]
    async fn a_missing_file_or_a_failed_download_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = ModelRef::File(dir.path().join("nope.bin"));
        let e = ensure(&file, "http://127.0.0.1:9").await.unwrap_err();
        assert!(matches!(e, crate::Error::MissingModel { .. }), "{e}");

        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let named = resolve("tiny.en", dir.path()).unwrap();
        let e = ensure(&named, "http://127.0.0.1:9")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&dir.path().join("ggml-tiny.en.bin").display().to_string()),
            "{e}"
        );
        assert!(e.contains("WHISPER_MODEL"), "{e}");
        assert!(!dir.path().join("ggml-tiny.en.bin.part").exists());
        assert!(!dir.path().join("ggml-tiny.en.bin").exists());
    }
}

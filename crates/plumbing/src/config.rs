//! Layered configuration: defaults → TOML file → environment → flags.
//!
//! New settings use `CINEMA_<SERVICE>_<KEY>`; the first generation's names
//! (`NATS_URL`, `PORT`, `HOST`, `OPENAI_API_KEY`, …) are honoured through each
//! service's [`Settings::SEED_ENV`] map.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Flags every service binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (keys as in the service's config).
    #[arg(long, env = "CINEMA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Override one setting, `key=value` (repeatable); beats file and environment.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// A service's configuration.
pub trait Settings: Default + Serialize + DeserializeOwned {
    /// Prefix of the service's own environment variables, e.g. `CINEMA_LLM_`.
    const ENV_PREFIX: &'static str;
    /// Seed environment names mapped to config keys, e.g. `("PORT", "port")`.
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[];

    fn nats_url(&self) -> &str;

    /// Whether the service makes the streams and buckets at start-up. The
    /// Pi's programs do not: their NATS permissions allow no JetStream
    /// management, only the subjects of their own Pi.
    const MAKES_TOPOLOGY: bool = true;

    /// Checks values the types cannot; the message names the bad setting.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadSet(String),
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

/// Builds the layered figment for `C` from the process environment.
pub fn figment<C: Settings>(args: &CommonArgs) -> Result<Figment, Error> {
    figment_with::<C>(args, &std::env::vars().collect::<Vec<_>>())
}

/// Builds the layered figment for `C` with `vars` as its environment (the
/// process's own, or a test's: services run in one process each with their
/// own settings).
pub fn figment_with<C: Settings>(
    args: &CommonArgs,
    vars: &[(String, String)],
) -> Result<Figment, Error> {
    let mut fig = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = &args.config {
        if !path.exists() {
            return Err(Error::MissingFile(path.clone()));
        }
        fig = fig.merge(Toml::file(path));
    }
    // String settings are taken from the environment as written: figment
    // would read `CINEMA_PI_ID=101` as a number and `007` as 7. Other
    // values are read as figment reads the environment (`true`, `3`, `[a]`).
    let defaults = Figment::from(Serialized::defaults(C::default()));
    let is_string = |key: &str| {
        matches!(
            defaults.find_value(key),
            Ok(figment::value::Value::String(..))
        )
    };
    let value = |key: &str, raw: &str| -> figment::value::Value {
        if is_string(key) {
            raw.into()
        } else {
            raw.parse().unwrap_or_else(|_| raw.into())
        }
    };
    // A variable set to nothing (`VAR=`, as compose and env files write an
    // unset value) is no setting: the default holds.
    let get = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // Seed names first, so the CINEMA_ names win when both are set.
    let seeds = [("NATS_URL", "nats_url")]
        .iter()
        .chain(C::SEED_ENV)
        .copied();
    for (env, key) in seeds {
        if let Some(raw) = get(env) {
            fig = fig.merge(Serialized::default(key, value(key, raw)));
        }
    }
    // `CINEMA_<SERVICE>_<KEY>` (any case), `__` for a nested key.
    let prefix = C::ENV_PREFIX;
    for (name, raw) in vars {
        let key = match name.get(..prefix.len()) {
            Some(p) if p.eq_ignore_ascii_case(prefix) => name[prefix.len()..].to_ascii_lowercase(),
            _ => continue,
        };
        if raw.is_empty() || key.is_empty() {
            continue;
        }
        let path = key.replace("__", ".");
        fig = fig.merge(Serialized::default(&path, value(&path, raw)));
    }
    if let Some(url) = &args.nats_url {
        fig = fig.merge(Serialized::default("nats_url", url));
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::BadSet(kv.clone()))?;
        let value: figment::value::Value = v.parse().unwrap_or_else(|_| v.into());
        fig = fig.merge(Serialized::default(k.trim(), value));
    }
    Ok(fig)
}

/// Loads and validates `C`.
pub fn load<C: Settings>(args: &CommonArgs) -> Result<C, Error> {
    load_with(args, &std::env::vars().collect::<Vec<_>>())
}

/// Loads and validates `C` with `vars` as its environment.
pub fn load_with<C: Settings>(args: &CommonArgs, vars: &[(String, String)]) -> Result<C, Error> {
    let config: C = figment_with::<C>(args, vars)?
        .extract()
        .map_err(|e| Error::Figment(Box::new(e)))?;
    config.validate().map_err(Error::Invalid)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Demo {
        nats_url: String,
        port: u16,
        name: String,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                nats_url: "nats://127.0.0.1:4222".into(),
                port: 8765,
                name: "default".into(),
            }
        }
    }

    impl Settings for Demo {
        const ENV_PREFIX: &'static str = "CINEMA_DEMO_";
        const SEED_ENV: &'static [(&'static str, &'static str)] = &[("PORT", "port")];
        fn nats_url(&self) -> &str {
            &self.nats_url
        }
        fn validate(&self) -> Result<(), String> {
            if self.port == 0 {
                return Err("port must not be 0".into());
            }
            Ok(())
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn layers_in_order() {
        figment::Jail::expect_with(|jail| {
            let args = CommonArgs::default();
            assert_eq!(load::<Demo>(&args).unwrap(), Demo::default());

            jail.create_file("c.toml", "name = \"file\"\nport = 1000")?;
            let args = CommonArgs {
                config: Some("c.toml".into()),
                ..Default::default()
            };
            assert_eq!(load::<Demo>(&args).unwrap().name, "file");

            jail.set_env("PORT", "2000");
            jail.set_env("NATS_URL", "nats://seed:1");
            let c = load::<Demo>(&args).unwrap();
            assert_eq!((c.port, c.nats_url.as_str()), (2000, "nats://seed:1"));

            jail.set_env("CINEMA_DEMO_PORT", "3000");
            jail.set_env("CINEMA_DEMO_NAME", "env");
            let c = load::<Demo>(&args).unwrap();
            assert_eq!((c.port, c.name.as_str()), (3000, "env"));

            let args = CommonArgs {
                config: Some("c.toml".into()),
                nats_url: Some("nats://flag:2".into()),
                set: vec!["port=4000".into()],
            };
            let c = load::<Demo>(&args).unwrap();
            assert_eq!((c.port, c.nats_url.as_str()), (4000, "nats://flag:2"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn an_empty_variable_is_no_setting() {
        figment::Jail::expect_with(|jail| {
            // As compose writes `OPENAI_BASE_URL: ${OPENAI_BASE_URL:-}`.
            jail.set_env("PORT", "");
            jail.set_env("NATS_URL", "");
            jail.set_env("CINEMA_DEMO_NAME", "");
            assert_eq!(
                load::<Demo>(&CommonArgs::default()).unwrap(),
                Demo::default()
            );
            // A set one still wins, the prefix in any case.
            jail.set_env("cinema_demo_name", "lower");
            assert_eq!(load::<Demo>(&CommonArgs::default()).unwrap().name, "lower");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn bad_values_are_one_line_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CINEMA_DEMO_PORT", "not-a-port");
            let e = load::<Demo>(&CommonArgs::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("port"), "{e}");
            jail.set_env("CINEMA_DEMO_PORT", "0");
            let e = load::<Demo>(&CommonArgs::default())
                .unwrap_err()
                .to_string();
            assert_eq!(e, "port must not be 0");
            let args = CommonArgs {
                config: Some("missing.toml".into()),
                ..Default::default()
            };
            assert!(load::<Demo>(&args).is_err());
            let args = CommonArgs {
                set: vec!["oops".into()],
                ..Default::default()
            };
            assert!(load::<Demo>(&args).is_err());
            Ok(())
        });
    }
}

/// Deserializes a string setting that the environment may have given as a
/// number or a bool (figment reads `CINEMA_PI_ID=101` as the number 101):
/// `#[serde(deserialize_with = "plumbing::config::lenient_string")]`.
pub fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// Deserializes a list setting given either as a list (TOML, or
/// `[a, b]` in the environment) or as one comma-separated string
/// (`CINEMA_GATEWAY_ALLOWED_HOSTS=tv.example,10.0.0.5`); items may be
/// numbers or bools as in [`lenient_string`]:
/// `#[serde(deserialize_with = "plumbing::config::lenient_list")]`.
pub fn lenient_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Item(#[serde(deserialize_with = "lenient_string")] String);
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list, or a comma-separated string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(Item(s)) = seq.next_element()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod lenient_tests {
    use super::*;

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(default)]
    struct Pi {
        nats_url: String,
        #[serde(deserialize_with = "lenient_string")]
        pi_id: String,
    }

    impl Settings for Pi {
        const ENV_PREFIX: &'static str = "CINEMA_LENIENT_";
        const SEED_ENV: &'static [(&'static str, &'static str)] = &[("CINEMA_PI_ID", "pi_id")];
        fn nats_url(&self) -> &str {
            &self.nats_url
        }
    }

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
    #[serde(default)]
    struct Hosts {
        nats_url: String,
        #[serde(deserialize_with = "lenient_list")]
        names: Vec<String>,
    }

    impl Settings for Hosts {
        const ENV_PREFIX: &'static str = "CINEMA_LIST_";
        fn nats_url(&self) -> &str {
            &self.nats_url
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn a_list_is_a_list_or_commas() {
        for (raw, want) in [
            ("tv.example,10.0.0.5", vec!["tv.example", "10.0.0.5"]),
            ("[tv.example, 10.0.0.5]", vec!["tv.example", "10.0.0.5"]),
            ("tv.example", vec!["tv.example"]),
            ("101", vec!["101"]),
            ("[101, hall]", vec!["101", "hall"]),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("CINEMA_LIST_NAMES", raw);
                assert_eq!(
                    load::<Hosts>(&CommonArgs::default()).unwrap().names,
                    want,
                    "{raw}"
                );
                Ok(())
            });
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn a_numeric_or_boolean_id_is_a_string() {
        for (raw, want) in [
            ("101", "101"),
            ("007", "007"),
            ("true", "true"),
            ("1e3", "1e3"),
            ("hall-1", "hall-1"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("CINEMA_PI_ID", raw);
                assert_eq!(load::<Pi>(&CommonArgs::default()).unwrap().pi_id, want);
                Ok(())
            });
            figment::Jail::expect_with(|jail| {
                jail.set_env("CINEMA_LENIENT_PI_ID", raw);
                assert_eq!(load::<Pi>(&CommonArgs::default()).unwrap().pi_id, want);
                Ok(())
            });
        }
        // A TOML file may write it as a number too.
        figment::Jail::expect_with(|jail| {
            jail.create_file("pi.toml", "pi_id = 101")?;
            let args = CommonArgs {
                config: Some("pi.toml".into()),
                ..Default::default()
            };
            assert_eq!(load::<Pi>(&args).unwrap().pi_id, "101");
            Ok(())
        });
    }
}
